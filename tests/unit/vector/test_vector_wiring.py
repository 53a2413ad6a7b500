"""How the vector stores are built and wired: lazy imports, the container's choice of
engine, health registration, the fake under ``use_fakes`` obeying the container's policy,
and the retry honouring a server's ``Retry-After`` on any error that carries one."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers
from hypothesis import given
from hypothesis import strategies as st

from config import Settings
from containers.application import ApplicationContainer, register_health_checks
from containers.lifecycle import resolve, start, stop
from containers.testing import use_fakes
from containers.vector import VectorContainer, VectorStoreNotConfigured, vector_configured
from infra.exceptions import (
    CacheConnectionError,
    ConfigurationError,
    GraphError,
    InfraError,
    InvalidArgumentError,
    VectorStoreConnectionError,
    VectorStoreError,
)
from infra.observability import HealthRegistry, get_metrics_collector
from infra.ports import VectorPoint
from infra.resilience import ResiliencePolicy, RetryConfig, RetryPolicy
from infra.testing.fakes import FakeCache, FakeRelationalStore
from infra.testing.fakes.vector import FakeVectorStore
from infra.vector.qdrant import QdrantVectorStore

ROOT = Path(__file__).resolve().parents[3]


def python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANTICA_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(  # noqa: S603 - our interpreter, our code
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_importing_infra_vector_imports_no_client_until_used() -> None:
    """``import infra.vector`` (and both store modules, and building a store from
    settings) loads neither qdrant-client nor asyncpg; the first request loads the client."""
    done = python(
        "import asyncio, sys\n"
        "import infra.vector\n"
        "from infra.vector import QdrantVectorStore, PgVectorStore\n"
        "from infra.vector.qdrant import QdrantVectorStore as Q\n"
        "from infra.vector.pgvector import PgVectorStore as P\n"
        "from config import Settings\n"
        "store = Q.from_settings(Settings(qdrant_location=':memory:'))\n"
        "loaded = [m in sys.modules for m in ('qdrant_client', 'asyncpg', 'pgvector')]\n"
        "print(*loaded)\n"
        "async def main():\n"
        "    await store.ensure_collection('c', vector_size=2)\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
        "print('qdrant_client' in sys.modules)\n"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False", "False", "True"]


def test_the_first_call_imports_qdrant_client_off_the_event_loop() -> None:
    """qdrant-client takes most of a second to import; on the event loop's thread it
    stalled every other task (a readiness check timed out behind a first vector call).
    Seen by an audit hook: it is imported in a worker thread, by a health check as by any
    other first call."""
    done = python(
        "import asyncio, sys, threading\n"
        "on_main_thread = []\n"
        "def hook(event, args):\n"
        "    if event == 'import' and args and str(args[0]).partition('.')[0] == 'qdrant_client':\n"
        "        on_main_thread.append(threading.current_thread() is threading.main_thread())\n"
        "sys.addaudithook(hook)\n"
        "from config import Settings\n"
        "from infra.vector.qdrant import QdrantVectorStore\n"
        "store = QdrantVectorStore.from_settings(Settings(qdrant_location=':memory:'))\n"
        "async def main():\n"
        "    first = store.ensure_collection('c', vector_size=2)\n"
        "    await asyncio.gather(store.health_check(), first)\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
        "print(len(on_main_thread) > 0, on_main_thread[0], on_main_thread.count(True))\n"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "False", "0"]


def test_without_qdrant_client_the_first_use_names_the_extra() -> None:
    done = python(
        "import asyncio, sys\n"
        "sys.modules['qdrant_client'] = None\n"
        "from config import Settings\n"
        "from infra.vector.qdrant import QdrantVectorStore\n"
        "store = QdrantVectorStore.from_settings(Settings(qdrant_location=':memory:'))\n"
        "async def main():\n"
        "    await store.count('c')\n"
        "try:\n"
        "    asyncio.run(main())\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    assert "MissingDependencyError" in done.stdout, done.stderr[-2000:]
    assert "pip install 'semantica-infra[vector]'" in done.stdout


async def test_the_container_builds_local_mode_qdrant_from_settings() -> None:
    container = VectorContainer(settings=Settings(qdrant_location=":memory:"))
    store = await resolve(container.store)
    try:
        assert isinstance(store, QdrantVectorStore)
        assert store.batch_size == 256
        assert store.concurrency == 4
        assert store.policy is container.policy()
        await store.ensure_collection("c", vector_size=2)
        assert await store.upsert("c", [VectorPoint(1, [1.0, 2.0])]) == 1
    finally:
        await stop(container)
    assert store.is_closed


async def test_pgvector_runs_on_the_relational_store_it_is_given() -> None:
    from infra.storage import EnhancedPostgresStore
    from infra.vector.pgvector import PgVectorStore

    relational = EnhancedPostgresStore("postgresql://u@127.0.0.1:9/db")  # never connects
    settings = Settings(vector_backend="pgvector", qdrant_upsert_batch_size=64)
    container = VectorContainer(settings=settings, relational=relational)
    store = await resolve(container.store)
    try:
        assert isinstance(store, PgVectorStore)
        assert store.relational is relational
        assert store.policy is relational.policy
        assert store.batch_size == 64
    finally:
        await stop(container)
    assert not relational.is_closed  # the PostgreSQL container closes its own store
    await relational.close()


async def test_pgvector_without_a_relational_store_says_how_to_compose_it() -> None:
    container = VectorContainer(settings=Settings(vector_backend="pgvector"))
    with pytest.raises(ValueError, match=r"relational=postgres\.store"):
        await resolve(container.store)


@pytest.mark.parametrize(
    ("options", "configured"),
    [
        ({}, False),
        ({"qdrant_location": ":memory:"}, True),
        ({"qdrant_url": "https://q.example:6333"}, True),
        ({"vector_backend": "pgvector"}, True),
    ],
)
def test_health_is_registered_only_for_a_configured_vector_store(
    options: dict[str, str], configured: bool
) -> None:
    assert vector_configured(Settings(**options)) is configured


async def test_the_application_registers_vector_health_when_configured() -> None:
    app = ApplicationContainer()
    app.core.settings.override(providers.Object(Settings(qdrant_location=":memory:")))
    with use_fakes(app):
        await start(app)
        try:
            registry = app.observability.health()
            assert "vector" in registry.names()
            report = await registry.readiness()
            (vector,) = [check for check in report.checks if check.name == "vector"]
            assert vector.status == "healthy"
            assert not vector.critical
        finally:
            await stop(app)


async def test_the_fake_obeys_the_policy_the_container_provides() -> None:
    """``app.vector.policy.override(...)`` changes outcomes on the fake exactly as on the
    real store: the same scripted failure is retried under one policy, raised under a
    policy without retries."""
    for attempts, succeeds in ((3, True), (1, False)):
        app = ApplicationContainer()
        with use_fakes(app) as fakes:
            policy = ResiliencePolicy.instant("qdrant", retry=RetryConfig(max_attempts=attempts))
            app.vector.policy.override(providers.Object(policy))
            await start(app)
            try:
                store = app.vector.store()
                assert store is fakes.vector
                assert store.policy is policy
                await store.ensure_collection("c", vector_size=1)
                fakes.vector.fail_next(ConnectionResetError(), operations={"upsert"})
                if succeeds:
                    assert await store.upsert("c", [VectorPoint(1, [1.0])]) == 1
                else:
                    with pytest.raises(VectorStoreConnectionError):
                        await store.upsert("c", [VectorPoint(1, [1.0])])
            finally:
                await stop(app)
                app.vector.policy.reset_last_overriding()


async def test_the_fake_records_metrics_through_the_shared_call_path() -> None:
    collector = get_metrics_collector()
    before = collector.get_histogram_stats("qdrant_request_latency_ms", operation="upsert").count
    store = FakeVectorStore()
    await store.ensure_collection("c", vector_size=1)
    await store.upsert("c", [VectorPoint(i, [1.0]) for i in range(3)])
    after = collector.get_histogram_stats("qdrant_request_latency_ms", operation="upsert").count
    assert after == before + 1


def test_an_api_key_never_shows_in_the_store() -> None:
    settings = Settings(qdrant_url="https://q.example:6333", qdrant_api_key="s3cr3t-key")
    store = QdrantVectorStore.from_settings(settings)
    assert "s3cr3t-key" not in repr(store)
    assert "s3cr3t-key" not in repr(settings.vector)


errors = st.sampled_from(
    [VectorStoreError, VectorStoreConnectionError, CacheConnectionError, GraphError]
)


@given(error_type=errors, retry_after=st.floats(0, 1e4), attempt=st.integers(1, 6))
def test_the_retry_waits_at_least_the_servers_retry_after(
    error_type: type[InfraError], retry_after: float, attempt: int
) -> None:
    """Any of our errors carrying ``details["retry_after"]`` (what the translation puts
    there for every HTTP 429): the retry's delay is at least that long."""
    policy = RetryPolicy(RetryConfig(max_attempts=8, base_delay=0.5, max_delay=2.0))
    error = error_type("throttled", retryable=True, details={"retry_after": retry_after})
    assert policy.delay_for(attempt, error) >= retry_after
    assert policy.delay_for(attempt, error_type("no header", retryable=True)) <= 2.0


async def test_with_no_vector_store_configured_using_it_says_what_to_set() -> None:
    """Default settings: the container's store is a placeholder with no health check
    (nothing to report or ping), whose methods raise a ConfigurationError naming the
    variables to set."""
    container = VectorContainer(settings=Settings())
    store = await resolve(container.store)
    try:
        assert isinstance(store, VectorStoreNotConfigured)
        assert not hasattr(store, "health_check")
        with pytest.raises(ConfigurationError, match="SEMANTICA_QDRANT_URL"):
            await store.search("docs", [1.0])
    finally:
        await stop(container)
    assert vector_configured(Settings(qdrant_host="qdrant.internal"))
    assert vector_configured(Settings(qdrant_port=7333))


async def test_an_unconfigured_vector_store_is_neither_pinged_nor_registered() -> None:
    container = VectorContainer(settings=Settings())
    await start(container, ping=True)  # a Qdrant on localhost is not running: no ping
    try:
        registry = HealthRegistry()
        async for _ in register_health_checks(
            registry,
            FakeRelationalStore(),
            FakeCache(),
            vector=container.store(),
            settings=Settings(),
        ):
            assert registry.names() == ["postgres", "redis"]
    finally:
        await stop(container)


async def test_batching_settings_reach_the_store_of_either_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``SEMANTICA_QDRANT_UPSERT_CONCURRENCY`` and ``_BATCH_SIZE`` set the store's
    upsert concurrency and batch size, on Qdrant and on pgvector."""
    from infra.storage import EnhancedPostgresStore
    from infra.vector.pgvector import PgVectorStore

    monkeypatch.setenv("SEMANTICA_QDRANT_UPSERT_CONCURRENCY", "7")
    monkeypatch.setenv("SEMANTICA_QDRANT_UPSERT_BATCH_SIZE", "50")
    monkeypatch.setenv("SEMANTICA_QDRANT_LOCATION", ":memory:")
    for backend in ("qdrant", "pgvector"):
        monkeypatch.setenv("SEMANTICA_VECTOR_BACKEND", backend)
        relational = EnhancedPostgresStore("postgresql://u@127.0.0.1:9/db")  # never connects
        container = VectorContainer(settings=Settings(), relational=relational)
        store = await resolve(container.store)
        try:
            assert isinstance(store, QdrantVectorStore if backend == "qdrant" else PgVectorStore)
            assert (store.concurrency, store.batch_size) == (7, 50)
        finally:
            await stop(container)
            await relational.close()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"qdrant_url": "https://q.example:7333"},
            {"url": "https://q.example:7333", "prefer_grpc": False, "location": None},
        ),
        (
            {"qdrant_host": "q.internal", "qdrant_port": 7000, "qdrant_grpc_port": 7001},
            {"host": "q.internal", "port": 7000, "grpc_port": 7001, "url": None},
        ),
        (
            {"qdrant_host": "q.internal", "qdrant_prefer_grpc": True},
            {"host": "q.internal", "prefer_grpc": True, "grpc_port": 6334},
        ),
        ({"qdrant_location": ":memory:"}, {"location": ":memory:", "url": None, "host": None}),
        ({"qdrant_location": "DIR"}, {"path": "DIR", "url": None}),
    ],
)
async def test_the_client_is_the_one_settings_describe(
    options: dict[str, object], expected: dict[str, object], tmp_path: Path
) -> None:
    """Local mode (memory or a directory), a URL, or host/port; REST or gRPC; the
    client never retries on its own (gRPC retries off) and makes no request at build."""
    from infra.vector.client import qdrant_client_from_settings

    def placed(values: dict[str, object]) -> dict[str, Any]:
        return {key: str(tmp_path) if value == "DIR" else value for key, value in values.items()}

    client = qdrant_client_from_settings(Settings(**placed(options)))
    chosen = client.init_options
    assert {key: chosen[key] for key in expected} == placed(expected)
    if chosen["prefer_grpc"]:
        assert chosen["grpc_options"]["grpc.enable_retries"] == 0
    if chosen["location"] is None and chosen["path"] is None:
        assert chosen["check_compatibility"] is False
    await client.close()


async def test_prefer_grpc_sends_requests_to_the_grpc_port_and_errors_are_typed() -> None:
    """With ``SEMANTICA_QDRANT_PREFER_GRPC`` the real client talks gRPC to the gRPC port
    (here a loopback listener that hangs up): the REST port is never used, and the
    failure is our typed, retryable connection error."""
    connections: dict[str, int] = {"rest": 0, "grpc": 0}

    def listener(kind: str) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]:
        def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections[kind] += 1
            writer.close()

        return accept

    rest = await asyncio.start_server(listener("rest"), "127.0.0.1", 0)
    grpc = await asyncio.start_server(listener("grpc"), "127.0.0.1", 0)
    ports = [server.sockets[0].getsockname()[1] for server in (rest, grpc)]
    settings = Settings(
        qdrant_host="127.0.0.1",
        qdrant_port=ports[0],
        qdrant_grpc_port=ports[1],
        qdrant_prefer_grpc=True,
        qdrant_timeout=5,
    )
    store = QdrantVectorStore.from_settings(
        settings, policy=ResiliencePolicy.instant("qdrant", retry=RetryConfig(max_attempts=2))
    )
    try:
        with pytest.raises(VectorStoreConnectionError) as caught:
            await store.count("docs")
        assert caught.value.retryable
    finally:
        await store.close()
        for server in (rest, grpc):
            server.close()
            await server.wait_closed()
    assert connections["grpc"] >= 1
    assert connections["rest"] == 0


async def test_shutdown_closes_the_client_the_container_built(tmp_path: Path) -> None:
    """Local mode on a directory: qdrant-client locks the directory while a client is
    open, so opening it again after ``stop`` proves the container closed its client --
    and the points are there."""
    from qdrant_client import AsyncQdrantClient

    container = VectorContainer(settings=Settings(qdrant_location=str(tmp_path)))
    store = await resolve(container.store)
    await store.ensure_collection("docs", vector_size=2)
    await store.upsert("docs", [VectorPoint(1, [1.0, 0.0]), VectorPoint(2, [0.0, 1.0])])
    await stop(container)
    reopened = AsyncQdrantClient(path=str(tmp_path))
    try:
        assert (await reopened.count("docs")).count == 2
    finally:
        await reopened.close()


async def test_a_client_passed_in_stays_open_for_its_owner() -> None:
    """The plain constructor takes a client; closing the store leaves it to its owner."""
    from qdrant_client import AsyncQdrantClient

    client = AsyncQdrantClient(location=":memory:")
    store = QdrantVectorStore(client)
    await store.ensure_collection("docs", vector_size=2)
    await store.close()
    assert [c.name for c in (await client.get_collections()).collections] == ["docs"]
    await client.close()


async def test_progress_is_logged_every_log_every_batches_on_the_real_store(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from qdrant_client import AsyncQdrantClient

    client = AsyncQdrantClient(location=":memory:")
    store = QdrantVectorStore(client, batch_size=2, log_every=3)
    await store.ensure_collection("docs", vector_size=1)
    with caplog.at_level(logging.INFO, logger="infra.vector"):
        await store.upsert("docs", [VectorPoint(i, [1.0 + i]) for i in range(14)])
    await client.close()
    done = [r.getMessage().split(" in ")[1] for r in caplog.records if r.name == "infra.vector"]
    assert done == ["3 of 7 batches", "6 of 7 batches", "7 of 7 batches"]
    with pytest.raises(InvalidArgumentError, match="log_every"):
        QdrantVectorStore(client, log_every=-1)

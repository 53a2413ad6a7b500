"""PostgresStore / EnhancedPostgresStore / PostgresContainer on the embedded PostgreSQL.

Real failures only: a statement killed by ``statement_timeout``, a pool of one held by a
transaction, a port nothing listens on, a backend terminated mid-query with
``pg_terminate_backend``, a serializable write skew. The behaviour shared with the fake
is in ``tests/contract/test_relational_contract.py``.
"""

# S608: f-strings here only interpolate generated markers/names, never values.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest
from asyncpg.pool import PoolConnectionProxy
from dependency_injector import providers
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from config import Settings
from containers.lifecycle import resolve
from containers.postgres import PostgresContainer
from infra.exceptions import (
    CircuitBreakerOpenError,
    DatabaseConnectionError,
    PoolExhaustedError,
    QueryTimeoutError,
    SerializationFailureError,
)
from infra.observability import (
    HealthRegistry,
    MetricsCollector,
    get_metrics_collector,
    reset_metrics_collector,
    reset_tracing,
    set_metrics_collector,
    setup_tracing,
)
from infra.resilience import (
    CircuitBreakerConfig,
    RecordingObserver,
    ResiliencePolicy,
    RetryConfig,
)
from infra.storage import EnhancedPostgresStore, PostgresStore
from infra.testing.chaos import ChaosProxy

pytestmark = pytest.mark.postgres

DOCS = Path(__file__).resolve().parents[2] / "docs" / "postgres.md"


def with_query(dsn: str, **params: str) -> str:
    """``dsn`` with extra query parameters (asyncpg passes unknown ones as settings)."""
    parts = urlsplit(dsn)
    query = urlencode([*parse_qsl(parts.query), *params.items()])
    return urlunsplit(parts._replace(query=query))


def dead_dsn(secret: str, port: int) -> str:
    """A TCP DSN on a loopback port nothing listens on (the ``refusing_port`` fixture)."""
    return f"postgresql://app:{secret}@127.0.0.1:{port}/app"


#: How long a test waits for something it expects: a hang guard, never a bound under test.
PATIENCE = 30.0


async def eventually(check: Callable[[], bool]) -> None:
    """Let other tasks run until ``check()`` holds (a fixed sleep is no barrier on a
    loaded machine)."""
    async with asyncio.timeout(PATIENCE):
        while not check():  # noqa: ASYNC110 -- polling state; no event to await
            await asyncio.sleep(0.002)


@pytest.fixture
def collector() -> Iterator[MetricsCollector]:
    """A fresh metrics collector installed for one test."""
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    yield fresh
    reset_metrics_collector()


@pytest.fixture
async def schema_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    """A DSN whose search_path is a fresh schema, dropped after the test."""
    schema = f"s_{uuid.uuid4().hex}"
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield with_query(postgres_dsn, search_path=schema)
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


async def backend_pid_running(
    admin: asyncpg.Connection | PoolConnectionProxy[asyncpg.Record], marker: str
) -> int:
    """Wait until a query containing ``marker`` is active on another backend; its pid."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE state = 'active' "
            "AND query LIKE $1 AND pid <> pg_backend_pid()",
            f"%{marker}%",
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.01)
    raise AssertionError(f"no backend ran a query containing {marker!r}")


@asynccontextmanager
async def held_lock(
    admin: asyncpg.Connection | PoolConnectionProxy[asyncpg.Record],
) -> AsyncIterator[int]:
    """An advisory lock ``admin`` holds until the block ends (its key is yielded): a
    statement waiting for it stays in flight as long as the test needs -- no race with
    a sleep that might end before a loaded machine gets round to terminating it."""
    key = uuid.uuid4().int % 2**62
    await admin.execute("SELECT pg_advisory_lock($1)", key)
    try:
        yield key
    finally:
        await admin.execute("SELECT pg_advisory_unlock($1)", key)


def waits_for(key: int) -> str:
    """A FROM item that waits until ``key``'s advisory lock is free (one row)."""
    return f"pg_advisory_xact_lock_shared({key})"


# --------------------------------------------------------------------- the design's snippets
async def test_spec_basic_store_snippet(schema_dsn: str) -> None:
    """The design: PostgresStore(dsn); await initialize(); fetch with $1 works verbatim."""
    async with PostgresStore(schema_dsn, 1, 2) as setup:
        await setup.execute("CREATE TABLE users (id integer PRIMARY KEY, name text)")
        await setup.execute("INSERT INTO users VALUES (1, 'ada'), (2, 'grace')")
    user_id = 2

    store = PostgresStore(schema_dsn)
    try:
        await store.initialize()
        rows = await store.fetch("SELECT * FROM users WHERE id = $1", user_id)

        assert rows == [{"id": 2, "name": "grace"}]
    finally:
        await store.close()


async def test_spec_enhanced_store_snippet(postgres_dsn: str) -> None:
    """The design: EnhancedPostgresStore with breaker/retry configs; health_check's details."""
    store = EnhancedPostgresStore(
        postgres_dsn,
        enable_circuit_breaker=True,
        enable_retry=True,
        circuit_breaker_config=CircuitBreakerConfig(failure_threshold=5, timeout=60.0),
        retry_config=RetryConfig(max_attempts=3, base_delay=1.0, exponential_base=2.0),
    )
    try:
        is_healthy, details = await store.health_check(latency_threshold_ms=100.0)
    finally:
        await store.close()

    assert is_healthy is True
    assert details["status"] in {"healthy", "degraded"}
    assert set(details) == {"status", "latency_ms", "pool_size", "pool_free", "circuit_breaker"}
    assert details["pool_size"] == 5  # min_size's default, opened by the first use
    assert details["circuit_breaker"] == "closed"
    breaker, retry = store.policy.breaker, store.policy.retry
    assert breaker is not None
    assert breaker.config.failure_threshold == 5
    assert retry is not None
    assert retry.config.max_attempts == 3


# -------------------------------------------------------------------------- timeouts
async def test_statement_timeout_is_enforced_by_the_server(postgres_dsn: str) -> None:
    """statement_timeout=0.05 s kills pg_sleep(60): QueryTimeoutError, retryable, timeout
    (the server's cancel, SQLSTATE 57014, long before the sleep could end)."""
    async with PostgresStore(postgres_dsn, 1, 1, statement_timeout=0.05) as store:
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError) as caught:
            await store.fetchval("SELECT pg_sleep(60)")
        assert time.monotonic() - started < PATIENCE
        error = caught.value
        assert error.retryable is True
        assert error.details["timeout"] == 0.05
        assert error.details["sqlstate"] == "57014"  # query_canceled, from the server
        assert await store.fetchval("SELECT 1") == 1  # the connection is still good
        # The pool's reset at every release (RESET ALL) keeps the startup setting.
        assert await store.fetchval("SHOW statement_timeout") == "50ms"


async def test_a_per_call_timeout_shorter_than_the_statement_timeout(postgres_dsn: str) -> None:
    """timeout=0.05 on the call: the client gives up, reports 0.05, the pool survives."""
    async with PostgresStore(postgres_dsn, 1, 1) as store:
        with pytest.raises(QueryTimeoutError) as caught:
            await store.fetchval("SELECT pg_sleep(1)", timeout=0.05)
        assert caught.value.timeout == 0.05
        assert await store.fetchval("SELECT 2") == 2


async def test_a_dead_peer_is_cut_off_at_the_client_deadline(postgres_dsn: str) -> None:
    """No answer at all (the server's own timeout cannot help): the dead-peer deadline terminates
    the connection at command_timeout, QueryTimeoutError, in or out of a transaction;
    the pool recovers."""
    async with (
        ChaosProxy.for_url(postgres_dsn) as proxy,
        PostgresStore(proxy.url, 1, 1, statement_timeout=0.05, command_timeout=0.3) as store,
    ):
        assert await store.fetchval("SELECT 1") == 1
        proxy.blackhole("to_client")
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError) as caught:
            await store.fetchval("SELECT 1")
        elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < PATIENCE  # not before the limit; cut off, not hung
        assert caught.value.details["timeout"] == 0.3
        assert caught.value.retryable is True
        proxy.heal()
        assert await store.fetchval("SELECT 2") == 2  # a fresh connection replaced it

        async def statement_in_a_transaction() -> None:
            async with store.transaction() as tx:
                proxy.blackhole("to_client")
                await tx.fetchval("SELECT 3")

        with pytest.raises(QueryTimeoutError):  # the same inside a transaction
            await statement_in_a_transaction()
        proxy.heal()
        assert await store.fetchval("SELECT 4") == 4


# ------------------------------------------------------------------------------ pool
async def test_pool_exhaustion_waits_then_raises_a_typed_error(postgres_dsn: str) -> None:
    """max_size=1 held by a transaction: a read waits acquire_timeout, then gives up."""
    async with PostgresStore(postgres_dsn, 1, 1, acquire_timeout=0.05) as store:
        async with store.transaction():
            started = time.monotonic()
            with pytest.raises(PoolExhaustedError) as caught:
                await store.fetchval("SELECT 1")
            assert 0.04 <= time.monotonic() - started < PATIENCE  # waited, then gave up
        error = caught.value
        assert error.retryable is False  # the wait already ran out: retrying would re-queue
        assert error.details["max_size"] == 1
        assert 0.04 <= error.details["waited"] < PATIENCE
        assert await store.fetchval("SELECT 1") == 1


async def test_a_waiter_gets_the_connection_released_in_time(
    postgres_dsn: str, collector: MetricsCollector
) -> None:
    """A caller waiting for a full pool is counted as pending and served on release."""
    name = f"wait-{uuid.uuid4().hex}"
    async with PostgresStore(postgres_dsn, 1, 1, acquire_timeout=2.0, name=name) as store:
        async with store.transaction():
            waiter = asyncio.create_task(store.fetchval("SELECT 3"))
            await eventually(lambda: collector.get_gauge("postgres_pool_pending", pool=name) == 1)
            assert not waiter.done()
        assert await waiter == 3
        assert collector.get_gauge("postgres_pool_pending", pool=name) == 0


async def test_pool_gauges_follow_the_real_pool(
    postgres_dsn: str, collector: MetricsCollector
) -> None:
    """The design's postgres_pool_size/active/utilization read the live pool; gone after close."""
    name = f"gauges-{uuid.uuid4().hex}"
    store = EnhancedPostgresStore(postgres_dsn, 1, 2, name=name)
    assert collector.get_gauge("postgres_pool_size", pool=name) == 0  # nothing opened yet
    await store.initialize()
    assert collector.get_gauge("postgres_pool_size", pool=name) == 1
    assert collector.get_gauge("postgres_pool_active", pool=name) == 0
    async with store.transaction():
        assert collector.get_gauge("postgres_pool_active", pool=name) == 1
        assert collector.get_gauge("postgres_pool_utilization", pool=name) == 50.0
        assert collector.get_gauge("postgres_pool_active") >= 1  # The design's unlabelled read
    assert collector.get_gauge("postgres_pool_active", pool=name) == 0
    await store.close()
    assert collector.get_gauge("postgres_pool_size", pool=name) == 0


async def test_close_terminates_connections_still_borrowed(postgres_dsn: str) -> None:
    """close() waits close_timeout for a stuck borrower, then terminates; never hangs."""
    store = PostgresStore(postgres_dsn, 1, 1, close_timeout=0.1)
    started_query = asyncio.Event()

    async def stuck() -> None:
        async with store.transaction() as tx:
            started_query.set()
            await tx.fetchval("SELECT pg_sleep(120)")

    borrower = asyncio.create_task(stuck())
    await started_query.wait()
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < PATIENCE  # did not wait for the borrower
    with pytest.raises(DatabaseConnectionError):  # its connection was cut
        await borrower
    assert store.is_closed


# --------------------------------------------------------------------- metrics, spans
async def test_every_call_records_latency_and_a_span(postgres_dsn: str, collector: Any) -> None:
    """postgres_query_latency_ms gets one sample per call; spans follow the conventions."""
    exporter = InMemorySpanExporter()
    setup_tracing(exporter=exporter)
    try:
        async with EnhancedPostgresStore(postgres_dsn, 1, 1) as store:
            for _ in range(3):
                await store.fetchval("SELECT 1")
            await store.execute("SELECT 1")
    finally:
        reset_tracing()
    stats = get_metrics_collector().get_histogram_stats(
        "postgres_query_latency_ms", operation="fetchval"
    )
    assert stats.count == 3
    assert stats.p99 > 0
    assert collector.get_counter("backend_calls_total", component="postgres", outcome="ok") == 5
    spans = [s for s in exporter.get_finished_spans() if s.name == "fetchval"]
    assert len(spans) == 3
    assert spans[0].attributes is not None
    assert spans[0].attributes["db.system.name"] == "postgresql"
    assert spans[0].attributes["db.operation.name"] == "fetchval"


# -------------------------------------------------------- circuit breaker; retries
async def test_breaker_opens_on_a_dead_server_then_fails_fast(refusing_port: int) -> None:
    """Connection refused 3x trips a threshold-3 breaker; then CircuitBreakerOpenError."""
    dsn = dead_dsn("hunter2-secret", refusing_port)
    store = EnhancedPostgresStore(
        dsn,
        1,
        1,
        enable_retry=False,
        circuit_breaker_config=CircuitBreakerConfig(failure_threshold=3, timeout=60.0),
        acquire_timeout=1.0,
    )
    for _ in range(3):
        with pytest.raises(DatabaseConnectionError) as caught:
            await store.fetchval("SELECT 1")
        assert caught.value.retryable is True
        assert "hunter2-secret" not in f"{caught.value} {caught.value!r}"
    with pytest.raises(CircuitBreakerOpenError) as opened:  # refused without an attempt
        await store.fetchval("SELECT 1")
    assert opened.value.failure_count == 3
    ok, details = await store.health_check()
    assert (ok, details["status"], details["circuit_breaker"]) == (False, "unhealthy", "open")
    assert "hunter2-secret" not in repr(store)
    await store.close()


async def test_a_read_is_retried_after_its_backend_is_terminated(
    postgres_dsn: str, pg_pool: asyncpg.Pool
) -> None:
    """pg_terminate_backend mid-query: the read fails once, is retried, and succeeds."""
    observer = RecordingObserver()
    policy = ResiliencePolicy.instant("postgres", hooks=[observer])
    marker = f"m{uuid.uuid4().hex[:12]}"
    async with EnhancedPostgresStore(postgres_dsn, 1, 1, policy=policy) as store:
        async with pg_pool.acquire() as admin, held_lock(admin) as lock:
            read = asyncio.create_task(
                store.fetchval(f"SELECT 42 AS {marker} FROM {waits_for(lock)}")
            )
            pid = await backend_pid_running(admin, marker)
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid) is True
        assert await read == 42
    assert len(observer.retries) == 1
    assert isinstance(observer.retries[0][3], DatabaseConnectionError)


async def test_a_plain_write_is_attempted_once_and_an_idempotent_one_retried(
    postgres_dsn: str, pg_pool: asyncpg.Pool
) -> None:
    """Same fault: execute() raises the retryable error; execute(idempotent=True) retries."""
    observer = RecordingObserver()
    policy = ResiliencePolicy.instant("postgres", hooks=[observer])
    async with EnhancedPostgresStore(postgres_dsn, 1, 1, policy=policy) as store:
        for idempotent in (False, True):
            marker = f"m{uuid.uuid4().hex[:12]}"
            async with pg_pool.acquire() as admin, held_lock(admin) as lock:
                write = asyncio.create_task(
                    store.execute(
                        f"SELECT 1 AS {marker} FROM {waits_for(lock)}", idempotent=idempotent
                    )
                )
                await admin.fetchval(
                    "SELECT pg_terminate_backend($1)", await backend_pid_running(admin, marker)
                )
            if idempotent:
                assert await write == "SELECT 1"
                assert len(observer.retries) == 1
            else:
                with pytest.raises(DatabaseConnectionError) as caught:
                    await write
                assert caught.value.retryable is True
                assert observer.retries == []


async def test_serializable_write_skew_is_a_retryable_serialization_failure(
    schema_dsn: str,
) -> None:
    """Two SERIALIZABLE transactions in write skew: one fails, retryable, the other commits."""
    async with PostgresStore(schema_dsn, 2, 2) as store:
        await store.execute("CREATE TABLE oncall (doctor text PRIMARY KEY, on_call integer)")
        await store.execute("INSERT INTO oncall VALUES ('a', 1), ('b', 1)")
        both_read = asyncio.Barrier(2)

        async def go_off_call(doctor: str) -> None:
            async with store.transaction(isolation="serializable") as tx:
                on_call = await tx.fetchval("SELECT sum(on_call) FROM oncall")
                await both_read.wait()
                if on_call >= 2:
                    await tx.execute("UPDATE oncall SET on_call = 0 WHERE doctor = $1", doctor)

        results = await asyncio.gather(go_off_call("a"), go_off_call("b"), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1
        assert isinstance(failures[0], SerializationFailureError)
        assert failures[0].retryable is True
        assert await store.fetchval("SELECT sum(on_call) FROM oncall") == 1


async def test_transaction_options_reach_the_server(postgres_dsn: str) -> None:
    """isolation= sets the transaction's isolation level."""
    async with PostgresStore(postgres_dsn, 1, 1) as store:
        async with store.transaction(isolation="repeatable_read") as tx:
            level = await tx.fetchval("SHOW transaction_isolation")
        assert level == "repeatable read"


async def test_concurrent_first_calls_share_one_pool(postgres_dsn: str) -> None:
    """Twenty first calls at once on a fresh store: every call answered by one pool."""
    store = PostgresStore(postgres_dsn, 1, 3)
    results = await asyncio.gather(*(store.fetchval("SELECT $1::int", i) for i in range(20)))
    assert results == list(range(20))
    _, details = await store.health_check()
    assert 1 <= details["pool_size"] <= 3
    await store.close()


async def test_basic_store_health_has_no_breaker_and_plugs_into_the_registry(
    postgres_dsn: str,
) -> None:
    """The basic store reports circuit_breaker=None; a HealthRegistry runs its check."""
    async with PostgresStore(postgres_dsn, 1, 1) as store:
        ok, details = await store.health_check(latency_threshold_ms=10_000.0)
        assert (ok, details["status"], details["circuit_breaker"]) == (True, "healthy", None)
        registry = HealthRegistry(timeout=2.0)
        registry.register("postgres", store)
        report = await registry.readiness()
    assert report.status == "healthy"
    assert report.checks[0].name == "postgres"
    assert report.http_status == 200


# ------------------------------------------------------------------------- container
async def test_container_connects_nothing_until_the_store_is_used(refusing_port: int) -> None:
    """Constructing the container and resolving the store open no connection."""
    container = PostgresContainer(
        settings=providers.Object(Settings(database_url=dead_dsn("unused-pw", refusing_port)))
    )
    container.check_dependencies()
    store = await resolve(container.store)
    assert isinstance(store, EnhancedPostgresStore)
    assert store.is_initialized is False
    stopping = container.shutdown_resources()
    assert stopping is not None  # async resources: an awaitable
    await stopping
    assert store.is_closed


async def test_container_store_works_and_shutdown_closes_its_pool(
    postgres_dsn: str, collector: MetricsCollector
) -> None:
    """The resource answers queries; shutdown_resources() closes the pool."""
    settings = Settings(
        database_url=postgres_dsn, postgres_min_pool_size=1, postgres_max_pool_size=2
    )
    container = PostgresContainer(settings=providers.Object(settings))
    store = await resolve(container.store)
    assert await store.fetchval("SELECT 40 + 2") == 42
    assert collector.get_gauge("postgres_pool_size", pool="default") == 1
    assert store.policy is container.policy()
    assert store.policy.bulkhead is not None  # the settings' policy, not the default one
    stopping = container.shutdown_resources()
    assert stopping is not None  # async resources: an awaitable
    await stopping
    assert store.is_closed
    assert collector.get_gauge("postgres_pool_size", pool="default") == 0
    with pytest.raises(DatabaseConnectionError, match="closed"):
        await store.fetchval("SELECT 1")


async def test_container_policy_override_reaches_the_store(postgres_dsn: str) -> None:
    """Overriding the policy provider (an instant policy) is what the store runs under."""
    container = PostgresContainer(settings=providers.Object(Settings(database_url=postgres_dsn)))
    instant = ResiliencePolicy.instant("postgres")
    with container.policy.override(providers.Object(instant)):
        store = await resolve(container.store)
        assert store.policy is instant
    stopping = container.shutdown_resources()
    assert stopping is not None  # async resources: an awaitable
    await stopping


# ------------------------------------------------------------------------------ docs
def doc_examples() -> list[str]:
    """The ```python blocks of docs/postgres.md."""
    return re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)


async def test_docs_examples_run(schema_dsn: str) -> None:
    """Every python block of docs/postgres.md runs, in order, against a real server."""
    import ast

    namespace: dict[str, Any] = {"dsn": schema_dsn}
    blocks = doc_examples()
    assert len(blocks) >= 5
    for block in blocks:
        code = compile(block, str(DOCS), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)  # noqa: S307 -- our own documentation
        if result is not None:
            await result
    for value in list(namespace.values()):
        if isinstance(value, PostgresStore):
            await value.close()

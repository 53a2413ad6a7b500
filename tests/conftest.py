"""Shared fixtures: real backends on loopback, started lazily, stopped at session end.

The servers come from the application test kit (``infra.testing.pytest_plugin``, loaded
below): these fixtures are thin names over its ``semantica_*`` server fixtures.

Session fixtures (one server per test session, started on first request, so a unit-only
run starts nothing):

* ``postgres_dsn``     -- embedded PostgreSQL 18 + pgvector, or ``SEMANTICA_TEST_POSTGRES_DSN``;
* ``redis_url``        -- embedded Redis 8, or ``SEMANTICA_TEST_REDIS_URL``;
* ``bolt_uri``         -- FalkorDB's Bolt listener in that same Redis process, or
  ``SEMANTICA_TEST_GRAPH_URI`` (``bolt_auth`` gives the credentials to use with it);
* ``qdrant_location``  -- ``":memory:"`` (qdrant-client local mode), or
  ``SEMANTICA_TEST_QDRANT_URL``.

Per-test conveniences, each closed after the test (``filterwarnings = error`` turns an
unclosed client into a failure): ``redis_client`` (FLUSHDB first), ``pg_pool``,
``graph_driver`` (default graph emptied first), ``qdrant_client``, and ``refusing_port``
(a loopback port held bound but not listening: connections to it are refused).

Two hooks keep the backend markers honest: a test that uses a backend fixture gets the
matching marker automatically (so ``-m "not postgres"`` really excludes it), and a test
carrying a backend marker that ends up *skipped* is reported as a failure -- a missing
server must be loud, never a silent skip. See docs/testing.md.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from redis.asyncio import Redis

# Tests import litellm directly in places; never let its import fetch a price map over the
# network (see infra/_litellm.py for the library-wide decision).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from infra.testing.bolt_server import FailingBoltServer
from infra.testing.embedded import (
    FALKORDB_AUTH,
    EmbeddedPostgres,
    EmbeddedRedis,
    QdrantLocal,
    external_endpoint,
    open_qdrant_client,
)

# Property tests run on a shared 2-core CI machine: a per-example wall-clock deadline
# would make them flaky without testing anything about our code.
hypothesis_settings.register_profile(
    "semantica", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("semantica")

if TYPE_CHECKING:  # heavy imports (qdrant_client ~1.4 s) happen only in the fixtures
    import asyncpg
    import neo4j
    from qdrant_client import AsyncQdrantClient

    from infra.testing.openai_server import OpenAITestServer

# The application test kit; the entry point registers it too when the package is
# installed, under this same name, so the two registrations are one.
pytest_plugins = ["infra.testing.pytest_plugin"]

#: Backend marker -> the session fixture that provides the backend.
BACKEND_FIXTURES = {
    "postgres": "postgres_dsn",
    "redis": "redis_url",
    "graph": "bolt_uri",
    "qdrant": "qdrant_location",
    "llm": "openai_server",
}


# ------------------------------------------------------------------------ marker hooks
@pytest.hookimpl(tryfirst=True)  # before pytest's own -m deselection reads the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that (even indirectly) uses a backend fixture with its marker."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        for marker, fixture in BACKEND_FIXTURES.items():
            if fixture in names and item.get_closest_marker(marker) is None:
                item.add_marker(marker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Turn a skip of a backend-marked test into a failure that says why."""
    report: pytest.TestReport = yield
    needs = [m for m in BACKEND_FIXTURES if item.get_closest_marker(m) is not None]
    if needs and report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} needs {', '.join(needs)} but was skipped ({reason}). Backend "
            "tests must run: fix the embedded server, or point the SEMANTICA_TEST_* "
            "variable at a server (docs/testing.md)."
        )
    return report


# ------------------------------------------------------------------- session backends
# The servers themselves come from the application test kit (infra/testing/pytest_plugin.py):
# the same session fixtures an application's suite uses, so they are written once.
@pytest.fixture(scope="session")
def embedded_postgres_server(semantica_embedded_postgres: EmbeddedPostgres) -> EmbeddedPostgres:
    """The embedded PostgreSQL server (only started if no external DSN is configured)."""
    return semantica_embedded_postgres


@pytest.fixture(scope="session")
def embedded_redis_server(semantica_embedded_redis: EmbeddedRedis) -> EmbeddedRedis:
    """The embedded Redis + FalkorDB server shared by ``redis_url`` and ``bolt_uri``."""
    return semantica_embedded_redis


@pytest.fixture(scope="session")
def postgres_dsn(semantica_postgres_dsn: str) -> str:
    """A PostgreSQL DSN (pgvector available): external if configured, else embedded."""
    return semantica_postgres_dsn


@pytest.fixture(scope="session")
def redis_url(semantica_redis_url: str) -> str:
    """A Redis URL: external if configured, else the embedded server."""
    return semantica_redis_url


@pytest.fixture(scope="session")
def bolt_uri(request: pytest.FixtureRequest) -> str:
    """A Bolt URI for the neo4j driver: external if configured, else embedded FalkorDB."""
    external = external_endpoint("graph")
    if external is not None:
        return external
    server: EmbeddedRedis = request.getfixturevalue("embedded_redis_server")
    return server.bolt_uri


@pytest.fixture(scope="session")
def openai_server(semantica_openai_server: OpenAITestServer) -> OpenAITestServer:
    """The scripted OpenAI-compatible server on loopback (the test kit's)."""
    return semantica_openai_server


@pytest.fixture(autouse=True)
def _llm_tests_stay_on_loopback(request: pytest.FixtureRequest) -> Iterator[None]:
    """In the LLM test modules every connection and name lookup beyond loopback is refused
    and fails the test: none of them reaches the internet (litellm included)."""
    if "llm" not in request.node.path.relative_to(request.config.rootpath).as_posix():
        yield
        return
    from infra.testing.openai_server import loopback_only

    with loopback_only():
        yield


@pytest.fixture(scope="session")
def bolt_auth() -> tuple[str, str]:
    """Bolt credentials: ``SEMANTICA_TEST_GRAPH_USER``/``_PASSWORD`` if set, else FalkorDB's."""
    user = os.environ.get("SEMANTICA_TEST_GRAPH_USER")
    if user:
        return user, os.environ.get("SEMANTICA_TEST_GRAPH_PASSWORD", "")
    return FALKORDB_AUTH


@pytest.fixture(scope="session")
def qdrant_location() -> Iterator[str]:
    """``":memory:"`` (local mode, nothing to start) or the external Qdrant URL."""
    external = external_endpoint("qdrant")
    if external is not None:
        yield external
        return
    with QdrantLocal() as local:
        yield local.location


# ----------------------------------------------------------------- per-test clients
@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """A ``redis.asyncio.Redis`` on an emptied database (FLUSHDB), closed after the test."""
    client = Redis.from_url(redis_url)
    try:
        await client.flushdb()
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def pg_pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A small asyncpg pool (1..4 connections), closed after the test."""
    import asyncpg

    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def graph_driver(
    bolt_uri: str, bolt_auth: tuple[str, str]
) -> AsyncIterator[neo4j.AsyncDriver]:
    """A neo4j ``AsyncDriver`` with the default graph emptied first, closed after the test."""
    import neo4j

    driver = neo4j.AsyncGraphDatabase.driver(bolt_uri, auth=bolt_auth)
    try:
        async with driver.session() as session:
            result = await session.run("MATCH (n) DETACH DELETE n")
            await result.consume()
        yield driver
    finally:
        await driver.close()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback TCP port that refuses connections for the whole test: bound, never
    listening. (A port picked, closed and dialled later may meanwhile be taken by
    another process; while we hold the binding nobody else can have it.)"""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


@pytest.fixture
async def bolt_failures() -> AsyncIterator[FailingBoltServer]:
    """A loopback Bolt server failing every statement with the code it is given: the
    neo4j driver's own server errors (class, ``.code``, ``is_retryable()``) for any code."""
    async with FailingBoltServer() as server:
        yield server


@pytest.fixture
async def qdrant_client(qdrant_location: str) -> AsyncIterator[AsyncQdrantClient]:
    """An ``AsyncQdrantClient`` for ``qdrant_location`` (fresh store in local mode)."""
    client = open_qdrant_client(qdrant_location)
    try:
        yield client
    finally:
        await client.close()

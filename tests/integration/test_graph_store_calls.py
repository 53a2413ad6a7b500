"""How MemgraphGraphStore talks to the driver, on real Bolt servers: one session per call
with the access mode that routes it (read or write) and the statement timeout, no retry
loop of the driver's own, and the typed errors of the real store (not only the fake) --
against the embedded FalkorDB (or ``SEMANTICA_TEST_GRAPH_URI``) and the scripted
:class:`~infra.testing.bolt_server.FailingBoltServer`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import neo4j
import pytest

from config import Settings
from infra.exceptions import (
    BackendAuthenticationError,
    CallerError,
    GraphConnectionError,
    GraphQueryError,
    GraphTransientError,
    InfraError,
)
from infra.graph.driver import build_graph_driver, open_driver
from infra.graph.memgraph import MemgraphGraphStore
from infra.resilience import (
    BreakerState,
    CircuitBreakerConfig,
    RecordingObserver,
    ResiliencePolicy,
    RetryConfig,
)
from infra.testing.bolt_server import FailingBoltServer


@dataclass
class SessionSpy:
    """Records, per session the store opens, its access mode and the timeouts of the
    transactions begun in it (a spy on the real driver: every call still reaches the
    server)."""

    modes: list[str] = field(default_factory=list)
    timeouts: list[float | None] = field(default_factory=list)

    def watch(self, driver: Any) -> None:
        open_session = driver.session

        def session(**options: Any) -> Any:
            self.modes.append(options.get("default_access_mode", neo4j.WRITE_ACCESS))
            opened = open_session(**options)
            begin = opened.begin_transaction

            async def begin_transaction(**kwargs: Any) -> Any:
                self.timeouts.append(kwargs.get("timeout"))
                return await begin(**kwargs)

            opened.begin_transaction = begin_transaction
            return opened

        driver.session = session


@pytest.fixture
async def spied(
    bolt_uri: str, bolt_auth: tuple[str, str]
) -> AsyncIterator[tuple[MemgraphGraphStore, SessionSpy]]:
    user, password = bolt_auth
    driver = open_driver(bolt_uri, user=user, password=password)
    store = MemgraphGraphStore(
        driver, policy=ResiliencePolicy.instant("graph"), owns_driver=True, query_timeout=7.5
    )
    await store.write("MATCH (n) DETACH DELETE n")
    await store.upsert_nodes("P", [{"id": "a"}, {"id": "b"}])
    spy = SessionSpy()
    spy.watch(driver)
    yield store, spy
    await store.close()


@pytest.mark.graph
async def test_each_call_is_one_session_routed_by_its_kind_with_the_statement_timeout(
    spied: tuple[MemgraphGraphStore, SessionSpy],
) -> None:
    """Reads open READ sessions (a neo4j:// cluster sends them to readers), writes WRITE
    sessions; one session and one transaction per call, carrying query_timeout."""
    store, spy = spied
    await store.get_node("a")
    await store.neighbours("a")
    await store.paths("a", "b")
    await store.count_nodes()
    await store.query("RETURN 1 AS one")
    reads = len(spy.modes)
    await store.upsert_nodes("P", [{"id": "c"}])
    await store.upsert_edges("R", [("a", "c")])
    await store.delete_edges("R", [("a", "c")])
    await store.delete_nodes(["c"])
    await store.write("MATCH (n:Nothing) SET n.x = 1")
    assert spy.modes == [neo4j.READ_ACCESS] * reads + [neo4j.WRITE_ACCESS] * 5
    assert reads == 5
    assert spy.timeouts == [7.5] * 10


async def test_a_neo4j_scheme_builds_a_routing_driver_the_store_accepts() -> None:
    """``neo4j://`` (cluster routing) and ``bolt://`` (one server) both come from settings;
    the store takes either (no I/O until the first statement)."""
    routed = MemgraphGraphStore.from_settings(Settings(graph_uri="neo4j://127.0.0.1:1"))
    direct = MemgraphGraphStore.from_settings(Settings(graph_uri="bolt://127.0.0.1:1"))
    try:
        assert isinstance(routed.driver, neo4j.AsyncNeo4jDriver)
        assert isinstance(direct.driver, neo4j.AsyncBoltDriver)
    finally:
        await routed.close()
        await direct.close()


async def test_the_drivers_own_retry_loop_is_off(bolt_failures: FailingBoltServer) -> None:
    """A managed transaction (``execute_read``) on the driver we build gives up after the
    first transient failure: the driver's retry loop (30 s by default) never repeats the
    function; retries are the policy's alone."""
    bolt_failures.fail_with("Neo.TransientError.Transaction.DeadlockDetected")
    driver = build_graph_driver(Settings(graph_uri=bolt_failures.uri, graph_user="neo4j"))
    runs = 0

    async def work(tx: Any) -> None:
        nonlocal runs
        runs += 1
        await (await tx.run("RETURN 1")).consume()

    try:
        async with driver.session() as session:
            with pytest.raises(neo4j.exceptions.TransientError):
                await session.execute_read(work)
    finally:
        await driver.close()
    assert runs == 1


def failing_store(server: FailingBoltServer, observer: RecordingObserver) -> MemgraphGraphStore:
    policy = ResiliencePolicy.instant(
        "graph",
        breaker=CircuitBreakerConfig(failure_threshold=2, timeout=60.0),
        retry=RetryConfig(max_attempts=3),
        hooks=(observer,),
    )
    return MemgraphGraphStore(
        open_driver(server.uri, user="neo4j", password="unused"), policy=policy, owns_driver=True
    )


@pytest.mark.parametrize(
    ("code", "expected", "retried"),
    [
        ("Neo.ClientError.Security.Unauthorized", BackendAuthenticationError, False),
        ("Neo.ClientError.Statement.SyntaxError", GraphQueryError, False),
        ("Neo.ClientError.Schema.ConstraintValidationFailed", GraphQueryError, False),
        ("Neo.TransientError.Transaction.DeadlockDetected", GraphTransientError, True),
    ],
    ids=["auth", "syntax", "constraint", "transient"],
)
async def test_the_real_store_types_server_errors(
    bolt_failures: FailingBoltServer, code: str, expected: type[InfraError], retried: bool
) -> None:
    """The real store on a server failing every statement with ``code``: the typed error,
    retried only when transient; client errors (and a refused login: the server is up)
    leave the breaker closed however many, transient ones open it."""
    bolt_failures.fail_with(code)
    observer = RecordingObserver()
    async with failing_store(bolt_failures, observer) as store:
        counted = not issubclass(expected, CallerError | BackendAuthenticationError)
        for _ in range(2 if counted else 3):  # the breaker counts calls, not attempts
            with pytest.raises(expected) as caught:
                await store.get_node("a")
            assert caught.value.retryable is retried
        assert len(observer.retries) == (4 if retried else 0)
        breaker = store.policy.breaker
        assert breaker is not None
        assert breaker.state is (BreakerState.OPEN if counted else BreakerState.CLOSED)


async def test_an_unreachable_server_is_a_retryable_connection_error() -> None:
    """Nothing listens: GraphConnectionError, retryable, after the policy's attempts."""
    observer = RecordingObserver()
    server = FailingBoltServer()
    async with server:
        uri = server.uri
    driver = open_driver(uri, connect_timeout=1.0)
    policy = ResiliencePolicy.instant("graph", retry=RetryConfig(max_attempts=2), hooks=(observer,))
    async with MemgraphGraphStore(driver, policy=policy, owns_driver=True) as store:
        with pytest.raises(GraphConnectionError) as caught:
            await store.get_node("a")
    assert caught.value.retryable
    assert len(observer.retries) == 1

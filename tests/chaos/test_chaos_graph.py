"""MemgraphGraphStore under network faults: a ChaosProxy between the neo4j driver and
the embedded FalkorDB's Bolt relay (or the server ``SEMANTICA_TEST_GRAPH_URI`` names).

The design's claims, on real connections: a connection reset in the middle of a read is
retried and the read succeeds; in the middle of an idempotent MERGE upsert it is retried
and writes nothing twice; in the middle of a CREATE (not idempotent) it is not retried --
the caller gets a retryable GraphConnectionError and decides; an outage opens the breaker,
which then fails fast without connecting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from infra.exceptions import CircuitBreakerOpenError, GraphConnectionError, OperationTimeoutError
from infra.graph.driver import open_driver
from infra.graph.memgraph import MemgraphGraphStore
from infra.resilience import (
    BreakerState,
    CircuitBreakerConfig,
    RecordingObserver,
    ResiliencePolicy,
    RetryConfig,
)
from infra.testing.chaos import ChaosProxy

pytestmark = pytest.mark.graph

#: Per chunk and direction while a call is "in flight"; the reset lands within it.
LATENCY = 0.3


@pytest.fixture
async def proxy(bolt_uri: str) -> AsyncIterator[ChaosProxy]:
    """A ChaosProxy in front of the Bolt endpoint, closed after the test."""
    parts = urlsplit(bolt_uri)
    assert parts.hostname is not None
    assert parts.port is not None
    async with ChaosProxy((parts.hostname, parts.port)) as chaos:
        yield chaos


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
async def store(
    proxy: ChaosProxy, bolt_auth: tuple[str, str], observer: RecordingObserver
) -> AsyncIterator[MemgraphGraphStore]:
    """A store through the proxy: 3 attempts, a breaker after 3 failures; warmed up (the
    parameter probe and one pooled connection) on an emptied graph."""
    user, password = bolt_auth
    policy = ResiliencePolicy.build(
        "graph",
        breaker=CircuitBreakerConfig(failure_threshold=3, timeout=30.0),
        retry=RetryConfig(max_attempts=3, base_delay=0.01, jitter=False),
        hooks=(observer,),
    )
    driver = open_driver(
        f"bolt://127.0.0.1:{proxy.port}", user=user, password=password, connect_timeout=2.0
    )
    real = MemgraphGraphStore(driver, policy=policy, owns_driver=True, query_timeout=10.0)
    await real.write("MATCH (n) DETACH DELETE n")
    await real.upsert_nodes("P", [{"id": "a", "v": 1}])
    yield real
    proxy.heal()
    await real.close()


async def reset_midway(proxy: ChaosProxy, call: Any) -> asyncio.Task[Any]:
    """Start ``call`` with the link slowed down, reset every connection while it is in
    flight, then heal: the answer cannot have arrived before the reset."""
    proxy.add_latency(LATENCY)
    task: asyncio.Task[Any] = asyncio.ensure_future(call)
    await asyncio.sleep(LATENCY / 2)
    assert not task.done()
    assert proxy.reset_all() >= 1
    proxy.heal()
    return task


async def test_a_reset_during_a_read_is_retried_and_the_read_succeeds(
    proxy: ChaosProxy, store: MemgraphGraphStore, observer: RecordingObserver
) -> None:
    """get_node loses its connection mid-call; the policy retries on a new one."""
    accepted = proxy.stats.accepted
    task = await reset_midway(proxy, store.get_node("a"))
    node = await task
    assert node is not None
    assert node.properties == {"v": 1}
    assert len(observer.retries) >= 1
    assert proxy.stats.accepted > accepted


async def test_a_reset_during_a_merge_upsert_is_retried_without_duplicates(
    proxy: ChaosProxy, store: MemgraphGraphStore, observer: RecordingObserver
) -> None:
    """The MERGE batch may or may not have been applied before the reset; repeating it
    is safe: every node exists exactly once."""
    nodes = [{"id": f"m{i}", "i": i} for i in range(20)]
    task = await reset_midway(proxy, store.upsert_nodes("M", nodes))
    assert await task == 20
    assert len(observer.retries) >= 1
    assert await store.count_nodes("M") == 20
    rows = await store.query("MATCH (n:M) RETURN n.id AS id, count(*) AS c ORDER BY id")
    assert all(row["c"] == 1 for row in rows)


async def test_a_reset_during_a_create_is_not_retried(
    proxy: ChaosProxy, store: MemgraphGraphStore, observer: RecordingObserver
) -> None:
    """A raw CREATE is not idempotent: one attempt, a retryable error for the caller, and
    at most the one node it may have created."""
    task = await reset_midway(proxy, store.write("CREATE (:C {id: 'c1'})"))
    with pytest.raises(GraphConnectionError) as caught:
        await task
    assert caught.value.retryable
    assert observer.retries == []
    assert await store.count_nodes() == 1  # CREATE does not add the base label...
    [row] = await store.query("MATCH (n:C) RETURN count(n) AS c")
    assert row["c"] <= 1  # ...so it is counted here: created once or not at all


async def test_an_outage_opens_the_breaker_which_fails_fast_without_connecting(
    proxy: ChaosProxy, store: MemgraphGraphStore
) -> None:
    """Refused connections: GraphConnectionError until the breaker opens; then calls fail
    at once and no connection is attempted."""
    proxy.refuse()
    proxy.reset_all()
    for _ in range(3):
        with pytest.raises((GraphConnectionError, CircuitBreakerOpenError)):
            await store.get_node("a")
    breaker = store.policy.breaker
    assert breaker is not None
    assert breaker.state is BreakerState.OPEN
    attempts = proxy.stats.accepted
    for _ in range(10):
        with pytest.raises(CircuitBreakerOpenError):
            await store.get_node("a")
    assert proxy.stats.accepted == attempts


async def test_a_reset_during_a_raw_merge_marked_idempotent_is_retried_without_duplicates(
    proxy: ChaosProxy, store: MemgraphGraphStore, observer: RecordingObserver
) -> None:
    """``write(..., idempotent=True)`` is the caller saying "repeating this is safe" (a
    MERGE): the reset is retried, and the node exists exactly once."""
    task = await reset_midway(
        proxy, store.write("MERGE (n:K {key: $k}) SET n.v = 1", {"k": "k1"}, idempotent=True)
    )
    await task
    assert len(observer.retries) >= 1
    [row] = await store.query("MATCH (n:K {key: 'k1'}) RETURN count(n) AS c")
    assert row["c"] == 1


async def test_a_statement_slower_than_query_timeout_is_a_retryable_timeout(
    proxy: ChaosProxy, bolt_auth: tuple[str, str]
) -> None:
    """Answers delayed past ``query_timeout`` (plus the client's one-second grace): the
    call ends with OperationTimeoutError (retryable) instead of waiting; once the link is
    healthy the same store answers again."""
    user, password = bolt_auth
    driver = open_driver(f"bolt://127.0.0.1:{proxy.port}", user=user, password=password)
    policy = ResiliencePolicy.build("graph", retry=RetryConfig(max_attempts=1))
    async with MemgraphGraphStore(
        driver, policy=policy, owns_driver=True, query_timeout=0.2
    ) as slow:
        assert await slow.query("RETURN 1 AS one") == [{"one": 1}]  # probe done, pooled
        proxy.add_latency(3.0)
        with pytest.raises(OperationTimeoutError) as caught:
            await slow.query("RETURN 2 AS two")
        assert caught.value.retryable
        assert caught.value.details["timeout"] == 0.2
        proxy.heal()
        assert await slow.query("RETURN 3 AS three") == [{"three": 3}]


async def test_the_health_check_reports_a_slow_link_as_degraded(
    proxy: ChaosProxy, store: MemgraphGraphStore
) -> None:
    """The shared latency-aware check: a round trip above the threshold is ``degraded``
    (still serving), with the measured latency; within it, ``healthy`` again."""
    proxy.add_latency(LATENCY)
    ok, details = await store.health_check(latency_threshold_ms=50)
    assert details["status"] == "degraded"
    assert details["latency_ms"] > 50
    assert ok
    proxy.heal()
    ok, details = await store.health_check(latency_threshold_ms=60_000)
    assert (ok, details["status"]) == (True, "healthy")

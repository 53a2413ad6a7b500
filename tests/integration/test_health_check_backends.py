"""The shared adapter health check against the real servers, behind a fault proxy.

Whatever the breaker's state and whatever the network does, a health check of the
PostgreSQL store or the Redis cache never changes the breaker (no count, no probe slot,
no transition, no observer event), probes unless the breaker is OPEN and still waiting,
and classifies the answer the same way for both adapters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import Settings
from infra.cache.redis import RedisCache
from infra.exceptions import BackendConnectionError
from infra.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitBreakerConfig,
    ManualClock,
    RecordingObserver,
    ResiliencePolicy,
    RetryConfig,
)
from infra.storage import EnhancedPostgresStore
from infra.testing.chaos import ChaosProxy

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

STATES = ["closed", "open_waiting", "open_due", "half_open_busy", "half_open_free"]
FAULTS = ["none", "refuse", "slow"]
TIMEOUT = 10.0


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """The state read afresh: mypy would keep ``breaker.state`` narrowed across awaits."""
    return breaker.state


def _policy(component: str, rec: RecordingObserver) -> ResiliencePolicy:
    return ResiliencePolicy.instant(
        component,
        breaker=CircuitBreakerConfig(failure_threshold=1, timeout=TIMEOUT),
        retry=RetryConfig(max_attempts=3),
        hooks=[rec],
    )


@asynccontextmanager
async def adapter(
    kind: str, url: str, rec: RecordingObserver
) -> AsyncIterator[tuple[Any, ResiliencePolicy]]:
    """A PostgreSQL store or a Redis cache at ``url`` under an instant policy."""
    if kind == "postgres":
        policy = _policy("postgres", rec)
        async with EnhancedPostgresStore(url, 1, 1, policy=policy) as store:
            yield store, policy
    else:
        policy = _policy("redis", rec)
        async with RedisCache.from_settings(
            Settings(redis_url=url, redis_socket_timeout=TIMEOUT), policy
        ) as cache:
            yield cache, policy


def _put_in(state: str, policy: ResiliencePolicy) -> int | None:
    """Drive the breaker into ``state``; returns a probe ticket still held, if any."""
    breaker = policy.breaker
    assert breaker is not None
    clock = policy.clock
    assert isinstance(clock, ManualClock)
    if state == "closed":
        return None
    breaker.force_open()
    if state == "open_waiting":
        clock.advance(TIMEOUT / 2)
        return None
    clock.advance(TIMEOUT)
    if state == "open_due":
        return None
    ticket = breaker.admit()  # a call admitted as the probe: HALF_OPEN
    if state == "half_open_free":
        breaker.release(ticket)
        return None
    return ticket


@settings(max_examples=40)
@given(
    kind=st.sampled_from(["postgres", "redis"]),
    state=st.sampled_from(STATES),
    fault=st.sampled_from(FAULTS),
    checks=st.integers(1, 3),
)
async def test_a_health_check_never_touches_the_breaker_and_classifies_alike(
    postgres_dsn: str, redis_url: str, *, kind: str, state: str, fault: str, checks: int
) -> None:
    """Any breaker state x any fault x any number of checks: the breaker's snapshot and
    the observers' events are unchanged; OPEN-and-waiting sends nothing; otherwise the
    probe decides healthy / degraded / unhealthy."""
    target = postgres_dsn if kind == "postgres" else redis_url
    rec = RecordingObserver()
    async with (
        ChaosProxy.for_url(target) as proxy,
        adapter(kind, proxy.url_for(target), rec) as (subject, policy),
    ):
        breaker = policy.breaker
        assert breaker is not None
        ticket = _put_in(state, policy)
        before = breaker.snapshot()
        events = (list(rec.transitions), list(rec.calls))
        sent = proxy.stats.bytes_to_upstream
        threshold = 10_000.0
        if fault == "refuse":
            proxy.refuse()
            proxy.reset_all()  # pooled connections die too
        elif fault == "slow":
            proxy.add_latency(0.02)
            threshold = 1.0
        # A generous probe timeout: this property is about the breaker and the
        # classification, not about how fast a loaded machine answers.
        results = [await subject.health_check(threshold, timeout=10.0) for _ in range(checks)]
        assert breaker.snapshot() == before
        assert (rec.transitions, rec.calls) == events
        for ok, details in results:
            assert details["circuit_breaker"] == before.state.value
            if state == "open_waiting":
                assert (ok, details["status"], details["latency_ms"]) == (
                    False,
                    "unhealthy",
                    None,
                )
                assert "circuit breaker is open" in details["error"]
            elif fault == "refuse":
                assert (ok, details["status"]) == (False, "unhealthy")
                assert details["error"].endswith("ConnectionError")
                assert details["latency_ms"] >= 0.0
            else:
                expected = "healthy" if fault == "none" else "degraded"
                assert (ok, details["status"]) == (True, expected), details
                assert "error" not in details
        if state == "open_waiting":
            assert proxy.stats.bytes_to_upstream == sent  # no probe was sent
        elif fault != "refuse":
            assert proxy.stats.bytes_to_upstream > sent
        if ticket is not None:
            breaker.release(ticket)


@pytest.mark.parametrize("kind", ["postgres", "redis"])
async def test_failing_health_checks_never_open_the_breaker(
    postgres_dsn: str, redis_url: str, kind: str
) -> None:
    """The reported case: Redis's PING went through the policy, so five failed health
    checks opened the breaker for every caller. Now twenty leave it CLOSED at zero."""
    target = postgres_dsn if kind == "postgres" else redis_url
    rec = RecordingObserver()
    async with (
        ChaosProxy.for_url(target) as proxy,
        adapter(kind, proxy.url_for(target), rec) as (subject, policy),
    ):
        calls_before = list(rec.calls)
        proxy.refuse()
        proxy.reset_all()
        for _ in range(20):
            ok, details = await subject.health_check()
            assert (ok, details["status"]) == (False, "unhealthy")
        breaker = policy.breaker
        assert breaker is not None
        assert (breaker.state, breaker.failure_count) == (BreakerState.CLOSED, 0)
        assert rec.calls == calls_before
        assert policy.retry is not None
        executions = policy.retry.stats.executions
        await subject.health_check()
        assert policy.retry.stats.executions == executions  # never retried either


async def test_a_health_probe_never_takes_the_half_open_slot(redis_url: str) -> None:
    """A due OPEN breaker: health checks answer from the real server while the breaker
    stays OPEN; the first real call is the probe and closes it."""
    rec = RecordingObserver()
    async with adapter("redis", redis_url, rec) as (cache, policy):
        breaker = policy.breaker
        assert breaker is not None
        with pytest.raises(BackendConnectionError):
            await policy.execute(_refused)
        assert breaker.state is BreakerState.OPEN
        assert isinstance(policy.clock, ManualClock)
        policy.clock.advance(TIMEOUT)
        for _ in range(3):
            ok, details = await cache.health_check(10_000.0)
            assert (ok, details["status"], details["circuit_breaker"]) == (True, "healthy", "open")
        assert [new for _, _, new in rec.transitions] == [BreakerState.OPEN]
        await cache.set("k", 1)
        assert state_of(breaker) is BreakerState.CLOSED
        assert [new for _, _, new in rec.transitions] == [
            BreakerState.OPEN,
            BreakerState.HALF_OPEN,
            BreakerState.CLOSED,
        ]


async def test_the_result_reads_right_without_unpacking(postgres_dsn: str) -> None:
    """`if await store.health_check():` is true exactly when healthy (a plain 2-tuple
    would always be true)."""
    rec = RecordingObserver()
    async with (
        ChaosProxy.for_url(postgres_dsn) as proxy,
        adapter("postgres", proxy.url_for(postgres_dsn), rec) as (store, _),
    ):
        assert await store.health_check()
        proxy.refuse()
        proxy.reset_all()
        result = await store.health_check()
        assert not result
        is_healthy, details = result
        assert (is_healthy, details["status"]) == (False, "unhealthy")


async def _refused() -> None:
    await asyncio.sleep(0)
    raise BackendConnectionError("refused")

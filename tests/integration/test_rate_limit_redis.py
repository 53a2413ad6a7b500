"""Distributed token bucket on a real Redis, shared by two independent clients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import exceptions as redis_exceptions
from redis.asyncio import Redis

from infra.exceptions import CacheConnectionError, CircuitBreakerOpenError, RateLimitExceededError
from infra.observability.metrics import (
    MetricsCollector,
    reset_metrics_collector,
    set_metrics_collector,
)
from infra.resilience import (
    BreakerState,
    CallOutcome,
    CircuitBreakerConfig,
    RecordingObserver,
    ResiliencePolicy,
    RetryConfig,
    redis_no_retry_kwargs,
)
from infra.resilience.clock import ManualClock
from infra.resilience.rate_limit import RateLimiter
from infra.resilience.rate_limit_redis import DEFAULT_KEY_PREFIX, RedisTokenBucketLimiter
from infra.testing.chaos import ChaosProxy

pytestmark = pytest.mark.redis


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[tuple[Redis, Redis]]:
    """Two independent clients (separate connection pools), as two processes would have."""
    first = Redis.from_url(redis_url)
    second = Redis.from_url(redis_url)
    yield first, second
    await first.aclose()
    await second.aclose()


@pytest.fixture
def key() -> str:
    """A bucket name no other test uses."""
    return f"test-{uuid.uuid4().hex}"


async def _server_time(client: Redis) -> float:
    seconds, micros = await client.time()
    return seconds + micros / 1_000_000


async def test_burst_beyond_capacity_is_refused_by_both_clients(
    clients: tuple[Redis, Redis], key: str
) -> None:
    """Two clients share one bucket: together they get exactly `capacity`, then both refuse."""
    a = RedisTokenBucketLimiter(clients[0], key, rate=0.01, capacity=10)
    b = RedisTokenBucketLimiter(clients[1], key, rate=0.01, capacity=10)
    assert isinstance(a, RateLimiter)
    results_a: list[bool] = []
    results_b: list[bool] = []
    for _ in range(8):
        results_a.append(await a.try_acquire())
        results_b.append(await b.try_acquire())
    assert results_a == [True] * 5 + [False] * 3
    assert results_b == [True] * 5 + [False] * 3


async def test_combined_grants_never_exceed_capacity_plus_refill(
    clients: tuple[Redis, Redis], key: str
) -> None:
    """120 tasks on two clients take a token each: all are served (none starves, both
    clients get theirs), and never faster than the bucket refills: when the last is
    granted, grants <= capacity + rate * elapsed (server time). A fixed count, not a
    fixed window: a window that a stalled machine sleeps through grants nothing."""
    rate, capacity, tasks = 200.0, 5.0, 120  # at least (120 - 5) / 200 = 0.575 s
    limiters = [
        RedisTokenBucketLimiter(client, key, rate=rate, capacity=capacity) for client in clients
    ]
    grants = [0, 0]
    started = await _server_time(clients[0])

    async def worker(side: int) -> None:
        await limiters[side].acquire(timeout=60.0)  # a hang guard: ~0.6 s are needed
        grants[side] += 1

    await asyncio.gather(*(worker(i % 2) for i in range(tasks)))
    elapsed = await _server_time(clients[0]) - started
    assert grants == [tasks // 2, tasks // 2]
    assert sum(grants) <= capacity + rate * elapsed + 1e-6


async def test_wait_comes_from_the_server_not_the_client_clock(
    clients: tuple[Redis, Redis], key: str
) -> None:
    """A client whose clock is far ahead cannot mint tokens; the refusal states retry_after."""
    fast_clock = ManualClock(start=1e9)
    # One token takes 5 s: the time between the calls below cannot refill one, even on a
    # loaded machine, and retry_after stays well above half a token's time.
    a = RedisTokenBucketLimiter(clients[0], key, rate=0.2, capacity=2, name="shared")
    b = RedisTokenBucketLimiter(clients[1], key, rate=0.2, capacity=2, clock=fast_clock)
    assert await a.try_acquire(2)
    assert not await b.try_acquire()
    with pytest.raises(RateLimitExceededError) as info:
        await a.acquire(1, timeout=0.1)
    err = info.value
    assert err.component == "shared"
    assert 2.5 < err.details["retry_after_s"] <= 5.0  # one token at 0.2/s
    assert fast_clock.sleeps == []


async def test_acquire_sleeps_the_server_computed_wait(
    clients: tuple[Redis, Redis], key: str
) -> None:
    """acquire waits about one token's time after the bucket is drained by the other client."""
    a = RedisTokenBucketLimiter(clients[0], key, rate=50, capacity=1)
    b = RedisTokenBucketLimiter(clients[1], key, rate=50, capacity=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await a.try_acquire()
    await b.acquire(1, timeout=30.0)
    # One token at 50/s is 20 ms: waited at least that (the upper bound is a hang guard).
    assert 0.019 <= loop.time() - started < 30.0


async def test_local_waiters_are_fifo_and_try_acquire_does_not_overtake(
    clients: tuple[Redis, Redis], key: str
) -> None:
    """Within one process a big waiter is served before a later small one."""
    limiter = RedisTokenBucketLimiter(clients[0], key, rate=50, capacity=5)
    assert await limiter.try_acquire(5)
    order: list[str] = []

    async def take(label: str, tokens: float) -> None:
        await limiter.acquire(tokens)
        order.append(label)

    big = asyncio.create_task(take("big", 5))
    await asyncio.sleep(0.01)
    assert not await limiter.try_acquire(1)
    small = asyncio.create_task(take("small", 1))
    await asyncio.gather(big, small)
    assert order == ["big", "small"]


async def test_timeout_while_queued_behind_a_local_waiter(
    clients: tuple[Redis, Redis], key: str
) -> None:
    """Time queued behind a local caller counts against the timeout."""
    limiter = RedisTokenBucketLimiter(clients[0], key, rate=1, capacity=5)
    assert await limiter.try_acquire(5)
    big = asyncio.create_task(limiter.acquire(5))  # needs 5 s: still queued below
    await asyncio.sleep(0.01)
    with pytest.raises(RateLimitExceededError) as info:
        await limiter.acquire(1, timeout=0.02)
    assert info.value.details["reason"] == "queued"
    big.cancel()
    with pytest.raises(asyncio.CancelledError):
        await big


async def test_bucket_key_is_namespaced_and_expires_when_idle(
    clients: tuple[Redis, Redis], key: str
) -> None:
    """The key carries the prefix and a TTL of the full-refill time plus a second."""
    limiter = RedisTokenBucketLimiter(clients[0], key, rate=10, capacity=20)
    assert limiter.key == f"{DEFAULT_KEY_PREFIX}{key}"
    await limiter.acquire()
    ttl_ms = await clients[0].pttl(limiter.key)
    assert 2000 < ttl_ms <= 3000  # 20 tokens / 10 per s = 2 s, plus 1 s
    assert await clients[0].type(limiter.key) == b"hash"
    await limiter.reset()
    assert await clients[0].exists(limiter.key) == 0
    assert await limiter.try_acquire(20)  # a missing bucket reads as full


async def test_script_is_reloaded_after_a_script_flush(
    clients: tuple[Redis, Redis], key: str
) -> None:
    """NOSCRIPT (e.g. after a server restart) is handled by reloading the script."""
    limiter = RedisTokenBucketLimiter(clients[0], key, rate=1, capacity=3)
    assert await limiter.try_acquire()
    await clients[1].script_flush()
    assert await limiter.try_acquire()
    assert await limiter.try_acquire()
    assert not await limiter.try_acquire()


# ------------------------------------------------- the adapters' call path (issue: raw errors)
@pytest.fixture
def collector() -> Iterator[MetricsCollector]:
    """A fresh metrics collector installed for the test."""
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    yield fresh
    reset_metrics_collector()


@asynccontextmanager
async def behind_proxy(redis_url: str) -> AsyncIterator[tuple[ChaosProxy, Redis]]:
    """A client (redis-py's own retries off) whose connections pass a fault proxy."""
    async with ChaosProxy.for_url(redis_url) as proxy:
        client = Redis.from_url(proxy.url_for(redis_url), **redis_no_retry_kwargs())
        try:
            yield proxy, client
        finally:
            await client.aclose()


async def test_a_redis_outage_reaches_callers_as_a_typed_retryable_error(
    redis_url: str, key: str, collector: MetricsCollector
) -> None:
    """acquire, try_acquire and reset on a Redis that refuses connections raise our
    CacheConnectionError (retryable, component redis_rate_limit, chained from redis-py's
    error) -- never a raw redis.exceptions error -- and the calls are recorded."""
    async with behind_proxy(redis_url) as (proxy, client):
        limiter = RedisTokenBucketLimiter(client, key, rate=10, capacity=5)
        await limiter.acquire()
        proxy.refuse()
        proxy.reset_all()
        for operation in (
            limiter.acquire(),
            limiter.acquire(1, timeout=0.5),
            limiter.try_acquire(),
            limiter.reset(),
        ):
            with pytest.raises(CacheConnectionError) as caught:
                await operation
            assert caught.value.retryable is True
            assert caught.value.component == "redis_rate_limit"
            assert isinstance(caught.value.__cause__, redis_exceptions.ConnectionError)
        proxy.heal()
        assert await limiter.try_acquire()
    assert (
        collector.get_counter("backend_calls_total", component="redis_rate_limit", outcome="ok")
        == 2
    )
    errors = collector.get_counter(
        "backend_errors_total", component="redis_rate_limit", error_type="CacheConnectionError"
    )
    assert errors == 4


async def test_the_limiters_own_policy_retries_and_trips_its_own_breaker(
    redis_url: str, key: str
) -> None:
    """With a policy of its own: a blip is retried away; a sustained outage opens the
    limiter's breaker, which then refuses at once without touching Redis."""
    policy = ResiliencePolicy.instant(
        "redis_rate_limit",
        breaker=CircuitBreakerConfig(failure_threshold=2, timeout=30.0),
        retry=RetryConfig(max_attempts=2),
    )
    async with behind_proxy(redis_url) as (proxy, client):
        limiter = RedisTokenBucketLimiter(client, key, rate=10, capacity=5, policy=policy)
        assert await limiter.try_acquire()
        proxy.reset_all()  # a blip: the pooled connection dies, a new one works
        assert await limiter.try_acquire()
        assert policy.retry is not None
        assert policy.retry.stats.retries == 1
        proxy.refuse()
        proxy.reset_all()
        for _ in range(2):
            with pytest.raises(CacheConnectionError):
                await limiter.acquire()
        attempts = proxy.stats.refused
        assert attempts >= 3  # two calls, two attempts each (one on the reset connection)
        with pytest.raises(CircuitBreakerOpenError):
            await limiter.acquire()
        assert proxy.stats.refused == attempts
        proxy.heal()
        assert isinstance(policy.clock, ManualClock)
        policy.clock.advance(30.0)
        assert await limiter.try_acquire()


@settings(max_examples=25)
@given(calls=st.integers(1, 8), threshold=st.integers(1, 3))
async def test_as_another_components_rate_limit_layer_its_outage_never_trips_that_breaker(
    redis_url: str, calls: int, threshold: int
) -> None:
    """The limiter inside the "llm" policy, its Redis down: every call fails with the
    limiter's CacheConnectionError before reaching the LLM, and the llm breaker stays
    CLOSED at 0 -- the LLM did nothing wrong -- whatever the number of calls."""
    rec = RecordingObserver()
    policy_key = f"llm-{uuid.uuid4().hex}"
    async with behind_proxy(redis_url) as (proxy, client):
        limiter = RedisTokenBucketLimiter(client, policy_key, rate=100, capacity=100)
        llm = ResiliencePolicy.build(
            "llm",
            breaker=CircuitBreakerConfig(failure_threshold=threshold),
            retry=RetryConfig(max_attempts=2, base_delay=0.0, jitter=False),
            rate_limiter=limiter,
            clock=ManualClock(),
            hooks=[rec],
        )
        reached = 0

        async def complete() -> str:
            nonlocal reached
            reached += 1
            return "answer"

        assert await llm.execute(complete) == "answer"
        proxy.refuse()
        proxy.reset_all()
        for _ in range(calls):
            with pytest.raises(CacheConnectionError):
                await llm.execute(complete)
        breaker = llm.breaker
        assert breaker is not None
        assert (breaker.state, breaker.failure_count) == (BreakerState.CLOSED, 0)
        assert reached == 1
        assert CallOutcome.FAILURE not in rec.outcomes()
        proxy.heal()
        assert await llm.execute(complete) == "answer"

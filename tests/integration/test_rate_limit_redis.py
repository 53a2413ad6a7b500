"""Distributed token bucket on a real Redis, shared by two independent clients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from infra.exceptions import RateLimitExceededError
from infra.resilience.clock import ManualClock
from infra.resilience.rate_limit import RateLimiter
from infra.resilience.rate_limit_redis import DEFAULT_KEY_PREFIX, RedisTokenBucketLimiter

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
    """120 tasks on two clients for 0.3 s: grants <= capacity + rate * elapsed (server time)."""
    rate, capacity, window = 200.0, 5.0, 0.3
    limiters = [
        RedisTokenBucketLimiter(client, key, rate=rate, capacity=capacity) for client in clients
    ]
    grants = [0, 0]
    loop = asyncio.get_running_loop()
    started = await _server_time(clients[0])
    stop_at = loop.time() + window

    async def worker(side: int) -> None:
        while (left := stop_at - loop.time()) > 0:
            try:
                await limiters[side].acquire(timeout=left)
            except RateLimitExceededError:
                return
            grants[side] += 1

    await asyncio.gather(*(worker(i % 2) for i in range(120)))
    elapsed = await _server_time(clients[0]) - started
    total = sum(grants)
    assert total <= capacity + rate * elapsed + 1e-6
    assert total >= 0.5 * rate * window  # and it is not starving either
    assert min(grants) > 0  # both clients were served


async def test_wait_comes_from_the_server_not_the_client_clock(
    clients: tuple[Redis, Redis], key: str
) -> None:
    """A client whose clock is far ahead cannot mint tokens; the refusal states retry_after."""
    fast_clock = ManualClock(start=1e9)
    a = RedisTokenBucketLimiter(clients[0], key, rate=2, capacity=2, name="shared")
    b = RedisTokenBucketLimiter(clients[1], key, rate=2, capacity=2, clock=fast_clock)
    assert await a.try_acquire(2)
    assert not await b.try_acquire()
    with pytest.raises(RateLimitExceededError) as info:
        await a.acquire(1, timeout=0.1)
    err = info.value
    assert err.component == "shared"
    assert 0.3 < err.details["retry_after_s"] <= 0.5  # one token at 2/s
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
    await b.acquire(1, timeout=1.0)
    assert 0.019 <= loop.time() - started < 1.0  # one token at 50/s is 20 ms


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
    limiter = RedisTokenBucketLimiter(clients[0], key, rate=10, capacity=5)
    assert await limiter.try_acquire(5)
    big = asyncio.create_task(limiter.acquire(5))  # needs 0.5 s
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

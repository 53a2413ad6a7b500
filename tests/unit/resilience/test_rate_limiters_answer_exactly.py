"""Rate limiters answer with exact booleans, grant at exactly full, and share by key.

``try_acquire`` answers ``True`` or ``False`` (never another falsy value); a bucket holding
exactly the requested tokens grants them; a granted waiter leaves nothing queued behind
it; the Redis bucket lives under ``semantica:ratelimit:<key>`` (or the given prefix),
expires about when a drained bucket would be full again, and is shared by every limiter
on that key.
"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from infra.exceptions import RateLimitExceededError
from infra.resilience import ManualClock
from infra.resilience.rate_limit import TokenBucketLimiter
from infra.resilience.rate_limit_redis import DEFAULT_KEY_PREFIX, RedisTokenBucketLimiter


async def test_try_acquire_answers_true_or_false() -> None:
    limiter = TokenBucketLimiter(rate=1.0, capacity=2.0, clock=ManualClock())
    assert await limiter.try_acquire(2.0) is True  # exactly full: granted
    assert await limiter.try_acquire(0.5) is False
    assert limiter.available == 0.0


async def test_try_acquire_refuses_with_false_while_someone_waits() -> None:
    import asyncio

    clock = ManualClock()
    gate = asyncio.Event()

    class Held(ManualClock):
        async def sleep(self, seconds: float) -> None:
            await gate.wait()

    limiter = TokenBucketLimiter(rate=1.0, capacity=4.0, clock=Held())
    assert await limiter.try_acquire(4.0) is True
    waiter = asyncio.create_task(limiter.acquire(1.0))
    for _ in range(10):
        await asyncio.sleep(0)
    assert limiter.waiting == 1
    assert await limiter.try_acquire(0.001) is False  # nobody overtakes a waiter
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert clock.sleeps == []


async def test_acquire_of_exactly_the_bucket_is_immediate() -> None:
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=1.0, capacity=3.0, clock=clock)
    await limiter.acquire(3.0, timeout=0)
    assert clock.sleeps == []
    assert limiter.available == 0.0


async def test_a_granted_waiter_leaves_nothing_queued() -> None:
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=1.0, capacity=2.0, clock=clock)
    assert await limiter.try_acquire(2.0)
    await limiter.acquire(2.0)  # waits 2 s of virtual time, then is granted
    assert clock.sleeps == [2.0]
    clock.advance(2.0)
    await limiter.acquire(2.0, timeout=0)  # would raise if 2 tokens still counted as queued
    with pytest.raises(RateLimitExceededError) as raised:
        await limiter.acquire(1.0, timeout=0.5)
    assert raised.value.details["retry_after_s"] == pytest.approx(1.0)


async def test_the_redis_bucket_key_ttl_and_sharing(redis_client: Redis) -> None:
    clock = ManualClock()
    first = RedisTokenBucketLimiter(redis_client, "api", rate=2.0, capacity=4.0, clock=clock)
    second = RedisTokenBucketLimiter(redis_client, "api", rate=2.0, capacity=4.0, clock=clock)
    assert DEFAULT_KEY_PREFIX == "semantica:ratelimit:"
    assert first.key == "semantica:ratelimit:api"
    assert first.name == "api"
    assert (first.rate, first.capacity) == (2.0, 4.0)
    assert await first.try_acquire(3.0) is True
    assert await second.try_acquire(2.0) is False  # one bucket: only ~1 token left
    assert await second.try_acquire(1.0) is True
    ttl = await redis_client.pttl("semantica:ratelimit:api")
    assert 2_000 < ttl <= 3_000  # a drained bucket refills in 4 / 2 = 2 s, plus 1 s
    other = RedisTokenBucketLimiter(
        redis_client, "api", rate=2.0, capacity=4.0, clock=clock, prefix="t:", name="shown"
    )
    assert other.key == "t:api"
    assert other.name == "shown"
    assert await other.try_acquire(4.0) is True  # a different bucket, full
    await first.reset()
    assert await redis_client.exists("semantica:ratelimit:api") == 0
    await other.reset()


async def test_the_redis_limiter_defaults_to_one_token_and_refuses_while_a_caller_waits(
    redis_client: Redis,
) -> None:
    import asyncio

    limiter = RedisTokenBucketLimiter(redis_client, "one", rate=20.0, capacity=3.0)
    try:
        await limiter.acquire()  # one token by default
        assert await limiter.try_acquire(2.0) is True  # 3 - 1 = 2 were left
        waiter = asyncio.create_task(limiter.acquire(2.0))  # must wait for a refill
        for _ in range(100):
            await asyncio.sleep(0)
            if not waiter.done():
                break
        assert await limiter.try_acquire(0.001) is False  # a local caller is waiting
        await waiter  # ~0.1 s of real refill at 20 tokens/s
    finally:
        await limiter.reset()

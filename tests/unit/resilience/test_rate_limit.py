"""In-process token bucket: accuracy, FIFO fairness, cancellation and timeouts (virtual time)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from infra.exceptions import RateLimitExceededError
from infra.resilience.clock import ManualClock
from infra.resilience.rate_limit import RateLimiter, TokenBucketLimiter
from infra.resilience.rate_limit_redis import RedisTokenBucketLimiter

T = TypeVar("T")


async def _within(awaitable: Awaitable[T], seconds: float = 2.0) -> T:
    """Await with a guard, so a leaked permit fails the test instead of hanging it."""
    async with asyncio.timeout(seconds):
        return await awaitable


async def _settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_bucket_starts_full_and_refuses_beyond_capacity() -> None:
    """A new bucket grants `capacity` tokens at once, then refuses until it refills."""
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=10, capacity=5, clock=clock)
    assert [await limiter.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    clock.advance(0.1)  # one token at 10/s
    assert await limiter.try_acquire()
    assert not await limiter.try_acquire()
    clock.advance(100.0)  # refill is capped at capacity
    assert limiter.available == 5.0


async def test_fractional_token_amounts() -> None:
    """Requests may spend fractional or large token amounts (e.g. LLM tokens)."""
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=1000, capacity=4000, clock=clock)
    assert await limiter.try_acquire(2500.5)
    assert not await limiter.try_acquire(1500)
    await limiter.acquire(1500)
    assert clock.now() == pytest.approx(0.0005)


async def test_rate_is_within_2_percent_over_10_simulated_seconds() -> None:
    """At 100 req/s for 10 virtual seconds, a single caller gets 100 +- 2 grants/s."""
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=100, capacity=10, clock=clock)
    for _ in range(10):  # spend the initial burst so only the refill is measured
        await limiter.acquire()

    async def count_grants() -> int:
        grants = 0
        while True:
            await limiter.acquire()
            if clock.now() > 10.0:
                return grants
            grants += 1

    grants = await _within(count_grants())
    achieved = grants / 10.0
    assert abs(achieved - 100) / 100 <= 0.02
    assert grants == 1000


async def test_rate_holds_with_120_concurrent_callers() -> None:
    """120 tasks hammering one limiter for 10 virtual seconds together get the rate."""
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=100, capacity=1, clock=clock)
    await limiter.acquire()  # spend the burst
    grants = 0

    async def caller() -> None:
        nonlocal grants
        while True:
            await limiter.acquire()
            if clock.now() > 10.0:
                return
            grants += 1

    await _within(asyncio.gather(*(caller() for _ in range(120))))
    assert abs(grants / 10.0 - 100) / 100 <= 0.02
    assert limiter.waiting == 0


async def test_waiters_are_granted_in_arrival_order_with_mixed_sizes() -> None:
    """150 waiters of random sizes are granted strictly first come, first served."""
    rng = random.Random(7)
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=50, capacity=20, clock=clock)
    assert await limiter.try_acquire(20)
    granted: list[int] = []

    async def caller(i: int, tokens: float) -> None:
        await limiter.acquire(tokens)
        granted.append(i)

    sizes = [rng.choice([1, 1, 1, 2, 5, 20]) for _ in range(150)]
    tasks = [asyncio.create_task(caller(i, n)) for i, n in enumerate(sizes)]
    await _within(asyncio.gather(*tasks))
    assert granted == list(range(150))
    assert clock.now() == pytest.approx(sum(sizes) / 50)


async def test_small_request_never_overtakes_a_waiting_big_one() -> None:
    """While a big request waits, a small one queues behind it and try_acquire refuses."""
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=10, capacity=10, clock=clock)
    assert await limiter.try_acquire(10)
    order: list[str] = []

    async def take(label: str, tokens: float) -> None:
        await limiter.acquire(tokens)
        order.append(label)

    big = asyncio.create_task(take("big", 10))
    await asyncio.sleep(0)  # big is now head and sleeping for its tokens
    assert limiter.waiting == 1
    assert not await limiter.try_acquire(1)  # even though a token has accrued by now
    small = asyncio.create_task(take("small", 1))
    await _within(asyncio.gather(big, small))
    assert order == ["big", "small"]
    assert clock.now() == pytest.approx(1.1)


async def test_cancelled_waiter_takes_no_tokens_and_gives_back_its_place() -> None:
    """Cancelling a queued waiter lets the next one through as if it had never asked."""
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=10, capacity=10, clock=clock)
    assert await limiter.try_acquire(10)
    a = asyncio.create_task(limiter.acquire(5))
    b = asyncio.create_task(limiter.acquire(5))
    c = asyncio.create_task(limiter.acquire(1))
    await asyncio.sleep(0)  # a is head (sleeping for 0.5 s); b and c wait behind it
    assert limiter.waiting == 3
    b.cancel()
    await _within(asyncio.gather(a, c))
    with pytest.raises(asyncio.CancelledError):
        await b
    # a at 0.5 s, then c needs one more token: 0.6 s (0.1 s later had b taken 5 tokens).
    assert clock.now() == pytest.approx(0.6)
    assert limiter.waiting == 0


async def test_cancelled_head_hands_its_turn_to_the_next_waiter() -> None:
    """A head cancelled while sleeping for tokens leaves them to the next waiter."""
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=10, capacity=10, clock=clock)
    assert await limiter.try_acquire(10)
    head = asyncio.create_task(limiter.acquire(5))
    follower = asyncio.create_task(limiter.acquire(5))
    await asyncio.sleep(0)  # head is in its 0.5 s sleep for tokens; follower queued
    head.cancel()
    await _within(follower)
    assert head.cancelled()
    assert clock.now() == pytest.approx(0.5)  # the follower got the 5 tokens head left
    assert limiter.available == pytest.approx(0.0)
    assert limiter.waiting == 0


async def test_cancelling_many_waiters_leaves_a_consistent_queue() -> None:
    """Cancel 60 of 130 waiters at random: the rest are served in order, nothing leaks."""
    rng = random.Random(99)
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=100, capacity=1, clock=clock)
    assert await limiter.try_acquire()
    granted: list[int] = []

    async def caller(i: int) -> None:
        await limiter.acquire()
        granted.append(i)

    tasks = [asyncio.create_task(caller(i)) for i in range(130)]
    await asyncio.sleep(0)
    victims = set(rng.sample(range(130), 60))
    for i in victims:
        tasks[i].cancel()
    await _within(asyncio.gather(*tasks, return_exceptions=True))
    survivors = [i for i in range(130) if i not in victims or not tasks[i].cancelled()]
    assert granted == survivors
    assert limiter.waiting == 0
    assert clock.now() == pytest.approx(len(survivors) / 100)


async def test_timeout_fails_fast_when_the_wait_is_too_long() -> None:
    """acquire(timeout) raises at once with retry_after_s when the grant would be late."""
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=10, capacity=2, clock=clock, name="llm")
    assert await limiter.try_acquire(2)
    with pytest.raises(RateLimitExceededError) as info:
        await limiter.acquire(1, timeout=0.05)
    err = info.value
    assert err.component == "llm"
    assert err.details["retry_after_s"] == pytest.approx(0.1)
    assert err.details["timeout"] == 0.05
    assert err.details["tokens"] == 1.0
    assert clock.sleeps == []  # failed without waiting
    with pytest.raises(RateLimitExceededError):
        await limiter.acquire(1, timeout=0)


async def test_timeout_counts_the_queue_ahead() -> None:
    """The wait estimate includes every earlier waiter's tokens."""
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=10, capacity=10, clock=clock)
    assert await limiter.try_acquire(10)
    ahead = [asyncio.create_task(limiter.acquire(10)) for _ in range(2)]
    await asyncio.sleep(0)  # the first is head and has slept 1 s; the second waits
    with pytest.raises(RateLimitExceededError) as info:
        await limiter.acquire(1, timeout=0.5)
    # 10 tokens for the second waiter + 1 for us, at 10/s, with 10 about to go to the head
    assert info.value.details["retry_after_s"] == pytest.approx(1.1)
    await _within(asyncio.gather(*ahead))


async def test_acquire_within_timeout_waits_and_succeeds() -> None:
    """A grant that fits in the timeout is waited for."""
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=10, capacity=1, clock=clock)
    assert await limiter.try_acquire()
    await limiter.acquire(1, timeout=0.2)
    assert clock.now() == pytest.approx(0.1)


async def test_default_clock_waits_in_real_time() -> None:
    """Without a clock argument the limiter sleeps on the event loop (short real wait)."""
    limiter = TokenBucketLimiter(rate=200, capacity=1)
    loop = asyncio.get_running_loop()
    await limiter.acquire()
    started = loop.time()
    await _within(limiter.acquire())
    await _within(limiter.acquire())
    assert loop.time() - started >= 0.009


@pytest.mark.parametrize(
    ("tokens", "timeout", "match"),
    [
        (11, None, "tokens=11 exceeds the bucket capacity"),
        (0, None, "tokens"),
        (-1, None, "tokens"),
        (float("nan"), None, "tokens"),
        (1, -0.5, "timeout"),
        (1, float("nan"), "timeout"),
    ],
)
async def test_invalid_requests_raise_value_error(
    tokens: float, timeout: float | None, match: str
) -> None:
    """Impossible requests are programming errors, reported naming the argument."""
    limiter = TokenBucketLimiter(rate=1, capacity=10, clock=ManualClock())
    with pytest.raises(ValueError, match=match):
        await limiter.acquire(tokens, timeout=timeout)


async def test_try_acquire_validates_tokens() -> None:
    """try_acquire rejects a request above capacity the same way."""
    limiter = TokenBucketLimiter(rate=1, capacity=3, clock=ManualClock())
    with pytest.raises(ValueError, match="tokens"):
        await limiter.try_acquire(4)


@pytest.mark.parametrize(
    ("kwargs", "exc_type", "match"),
    [
        ({"rate": 0, "capacity": 1}, ValueError, "rate"),
        ({"rate": 1, "capacity": -1}, ValueError, "capacity"),
        ({"rate": float("inf"), "capacity": 1}, ValueError, "rate"),
        ({"rate": "10", "capacity": 1}, TypeError, "rate"),
        ({"rate": 1, "capacity": True}, TypeError, "capacity"),
    ],
)
def test_invalid_bucket_is_rejected(
    kwargs: dict[str, Any], exc_type: type[Exception], match: str
) -> None:
    """rate and capacity must be finite positive numbers."""
    with pytest.raises(exc_type, match=match):
        TokenBucketLimiter(**kwargs)


def test_limiter_satisfies_the_rate_limiter_protocol() -> None:
    """TokenBucketLimiter is a RateLimiter; the repr shows its configuration."""
    limiter = TokenBucketLimiter(rate=5, capacity=2, clock=ManualClock(), name="api")
    assert isinstance(limiter, RateLimiter)
    assert (limiter.rate, limiter.capacity) == (5.0, 2.0)
    assert "api" in repr(limiter)
    assert "rate=5.0" in repr(limiter)


async def test_redis_limiter_validates_before_any_round_trip() -> None:
    """Bad buckets and impossible requests fail locally; nothing connects to Redis."""
    from redis.asyncio import Redis

    client = Redis(host="127.0.0.1", port=1)  # nothing listens there; never contacted
    try:
        with pytest.raises(ValueError, match="key"):
            RedisTokenBucketLimiter(client, "", rate=1, capacity=1)
        with pytest.raises(ValueError, match="rate"):
            RedisTokenBucketLimiter(client, "k", rate=0, capacity=1)
        limiter = RedisTokenBucketLimiter(client, "k", rate=1, capacity=2, prefix="app:")
        assert limiter.key == "app:k"
        assert limiter.name == "k"
        assert isinstance(limiter, RateLimiter)
        with pytest.raises(ValueError, match="tokens=3 exceeds"):
            await limiter.acquire(3)
        with pytest.raises(ValueError, match="tokens"):
            await limiter.try_acquire(0)
        assert "app:k" in repr(limiter)
    finally:
        await client.aclose()

"""LLMRateLimiter: RPM and TPM buckets that wait (FIFO), a maximum wait, Retry-After pauses
and estimate reconciliation -- on a virtual clock, plus the rate accuracy on real time."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from infra.exceptions import InvalidArgumentError, RateLimitExceededError
from infra.llm import LLMRateLimiter
from infra.resilience import ManualClock, TokenBucketLimiter


class CountingBucket:
    """A RateLimiter that grants everything and adds up what it was asked for."""

    def __init__(self) -> None:
        self.taken = 0.0

    async def acquire(self, tokens: float = 1, timeout: float | None = None) -> None:
        self.taken += tokens

    async def try_acquire(self, tokens: float = 1) -> bool:
        self.taken += tokens
        return True


async def test_waiters_are_granted_in_arrival_order() -> None:
    clock = ManualClock()
    limiter = LLMRateLimiter.in_process(rpm=60, clock=clock)  # 1 request/s, burst 1
    order: list[int] = []

    async def call(index: int) -> None:
        await limiter.acquire()
        order.append(index)

    await asyncio.gather(*(call(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]
    assert clock.now() == pytest.approx(4.0)  # one at once, then one per second


async def test_a_wait_longer_than_max_wait_fails_at_once() -> None:
    clock = ManualClock()
    limiter = LLMRateLimiter.in_process(rpm=60, max_wait=0.5, clock=clock)
    await limiter.acquire()  # the burst: the next request is due in 1 s
    with pytest.raises(RateLimitExceededError) as caught:
        await limiter.acquire()
    assert caught.value.details["retry_after_s"] == pytest.approx(1.0)
    assert clock.now() == 0.0  # decided at once, not after sleeping the wait


async def test_retry_after_pauses_every_later_acquire() -> None:
    clock = ManualClock()
    limiter = LLMRateLimiter.in_process(rpm=6000, clock=clock)
    limiter.pause(5.0)
    limiter.pause(1.0)  # a shorter pause never shortens the current one
    await limiter.acquire()
    assert clock.now() == pytest.approx(5.0)
    assert limiter.paused_for == 0


async def test_a_pause_longer_than_max_wait_is_a_typed_error() -> None:
    clock = ManualClock()
    limiter = LLMRateLimiter.in_process(rpm=6000, max_wait=1.0, clock=clock)
    limiter.pause(30.0)
    with pytest.raises(RateLimitExceededError, match="Retry-After") as caught:
        await limiter.acquire()
    assert caught.value.details["reason"] == "paused"
    assert clock.now() == 0.0


async def test_usage_above_the_estimate_is_charged_to_the_next_request() -> None:
    bucket = CountingBucket()
    limiter = LLMRateLimiter(requests=None, tokens=bucket, token_capacity=10_000)
    charged = await limiter.acquire(100)
    limiter.settle(charged, used=250)
    await limiter.acquire(100)
    assert bucket.taken == 100 + 250


async def test_a_request_above_the_capacity_waits_for_a_full_bucket() -> None:
    clock = ManualClock()
    limiter = LLMRateLimiter.in_process(tpm=600, clock=clock)  # 10 tokens/s, capacity 600
    await limiter.acquire(600)
    await limiter.acquire(1000)  # more than the bucket holds: charged the whole bucket
    assert clock.now() == pytest.approx(60.0)


async def test_a_cancelled_wait_charges_nothing() -> None:
    clock = ManualClock()
    bucket = TokenBucketLimiter(1.0, 10.0, clock=clock)
    limiter = LLMRateLimiter(requests=None, tokens=bucket, token_capacity=10, clock=clock)
    await limiter.acquire(10)
    waiter = asyncio.ensure_future(limiter.acquire(5))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.carried_tokens == 0
    clock.advance(10.0)
    assert bucket.available == pytest.approx(10.0)  # refilled to capacity: nothing taken
    assert bucket.waiting == 0


@pytest.mark.parametrize(("rpm", "tpm"), [(0, None), (None, -5), (float("nan"), None)])
def test_bad_limits_are_refused(rpm: float | None, tpm: float | None) -> None:
    with pytest.raises(InvalidArgumentError):
        LLMRateLimiter.in_process(rpm=rpm, tpm=tpm)


async def test_negative_tokens_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="tokens"):
        await LLMRateLimiter.in_process(rpm=60).acquire(-1)


@given(
    calls=st.lists(st.tuples(st.integers(0, 5_000), st.integers(0, 5_000)), min_size=1, max_size=30)
)
async def test_every_used_token_is_charged_exactly_once(calls: list[tuple[int, int]]) -> None:
    """Property: after any sequence of (estimate, real usage) calls, what the bucket took
    plus what is carried to the next request equals the real usage -- nothing is lost or
    charged twice, whatever the estimates were (even above the bucket's capacity)."""
    bucket = CountingBucket()
    limiter = LLMRateLimiter(requests=None, tokens=bucket, token_capacity=3_000)
    for estimate, used in calls:
        charged = await limiter.acquire(estimate)
        limiter.settle(charged, used=used)
    assert bucket.taken + limiter.carried_tokens == pytest.approx(sum(u for _, u in calls))
    assert bucket.taken >= 0


async def test_four_producers_get_the_configured_rate_on_real_time() -> None:
    """Accuracy: 4 concurrent producers for 1 s at 12 000 rpm (200/s, burst 10) are
    granted the configured rate within 2 % (the burst counted separately). A high rate
    over a short window gives the statistical power of 10 s at a low one."""
    limiter = LLMRateLimiter.in_process(rpm=12_000, burst_seconds=0.05)
    window = 1.0
    grants: list[float] = []
    start = time.monotonic()

    async def producer() -> None:
        while time.monotonic() - start < window:
            await limiter.acquire()
            grants.append(time.monotonic() - start)

    await asyncio.gather(*(producer() for _ in range(4)))
    granted = sum(1 for t in grants if t <= window) - 10  # minus the initial burst
    assert granted == pytest.approx(200, rel=0.02)


# A provider's Retry-After in seconds, as the translation parses it: tiny to absurd
# ("1e9", an HTTP date in the year 9999 is ~2.5e11 s away), infinite, or absent.
_RETRY_AFTER = st.one_of(
    st.none(),
    st.floats(min_value=0, allow_nan=False),
    st.floats(min_value=0, allow_nan=False).map(lambda seconds: seconds * 1e9),
    st.sampled_from([0.0, 1e9, 2.5e11, math.inf, -5.0, math.nan]),
)


@given(seconds=_RETRY_AFTER, max_pause=st.sampled_from([1.0, 60.0]))
@example(seconds=1e9, max_pause=60.0)
@example(seconds=2.5e11, max_pause=60.0)
@example(seconds=math.inf, max_pause=60.0)
async def test_no_retry_after_holds_the_limiter_longer_than_max_pause(
    seconds: float | None, max_pause: float
) -> None:
    """Property: whatever the provider's ``Retry-After`` says, the pause it sets ends
    within ``max_pause`` and the next acquire (no max_wait) is granted by then. An absurd
    value used to freeze every later call of the process for years."""
    clock = ManualClock()
    limiter = LLMRateLimiter.in_process(rpm=6000, max_pause=max_pause, clock=clock)
    limiter.pause(seconds)
    assert 0.0 <= limiter.paused_for <= max_pause
    await limiter.acquire()
    assert clock.now() <= max_pause
    if seconds is not None and seconds > 0:  # NaN compares False: no pause
        assert clock.now() == pytest.approx(min(seconds, max_pause))


@pytest.mark.parametrize("max_pause", [0, -1.0, math.inf, math.nan, True, "60"])
def test_a_bad_max_pause_is_refused(max_pause: object) -> None:
    with pytest.raises(InvalidArgumentError, match="max_pause"):
        LLMRateLimiter(requests=None, tokens=None, max_pause=max_pause)  # type: ignore[arg-type]


_OUTCOMES = st.lists(st.sampled_from(["granted", "cancelled", "over_max_wait"]), max_size=12)


@given(outcomes=_OUTCOMES)
@example(outcomes=["cancelled", "granted"])
@example(outcomes=["over_max_wait"])
async def test_a_caller_that_gives_up_keeps_no_request_slot(outcomes: list[str]) -> None:
    """Property: after any mix of granted calls, callers cancelled while waiting for
    tokens and callers refused by ``max_wait``, the request bucket has been charged for
    exactly the granted calls, once the slots given back are reused. A cancelled or
    refused waiter used to burn a request of the minute's budget."""
    clock = ManualClock()
    requests = CountingBucket()
    tokens = TokenBucketLimiter(1.0, 100.0, clock=clock)
    limiter = LLMRateLimiter(
        requests=requests, tokens=tokens, token_capacity=100.0, max_wait=50.0, clock=clock
    )
    granted = 0
    for outcome in outcomes:
        if outcome == "granted":
            await limiter.acquire(10)
            granted += 1
        elif outcome == "over_max_wait":
            tokens_now = tokens.available
            if tokens_now + 1.0 * 50.0 < 100.0:  # the grant would come after max_wait
                with pytest.raises(RateLimitExceededError):
                    await limiter.acquire(100)
            else:
                await limiter.acquire(100)
                granted += 1
        else:
            waiter = asyncio.create_task(limiter.acquire(30))
            await asyncio.sleep(0)  # it runs to its first wait (if it must wait)
            waiter.cancel()
            try:
                await waiter
                granted += 1  # the bucket was full: granted without waiting
            except asyncio.CancelledError:
                pass
    given_back = getattr(limiter, "request_credits", 0)
    for _ in range(given_back):  # later callers reuse the slots given back
        await limiter.acquire(0)
        granted += 1
    assert requests.taken == granted


class GateBucket:
    """A request bucket that grants only while its gate is open."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.taken = 0

    async def acquire(self, tokens: float = 1, timeout: float | None = None) -> None:
        await self.gate.wait()
        self.taken += 1

    async def try_acquire(self, tokens: float = 1) -> bool:
        return False


async def test_a_slot_given_back_never_lets_a_newcomer_overtake_a_waiter() -> None:
    """A credit is used only while no caller of the limiter waits for the request bucket
    (whatever the bucket: a Redis-shared one reports no queue of its own)."""
    requests = GateBucket()
    tokens = TokenBucketLimiter(0.001, 100.0)  # real time: a refill takes hours
    limiter = LLMRateLimiter(requests=requests, tokens=tokens, token_capacity=100.0)
    await limiter.acquire(100)  # the token bucket is empty now
    giving_up = asyncio.create_task(limiter.acquire(30))
    await asyncio.sleep(0)  # it has its request and waits for tokens
    requests.gate.clear()
    waiter = asyncio.create_task(limiter.acquire(0))
    await asyncio.sleep(0)  # queued at the request bucket
    giving_up.cancel()
    with pytest.raises(asyncio.CancelledError):
        await giving_up
    assert limiter.request_credits == 1
    newcomer = asyncio.create_task(limiter.acquire(0))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not newcomer.done(), "the newcomer took the credit ahead of a waiter"
    assert not waiter.done()
    requests.gate.set()
    await asyncio.gather(waiter, newcomer)
    assert limiter.request_credits == 1  # still there for a caller that finds no queue

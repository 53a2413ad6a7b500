"""Cancelling a call at any await of the resilience layers leaves nothing held.

Whatever the call was waiting for when it was cancelled -- a rate-limiter token, a
bulkhead slot, the backend, a retry backoff -- afterwards the breaker admits a new probe,
the bulkhead has no slot taken and nobody queued, the limiter has nobody waiting and no
token spent on the cancelled call, and the cancellation counted as no failure. The
property test draws the layers and the place the call is blocked at; the examples below
it pin each call style of the breaker and the bulkhead on their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.exceptions import BackendConnectionError, CircuitBreakerOpenError
from infra.resilience import (
    Bulkhead,
    CircuitBreaker,
    CircuitBreakerConfig,
    Fallback,
    ManualClock,
    RetryConfig,
    RetryPolicy,
)
from infra.resilience.hooks import BreakerState, CallOutcome, RecordingObserver
from infra.resilience.policy import ResiliencePolicy
from infra.resilience.rate_limit import TokenBucketLimiter
from infra.resilience.timeout import Timeout


class GatedClock:
    """Virtual time whose ``sleep`` blocks until the test opens the gate.

    Lets a test cancel a call *while* it sleeps (a retry backoff, a limiter wait).
    """

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.gate = asyncio.Event()
        self.sleeping = 0

    def now(self) -> float:
        return self.clock.now()

    async def sleep(self, seconds: float) -> None:
        self.sleeping += 1
        try:
            await self.gate.wait()
        finally:
            self.sleeping -= 1
        await self.clock.sleep(seconds)


async def settle() -> None:
    """Let every runnable task reach its next blocking await."""
    for _ in range(20):
        await asyncio.sleep(0)


async def cancel(task: asyncio.Task[Any]) -> None:
    await settle()
    assert not task.done(), "the call should be blocked, not finished"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def open_then_half_open(breaker: CircuitBreaker, clock: GatedClock) -> None:
    """Trip the breaker and let its timeout pass: the next call becomes the probe."""
    breaker.force_open()
    clock.clock.advance(breaker.config.timeout)


async def assert_one_probe_closes(breaker: CircuitBreaker) -> None:
    """The probe slot is free: a call is admitted, succeeds and closes the breaker."""

    async def ok() -> str:
        return "ok"

    assert await breaker.call(ok) == "ok"
    assert breaker.state is BreakerState.CLOSED
    assert breaker.failure_count == 0


# --------------------------------------------------------------- the whole policy
WHERE = ("limiter", "bulkhead", "backend", "backoff")


@given(
    where=st.sampled_from(WHERE),
    half_open=st.booleans(),
    attempt_timeout=st.booleans(),
    overall=st.sampled_from([None, "clamped", "own_timer"]),
    fallback=st.booleans(),
    idempotent=st.booleans(),
)
async def test_a_cancelled_policy_call_holds_no_slot_token_or_probe(  # noqa: PLR0917
    where: str,
    half_open: bool,
    attempt_timeout: bool,
    overall: str | None,
    fallback: bool,
    idempotent: bool,
) -> None:
    clock = GatedClock()
    rec = RecordingObserver()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold=3, timeout=10.0),
        name="db",
        clock=clock,
        hooks=[rec],
    )
    if where == "backoff":
        half_open = False  # a failed probe reopens the breaker: no backoff to cancel in
        idempotent = True
    limiter = TokenBucketLimiter(rate=1.0, capacity=2.0, clock=clock, name="db")
    bulkhead = Bulkhead(1, max_queue=1, name="db")
    attempt = Timeout(5.0, component="db", clock=clock) if attempt_timeout else None
    seconds = {None: None, "clamped": 1000.0, "own_timer": 1.0}[overall]
    policy = ResiliencePolicy(
        "db",
        fallback=Fallback.value("fallback") if fallback else None,
        timeout=None if seconds is None else Timeout(seconds, component="db", clock=clock),
        retry=RetryPolicy(
            RetryConfig(max_attempts=3, base_delay=0.01, jitter=False), name="db", clock=clock
        ),
        breaker=breaker,
        rate_limiter=limiter,
        rate_limit_wait=None,
        bulkhead=bulkhead,
        attempt_timeout=attempt,
        clock=clock,
    )
    if half_open:
        await open_then_half_open(breaker, clock)
    backend = asyncio.Event()
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        if where == "backoff" and calls == 1:
            raise BackendConnectionError(component="db")
        await backend.wait()
        return "done"

    holder: asyncio.Task[None] | None = None
    release_holder = asyncio.Event()
    if where == "limiter":
        assert await limiter.try_acquire(2.0)  # drained: the call waits for a refill
    if where == "bulkhead":

        async def hold() -> None:
            async with bulkhead:
                await release_holder.wait()

        holder = asyncio.create_task(hold())
        await settle()
    tokens_before = limiter.available

    task = asyncio.create_task(policy.execute(fn, idempotent=idempotent))
    await cancel(task)

    if holder is not None:
        release_holder.set()
        await holder
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)
    assert limiter.waiting == 0
    if where == "limiter":
        assert limiter.available == pytest.approx(tokens_before)  # nothing taken
    # Refilled, the bucket grants a full burst at once: no phantom request is queued
    # ahead of it (its tokens would make the wait estimate exceed timeout=0).
    clock.clock.advance(limiter.capacity / limiter.rate)
    await limiter.acquire(limiter.capacity, timeout=0.0)
    # Only an attempt that really failed is reported (the one before the backoff); the
    # cancelled call itself is never counted as a failed call.
    assert rec.outcomes().count(CallOutcome.FAILURE) == (1 if where == "backoff" else 0)
    assert breaker.failure_count == 0
    if half_open:
        assert CallOutcome.REJECTED not in rec.outcomes()
        await assert_one_probe_closes(breaker)
    else:
        assert breaker.state is BreakerState.CLOSED


async def test_a_limiter_waiter_cancelled_leaves_no_phantom_tokens_in_the_queue() -> None:
    clock = GatedClock()
    limiter = TokenBucketLimiter(rate=1.0, capacity=4.0, clock=clock, name="api")
    assert await limiter.try_acquire(4.0)
    task = asyncio.create_task(limiter.acquire(3.0))
    await cancel(task)
    assert limiter.waiting == 0
    clock.clock.advance(1.0)
    # One token is there now; a request for it is granted at once (timeout=0), which it
    # would not be if the cancelled request's three tokens still counted as queued.
    await limiter.acquire(1.0, timeout=0.0)
    assert limiter.available == pytest.approx(0.0)


# ------------------------------------------------------------------ breaker alone
def half_open_breaker() -> tuple[CircuitBreaker, ManualClock, RecordingObserver]:
    clock = ManualClock()
    rec = RecordingObserver()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold=1, timeout=5.0), name="db", clock=clock, hooks=[rec]
    )
    breaker.force_open()
    clock.advance(5.0)
    return breaker, clock, rec


async def _via_call(
    breaker: CircuitBreaker, blocker: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    await breaker.call(blocker)


async def _via_context(
    breaker: CircuitBreaker, blocker: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    async with breaker:
        await blocker()


async def _via_decorator(
    breaker: CircuitBreaker, blocker: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    await breaker(blocker)()


async def _via_admit(
    breaker: CircuitBreaker, blocker: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    ticket = breaker.admit()
    try:
        await blocker()
    except BaseException as exc:
        breaker.record(ticket, exc)
        raise
    breaker.record(ticket)


async def _via_record_attempt(
    breaker: CircuitBreaker, blocker: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    ticket = breaker.admit()
    try:
        await blocker()
    except BaseException as exc:
        breaker.record_attempt(ticket, exc)
        raise
    breaker.record(ticket)


STYLES = [_via_call, _via_context, _via_decorator, _via_admit, _via_record_attempt]


@pytest.mark.parametrize("style", STYLES, ids=lambda f: f.__name__)
async def test_a_cancelled_half_open_probe_frees_its_slot(
    style: Callable[
        [CircuitBreaker, Callable[[], Coroutine[Any, Any, None]]], Coroutine[Any, Any, None]
    ],
) -> None:
    breaker, _clock, rec = half_open_breaker()
    never = asyncio.Event()

    async def blocker() -> None:
        await never.wait()

    probe = asyncio.create_task(style(breaker, blocker))
    await settle()
    # While the probe runs, its slot is taken: a second caller fails fast.
    with pytest.raises(CircuitBreakerOpenError) as rejected:
        await breaker.call(blocker)
    assert rejected.value.details["state"] == "half_open"
    assert breaker.snapshot().half_open_in_flight == 1

    await cancel(probe)

    assert rec.outcomes()[-1] is CallOutcome.CANCELLED
    assert breaker.snapshot().half_open_in_flight == 0
    await assert_one_probe_closes(breaker)


@pytest.mark.parametrize("style", STYLES, ids=lambda f: f.__name__)
async def test_a_cancelled_call_in_a_closed_breaker_counts_nothing(
    style: Callable[
        [CircuitBreaker, Callable[[], Coroutine[Any, Any, None]]], Coroutine[Any, Any, None]
    ],
) -> None:
    rec = RecordingObserver()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold=1), name="db", clock=ManualClock(), hooks=[rec]
    )
    never = asyncio.Event()

    async def blocker() -> None:
        await never.wait()

    await cancel(asyncio.create_task(style(breaker, blocker)))
    assert rec.outcomes() == [CallOutcome.CANCELLED]
    assert breaker.failure_count == 0
    assert breaker.state is BreakerState.CLOSED


async def test_a_probe_that_never_reached_the_backend_frees_its_slot() -> None:
    """``release`` (the call proved nothing) gives the probe slot back, counted as excluded."""
    breaker, _clock, rec = half_open_breaker()
    ticket = breaker.admit()

    async def another_caller() -> int:  # in this task, admit() is the probe's nested call
        return breaker.admit()

    with pytest.raises(CircuitBreakerOpenError):
        await asyncio.create_task(another_caller())
    breaker.release(ticket)
    assert rec.outcomes()[-1] is CallOutcome.EXCLUDED
    await assert_one_probe_closes(breaker)


# ----------------------------------------------------------------- bulkhead alone
async def _bulkhead_call(
    bulkhead: Bulkhead, blocker: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    await bulkhead.call(blocker)


async def _bulkhead_context(
    bulkhead: Bulkhead, blocker: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    async with bulkhead:
        await blocker()


@pytest.mark.parametrize("style", [_bulkhead_call, _bulkhead_context], ids=lambda f: f.__name__)
@pytest.mark.parametrize("queued", [False, True], ids=["running", "queued"])
async def test_a_cancelled_bulkhead_call_returns_its_slot(
    style: Callable[[Bulkhead, Callable[[], Coroutine[Any, Any, None]]], Coroutine[Any, Any, None]],
    queued: bool,
) -> None:
    bulkhead = Bulkhead(1, max_queue=2, name="db")
    never, release = asyncio.Event(), asyncio.Event()

    async def blocker() -> None:
        await never.wait()

    async def short() -> None:
        await release.wait()

    first = asyncio.create_task(style(bulkhead, short if queued else blocker))
    await settle()
    victim = asyncio.create_task(style(bulkhead, blocker)) if queued else first
    await settle()
    assert bulkhead.queued == (1 if queued else 0)
    await cancel(victim)
    assert bulkhead.queued == 0
    if queued:
        assert bulkhead.in_flight == 1  # the first call still runs
        release.set()
        await first
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)
    # All capacity is back: max_concurrent + max_queue callers fit again.
    done = asyncio.Event()

    async def quick() -> None:
        await done.wait()

    tasks = [asyncio.create_task(bulkhead.call(quick)) for _ in range(3)]
    await settle()
    assert (bulkhead.in_flight, bulkhead.queued) == (1, 2)
    done.set()
    await asyncio.gather(*tasks)
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)

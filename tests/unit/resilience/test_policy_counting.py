"""How a policy's breaker counts: once per call by default, per attempt on request.

The default (``count_retried_attempts=False``) is what lets default settings keep the design's
promise -- transient failures absorbed by retries never add up to a trip -- while a real
outage still opens the breaker after ``failure_threshold`` failed calls and then fails
fast. Every test runs on a ManualClock: backoff sleeps are virtual.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import pytest

from config import Settings
from infra.exceptions import (
    BackendConnectionError,
    CircuitBreakerOpenError,
    InfraError,
    OperationTimeoutError,
    QuerySyntaxError,
)
from infra.resilience.breaker import CircuitBreakerConfig
from infra.resilience.clock import ManualClock
from infra.resilience.fallback import Fallback
from infra.resilience.hooks import BreakerState, CallOutcome, RecordingObserver
from infra.resilience.policy import ResiliencePolicy
from infra.resilience.retry import RetryConfig

NO_JITTER = RetryConfig(max_attempts=3, jitter=False)


class FlakyFirstAttempt:
    """Fails the first attempt of every call (keyed by its argument), then answers."""

    def __init__(self) -> None:
        self.seen: set[object] = set()
        self.calls = 0

    async def __call__(self, key: object) -> object:
        self.calls += 1
        if key not in self.seen:
            self.seen.add(key)
            await asyncio.sleep(0)  # let concurrent calls' first attempts interleave
            raise BackendConnectionError("transient")
        return key


class Down:
    """A backend in a sustained outage; counts the attempts that reached it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, *args: Any) -> str:
        self.calls += 1
        raise BackendConnectionError("connection refused")


def breaker_of(policy: ResiliencePolicy) -> Any:
    assert policy.breaker is not None
    return policy.breaker


async def test_a_retried_then_successful_call_is_a_success_for_the_breaker() -> None:
    """Threshold 1: a first attempt that fails and is retried successfully opens nothing."""
    rec = RecordingObserver()
    policy = ResiliencePolicy.instant(
        breaker=CircuitBreakerConfig(failure_threshold=1), retry=NO_JITTER, hooks=[rec]
    )
    assert await policy.execute(FlakyFirstAttempt(), "k") == "k"
    assert breaker_of(policy).state is BreakerState.CLOSED
    assert breaker_of(policy).failure_count == 0
    assert rec.outcomes() == [CallOutcome.FAILURE, CallOutcome.SUCCESS]


async def test_a_call_that_fails_for_good_counts_once() -> None:
    """Three failed attempts of one call add one to the count; observers see all three."""
    rec = RecordingObserver()
    policy = ResiliencePolicy.instant(breaker=CircuitBreakerConfig(), retry=NO_JITTER, hooks=[rec])
    backend = Down()
    with pytest.raises(BackendConnectionError):
        await policy.execute(backend)
    assert backend.calls == 3
    assert breaker_of(policy).failure_count == 1
    assert rec.outcomes() == [CallOutcome.FAILURE] * 3


async def test_concurrent_transient_burst_is_absorbed_by_default_but_trips_per_attempt() -> None:
    """Ten concurrent calls whose first attempts all fail: per call none fails; per attempt
    five failures in a row open the breaker and the retries are refused."""
    per_call = ResiliencePolicy.instant(breaker=CircuitBreakerConfig(), retry=NO_JITTER)
    backend = FlakyFirstAttempt()
    results = await asyncio.gather(*(per_call.execute(backend, i) for i in range(10)))
    assert results == list(range(10))
    assert breaker_of(per_call).state is BreakerState.CLOSED

    per_attempt = ResiliencePolicy.instant(
        breaker=CircuitBreakerConfig(count_retried_attempts=True), retry=NO_JITTER
    )
    outcomes = await asyncio.gather(
        *(per_attempt.execute(FlakyFirstAttempt(), i) for i in range(10)),
        return_exceptions=True,
    )
    assert breaker_of(per_attempt).state is BreakerState.OPEN
    assert any(isinstance(outcome, CircuitBreakerOpenError) for outcome in outcomes)


async def test_sustained_outage_opens_after_five_failed_calls_then_fails_fast() -> None:
    """Default settings: five calls fail for good (15 attempts, virtual backoff only), the
    fifth re-raises the real error and opens the breaker; the next call is refused at
    once, without reaching the backend or sleeping."""
    clock = ManualClock()
    policy = ResiliencePolicy.from_settings(Settings(), component="redis", clock=clock)
    backend = Down()
    for _ in range(5):
        with pytest.raises(BackendConnectionError):
            await policy.execute(backend)
    assert backend.calls == 15
    assert breaker_of(policy).state is BreakerState.OPEN
    assert clock.now() <= 5 * (1.0 + 2.0)  # each call's backoff, at most 1 s + 2 s
    sleeps = len(clock.sleeps)
    with pytest.raises(CircuitBreakerOpenError) as info:
        await policy.execute(backend)
    assert backend.calls == 15
    assert len(clock.sleeps) == sleeps
    assert info.value.failure_count == 5


async def test_failures_under_the_default_policy_need_five_failed_calls_in_a_row() -> None:
    """Four failed calls, one success, four failed calls: still closed (the count restarts)."""
    policy = ResiliencePolicy.from_settings(Settings(), component="redis", clock=ManualClock())
    for backend in [Down()] * 4 + [FlakyFirstAttempt()] + [Down()] * 4:
        with contextlib.suppress(InfraError):
            await policy.execute(backend, "k")
    assert breaker_of(policy).state is BreakerState.CLOSED
    assert breaker_of(policy).failure_count == 4


async def run_with_random_failures(policy: ResiliencePolicy, *, seed: int, calls: int) -> int:
    """``calls`` calls, 100 per virtual second, each attempt failing with p = 10 %."""
    rng = random.Random(seed)
    clock = policy.clock
    assert isinstance(clock, ManualClock)

    async def backend() -> str:
        if rng.random() < 0.10:
            raise BackendConnectionError("injected")
        return "ok"

    failed = 0
    for _ in range(calls):
        try:
            await policy.execute(backend)
        except InfraError:
            failed += 1
        clock.advance(0.01)
    return failed


async def test_random_transient_failures_do_not_trip_the_default_breaker() -> None:
    """10 % independent attempt failures over 3,000 calls: no trip with default settings;
    on the same sequence (seed 16) "5 failed attempts in a row" trips once."""
    rec = RecordingObserver()
    default = ResiliencePolicy.from_settings(
        Settings(retry_jitter=False), component="redis", clock=ManualClock(), hooks=[rec]
    )
    failed = await run_with_random_failures(default, seed=16, calls=3_000)
    assert not rec.transitions
    assert failed <= 10  # a call fails only when all 3 attempts do: p = 0.001
    assert len(rec.retries) > 250  # the failures were real, and retried

    rec = RecordingObserver()
    per_attempt = ResiliencePolicy.build(
        "redis",
        breaker=CircuitBreakerConfig(count_retried_attempts=True),
        retry=NO_JITTER,
        retry_budget_ratio=0.2,
        clock=ManualClock(),
        hooks=[rec],
    )
    await run_with_random_failures(per_attempt, seed=16, calls=3_000)
    assert (BreakerState.CLOSED, BreakerState.OPEN) in [t[1:] for t in rec.transitions]


async def test_the_final_error_decides_whether_the_call_counts() -> None:
    """A call ending in a caller error (excluded) counts nothing, even after a transient one."""
    policy = ResiliencePolicy.instant(breaker=CircuitBreakerConfig(failure_threshold=1))
    errors = [BackendConnectionError("transient"), QuerySyntaxError("bad query")]

    async def backend() -> None:
        raise errors.pop(0)

    with pytest.raises(QuerySyntaxError):
        await policy.execute(backend)
    assert breaker_of(policy).state is BreakerState.CLOSED
    assert breaker_of(policy).failure_count == 0


async def test_an_overall_timeout_counts_as_a_failed_call() -> None:
    """A call that the overall timeout ends (its attempt cancelled) counts as one failure."""
    policy = ResiliencePolicy.instant(
        breaker=CircuitBreakerConfig(failure_threshold=1), retry=NO_JITTER, timeout=0.02
    )

    async def hang() -> None:
        await asyncio.Event().wait()

    with pytest.raises(OperationTimeoutError):
        await policy.execute(hang)
    assert breaker_of(policy).state is BreakerState.OPEN


async def test_caller_cancellation_never_counts() -> None:
    """Cancelling execute during a backoff sleep after a failed attempt counts nothing."""
    policy = ResiliencePolicy.build(
        "x",
        breaker=CircuitBreakerConfig(failure_threshold=1),
        retry=RetryConfig(max_attempts=3, base_delay=60.0, max_delay=60.0, jitter=False),
    )
    backend = Down()
    task = asyncio.create_task(policy.execute(backend))
    for _ in range(3):  # the attempt fails, the retry starts its 60 s backoff sleep
        await asyncio.sleep(0)
    assert backend.calls == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker_of(policy).failure_count == 0
    assert breaker_of(policy).state is BreakerState.CLOSED


async def test_non_idempotent_and_fallback_calls_count_once_too() -> None:
    """Unretried calls count at the end of the call; under a fallback the count happens
    before the fallback answers."""
    policy = ResiliencePolicy.instant(breaker=CircuitBreakerConfig(failure_threshold=2))
    for _ in range(2):
        with pytest.raises(BackendConnectionError):
            await policy.execute(Down(), idempotent=False)
    assert breaker_of(policy).state is BreakerState.OPEN

    guarded = ResiliencePolicy.instant(
        breaker=CircuitBreakerConfig(failure_threshold=2),
        retry=NO_JITTER,
        fallback=Fallback.value("cached"),
    )
    backend = Down()
    assert [await guarded.execute(backend) for _ in range(3)] == ["cached"] * 3
    assert backend.calls == 6  # two calls of 3 attempts; the third met the open breaker
    assert breaker_of(guarded).state is BreakerState.OPEN

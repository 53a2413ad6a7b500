"""Cancellation at every await of the resilience layers leaves nothing held.

A call runs through a policy built from any combination of the layers -- overall
timeout, retry, breaker (CLOSED, or HALF_OPEN so the call is its probe), rate limiter
(possibly drained, so the call waits for a token), bulkhead (possibly full, so the call
queues) and attempt timeout -- against a backend that yields a few times and may fail
its first attempts (so the retry sleeps). The caller is cancelled after ``k`` turns of
the event loop (while another task holds the only bulkhead slot for a few turns), for
every ``k`` Hypothesis picks: that lands on each await the call
passes through (the limiter's wait, the bulkhead queue, the backend, a backoff sleep, a
probe). Afterwards no bulkhead slot, queue place, token wait, probe slot or timeout
scope is held, a cancelled call counted nothing, and the next call goes through.

A second property covers what an attempt that never reached the backend counts: a
limiter or bulkhead that refuses or fails leaves the breaker untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.exceptions import BackendConnectionError, BulkheadFullError, CacheConnectionError
from infra.resilience.breaker import CircuitBreaker, CircuitBreakerConfig
from infra.resilience.bulkhead import Bulkhead
from infra.resilience.clock import ManualClock
from infra.resilience.hooks import BreakerState, CallOutcome, RecordingObserver
from infra.resilience.policy import ResiliencePolicy
from infra.resilience.rate_limit import TokenBucketLimiter
from infra.resilience.retry import RetryConfig, RetryPolicy
from infra.resilience.timeout import Timeout


@dataclass
class Backend:
    """Yields ``steps`` times per attempt; the first ``failures`` attempts fail."""

    steps: int
    failures: int
    attempts: int = 0
    finished: list[int] = field(default_factory=list)

    async def __call__(self) -> str:
        self.attempts += 1
        for _ in range(self.steps):
            await asyncio.sleep(0)
        if self.attempts <= self.failures:
            raise BackendConnectionError("transient")
        self.finished.append(self.attempts)
        return "ok"


@dataclass
class Setup:
    policy: ResiliencePolicy
    clock: ManualClock
    rec: RecordingObserver
    breaker: CircuitBreaker | None
    bulkhead: Bulkhead | None
    limiter: TokenBucketLimiter | None
    timeouts: list[Timeout]


def build(
    *,
    retry: bool,
    breaker: str | None,
    limiter: bool,
    bulkhead: bool,
    attempt_timeout: bool,
    overall_timeout: str | None,
) -> Setup:
    clock = ManualClock()
    rec = RecordingObserver()
    cb = None
    if breaker is not None:
        config = CircuitBreakerConfig(failure_threshold=5, timeout=5.0)
        cb = CircuitBreaker(config, name="svc", clock=clock, hooks=[rec])
        if breaker == "half_open":
            cb.force_open()
            clock.advance(5.0)  # the next admitted attempt is the probe
    bh = Bulkhead(1, max_queue=4, name="svc") if bulkhead else None
    tb = TokenBucketLimiter(rate=10.0, capacity=1.0, clock=clock, name="svc") if limiter else None
    timeouts: list[Timeout] = []
    inner = None
    if attempt_timeout:
        inner = Timeout(60.0, component="svc", clock=clock)
        timeouts.append(inner)
    outer = None
    if overall_timeout is not None:
        # "clamped": no timer of its own (the inline path); "own": wraps the retry loop.
        seconds = 600.0 if overall_timeout == "clamped" else 30.0
        outer = Timeout(seconds, component="svc", clock=clock)
        timeouts.append(outer)
    policy = ResiliencePolicy(
        "svc",
        timeout=outer,
        retry=RetryPolicy(
            RetryConfig(max_attempts=3, base_delay=0.5, jitter=False), clock=clock, hooks=[rec]
        )
        if retry
        else None,
        breaker=cb,
        rate_limiter=tb,
        rate_limit_wait=5.0 if tb is not None else None,
        bulkhead=bh,
        attempt_timeout=inner,
        clock=clock,
    )
    return Setup(policy, clock, rec, cb, bh, tb, timeouts)


async def turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@settings(max_examples=300)
@given(
    retry=st.booleans(),
    breaker=st.sampled_from([None, "closed", "half_open"]),
    limiter=st.booleans(),
    drained=st.booleans(),
    bulkhead=st.booleans(),
    full=st.booleans(),
    attempt_timeout=st.booleans(),
    overall_timeout=st.sampled_from([None, "clamped", "own"]),
    held_for=st.integers(0, 6),
    steps=st.integers(0, 3),
    failures=st.integers(0, 2),
    cancel_after=st.integers(0, 25),
)
async def test_cancelling_a_policy_call_anywhere_leaves_no_permit_held(  # noqa: PLR0917
    retry: bool,
    breaker: str | None,
    limiter: bool,
    drained: bool,
    bulkhead: bool,
    full: bool,
    attempt_timeout: bool,
    overall_timeout: str | None,
    held_for: int,
    steps: int,
    failures: int,
    cancel_after: int,
) -> None:
    """For every composition and every cancellation point: counters back to zero, the
    probe slot free, no timeout scope left, nothing counted, and the next call passes."""
    s = build(
        retry=retry,
        breaker=breaker,
        limiter=limiter,
        bulkhead=bulkhead,
        attempt_timeout=attempt_timeout,
        overall_timeout=overall_timeout,
    )
    if s.limiter is not None and drained:
        assert await s.limiter.try_acquire(1.0)  # the call must wait for a token
    occupant: asyncio.Task[None] | None = None
    if s.bulkhead is not None and full:

        async def occupy() -> None:  # holds the only slot for `held_for` turns
            assert s.bulkhead is not None
            async with s.bulkhead:
                await turns(held_for)

        occupant = asyncio.create_task(occupy())
        await turns(1)
    count_before = s.breaker.failure_count if s.breaker is not None else 0
    backend = Backend(steps, failures)
    call = asyncio.create_task(s.policy.execute(backend))
    await turns(cancel_after)
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await call
    if occupant is not None:
        await occupant

    if s.bulkhead is not None:
        assert (s.bulkhead.in_flight, s.bulkhead.queued) == (0, 0)
    if s.limiter is not None:
        assert s.limiter.waiting == 0
    for timeout in s.timeouts:
        assert timeout.open_scopes == 0  # no scope left behind
    if s.breaker is not None:
        snapshot = s.breaker.snapshot()
        assert snapshot.half_open_in_flight == 0
        failures = s.rec.outcomes().count(CallOutcome.FAILURE)
        assert failures <= backend.attempts
        if call.cancelled():
            # The cancellation counts nothing. Failed attempts before it: nothing while
            # CLOSED (the call never gave up), the reopening failure of a probe.
            expected = count_before if breaker == "closed" else count_before + min(failures, 1)
            assert snapshot.failure_count == expected
        if snapshot.state is BreakerState.OPEN:
            s.clock.advance(5.0)  # a probe failed before the cancel: let the next call probe
    # Nothing is held: the next call (a healthy backend) goes through every layer.
    if s.limiter is not None:
        s.clock.advance(1.0)  # refill the token the cancelled call may have spent
    assert await s.policy.execute(Backend(0, 0)) == "ok"
    if s.breaker is not None:
        assert s.breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize("layer", ["breaker", "retry", "timeout", "bulkhead", "limiter"])
@given(cancel_after=st.integers(0, 12))
async def test_cancelling_each_layer_used_on_its_own_leaves_nothing_held(
    layer: str, cancel_after: int
) -> None:
    """Each layer's own entry point, cancelled at any turn, releases what it took."""
    clock = ManualClock()
    backend = Backend(steps=3, failures=1)
    breaker = CircuitBreaker(CircuitBreakerConfig(timeout=1.0), name="b", clock=clock)
    breaker.force_open()
    clock.advance(1.0)
    retry = RetryPolicy(RetryConfig(max_attempts=3, jitter=False), clock=clock)
    timeout = Timeout(60.0, clock=clock)
    bulkhead = Bulkhead(1, max_queue=2)
    limiter = TokenBucketLimiter(rate=1.0, capacity=1.0, clock=clock)
    await limiter.acquire()
    runs: dict[str, Callable[[Backend], Coroutine[Any, Any, str | None]]] = {
        "breaker": breaker.call,
        "retry": retry.execute,
        "timeout": timeout.call,
        "bulkhead": bulkhead.call,
        "limiter": lambda _: limiter.acquire(),
    }
    call = asyncio.create_task(runs[layer](backend))
    await turns(cancel_after)
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await call
    assert breaker.snapshot().half_open_in_flight == 0
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)
    assert limiter.waiting == 0
    assert timeout.open_scopes == 0
    clock.advance(1.0)
    assert await runs[layer](Backend(0, 0)) in ("ok", None)


# ----------------------------------------------- attempts that never reached the backend
class FailingLimiter:
    """A shared limiter whose store is down (or that refuses): raises on acquire."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def acquire(self, tokens: float = 1, timeout: float | None = None) -> None:
        await asyncio.sleep(0)
        raise self.error

    async def try_acquire(self, tokens: float = 1) -> bool:
        raise self.error


@given(
    error=st.sampled_from(["limiter_down", "bulkhead_full"]),
    calls=st.integers(1, 6),
    threshold=st.integers(1, 3),
    retry=st.booleans(),
    per_attempt=st.booleans(),
)
async def test_an_attempt_refused_before_the_backend_never_counts(
    error: str, calls: int, threshold: int, retry: bool, per_attempt: bool
) -> None:
    """Limiter down (a CacheConnectionError, itself a counted type) or bulkhead full:
    the breaker of the protected backend stays CLOSED at 0 and fn never runs, however
    many calls, with or without retries, counting per call or per attempt."""
    clock = ManualClock()
    rec = RecordingObserver()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold=threshold, count_retried_attempts=per_attempt),
        name="llm",
        clock=clock,
        hooks=[rec],
    )
    bulkhead = Bulkhead(1, max_queue=0)
    limiter = FailingLimiter(CacheConnectionError("limiter store down", component="rl"))
    policy = ResiliencePolicy(
        "llm",
        retry=RetryPolicy(RetryConfig(max_attempts=3, jitter=False), clock=clock)
        if retry
        else None,
        breaker=breaker,
        rate_limiter=limiter if error == "limiter_down" else None,
        bulkhead=bulkhead,
        clock=clock,
    )
    backend = Backend(0, 0)
    expected: type[Exception] = (
        CacheConnectionError if error == "limiter_down" else BulkheadFullError
    )
    async with contextlib.AsyncExitStack() as stack:
        if error == "bulkhead_full":
            await stack.enter_async_context(bulkhead)
        for _ in range(calls):
            with pytest.raises(expected):
                await policy.execute(backend)
    assert backend.attempts == 0
    assert (breaker.state, breaker.failure_count) == (BreakerState.CLOSED, 0)
    assert CallOutcome.FAILURE not in rec.outcomes()
    assert set(rec.outcomes()) <= {CallOutcome.EXCLUDED}


async def test_a_limiter_failure_after_backend_failures_does_not_count_the_call() -> None:
    """Attempt 1 reaches the backend and fails; attempt 2 is stopped by the limiter's
    outage. The call's final error is not the backend's: the call does not count."""
    clock = ManualClock()
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1), name="llm", clock=clock)

    class FlakyLimiter(FailingLimiter):
        def __init__(self) -> None:
            super().__init__(CacheConnectionError("limiter store down", component="rl"))
            self.calls = 0

        async def acquire(self, tokens: float = 1, timeout: float | None = None) -> None:
            self.calls += 1
            if self.calls > 1:
                await super().acquire(tokens, timeout)

    policy = ResiliencePolicy(
        "llm",
        retry=RetryPolicy(RetryConfig(max_attempts=2, jitter=False), clock=clock),
        breaker=breaker,
        rate_limiter=FlakyLimiter(),
        clock=clock,
    )
    backend = Backend(0, failures=5)
    with pytest.raises(CacheConnectionError):
        await policy.execute(backend)
    assert backend.attempts == 1
    assert (breaker.state, breaker.failure_count) == (BreakerState.CLOSED, 0)

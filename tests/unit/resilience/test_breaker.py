"""CircuitBreaker: counting rules, fail-fast, bounded half-open probes, three call styles."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from infra.exceptions import (
    BackendAuthenticationError,
    BackendConnectionError,
    CircuitBreakerOpenError,
    InfraTimeoutError,
    LockAcquireTimeoutError,
    QuerySyntaxError,
    UniqueViolationError,
)
from infra.resilience.breaker import DEFAULT_EXCLUDED, CircuitBreaker, CircuitBreakerConfig
from infra.resilience.clock import ManualClock
from infra.resilience.hooks import BreakerState, CallOutcome, RecordingObserver

State = BreakerState


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """The state read afresh: mypy would keep ``breaker.state`` narrowed across awaits."""
    return breaker.state


def make(
    threshold: int = 3, timeout: float = 10.0, probes: int = 1, **extra: Any
) -> tuple[CircuitBreaker, ManualClock, RecordingObserver]:
    clock = ManualClock()
    rec = RecordingObserver()
    config = CircuitBreakerConfig(
        failure_threshold=threshold, timeout=timeout, half_open_max_calls=probes, **extra
    )
    return CircuitBreaker(config, name="db", clock=clock, hooks=[rec]), clock, rec


async def ok() -> str:
    return "ok"


async def fail_with(error: BaseException) -> None:
    raise error


async def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(BackendConnectionError):
            await breaker.call(fail_with, BackendConnectionError(component="db"))


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("failure_threshold", 0),
        ("failure_threshold", True),
        ("timeout", 0),
        ("timeout", float("inf")),
        ("half_open_max_calls", 0),
        ("failure_rate_threshold", 0.0),
        ("failure_rate_threshold", 1.5),
        ("window_size", 0),
        ("minimum_calls", 0),
        ("minimum_calls", 101),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    """Each invalid field raises ValueError whose message names that field."""
    with pytest.raises(ValueError, match=field):
        CircuitBreakerConfig(**{field: value})  # type: ignore[arg-type]


def test_config_rejects_non_exception_exclusions() -> None:
    """excluded must be a tuple of exception classes, with a hint for a bare class."""
    with pytest.raises(TypeError, match=r"\(MyError,\)"):
        CircuitBreakerConfig(excluded=ValueError)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exception types"):
        CircuitBreakerConfig(excluded=(ValueError, "nope"))  # type: ignore[arg-type]


def test_breaker_requires_a_name() -> None:
    """An empty name is a programming error."""
    with pytest.raises(ValueError, match="name"):
        CircuitBreaker(name="")


def test_default_exclusions_are_caller_errors_not_timeouts() -> None:
    """Caller errors and auth are excluded; backend timeouts and connection errors are not."""
    assert issubclass(UniqueViolationError, DEFAULT_EXCLUDED)
    assert issubclass(BackendAuthenticationError, DEFAULT_EXCLUDED)
    assert issubclass(LockAcquireTimeoutError, DEFAULT_EXCLUDED)
    assert not issubclass(InfraTimeoutError, DEFAULT_EXCLUDED)
    assert not issubclass(BackendConnectionError, DEFAULT_EXCLUDED)


# ------------------------------------------------------------------------ closed/open
async def test_opens_after_threshold_and_tripping_call_raises_the_original_error() -> None:
    """The call that trips the breaker re-raises its own error object, not a breaker error."""
    breaker, _, rec = make(threshold=3)
    await fail(breaker, 2)
    assert breaker.state is State.CLOSED
    original = BackendConnectionError(component="db")
    with pytest.raises(BackendConnectionError) as info:
        await breaker.call(fail_with, original)
    assert info.value is original
    assert state_of(breaker) is State.OPEN
    assert rec.transitions == [("db", State.CLOSED, State.OPEN)]


async def test_open_breaker_fails_fast_with_details_and_does_not_call() -> None:
    """While OPEN: CircuitBreakerOpenError(component, failure_count, retry_after_s)."""
    breaker, clock, rec = make(threshold=2, timeout=30.0)
    await fail(breaker, 2)
    clock.advance(12.0)
    called = []

    async def backend() -> None:
        called.append(1)

    with pytest.raises(CircuitBreakerOpenError) as info:
        await breaker.call(backend)
    err = info.value
    assert called == []
    assert err.component == "db"
    assert err.details["breaker"] == "db"
    assert err.failure_count == 2
    assert err.retry_after_s == pytest.approx(18.0)
    assert rec.outcomes()[-1] is CallOutcome.REJECTED


async def test_success_resets_the_consecutive_count() -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    breaker, _, _ = make(threshold=3)
    await fail(breaker, 2)
    assert await breaker.call(ok) == "ok"
    assert breaker.failure_count == 0
    await fail(breaker, 2)
    assert breaker.state is State.CLOSED


async def test_excluded_errors_neither_trip_nor_reset() -> None:
    """A caller error leaves the count exactly where it was."""
    breaker, _, rec = make(threshold=2)
    await fail(breaker, 1)
    for _ in range(10):
        with pytest.raises(QuerySyntaxError):
            await breaker.call(fail_with, QuerySyntaxError())
    assert breaker.failure_count == 1
    assert breaker.state is State.CLOSED
    await fail(breaker, 1)
    assert state_of(breaker) is State.OPEN
    assert rec.outcomes().count(CallOutcome.EXCLUDED) == 10


@pytest.mark.parametrize("error", [InfraTimeoutError(timeout=1.0), TimeoutError()])
async def test_timeouts_count_as_failures(error: Exception) -> None:
    """Our timeout type and the builtin TimeoutError both trip the breaker."""
    breaker, _, _ = make(threshold=1)
    with pytest.raises(type(error)):
        await breaker.call(fail_with, error)
    assert breaker.state is State.OPEN


async def test_cancellation_never_counts() -> None:
    """A cancelled call changes no count, even at threshold 1."""
    breaker, _, rec = make(threshold=1)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(breaker.call(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.failure_count == 0
    assert breaker.state is State.CLOSED
    assert rec.outcomes() == [CallOutcome.CANCELLED]


# ----------------------------------------------------------------------- half-open
async def test_stays_open_until_the_timeout_then_admits_a_probe() -> None:
    """OPEN for exactly `timeout` seconds of the injected clock; then the next call is
    admitted as the probe. Reading the state in between changes nothing (it stays OPEN,
    with nothing left to wait)."""
    breaker, clock, _ = make(threshold=1, timeout=60.0)
    await fail(breaker)
    clock.advance(59.999)
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.call(ok)
    clock.advance(0.001)
    assert breaker.state is State.OPEN
    assert breaker.snapshot().retry_after_s == 0.0
    assert await breaker.call(ok) == "ok"
    assert state_of(breaker) is State.CLOSED
    assert breaker.failure_count == 0


async def test_probe_failure_reopens_with_a_fresh_timeout() -> None:
    """A failed probe reopens the breaker and restarts the full timeout."""
    breaker, clock, rec = make(threshold=1, timeout=60.0)
    await fail(breaker)
    clock.advance(60.0)
    await fail(breaker)
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitBreakerOpenError) as info:
        await breaker.call(ok)
    assert info.value.retry_after_s == pytest.approx(60.0)
    assert [new for _, _, new in rec.transitions] == [State.OPEN, State.HALF_OPEN, State.OPEN]


async def test_busy_half_open_rejects_extra_callers() -> None:
    """With one probe in flight, a second caller fails fast with state half_open."""
    breaker, clock, _ = make(threshold=1, timeout=5.0)
    await fail(breaker)
    clock.advance(5.0)
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "probe"

    probe = asyncio.create_task(breaker.call(slow))
    await asyncio.sleep(0)
    with pytest.raises(CircuitBreakerOpenError) as info:
        await breaker.call(ok)
    assert info.value.details["state"] == "half_open"
    gate.set()
    assert await probe == "probe"
    assert breaker.state is State.CLOSED


@pytest.mark.parametrize("probes", [1, 3])
async def test_concurrent_callers_in_half_open_reach_the_backend_exactly_probes_times(
    probes: int,
) -> None:
    """150 concurrent tasks on a HALF_OPEN breaker: exactly half_open_max_calls get through."""
    breaker, clock, _ = make(threshold=1, timeout=1.0, probes=probes)
    await fail(breaker)
    clock.advance(1.0)
    reached = 0
    gate = asyncio.Event()

    async def backend() -> str:
        nonlocal reached
        reached += 1
        await gate.wait()
        return "ok"

    tasks = [asyncio.create_task(breaker.call(backend)) for _ in range(150)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert reached == probes
    assert sum(r == "ok" for r in results) == probes
    assert sum(isinstance(r, CircuitBreakerOpenError) for r in results) == 150 - probes
    assert breaker.state is State.CLOSED


async def test_cancelled_probe_frees_its_slot() -> None:
    """A probe cancelled mid-call counts nothing and lets the next caller probe."""
    breaker, clock, _ = make(threshold=1, timeout=1.0)
    await fail(breaker)
    clock.advance(1.0)

    async def hang() -> None:
        await asyncio.Event().wait()

    probe = asyncio.create_task(breaker.call(hang))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state is State.HALF_OPEN
    assert await breaker.call(ok) == "ok"
    assert state_of(breaker) is State.CLOSED


async def test_excluded_probe_error_frees_the_slot_and_keeps_half_open() -> None:
    """A caller error during the probe proves nothing: still HALF_OPEN, slot free."""
    breaker, clock, _ = make(threshold=1, timeout=1.0)
    await fail(breaker)
    clock.advance(1.0)
    with pytest.raises(UniqueViolationError):
        await breaker.call(fail_with, UniqueViolationError())
    assert breaker.state is State.HALF_OPEN
    assert breaker.snapshot().half_open_in_flight == 0
    assert await breaker.call(ok) == "ok"


async def test_outcome_of_a_call_admitted_before_a_transition_is_ignored() -> None:
    """A slow call admitted while CLOSED cannot close a breaker that tripped meanwhile."""
    breaker, _, rec = make(threshold=2)
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "late"

    straggler = asyncio.create_task(breaker.call(slow))
    await asyncio.sleep(0)
    await fail(breaker, 2)
    gate.set()
    assert await straggler == "late"
    assert breaker.state is State.OPEN
    assert rec.outcomes()[-1] is CallOutcome.IGNORED


async def test_late_probe_failure_does_not_reopen_a_closed_breaker() -> None:
    """With 2 probes, the first success closes; the second probe's failure is ignored."""
    breaker, clock, _ = make(threshold=1, timeout=1.0, probes=2)
    await fail(breaker)
    clock.advance(1.0)
    gate = asyncio.Event()

    async def slow_failure() -> None:
        await gate.wait()
        raise BackendConnectionError

    second = asyncio.create_task(breaker.call(slow_failure))
    await asyncio.sleep(0)
    assert await breaker.call(ok) == "ok"
    gate.set()
    with pytest.raises(BackendConnectionError):
        await second
    assert breaker.state is State.CLOSED
    assert breaker.failure_count == 0


# ------------------------------------------------------------------ failure-rate rule
async def test_failure_rate_rule_trips_on_intermittent_failures() -> None:
    """Alternating failures never reach 5 in a row, but 50 % of 10 calls trips the rate rule."""
    breaker, _, _ = make(threshold=5, failure_rate_threshold=0.5, window_size=10, minimum_calls=10)
    for _ in range(4):
        await breaker.call(ok)
        await fail(breaker)
    assert breaker.state is State.CLOSED  # 8 calls < minimum_calls
    await breaker.call(ok)
    await fail(breaker)
    assert state_of(breaker) is State.OPEN
    assert breaker.snapshot().failure_rate == pytest.approx(0.5)


async def test_failure_rate_window_slides() -> None:
    """Old failures leave the window: 4 early failures then successes never trip at 50 %."""
    breaker, _, _ = make(
        threshold=100, failure_rate_threshold=0.5, window_size=10, minimum_calls=10
    )
    await fail(breaker, 4)
    for _ in range(20):
        await breaker.call(ok)
    await fail(breaker, 4)
    assert breaker.state is State.CLOSED
    assert breaker.snapshot().failure_rate == pytest.approx(0.4)


# ---------------------------------------------------------------------- call styles
async def test_async_with_counts_and_reraises_the_original_error() -> None:
    """`async with breaker:` counts failures, trips, and then refuses to enter."""
    breaker, _, _ = make(threshold=2)
    async with breaker:
        pass
    for _ in range(2):
        with pytest.raises(BackendConnectionError):
            async with breaker:
                raise BackendConnectionError
    entered = False
    with pytest.raises(CircuitBreakerOpenError):
        async with breaker:
            entered = True
    assert entered is False


async def test_async_with_keeps_concurrent_tasks_apart() -> None:
    """Each task's `async with` exits with its own admission, in any interleaving."""
    breaker, clock, _ = make(threshold=1, timeout=1.0)
    gate = asyncio.Event()

    async def user(fail_it: bool) -> None:
        async with breaker:
            await gate.wait()
            if fail_it:
                raise BackendConnectionError

    slow_ok = asyncio.create_task(user(False))
    await asyncio.sleep(0)
    with pytest.raises(BackendConnectionError):
        async with breaker:
            raise BackendConnectionError
    assert breaker.state is State.OPEN
    gate.set()
    await slow_ok  # admitted before the trip: its success must not close the breaker
    assert breaker.state is State.OPEN
    clock.advance(1.0)
    async with breaker:
        pass
    assert state_of(breaker) is State.CLOSED


async def test_decorator_guards_and_keeps_the_function_name() -> None:
    """`@breaker` wraps an async function; calls are counted like breaker.call."""
    breaker, _, _ = make(threshold=1)

    @breaker
    async def fetch(key: str) -> str:
        if key == "bad":
            raise BackendConnectionError
        return key.upper()

    assert fetch.__name__ == "fetch"
    assert await fetch("a") == "A"
    with pytest.raises(BackendConnectionError):
        await fetch("bad")
    with pytest.raises(CircuitBreakerOpenError):
        await fetch("a")


async def test_plain_function_returning_a_coroutine_is_awaited() -> None:
    """Like redis-py commands: a sync callable that returns a coroutine works."""
    breaker, _, _ = make()

    def command(value: int) -> Any:
        return asyncio.sleep(0, result=value * 2)

    assert await breaker.call(command, 21) == 42


async def test_non_awaitable_return_is_a_clear_type_error_and_not_counted() -> None:
    """Returning a plain value is a programming error named in the message."""
    breaker, _, _ = make(threshold=1)

    def not_async() -> int:
        return 5

    with pytest.raises(TypeError, match="not_async returned int, which is not awaitable"):
        await breaker.call(not_async)  # type: ignore[arg-type]  # the misuse under test
    assert breaker.state is State.CLOSED


# ------------------------------------------------------------------- observability
async def test_snapshot_reports_state_counts_and_retry_after() -> None:
    """snapshot() is a consistent view; to_dict() is JSON-ready."""
    breaker, clock, _ = make(threshold=2, timeout=10.0)
    await fail(breaker, 2)
    clock.advance(4.0)
    snap = breaker.snapshot()
    assert snap.state is State.OPEN
    assert snap.failure_count == 2
    assert snap.retry_after_s == pytest.approx(6.0)
    assert snap.opened_at is not None
    as_dict = snap.to_dict()
    assert as_dict["state"] == "open"
    assert isinstance(as_dict["opened_at"], str)


async def test_failing_observer_does_not_break_the_call(caplog: pytest.LogCaptureFixture) -> None:
    """An observer that raises is logged and skipped; the call's result is unchanged."""

    class Broken:
        def on_state_change(self, name: str, old: BreakerState, new: BreakerState) -> None:
            raise RuntimeError("observer bug")

        def on_call(self, name: str, outcome: CallOutcome) -> None:
            raise RuntimeError("observer bug")

    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1), name="x", hooks=[Broken()])
    with caplog.at_level(logging.WARNING, logger="infra.resilience"):
        assert await breaker.call(ok) == "ok"
        with pytest.raises(BackendConnectionError):
            await breaker.call(fail_with, BackendConnectionError())
    assert breaker.state is State.OPEN
    assert "observer" in caplog.text


async def test_reset_and_force_open() -> None:
    """Operators can force the breaker open and close it again."""
    breaker, _, rec = make()
    breaker.force_open()
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.call(ok)
    breaker.reset()
    assert breaker.state is State.CLOSED
    assert await breaker.call(ok) == "ok"
    assert [new for _, _, new in rec.transitions] == [State.OPEN, State.CLOSED]


async def test_real_clock_recovery_cycle() -> None:
    """With the default monotonic clock: open, wait the (short) timeout, probe, close.

    Short, but not 20 ms: one scheduling stall that long between the two first calls
    let the breaker go half-open before the "still open" check on a loaded machine."""
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1, timeout=0.5), name="rt")
    with pytest.raises(BackendConnectionError):
        await breaker.call(fail_with, BackendConnectionError())
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.call(ok)
    await asyncio.sleep(0.5)
    assert await breaker.call(ok) == "ok"
    assert breaker.state is State.CLOSED


def test_repr_and_describe_are_one_readable_line() -> None:
    """repr names the breaker, its state and its thresholds."""
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=5, timeout=60), name="pg")
    assert breaker.describe() == "breaker(5 failed calls / 60s, 1 probe)"
    assert repr(breaker) == (
        "CircuitBreaker(name='pg', state=closed, failure_count=0, 5 failed calls / 60s, 1 probe)"
    )
    per_attempt = CircuitBreakerConfig(failure_threshold=5, count_retried_attempts=True)
    assert per_attempt.describe() == "5 failed attempts / 60s, 1 probe"


def test_count_retried_attempts_must_be_a_bool() -> None:
    """A non-bool count_retried_attempts is a TypeError naming the field."""
    with pytest.raises(TypeError, match="count_retried_attempts"):
        CircuitBreakerConfig(count_retried_attempts=1)  # type: ignore[arg-type]


# ------------------------------------------------------- deferred attempts (policies)
async def test_deferred_attempt_failure_moves_no_count_until_the_call_gives_up() -> None:
    """record_attempt reports the failure; only record_give_up adds to the count."""
    breaker, _, rec = make(threshold=2)
    first = breaker.admit()
    breaker.record_attempt(first, BackendConnectionError())
    assert breaker.failure_count == 0
    assert rec.outcomes() == [CallOutcome.FAILURE]
    second = breaker.admit()
    breaker.record_attempt(second, BackendConnectionError())
    breaker.record_give_up(second, BackendConnectionError())
    assert breaker.failure_count == 1
    assert breaker.state is State.CLOSED
    ticket = breaker.admit()
    breaker.record_attempt(ticket, BackendConnectionError())
    breaker.record_give_up(ticket, BackendConnectionError())
    assert state_of(breaker) is State.OPEN


async def test_deferred_attempt_then_success_resets_the_count() -> None:
    """A retry that succeeds after a deferred failure is a success for the breaker."""
    breaker, _, _ = make(threshold=2)
    ticket = breaker.admit()
    breaker.record_attempt(ticket, BackendConnectionError())
    breaker.record_give_up(ticket, BackendConnectionError())
    assert breaker.failure_count == 1
    retried = breaker.admit()
    breaker.record_attempt(retried, BackendConnectionError())
    breaker.record(breaker.admit())
    assert breaker.failure_count == 0


async def test_give_up_with_an_uncounted_error_or_a_stale_ticket_counts_nothing() -> None:
    """Excluded or cancelled final errors, and tickets from before a transition, are ignored."""
    breaker, _, _ = make(threshold=1)
    ticket = breaker.admit()
    breaker.record_attempt(ticket, BackendConnectionError())
    breaker.record_give_up(ticket, QuerySyntaxError("bad"))
    breaker.record_give_up(ticket, asyncio.CancelledError())
    assert breaker.failure_count == 0
    stale = breaker.admit()
    breaker.force_open()
    breaker.reset()
    breaker.record_give_up(stale, BackendConnectionError())
    assert breaker.state is State.CLOSED
    assert breaker.failure_count == 0


async def test_deferred_attempts_still_fill_the_failure_rate_window() -> None:
    """The rate rule sees every attempt, deferred or not, and can trip on its own."""
    breaker, _, _ = make(threshold=100, failure_rate_threshold=0.5, window_size=4, minimum_calls=4)
    for _ in range(2):
        breaker.record(breaker.admit())
        breaker.record_attempt(breaker.admit(), BackendConnectionError())
    assert breaker.state is State.OPEN
    assert breaker.failure_count == 0


async def test_deferred_probe_failure_reopens_at_once() -> None:
    """A half-open probe that fails reopens the breaker even when the caller may retry."""
    breaker, clock, _ = make(threshold=1, timeout=10.0)
    breaker.force_open()
    clock.advance(10.0)
    probe = breaker.admit()
    breaker.record_attempt(probe, BackendConnectionError())
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitBreakerOpenError):
        breaker.admit()


async def test_pool_exhaustion_neither_trips_nor_resets_the_breaker() -> None:
    """An exhausted pool is our own overload, not a database outage: it is excluded."""
    from infra.exceptions import PoolExhaustedError

    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1), name="postgres")

    async def exhausted() -> None:
        raise PoolExhaustedError(component="postgres")

    for _ in range(5):
        with pytest.raises(PoolExhaustedError):
            await breaker.call(exhausted)
    assert breaker.state == BreakerState.CLOSED
    assert breaker.failure_count == 0

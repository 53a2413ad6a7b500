"""Clocks and observers: the small pieces every resilience layer leans on.

ManualClock records each requested sleep, never goes backwards, and yields to the loop
on every sleep; MonotonicClock never sleeps a negative time. An observer that raises is
logged and skipped -- the others still get the event and the call's own outcome stands.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from infra.exceptions import BackendConnectionError, CircuitBreakerOpenError
from infra.resilience import (
    CircuitBreaker,
    CircuitBreakerConfig,
    ManualClock,
    RetryConfig,
    RetryPolicy,
)
from infra.resilience.clock import Clock, MonotonicClock
from infra.resilience.hooks import (
    BreakerObserver,
    BreakerState,
    CallOutcome,
    GiveUpReason,
    RecordingObserver,
    ResilienceObserver,
    RetryObserver,
    notify,
)


async def test_manual_clock_sleeps_advance_time_and_are_recorded() -> None:
    clock = ManualClock(start=5.0)
    assert clock.now() == 5.0
    await clock.sleep(1.5)
    await clock.sleep(-3.0)  # a negative request sleeps zero
    await clock.sleep(0.25)
    assert clock.sleeps == [1.5, 0.0, 0.25]
    assert clock.now() == 6.75
    clock.advance(0.25)
    assert clock.now() == 7.0
    assert clock.sleeps == [1.5, 0.0, 0.25]  # advancing is not sleeping
    assert repr(clock) == "ManualClock(now=7.0)"


def test_manual_clock_never_goes_backwards() -> None:
    clock = ManualClock()
    clock.advance(0)
    with pytest.raises(ValueError, match=r"seconds must be >= 0, got -0\.5"):
        clock.advance(-0.5)
    assert clock.now() == 0.0


async def test_manual_clock_sleep_lets_other_tasks_run() -> None:
    clock = ManualClock()
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    task = asyncio.create_task(other())
    await clock.sleep(0)
    assert ran == ["other"]
    await task


async def test_monotonic_clock_is_real_time_and_never_sleeps_negative() -> None:
    clock = MonotonicClock()
    assert isinstance(clock, Clock)
    before = time.monotonic()
    assert before <= clock.now() <= time.monotonic()
    await clock.sleep(-10.0)  # returns at once instead of raising
    assert repr(clock) == "MonotonicClock()"


# ------------------------------------------------------------------------ observers
class Exploding:
    def on_state_change(self, name: str, old: object, new: object) -> None:
        raise RuntimeError("observer bug")

    def on_call(self, name: str, outcome: CallOutcome) -> None:
        raise RuntimeError("observer bug")

    def on_retry(self, name: str, attempt: int, delay: float, error: BaseException) -> None:
        raise RuntimeError("observer bug")

    def on_give_up(
        self, name: str, attempts: int, reason: GiveUpReason, error: BaseException
    ) -> None:
        raise RuntimeError("observer bug")


def test_notify_delivers_to_every_observer_and_logs_a_failing_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, broken, last = RecordingObserver(), Exploding(), RecordingObserver()
    with caplog.at_level(logging.WARNING, logger="infra.resilience"):
        observers: list[ResilienceObserver] = [first, broken, last]
        notify(observers, lambda o: o.on_call("db", CallOutcome.SUCCESS))
    assert first.calls == last.calls == [("db", CallOutcome.SUCCESS)]
    [record] = [r for r in caplog.records if r.name == "infra.resilience"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"resilience observer {broken!r} raised; event dropped"
    assert record.exc_info  # the traceback is logged (exc_info=False would leave False)
    assert record.exc_info[0] is RuntimeError


async def test_a_failing_observer_changes_no_outcome(caplog: pytest.LogCaptureFixture) -> None:
    rec = RecordingObserver()
    clock = ManualClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold=1), name="db", clock=clock, hooks=[Exploding(), rec]
    )
    retry = RetryPolicy(
        RetryConfig(max_attempts=2, jitter=False), name="db", clock=clock, hooks=[Exploding(), rec]
    )
    error = BackendConnectionError(component="db")

    async def down() -> None:
        raise error

    with pytest.raises(CircuitBreakerOpenError):  # attempt 2 met the breaker it opened
        await retry.execute(breaker.call, down)
    assert rec.transitions == [("db", BreakerState.CLOSED, BreakerState.OPEN)]
    assert [(r[1], r[3]) for r in rec.retries] == [(1, error)]
    assert rec.give_ups[0][1:3] == (2, GiveUpReason.NOT_RETRYABLE)  # the open breaker's error
    assert rec.outcomes() == [CallOutcome.FAILURE, CallOutcome.REJECTED]
    assert len([r for r in caplog.records if "event dropped" in r.getMessage()]) >= 4


def test_the_recording_observer_satisfies_every_protocol() -> None:
    rec = RecordingObserver()
    assert isinstance(rec, BreakerObserver)
    assert isinstance(rec, RetryObserver)
    assert isinstance(rec, ResilienceObserver)
    rec.on_call("a", CallOutcome.FAILURE)
    rec.on_call("b", CallOutcome.IGNORED)
    assert rec.outcomes() == [CallOutcome.FAILURE, CallOutcome.IGNORED]


async def test_monotonic_sleep_of_nothing_only_yields_once() -> None:
    """A zero or negative sleep is one trip through the loop, not a real wait.

    Counted in loop iterations a concurrent task makes meanwhile (no wall-clock bound).
    """
    spins = 0
    stop = False

    async def spin() -> None:
        nonlocal spins
        while not stop:
            spins += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(spin())
    await asyncio.sleep(0)
    before = spins
    await MonotonicClock().sleep(-1.0)
    await MonotonicClock().sleep(0.0)
    stop = True
    await task
    assert spins - before <= 4


def test_the_event_values_are_the_documented_strings() -> None:
    """Metrics labels, snapshots and logs carry these exact strings."""
    assert [s.value for s in BreakerState] == ["closed", "open", "half_open"]
    assert [o.value for o in CallOutcome] == [
        "success",
        "failure",
        "excluded",
        "rejected",
        "cancelled",
        "ignored",
    ]
    assert [r.value for r in GiveUpReason] == [
        "not_retryable",
        "attempts_exhausted",
        "deadline",
        "budget_exhausted",
        "callback_failed",  # on_retry raised: its error stops the retries
    ]
    assert f"{CallOutcome.REJECTED}" == "rejected"  # StrEnum: formats as its value

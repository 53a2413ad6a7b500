"""Observers see every call a breaker records, and never change what it decides.

The breaker's happy path skips its bookkeeping when a success changes nothing (closed, no
failures counted, no rate window); observers must still hear of each such success. Run
the same generated sequence of admissions, outcomes and clock steps through a breaker
with an observer and one without: the decisions (admitted or rejected, the state after
each step) are the same, and the observer heard one outcome per admitted or rejected call,
in order.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from hypothesis import given
from hypothesis import strategies as st

from infra.exceptions import BackendConnectionError, CircuitBreakerOpenError, QuerySyntaxError
from infra.resilience import CircuitBreaker, CircuitBreakerConfig, ManualClock
from infra.resilience.hooks import CallOutcome, RecordingObserver

Step = Literal["success", "failure", "excluded", "tick"]

EXPECTED = {
    "success": CallOutcome.SUCCESS,
    "failure": CallOutcome.FAILURE,
    "excluded": CallOutcome.EXCLUDED,
}


async def steps_through(
    steps: list[Step], *, observed: bool
) -> tuple[list[str], RecordingObserver]:
    """The breaker's decision after each step, and what its observer heard (in a task:
    a half-open probe belongs to the task that makes it)."""
    clock = ManualClock()
    recorder = RecordingObserver()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold=2, timeout=5.0),
        name="db",
        clock=clock,
        hooks=[recorder] if observed else [],
    )
    decisions = []
    for step in steps:
        if step == "tick":
            clock.advance(3.0)
            decisions.append(f"tick {breaker.state}")
            continue
        try:
            ticket = breaker.admit()
        except CircuitBreakerOpenError:
            decisions.append(f"rejected {breaker.state}")
            continue
        error = {
            "success": None,
            "failure": BackendConnectionError("down"),
            "excluded": QuerySyntaxError("bad query"),
        }[step]
        breaker.record(ticket, error)
        decisions.append(f"{step} {breaker.state}")
    return decisions, recorder


def run(steps: list[Step], *, observed: bool) -> tuple[list[str], RecordingObserver]:
    return asyncio.run(steps_through(steps, observed=observed))


@given(st.lists(st.sampled_from(["success", "failure", "excluded", "tick"]), max_size=40))
def test_observers_hear_every_outcome_and_change_no_decision(steps: list[Step]) -> None:
    """Same decisions with and without an observer; one event per call, in order."""
    with_observer, recorder = run(steps, observed=True)
    without, _ = run(steps, observed=False)
    assert with_observer == without
    heard = [
        CallOutcome.REJECTED if d.startswith("rejected") else EXPECTED[d.split()[0]]
        for d in with_observer
        if not d.startswith("tick")
    ]
    assert recorder.outcomes() == heard


def test_a_steady_closed_breaker_reports_each_success() -> None:
    """The quiet path (closed, nothing counted) still tells observers of every success."""
    decisions, recorder = run(["success"] * 5, observed=True)
    assert decisions == ["success closed"] * 5
    assert recorder.outcomes() == [CallOutcome.SUCCESS] * 5

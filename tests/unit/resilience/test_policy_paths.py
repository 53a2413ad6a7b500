"""ResiliencePolicy's inline first attempt makes the same decisions as the general path.

``execute`` runs the first attempt inline (no coroutine per layer) unless a fallback or
an overall timer needs the general path. A fallback that never triggers leaves every
decision unchanged, so the two paths are compared on the same sequence of calls.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from infra.exceptions import (
    BackendConnectionError,
    InfraError,
    QuerySyntaxError,
)
from infra.resilience.breaker import CircuitBreakerConfig
from infra.resilience.clock import ManualClock
from infra.resilience.fallback import Fallback
from infra.resilience.hooks import RecordingObserver
from infra.resilience.policy import BulkheadConfig, ResiliencePolicy
from infra.resilience.retry import RetryConfig


class Script:
    """Raises the scripted errors in order (``None`` = answer "ok")."""

    def __init__(self, *outcomes: BaseException | None) -> None:
        self.outcomes = list(outcomes)

    async def __call__(self) -> str:
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "ok"


def transient() -> BackendConnectionError:
    return BackendConnectionError("transient")


def make(*, general: bool) -> tuple[ResiliencePolicy, RecordingObserver]:
    rec = RecordingObserver()
    policy = ResiliencePolicy.instant(
        "p",
        breaker=CircuitBreakerConfig(failure_threshold=2),
        retry=RetryConfig(max_attempts=3, jitter=False),
        retry_budget_ratio=0.5,
        bulkhead=BulkheadConfig(4),
        timeout=30.0,
        attempt_timeout=5.0,
        hooks=[rec],
        # on an error that never occurs: forces the general path, changes no decision
        fallback=Fallback.value("unused", on=(QuerySyntaxError,)) if general else None,
    )
    return policy, rec


async def run_sequence(policy: ResiliencePolicy) -> list[Any]:
    outcomes: list[Any] = []
    with contextlib.suppress(TypeError):
        await policy.execute(lambda: 42)  # type: ignore[arg-type,return-value]  # misuse
    scripts = [
        Script(None),
        Script(transient(), None),
        Script(transient(), transient(), transient()),
        Script(ValueError("not retryable, counted")),
        Script(None),  # refused: the breaker is open now
    ]
    for script in scripts:
        try:
            outcomes.append(await policy.execute(script))
        except (InfraError, ValueError) as exc:
            outcomes.append(type(exc).__name__)
    return outcomes


async def test_inline_and_general_paths_decide_and_report_alike() -> None:
    """Results, observer events, retry stats and budget agree between the two paths."""
    inline, inline_rec = make(general=False)
    general, general_rec = make(general=True)
    assert await run_sequence(inline) == await run_sequence(general)
    assert inline_rec.transitions == general_rec.transitions
    assert inline_rec.outcomes() == general_rec.outcomes()
    assert [r[:3] for r in inline_rec.retries] == [r[:3] for r in general_rec.retries]
    assert [g[:3] for g in inline_rec.give_ups] == [g[:3] for g in general_rec.give_ups]
    assert inline.retry is not None
    assert general.retry is not None
    assert inline.retry.stats == general.retry.stats
    assert inline.retry.stats.executions == 6
    assert inline.retry.budget is not None
    assert general.retry.budget is not None
    assert inline.retry.budget.available == general.retry.budget.available


async def test_the_retry_plans_within_the_overall_deadline_from_the_call_start() -> None:
    """Overall 10 s; attempts take 3 s of virtual time and fail; 2.5 s backoff. After the
    second attempt (t = 8.5 s) a sleep would cross the deadline, so the retry gives up
    with the real error -- although it took over only after the inline first attempt."""
    for general in (False, True):
        policy = ResiliencePolicy.instant(
            retry=RetryConfig(max_attempts=5, base_delay=2.5, exponential_base=1.0, jitter=False),
            timeout=10.0,
            attempt_timeout=4.0,
            fallback=Fallback.value("unused", on=(QuerySyntaxError,)) if general else None,
        )
        clock = policy.clock
        assert isinstance(clock, ManualClock)
        calls = 0

        async def slow_failure(clock: ManualClock = clock) -> None:
            nonlocal calls
            calls += 1
            clock.advance(3.0)
            raise transient()

        with pytest.raises(InfraError) as info:
            await policy.execute(slow_failure)
        assert type(info.value) is BackendConnectionError, general
        assert calls == 2
        assert clock.sleeps == [2.5]
        calls = 0

"""Passing a callable that returns something not awaitable is the caller's mistake.

Every layer that calls "any awaitable-returning callable" (breaker, retry, the whole
policy) answers it with a ``TypeError`` naming the callable (its qualified name, else its
name, else its repr) and what it returned, chained from the bare ``await`` error; the
breaker does not count it, the retry does not retry it.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from infra.resilience import (
    CircuitBreaker,
    CircuitBreakerConfig,
    ManualClock,
    RetryConfig,
    RetryPolicy,
)
from infra.resilience.hooks import CallOutcome, RecordingObserver
from infra.resilience.policy import ResiliencePolicy


def sync_answer() -> int:
    return 42


class Service:
    def lookup(self) -> str:
        return "not awaitable"


class NamedOnly:
    """A callable carrying ``__name__`` but no ``__qualname__``."""

    __name__ = "named_only"

    def __call__(self) -> list[int]:
        return [1]


def _outer() -> Any:
    def inner() -> None:
        return None

    return inner


CASES = [
    (sync_answer, "sync_answer returned int"),
    (Service().lookup, "Service.lookup returned str"),
    (_outer(), "_outer.<locals>.inner returned NoneType"),
    (NamedOnly(), "named_only returned list"),
    (functools.partial(sync_answer), "functools.partial(<function sync_answer"),
]


async def run_breaker(fn: Any) -> tuple[TypeError, RecordingObserver, CircuitBreaker]:
    rec = RecordingObserver()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold=1), name="db", clock=ManualClock(), hooks=[rec]
    )
    with pytest.raises(TypeError) as raised:
        await breaker.call(fn)
    return raised.value, rec, breaker


@pytest.mark.parametrize(("fn", "start"), CASES, ids=lambda c: str(c)[:20])
async def test_the_breaker_names_the_callable_and_counts_nothing(fn: Any, start: str) -> None:
    error, rec, breaker = await run_breaker(fn)
    assert str(error).startswith(start)
    assert "which is not awaitable; pass an async function" in str(error)
    assert isinstance(error.__cause__, TypeError)
    assert rec.outcomes() == [CallOutcome.EXCLUDED]
    assert breaker.failure_count == 0


@pytest.mark.parametrize(("fn", "start"), CASES[:2], ids=["function", "method"])
async def test_the_retry_does_not_retry_a_misuse(fn: Any, start: str) -> None:
    rec = RecordingObserver()
    clock = ManualClock()
    retry = RetryPolicy(RetryConfig(max_attempts=3), name="db", clock=clock, hooks=[rec])
    with pytest.raises(TypeError) as raised:
        await retry.execute(fn)
    assert str(raised.value).startswith(start)
    assert isinstance(raised.value.__cause__, TypeError)
    assert clock.sleeps == []
    assert rec.retries == []
    assert retry.stats.retries == 0


async def test_a_misuse_on_a_later_attempt_is_reported_too() -> None:
    clock = ManualClock()
    retry = RetryPolicy(RetryConfig(max_attempts=3, jitter=False), name="db", clock=clock)
    calls = 0

    def flaky() -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            return _fails()
        return "plain"

    with pytest.raises(TypeError, match="returned str, which is not awaitable"):
        await retry.execute(flaky)
    assert calls == 2
    assert clock.sleeps == [1.0]


async def _fails() -> None:
    raise TimeoutError


@pytest.mark.parametrize("timeouts", [False, True], ids=["inline", "general"])
async def test_the_policy_reports_it_once_and_the_breaker_counts_nothing(timeouts: bool) -> None:
    rec = RecordingObserver()
    policy = ResiliencePolicy.instant(
        "db",
        breaker=CircuitBreakerConfig(failure_threshold=1),
        retry=RetryConfig(max_attempts=3),
        timeout=5.0 if timeouts else None,
        hooks=[rec],
    )
    with pytest.raises(TypeError, match=r"^sync_answer returned int") as raised:
        await policy.execute(sync_answer)  # type: ignore[arg-type]  # the misuse under test
    assert isinstance(raised.value.__cause__, TypeError)
    assert CallOutcome.FAILURE not in rec.outcomes()
    assert rec.retries == []
    assert policy.breaker is not None
    assert policy.breaker.failure_count == 0

"""Attempts after the first go through every layer exactly like the first.

On the general path (a fallback, or an overall timeout with its own timer) and on the
inline path, a retried attempt takes its own rate-limiter token, holds a bulkhead slot
only while it runs, and ends its attempt-timeout scope: once the call has returned,
nothing of it may cancel the caller later. The presets are the documented values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from infra.exceptions import BackendConnectionError
from infra.resilience import (
    CircuitBreakerConfig,
    Fallback,
    ManualClock,
    ResiliencePolicy,
    RetryConfig,
)
from infra.resilience.policy_config import BulkheadConfig
from infra.resilience.presets import BreakerPresets, RetryPresets, breaker_preset, retry_preset
from infra.resilience.rate_limit import TokenBucketLimiter


def flaky(failures: int) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls = [0]

    async def fn() -> str:
        calls[0] += 1
        if calls[0] <= failures:
            raise BackendConnectionError(component="db")
        return "ok"

    return calls, fn


@pytest.mark.parametrize("general", [False, True], ids=["inline", "general"])
async def test_a_returned_call_never_cancels_its_caller_later(general: bool) -> None:
    """Each attempt's timeout scope ends with the attempt (real clock, 50 ms timeout)."""
    policy = ResiliencePolicy.build(
        "db",
        retry=RetryConfig(max_attempts=3, base_delay=0.0, jitter=False),
        attempt_timeout=0.05,
        fallback=Fallback.value("fallback") if general else None,
    )
    calls, fn = flaky(2)
    assert await policy.execute(fn) == "ok"
    assert calls == [3]
    await asyncio.sleep(0.2)  # past every attempt's deadline: nothing fires at us
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


@pytest.mark.parametrize("general", [False, True], ids=["inline", "general"])
async def test_every_attempt_takes_a_token_and_returns_its_slot(general: bool) -> None:
    clock = ManualClock()
    limiter = TokenBucketLimiter(rate=0.001, capacity=10, clock=clock)
    policy = ResiliencePolicy.build(
        "db",
        retry=RetryConfig(max_attempts=4, base_delay=0.0, jitter=False),
        bulkhead=BulkheadConfig(1),
        rate_limiter=limiter,
        fallback=Fallback.value("fallback") if general else None,
        clock=clock,
    )
    calls, fn = flaky(2)
    assert await policy.execute(fn) == "ok"
    assert calls == [3]
    assert limiter.available == pytest.approx(7.0)  # one token per attempt, retries too
    assert policy.bulkhead is not None
    assert (policy.bulkhead.in_flight, policy.bulkhead.queued) == (0, 0)


async def test_a_later_attempt_refused_by_the_breaker_stops_the_retries() -> None:
    policy = ResiliencePolicy.instant(
        "db",
        breaker=CircuitBreakerConfig(failure_threshold=1, count_retried_attempts=True),
        retry=RetryConfig(max_attempts=5, jitter=False),
        fallback=Fallback.value("fallback"),
    )
    calls, fn = flaky(10)
    assert await policy.execute(fn) == "fallback"
    assert calls == [1]  # the open breaker refused attempt 2 without calling fn


def test_the_presets_are_the_documented_values() -> None:
    assert CircuitBreakerConfig(failure_threshold=20, timeout=30.0) == BreakerPresets.HIGH_TRAFFIC
    assert CircuitBreakerConfig(failure_threshold=5, timeout=60.0) == BreakerPresets.LOW_TRAFFIC
    assert CircuitBreakerConfig(failure_threshold=10, timeout=120.0) == BreakerPresets.CRITICAL
    assert RetryConfig(max_attempts=5) == RetryPresets.IDEMPOTENT
    assert RetryConfig(max_attempts=1) == RetryPresets.NON_IDEMPOTENT
    assert RetryConfig(max_attempts=2, base_delay=5.0) == RetryPresets.EXPENSIVE


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("high_traffic", BreakerPresets.HIGH_TRAFFIC),
        ("Low-Traffic", BreakerPresets.LOW_TRAFFIC),
        ("  critical ", BreakerPresets.CRITICAL),
    ],
)
def test_breaker_presets_are_found_by_name(name: str, expected: CircuitBreakerConfig) -> None:
    assert breaker_preset(name) is expected


def test_retry_presets_are_found_by_name_and_unknown_names_list_the_choices() -> None:
    assert retry_preset("non-idempotent") is RetryPresets.NON_IDEMPOTENT
    assert retry_preset("EXPENSIVE") is RetryPresets.EXPENSIVE
    with pytest.raises(
        ValueError,
        match=r"^unknown RetryPresets name 'eager'; choose one of expensive, idempotent, "
        r"non_idempotent$",
    ):
        retry_preset("eager")
    with pytest.raises(ValueError, match="choose one of critical, high_traffic, low_traffic"):
        breaker_preset("")

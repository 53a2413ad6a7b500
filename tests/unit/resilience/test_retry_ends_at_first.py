"""``RetryPolicy.ends_at_first`` -- the policy's shortcut for a first attempt that ends the
call (a refusal by the open breaker, a caller error, one attempt allowed) -- records
exactly what ``RetryPolicy.execute`` records for that call, and ``ResiliencePolicy``
behaves the same through it: the same error object, stats, give-up events and budget."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.exceptions import (
    CircuitBreakerOpenError,
    DatabaseConnectionError,
    InvalidArgumentError,
)
from infra.resilience import (
    CircuitBreakerConfig,
    GiveUpReason,
    ManualClock,
    RecordingObserver,
    ResiliencePolicy,
    RetryBudget,
    RetryConfig,
    RetryPolicy,
)

ERRORS: list[Callable[[], Exception]] = [
    lambda: CircuitBreakerOpenError(component="db"),
    lambda: InvalidArgumentError("bad", argument="x", component="db"),
    lambda: DatabaseConnectionError("down", component="db"),  # retryable
    lambda: ValueError("a bug"),
]


def _retry(attempts: int, rec: RecordingObserver, clock: ManualClock) -> RetryPolicy:
    return RetryPolicy(
        RetryConfig(max_attempts=attempts, base_delay=0.0, jitter=False),
        name="db",
        clock=clock,
        budget=RetryBudget(ratio=0.2, min_per_second=1.0, clock=clock),
        hooks=[rec],
    )


@given(kind=st.integers(0, len(ERRORS) - 1), attempts=st.integers(1, 3))
async def test_ends_at_first_records_what_execute_records(kind: int, attempts: int) -> None:
    error = ERRORS[kind]()
    clock = ManualClock()
    by_execute, by_shortcut = RecordingObserver(), RecordingObserver()
    full, short = _retry(attempts, by_execute, clock), _retry(attempts, by_shortcut, clock)
    calls = 0

    async def fails() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)) as raised:
        await full.execute(fails)
    assert raised.value is error
    ended = short.ends_at_first(error)
    assert ended == (calls == 1)  # it ends exactly the calls execute stops after one try
    if ended:
        assert short.stats == full.stats
        assert by_shortcut.give_ups == by_execute.give_ups
        assert by_shortcut.retries == by_execute.retries == []
        assert short.describe() == full.describe()  # the budget saw the same call
    else:  # nothing recorded: execute() will count the call when it is handed over
        assert short.stats.executions == 0
        assert by_shortcut.give_ups == []


@given(attempts=st.integers(2, 4), calls=st.integers(1, 4))
async def test_a_refused_call_fails_fast_and_is_recorded_once(attempts: int, calls: int) -> None:
    """Through a policy with a retry layer: a call refused by the open breaker raises the
    breaker's error at once, each call counted once by the retry and reported as one
    give-up (not retryable, after 1 attempt)."""
    rec = RecordingObserver()
    policy = ResiliencePolicy.instant(
        "db",
        breaker=CircuitBreakerConfig(failure_threshold=1, timeout=60.0),
        retry=RetryConfig(max_attempts=attempts, jitter=False),
        hooks=[rec],
    )
    breaker = policy.breaker
    assert breaker is not None
    breaker.force_open()
    sent = 0

    async def backend() -> str:
        nonlocal sent
        sent += 1
        return "never"

    for _ in range(calls):
        with pytest.raises(CircuitBreakerOpenError):
            await policy.execute(backend)
    assert sent == 0
    assert [(name, n, reason) for name, n, reason, _ in rec.give_ups] == [
        ("db", 1, GiveUpReason.NOT_RETRYABLE)
    ] * calls
    assert rec.retries == []
    assert policy.retry is not None
    assert (policy.retry.stats.executions, policy.retry.stats.give_ups) == (calls, calls)

"""A retry policy's counters, observer events and notes, asserted on every path.

Each way a call can end -- success at once, success after retries, attempts exhausted
(including a policy allowing one attempt), an error that is not retryable (first or
later), the deadline, the retry budget, cancellation during a backoff -- leaves
``RetryStats`` and the observers' ``on_retry``/``on_give_up`` arguments exactly as
documented, and the error raised carries the documented ``__notes__`` line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import astuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.exceptions import BackendConnectionError, QuerySyntaxError, RateLimitedError
from infra.resilience import ManualClock, RetryConfig, RetryPolicy
from infra.resilience.budget import RetryBudget
from infra.resilience.hooks import GiveUpReason, RecordingObserver


def transient(n: int) -> BackendConnectionError:
    return BackendConnectionError(f"down #{n}", component="pg")


def policy(
    attempts: int = 3, *, deadline: float | None = None, budget: RetryBudget | None = None
) -> tuple[RetryPolicy, ManualClock, RecordingObserver]:
    clock = ManualClock()
    rec = RecordingObserver()
    config = RetryConfig(max_attempts=attempts, base_delay=1.0, jitter=False, deadline=deadline)
    return RetryPolicy(config, name="pg", clock=clock, hooks=[rec], budget=budget), clock, rec


def script(*outcomes: BaseException | str) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    """An async callable raising/returning ``outcomes`` in turn; counts its calls."""
    calls = [0]

    async def fn() -> str:
        outcome = outcomes[calls[0]]
        calls[0] += 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return calls, fn


def stats(pol: RetryPolicy) -> tuple[int, int, int, int]:
    """(executions, retries, tenacity_loops, give_ups)."""
    return astuple(pol.stats)


async def test_success_at_once_counts_one_execution_and_tells_nobody() -> None:
    pol, clock, rec = policy()
    calls, fn = script("ok")
    assert await pol.execute(fn) == "ok"
    assert calls == [1]
    assert stats(pol) == (1, 0, 0, 0)
    assert (rec.retries, rec.give_ups, clock.sleeps) == ([], [], [])


async def test_success_after_a_retry_reports_the_retry_and_no_give_up() -> None:
    pol, clock, rec = policy()
    first = transient(1)
    calls, fn = script(first, "ok")
    assert await pol.execute(fn) == "ok"
    assert calls == [2]
    assert stats(pol) == (1, 1, 1, 0)
    assert rec.retries == [("pg", 1, 1.0, first)]
    assert rec.give_ups == []
    assert clock.sleeps == [1.0]


async def test_exhausted_attempts_report_every_retry_and_one_give_up() -> None:
    pol, clock, rec = policy(attempts=3)
    errors = [transient(1), transient(2), transient(3)]
    calls, fn = script(*errors)
    with pytest.raises(BackendConnectionError) as raised:
        await pol.execute(fn)
    assert raised.value is errors[2]  # the last real error, never a wrapper
    assert calls == [3]
    assert stats(pol) == (1, 2, 1, 1)
    assert rec.retries == [("pg", 1, 1.0, errors[0]), ("pg", 2, 2.0, errors[1])]
    assert rec.give_ups == [("pg", 3, GiveUpReason.ATTEMPTS_EXHAUSTED, errors[2])]
    assert raised.value.__notes__ == ["pg: gave up after 3 attempts: max_attempts=3 reached"]
    assert clock.sleeps == [1.0, 2.0]


async def test_a_single_attempt_policy_gives_up_after_one_attempt() -> None:
    pol, clock, rec = policy(attempts=1)
    error = transient(1)
    calls, fn = script(error)
    with pytest.raises(BackendConnectionError) as raised:
        await pol.execute(fn)
    assert raised.value is error
    assert calls == [1]
    assert stats(pol) == (1, 0, 0, 1)
    assert rec.give_ups == [("pg", 1, GiveUpReason.ATTEMPTS_EXHAUSTED, error)]
    assert rec.retries == []
    assert clock.sleeps == []


async def test_a_first_error_that_is_not_retryable_gives_up_at_once() -> None:
    pol, clock, rec = policy()
    error = QuerySyntaxError("bad sql", component="pg")
    calls, fn = script(error)
    with pytest.raises(QuerySyntaxError) as raised:
        await pol.execute(fn)
    assert raised.value is error
    assert calls == [1]
    assert stats(pol) == (1, 0, 0, 1)
    assert rec.give_ups == [("pg", 1, GiveUpReason.NOT_RETRYABLE, error)]
    assert clock.sleeps == []


async def test_a_later_error_that_is_not_retryable_stops_the_loop() -> None:
    pol, _clock, rec = policy(attempts=5)
    first, second = transient(1), QuerySyntaxError("bad sql", component="pg")
    calls, fn = script(first, second)
    with pytest.raises(QuerySyntaxError) as raised:
        await pol.execute(fn)
    assert raised.value is second
    assert calls == [2]
    assert stats(pol) == (1, 1, 1, 1)
    assert rec.give_ups == [("pg", 2, GiveUpReason.NOT_RETRYABLE, second)]
    assert raised.value.__notes__ == ["pg: gave up after 2 attempts: the error is not retryable"]


async def test_the_deadline_gives_up_instead_of_sleeping_past_it() -> None:
    pol, clock, rec = policy(attempts=5, deadline=2.5)
    errors = [transient(1), transient(2)]
    calls, fn = script(*errors)
    with pytest.raises(BackendConnectionError) as raised:
        await pol.execute(fn)
    # Slept 1 s after attempt 1; a 2 s sleep after attempt 2 would end at 3 s > 2.5 s.
    assert calls == [2]
    assert clock.sleeps == [1.0]
    assert stats(pol) == (1, 1, 1, 1)
    assert rec.give_ups == [("pg", 2, GiveUpReason.DEADLINE, errors[1])]
    assert raised.value.__notes__ == [
        "pg: gave up after 2 attempts: sleeping 2s more would pass the deadline"
    ]


async def test_a_spent_budget_gives_up_before_sleeping() -> None:
    clock = ManualClock()
    budget = RetryBudget(0.1, min_per_second=0.0, clock=clock)
    rec = RecordingObserver()
    pol = RetryPolicy(
        RetryConfig(max_attempts=3, jitter=False),
        name="pg",
        clock=clock,
        budget=budget,
        hooks=[rec],
    )
    error = transient(1)
    calls, fn = script(error)
    with pytest.raises(BackendConnectionError) as raised:
        await pol.execute(fn)
    assert calls == [1]
    assert clock.sleeps == []
    assert stats(pol) == (1, 0, 1, 1)
    assert rec.give_ups == [("pg", 1, GiveUpReason.BUDGET_EXHAUSTED, error)]
    assert raised.value.__notes__ == ["pg: gave up after 1 attempt: the retry budget is exhausted"]


async def test_cancelled_during_the_backoff_is_no_give_up() -> None:
    sleeping = asyncio.Event()
    never = asyncio.Event()

    class BlockingClock(ManualClock):
        async def sleep(self, seconds: float) -> None:
            sleeping.set()
            await never.wait()

    rec = RecordingObserver()
    pol = RetryPolicy(
        RetryConfig(max_attempts=3, jitter=False), name="pg", clock=BlockingClock(), hooks=[rec]
    )
    first = transient(1)
    _calls, fn = script(first, "ok")
    task = asyncio.create_task(pol.execute(fn))
    await sleeping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stats(pol) == (1, 1, 1, 0)
    assert rec.retries == [("pg", 1, 1.0, first)]
    assert rec.give_ups == []


async def test_rate_limited_errors_wait_at_least_retry_after() -> None:
    pol, clock, rec = policy()
    error = RateLimitedError("slow down", component="llm", retry_after=7.5)
    _calls, fn = script(error, "ok")
    assert await pol.execute(fn) == "ok"
    assert clock.sleeps == [7.5]
    assert rec.retries == [("pg", 1, 7.5, error)]


@given(
    failures=st.integers(min_value=0, max_value=6),
    attempts=st.integers(min_value=1, max_value=6),
)
async def test_counters_add_up_for_any_number_of_failures(failures: int, attempts: int) -> None:
    """retries = attempts made - 1; give_ups = 1 exactly when the call failed."""
    pol, clock, rec = policy(attempts=attempts)
    errors = [transient(i) for i in range(failures)]
    calls, fn = script(*errors, "ok")
    made = min(failures + 1, attempts)
    if failures < attempts:
        assert await pol.execute(fn) == "ok"
    else:
        with pytest.raises(BackendConnectionError) as raised:
            await pol.execute(fn)
        assert raised.value is errors[attempts - 1]
    assert calls == [made]
    executions, retries, loops, give_ups = stats(pol)
    assert executions == 1
    assert retries == made - 1 == len(rec.retries) == len(clock.sleeps)
    assert loops == (1 if failures and attempts > 1 else 0)
    assert give_ups == (1 if failures >= attempts else 0) == len(rec.give_ups)
    assert [r[1] for r in rec.retries] == list(range(1, made))
    assert clock.sleeps == [min(30.0, 2.0 ** (n - 1)) for n in range(1, made)]
    if rec.give_ups:
        assert rec.give_ups[0][:3] == ("pg", attempts, GiveUpReason.ATTEMPTS_EXHAUSTED)


async def test_every_execution_is_deposited_in_the_budget() -> None:
    clock = ManualClock()
    budget = RetryBudget(1.0, min_per_second=0.0, clock=clock)
    pol = RetryPolicy(RetryConfig(max_attempts=3, jitter=False), clock=clock, budget=budget)
    _calls, fn = script("ok")
    assert await pol.execute(fn) == "ok"
    assert budget.available == 1  # one call made: one retry allowed at ratio 1
    _calls, fn = script(transient(1), "ok")
    assert await pol.execute(fn) == "ok"
    assert budget.available == 1  # two calls, one retry spent


def test_the_policy_checks_its_collaborators() -> None:
    with pytest.raises(TypeError, match="config must be a RetryConfig, got"):
        RetryPolicy({"max_attempts": 2})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="budget must be a RetryBudget or None, got"):
        RetryPolicy(budget=0.2)  # type: ignore[arg-type]


def test_the_documented_defaults() -> None:
    config = RetryConfig()
    assert (config.max_attempts, config.base_delay, config.max_delay) == (3, 1.0, 30.0)
    assert (config.exponential_base, config.jitter, config.deadline) == (2.0, True, None)
    assert astuple(RetryPolicy().stats) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be an integer >= 1, got 0"),
        ({"base_delay": -1}, "base_delay must be a finite number >= 0, got -1"),
        ({"max_delay": float("inf")}, "max_delay must be a finite number >= 0, got inf"),
        ({"exponential_base": 0.5}, "exponential_base must be a finite number >= 1, got 0.5"),
        ({"deadline": -2}, "deadline must be a finite number >= 0, got -2"),
        ({"deadline": 0}, "deadline must be > 0 seconds, or None for no deadline"),
        ({"base_delay": 2, "max_delay": 1}, "max_delay (1) must be >= base_delay (2)"),
    ],
)
def test_bad_values_name_the_field(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match="must be") as raised:
        RetryConfig(**kwargs)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_edges_and_normalisation() -> None:
    assert RetryConfig(base_delay=0, max_delay=0.5).backoff(3) == 0.0
    config = RetryConfig(deadline=5, base_delay=1, max_delay=2, exponential_base=3)
    assert config.deadline == 5.0
    assert all(
        isinstance(v, float)
        for v in (config.deadline, config.base_delay, config.max_delay, config.exponential_base)
    )
    with pytest.raises(TypeError, match="jitter must be a bool, got 1"):
        RetryConfig(jitter=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempt must be >= 1, got 0"):
        RetryConfig().backoff(0)

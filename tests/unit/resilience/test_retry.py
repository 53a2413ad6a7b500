"""RetryPolicy and RetryBudget: delays, what is retried, what is raised, and when we stop."""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.exceptions import (
    BackendConnectionError,
    CircuitBreakerOpenError,
    QuerySyntaxError,
    RateLimitedError,
    SerializationFailureError,
)
from infra.resilience.budget import RetryBudget
from infra.resilience.clock import ManualClock, MonotonicClock
from infra.resilience.hooks import GiveUpReason, RecordingObserver
from infra.resilience.retry import RetryConfig, RetryPolicy, default_retryable
from infra.resilience.timeout import Timeout


class Backend:
    """Fails with the given errors in order, then succeeds; counts calls."""

    def __init__(self, *errors: BaseException, result: str = "ok") -> None:
        self.errors = list(errors)
        self.calls = 0
        self.result = result

    async def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def conn_errors(n: int) -> list[BackendConnectionError]:
    return [BackendConnectionError(f"down #{i}") for i in range(n)]


def policy(clock: ManualClock | None = None, **config: Any) -> RetryPolicy:
    config.setdefault("jitter", False)
    return RetryPolicy(RetryConfig(**config), clock=clock or ManualClock())


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", 2.5),
        ("base_delay", -1),
        ("max_delay", float("nan")),
        ("exponential_base", 0.5),
        ("deadline", 0),
        ("deadline", -3),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    """Each invalid field raises ValueError whose message names that field."""
    with pytest.raises(ValueError, match=field):
        RetryConfig(**{field: value})  # type: ignore[arg-type]


def test_config_rejects_max_delay_below_base_delay() -> None:
    """A cap below the first delay is a misconfiguration, reported with both values."""
    with pytest.raises(ValueError, match=r"max_delay \(1\) must be >= base_delay \(2\)"):
        RetryConfig(base_delay=2, max_delay=1)


def test_spec_config_backs_off_1_2_4_and_caps() -> None:
    """The design's config: 1 s, 2 s, 4 s ... never above max_delay."""
    config = RetryConfig(max_attempts=10, base_delay=1.0, exponential_base=2.0, max_delay=30.0)
    assert [config.backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert config.backoff(10_000) == 30.0  # no OverflowError


configs = st.builds(
    RetryConfig,
    max_attempts=st.integers(1, 20),
    base_delay=st.floats(0, 10),
    max_delay=st.floats(10, 120),
    exponential_base=st.floats(1, 5),
    jitter=st.booleans(),
)


@given(config=configs, attempt=st.integers(1, 2000), seed=st.integers(0, 2**32))
def test_delays_stay_within_documented_bounds(config: RetryConfig, attempt: int, seed: int) -> None:
    """Without jitter d = min(max, base*exp^(n-1)); with equal jitter d/2 <= delay <= d."""
    nominal = config.backoff(attempt)
    try:
        growth = config.exponential_base ** (attempt - 1)
    except OverflowError:
        growth = math.inf
    expected = 0.0 if config.base_delay == 0 else min(config.max_delay, config.base_delay * growth)
    assert nominal == pytest.approx(expected)
    assert 0 <= nominal <= config.max_delay
    delay = RetryPolicy(config, rng=random.Random(seed)).delay_for(attempt)
    if config.jitter:
        assert nominal / 2 <= delay <= nominal
    else:
        assert delay == nominal


@given(config=configs, attempt=st.integers(1, 200))
def test_nominal_backoff_never_shrinks(config: RetryConfig, attempt: int) -> None:
    """Each nominal delay is at least the previous one."""
    assert config.backoff(attempt + 1) >= config.backoff(attempt)


@given(attempt=st.integers(1, 30), retry_after=st.floats(0, 500))
def test_retry_after_is_a_lower_bound_on_the_delay(attempt: int, retry_after: float) -> None:
    """A RateLimitedError's retry_after wins over a shorter backoff, even beyond max_delay."""
    delay = RetryPolicy(RetryConfig()).delay_for(attempt, RateLimitedError(retry_after=retry_after))
    assert delay >= retry_after


# ------------------------------------------------------------------------- execution
async def test_retries_with_delays_1_2_4_on_the_injected_clock() -> None:
    """Four failing attempts sleep exactly 1, 2, 4 s of virtual time; the fifth succeeds."""
    clock = ManualClock()
    backend = Backend(*conn_errors(4))
    assert await policy(clock, max_attempts=5).execute(backend) == "ok"
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]
    assert backend.calls == 5


async def test_arguments_are_passed_to_every_attempt() -> None:
    """Positional and keyword arguments reach fn on each attempt."""
    seen: list[tuple[Any, ...]] = []

    async def fn(a: int, *, b: str) -> str:
        seen.append((a, b))
        if len(seen) < 2:
            raise BackendConnectionError
        return f"{a}{b}"

    assert await policy().execute(fn, 1, b="x") == "1x"
    assert seen == [(1, "x"), (1, "x")]


async def test_last_real_error_is_raised_with_identity_and_a_note() -> None:
    """After the last attempt the caller gets that attempt's own error object, annotated."""
    errors = conn_errors(3)
    with pytest.raises(BackendConnectionError) as info:
        await policy(max_attempts=3).execute(Backend(*errors))
    assert info.value is errors[-1]
    assert info.value.__notes__ == ["retry: gave up after 3 attempts: max_attempts=3 reached"]


async def test_non_retryable_error_is_raised_at_once_untouched() -> None:
    """A caller error is not retried and gets no note."""
    backend = Backend(QuerySyntaxError())
    pol = policy()
    with pytest.raises(QuerySyntaxError) as info:
        await pol.execute(backend)
    assert backend.calls == 1
    assert not hasattr(info.value, "__notes__")
    assert pol.stats.tenacity_loops == 0


async def test_non_retryable_error_on_a_later_attempt_stops_the_loop() -> None:
    """A retryable error then a caller error: two calls, the caller error raised."""
    backend = Backend(BackendConnectionError(), QuerySyntaxError(), result="never")
    with pytest.raises(QuerySyntaxError) as info:
        await policy(max_attempts=5).execute(backend)
    assert backend.calls == 2
    assert "the error is not retryable" in info.value.__notes__[0]


async def test_open_breaker_error_is_not_retried() -> None:
    """CircuitBreakerOpenError is not retryable: retrying an open breaker is pointless."""
    backend = Backend(CircuitBreakerOpenError(), result="never")
    with pytest.raises(CircuitBreakerOpenError):
        await policy().execute(backend)
    assert backend.calls == 1


async def test_per_call_retryable_overrides_the_default() -> None:
    """retryable= (types or predicate) decides for this call only."""
    backend = Backend(ValueError("flaky parser"))
    assert await policy().execute(backend, retryable=(ValueError,)) == "ok"
    backend = Backend(BackendConnectionError())
    with pytest.raises(BackendConnectionError):
        await policy().execute(backend, retryable=lambda _: False)
    assert backend.calls == 1


def test_default_retryable_reads_the_error() -> None:
    """InfraError.retryable decides; builtin timeouts/connection errors retry; others do not."""
    assert default_retryable(BackendConnectionError())
    assert default_retryable(SerializationFailureError())
    assert not default_retryable(QuerySyntaxError())
    assert not default_retryable(BackendConnectionError(retryable=False))
    assert default_retryable(TimeoutError())
    assert default_retryable(ConnectionResetError())
    assert not default_retryable(ValueError())
    assert not default_retryable(asyncio.CancelledError())


async def test_on_retry_receives_error_attempt_and_delay_sync_or_async() -> None:
    """on_retry(e, attempt, delay) runs before each sleep; an async callback is awaited."""
    errors = conn_errors(2)
    seen: list[tuple[BaseException, int, float]] = []
    await policy().execute(Backend(*errors), on_retry=lambda e, a, d: seen.append((e, a, d)))
    assert seen == [(errors[0], 1, 1.0), (errors[1], 2, 2.0)]

    awaited: list[int] = []

    async def record(e: BaseException, attempt: int, delay: float) -> None:
        await asyncio.sleep(0)
        awaited.append(attempt)

    await policy().execute(Backend(*conn_errors(2)), on_retry=record)
    assert awaited == [1, 2]


async def test_plain_function_returning_a_coroutine_is_retried() -> None:
    """Like redis-py commands: each attempt calls the plain function and awaits its result."""
    backend = Backend(*conn_errors(2))
    calls = 0

    def command() -> Any:
        nonlocal calls
        calls += 1
        return backend()

    assert await policy().execute(command) == "ok"
    assert calls == 3


async def test_non_awaitable_return_is_a_clear_type_error() -> None:
    """Returning a plain value names the function instead of retrying a TypeError."""

    def sync_fn() -> int:
        return 1

    with pytest.raises(TypeError, match="sync_fn returned int"):
        await policy().execute(sync_fn)  # type: ignore[arg-type]  # the misuse under test


async def test_cancelled_error_from_fn_is_never_retried() -> None:
    """A CancelledError raised by an attempt propagates at once."""
    backend = Backend(asyncio.CancelledError(), result="never")
    with pytest.raises(asyncio.CancelledError):
        await policy().execute(backend)
    assert backend.calls == 1


async def test_cancelling_during_backoff_stops_retrying() -> None:
    """Cancelling the caller while it sleeps between attempts ends the loop immediately."""
    backend = Backend(*conn_errors(5))
    pol = RetryPolicy(
        RetryConfig(max_attempts=5, base_delay=10.0, jitter=False), clock=MonotonicClock()
    )
    sleeping = asyncio.Event()
    task = asyncio.create_task(pol.execute(backend, on_retry=lambda *_: sleeping.set()))
    await sleeping.wait()
    await asyncio.sleep(0)  # on_retry runs just before the sleep starts
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.calls == 1


async def test_retry_after_of_a_rate_limit_is_honoured() -> None:
    """The provider's retry_after (7 s) replaces the shorter 1 s backoff."""
    clock = ManualClock()
    await policy(clock).execute(Backend(RateLimitedError(retry_after=7.0)))
    assert clock.sleeps == [7.0]


async def test_deadline_stops_before_a_sleep_that_would_cross_it() -> None:
    """deadline=5: sleeps 1 and 2 fit (t=3); the next 4 s would end at 7, so we give up."""
    clock = ManualClock()
    errors = conn_errors(10)
    with pytest.raises(BackendConnectionError) as info:
        await policy(clock, max_attempts=10, deadline=5.0).execute(Backend(*errors))
    assert clock.sleeps == [1.0, 2.0]
    assert info.value is errors[2]
    assert "would pass the deadline" in info.value.__notes__[0]


async def test_enclosing_timeout_deadline_is_respected() -> None:
    """Inside Timeout(3.5): after sleeping 1+2 s only 0.5 s remain, so no 4 s sleep starts."""
    clock = ManualClock()
    errors = conn_errors(10)
    with pytest.raises(BackendConnectionError) as info:
        async with Timeout(3.5, clock=clock):
            await policy(clock, max_attempts=10).execute(Backend(*errors))
    assert clock.sleeps == [1.0, 2.0]
    assert info.value is errors[2]


async def test_happy_path_never_engages_tenacity() -> None:
    """100 successful calls: tenacity's loop was never entered; one failure enters it once."""
    pol = policy()
    for _ in range(100):
        await pol.execute(Backend())
    assert pol.stats.executions == 100
    assert pol.stats.tenacity_loops == 0
    await pol.execute(Backend(BackendConnectionError()))
    assert pol.stats.tenacity_loops == 1
    assert pol.stats.retries == 1


async def test_observers_see_retries_and_the_give_up() -> None:
    """Observers get on_retry per sleep and one on_give_up with the reason."""
    rec = RecordingObserver()
    errors = conn_errors(2)
    pol = RetryPolicy(
        RetryConfig(max_attempts=2, jitter=False), name="pg", clock=ManualClock(), hooks=[rec]
    )
    with pytest.raises(BackendConnectionError):
        await pol.execute(Backend(*errors))
    assert rec.retries == [("pg", 1, 1.0, errors[0])]
    assert rec.give_ups == [("pg", 2, GiveUpReason.ATTEMPTS_EXHAUSTED, errors[1])]


async def test_max_attempts_one_means_no_retry() -> None:
    """max_attempts=1 calls once and re-raises a retryable error untouched."""
    backend = Backend(BackendConnectionError())
    with pytest.raises(BackendConnectionError):
        await policy(max_attempts=1).execute(backend)
    assert backend.calls == 1


# ---------------------------------------------------------------------------- budget
async def test_budget_caps_total_calls_under_sustained_failure() -> None:
    """50 failing calls, 3 attempts each: at most (1 + 0.2) * 50 + 5 backend calls, not 150."""
    clock = ManualClock()
    budget = RetryBudget(0.2, min_per_second=0.5, ttl=10.0, clock=clock)
    pol = RetryPolicy(
        RetryConfig(max_attempts=3, base_delay=0.0, jitter=False), clock=clock, budget=budget
    )
    backend = Backend(*conn_errors(1000))
    notes: list[str] = []
    for _ in range(50):
        with pytest.raises(BackendConnectionError) as info:
            await pol.execute(backend)
        notes.extend(info.value.__notes__)
    assert 50 < backend.calls <= (1 + 0.2) * 50 + 0.5 * 10
    assert any("retry budget is exhausted" in note for note in notes)


def test_budget_refills_as_the_window_slides() -> None:
    """Retries spent now are available again once they leave the ttl window."""
    clock = ManualClock()
    budget = RetryBudget(0.0, min_per_second=0.3, ttl=10.0, clock=clock)
    granted = [budget.try_acquire() for _ in range(5)]
    assert granted == [True, True, True, False, False]
    clock.advance(10.0)
    assert budget.available == 3
    assert budget.try_acquire()


def test_budget_grows_with_traffic() -> None:
    """Each recorded call adds `ratio` retries to the allowance."""
    budget = RetryBudget(0.5, min_per_second=0.0, clock=ManualClock())
    assert budget.available == 0
    for _ in range(10):
        budget.record_call()
    assert budget.available == 5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"ratio": -0.1}, "ratio"), ({"ttl": 0}, "ttl"), ({"slots": 0}, "slots")],
)
def test_budget_rejects_bad_values(kwargs: dict[str, Any], field: str) -> None:
    """Invalid budget parameters name themselves."""
    with pytest.raises(ValueError, match=field):
        RetryBudget(**kwargs)


def test_describe_and_repr() -> None:
    """A policy renders as one readable line."""
    pol = RetryPolicy(RetryConfig(max_attempts=3), name="redis", budget=RetryBudget(0.2))
    assert pol.describe() == (
        "retry(3 attempts, 1s x2 up to 30s, jitter, budget 20% + 10/s over 10s)"
    )
    assert repr(pol).startswith("RetryPolicy(name='redis', retry(")
    assert RetryPolicy(RetryConfig(max_attempts=1)).describe() == "retry(no retry)"

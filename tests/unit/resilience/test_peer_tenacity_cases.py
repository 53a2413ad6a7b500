"""tenacity's own retry cases (``tests/test_asyncio.py``, ``tests/test_tenacity.py`` of
jd/tenacity), restated against :class:`~infra.resilience.RetryPolicy`.

Each test names the tenacity case it restates. Time runs on a ``ManualClock``: sleeps are
recorded, never waited. Where our policy deliberately differs from tenacity, the test
pins our behaviour and docs/resilience.md lists the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tenacity import TryAgain

from infra.resilience import ManualClock, RetryConfig, RetryPolicy
from infra.resilience.hooks import GiveUpReason, RecordingObserver


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``"ok"``; counts calls."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.raised: list[Exception] = []

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            exc = self.error(f"failure {self.calls}")
            self.raised.append(exc)
            raise exc
        return "ok"


def policy(attempts: int = 3, **config: Any) -> RetryPolicy:
    config.setdefault("jitter", False)
    return RetryPolicy(RetryConfig(max_attempts=attempts, **config), clock=ManualClock())


# ------------------------------------------------------------------ test_asyncio.py
async def test_retry_until_success() -> None:  # test_retry
    fn = Flaky(2)
    assert await policy(5).execute(fn) == "ok"
    assert fn.calls == 3


async def test_stop_after_attempt() -> None:  # test_stop_after_attempt
    fn = Flaky(10)
    with pytest.raises(ConnectionError):
        await policy(2).execute(fn)
    assert fn.calls == 2


async def test_reraise_gives_the_last_error_itself() -> None:  # test_reraise
    # Ours always behaves like tenacity's reraise=True: never a RetryError wrapper.
    fn = Flaky(10)
    with pytest.raises(ConnectionError) as info:
        await policy(3).execute(fn)
    assert info.value is fn.raised[-1]
    assert any("gave up after 3 attempts" in n for n in getattr(info.value, "__notes__", []))


async def test_sleeps_follow_the_backoff() -> None:  # test_sleeps / wait_exponential
    p = policy(4, base_delay=1.0, exponential_base=2.0, max_delay=3.0)
    with pytest.raises(ConnectionError):
        await p.execute(Flaky(10))
    assert isinstance(p.clock, ManualClock)
    assert p.clock.sleeps == [1.0, 2.0, 3.0]  # capped by max_delay


async def test_zero_wait() -> None:  # wait_none()
    p = policy(3, base_delay=0.0, max_delay=0.0)
    assert await p.execute(Flaky(2)) == "ok"
    assert isinstance(p.clock, ManualClock)
    assert p.clock.sleeps == [0.0, 0.0]


async def test_not_retried_error_is_raised_at_once() -> None:  # retry_if_exception_type
    fn = Flaky(10, error=ValueError)
    with pytest.raises(ValueError, match="failure 1"):
        await policy(5).execute(fn)
    assert fn.calls == 1


async def test_retry_on_given_exception_type() -> None:  # retry_if_exception_type(X)
    fn = Flaky(2, error=KeyError)
    assert await policy(5).execute(fn, retryable=KeyError) == "ok"
    assert fn.calls == 3


async def test_attempt_numbers_of_interleaved_calls() -> None:
    # test_attempt_number_is_correct_for_interleaved_coroutines: one policy, several calls
    # at once; each call's on_retry sees its own attempt numbers.
    p = policy(4)
    seen: dict[str, list[int]] = {"a": [], "b": []}

    def recorder(tag: str) -> Callable[[BaseException, int, float], None]:
        def on_retry(error: BaseException, attempt: int, delay: float) -> None:
            seen[tag].append(attempt)

        return on_retry

    await asyncio.gather(
        p.execute(Flaky(3), on_retry=recorder("a")), p.execute(Flaky(2), on_retry=recorder("b"))
    )
    assert seen == {"a": [1, 2, 3], "b": [1, 2]}


async def test_statistics() -> None:  # test_statistics_visible_through_outer_decorator
    # tenacity: fn.statistics["attempt_number"]; ours: policy.stats, summed over calls.
    p = policy(3)
    await p.execute(Flaky(2))
    with pytest.raises(ConnectionError):
        await p.execute(Flaky(10))
    assert (p.stats.executions, p.stats.retries, p.stats.give_ups) == (2, 4, 1)


async def test_sync_function_is_a_clear_error() -> None:  # test_sync_function_with_async_sleep
    # tenacity's AsyncRetrying also runs plain functions; ours wants an awaitable.
    def plain() -> str:
        return "ok"

    with pytest.raises(TypeError, match="not awaitable"):
        await policy(3).execute(plain)  # type: ignore[arg-type]


async def test_async_on_retry_is_awaited() -> None:  # async before_sleep
    seen: list[int] = []

    async def on_retry(error: BaseException, attempt: int, delay: float) -> None:
        await asyncio.sleep(0)
        seen.append(attempt)

    assert await policy(3).execute(Flaky(2), on_retry=on_retry) == "ok"
    assert seen == [1, 2]


async def test_callback_error_ends_the_retries() -> None:  # exceptions raised in callbacks
    fn = Flaky(10)

    def on_retry(error: BaseException, attempt: int, delay: float) -> None:
        raise RuntimeError("callback bug")

    with pytest.raises(RuntimeError, match="callback bug") as info:
        await policy(5).execute(fn, on_retry=on_retry)
    assert fn.calls == 1
    assert info.value.__cause__ is fn.raised[0]


async def test_predicate_error_reaches_the_caller() -> None:  # retry callback raising
    fn = Flaky(10)

    def retryable(error: BaseException) -> bool:
        if fn.calls >= 2:
            raise LookupError("predicate bug")
        return True

    with pytest.raises(LookupError, match="predicate bug"):
        await policy(5).execute(fn, retryable=retryable)
    assert fn.calls == 2


async def test_cancellation_during_sleep() -> None:  # cancelled while waiting to retry
    fn = Flaky(10)
    sleeping = asyncio.Event()

    class BlockingClock(ManualClock):
        async def sleep(self, seconds: float) -> None:
            sleeping.set()
            await asyncio.Event().wait()  # until cancelled

    p = RetryPolicy(RetryConfig(max_attempts=5, jitter=False), clock=BlockingClock())
    task = asyncio.create_task(p.execute(fn))
    await sleeping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fn.calls == 1
    assert p.stats.retries == 1  # the sleep had started


async def test_cancellation_during_attempt_is_not_retried() -> None:
    calls = 0

    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await policy(5).execute(cancelled, retryable=BaseException)
    assert calls == 1


# --------------------------------------------------- async predicates (a fixed defect)
async def _coroutine_predicate(error: BaseException) -> bool:
    return False


class _AsyncCallablePredicate:
    async def __call__(self, error: BaseException) -> bool:
        return False


def _lambda_returning_a_coroutine(error: BaseException) -> Awaitable[bool]:
    return _coroutine_predicate(error)


async def test_async_predicate_is_refused_before_any_attempt() -> None:
    # tenacity's AsyncRetrying awaits an async retry predicate (test_retry_with_async_exc).
    # Ours used to call it, get a coroutine -- truthy -- and so retry every error, even
    # ones the predicate would have refused, with a "never awaited" warning at best.
    fn = Flaky(10, error=ValueError)
    with pytest.raises(TypeError, match="retryable") as info:
        await policy(5).execute(fn, retryable=_coroutine_predicate)  # type: ignore[arg-type]
    assert "async" in str(info.value)
    assert fn.calls == 0
    with pytest.raises(TypeError, match="retryable"):
        RetryPolicy(retryable=_AsyncCallablePredicate())  # type: ignore[arg-type]


async def test_predicate_returning_an_awaitable_is_a_clear_error() -> None:
    fn = Flaky(10, error=ValueError)
    with pytest.raises(TypeError, match="retryable") as info:
        await policy(5).execute(fn, retryable=_lambda_returning_a_coroutine)  # type: ignore[arg-type]
    assert fn.calls == 1
    assert isinstance(info.value.__context__, ValueError)


@settings(max_examples=40, deadline=None)
@given(attempts=st.integers(min_value=1, max_value=6), failures=st.integers(0, 8))
async def test_no_async_predicate_ever_retries(attempts: int, failures: int) -> None:
    # Property: whatever the config and outcome, an async predicate never makes a call
    # retry -- it is refused before the first attempt.
    fn = Flaky(failures, error=ValueError)
    p = policy(attempts, base_delay=0.0, max_delay=0.0)
    for predicate in (_coroutine_predicate, _AsyncCallablePredicate()):
        with pytest.raises(TypeError, match="retryable"):
            await p.execute(fn, retryable=predicate)  # type: ignore[arg-type]
    assert fn.calls == 0
    assert p.stats.retries == 0


# ----------------------------------- the last attempt's error, whatever its type (fixed)
#: What one attempt does: raise one of these (a class, instantiated per attempt) or
#: return. StopAsyncIteration is what ``execute(stream.__anext__)`` raises at the end of a
#: stream; it used to end tenacity's ``async for`` silently, and the caller got
#: ``RuntimeError("tenacity stopped without an outcome")`` instead.
_OUTCOMES: tuple[type[Exception] | None, ...] = (
    ConnectionError,
    TimeoutError,
    ValueError,
    StopAsyncIteration,
    LookupError,
    None,
)


class Scripted:
    def __init__(self, script: list[type[Exception] | None]) -> None:
        self.script = script
        self.raised: list[Exception] = []

    async def __call__(self) -> str:
        outcome = self.script[len(self.raised) % len(self.script)]
        if outcome is None:
            self.raised.append(Exception("returned"))  # counts the attempt
            return "ok"
        exc = outcome(f"attempt {len(self.raised) + 1}")
        self.raised.append(exc)
        raise exc


@settings(max_examples=150, deadline=None)
@given(
    script=st.lists(st.sampled_from(_OUTCOMES), min_size=1, max_size=6),
    attempts=st.integers(min_value=1, max_value=5),
    retry_stop=st.booleans(),
)
async def test_execute_ends_with_the_last_attempts_own_outcome(
    script: list[type[Exception] | None], attempts: int, retry_stop: bool
) -> None:
    # Property: execute returns what the last attempt returned or raises the very error
    # the last attempt raised -- never a wrapper or an error of the machinery.
    retryable: tuple[type[Exception], ...] = (ConnectionError, TimeoutError)
    if retry_stop:
        retryable += (StopAsyncIteration,)
    fn = Scripted(script)
    p = policy(attempts, base_delay=0.0, max_delay=0.0)
    outcome: object
    try:
        outcome = await p.execute(fn, retryable=retryable)
    except Exception as exc:  # compared with the attempt's own error below
        outcome = exc
    last = fn.raised[-1]
    if outcome == "ok":
        assert str(last) == "returned"
    else:
        assert outcome is last
        assert len(fn.raised) == attempts or not isinstance(last, retryable)


async def test_stream_end_after_a_retry_is_not_a_runtime_error() -> None:
    # The concrete case: reading a stream's next item, the first read hits a dropped
    # connection, the retried read finds the stream exhausted.
    fn = Scripted([ConnectionError, StopAsyncIteration])
    with pytest.raises(StopAsyncIteration) as info:
        await policy(3).execute(fn)
    assert info.value is fn.raised[-1]
    assert any("not retryable" in note for note in info.value.__notes__)


async def test_callback_raising_stop_async_iteration_reaches_the_caller() -> None:
    fn = Flaky(10)

    def on_retry(error: BaseException, attempt: int, delay: float) -> None:
        raise StopAsyncIteration("callback")

    with pytest.raises(StopAsyncIteration, match="callback"):
        await policy(5).execute(fn, on_retry=on_retry)
    assert fn.calls == 1


# ---------------------------------------------------------------- test_tenacity.py
async def test_stop_before_delay() -> None:
    # test_stop_before_delay: a sleep that would end past the deadline is not started
    # (tenacity's stop_after_delay, checked only after an attempt, is not offered).
    p = policy(10, base_delay=1.0, exponential_base=2.0, max_delay=100.0, deadline=5.0)
    fn = Flaky(10)
    with pytest.raises(ConnectionError) as info:
        await p.execute(fn)
    assert isinstance(p.clock, ManualClock)
    assert p.clock.sleeps == [1.0, 2.0]  # 1 + 2 = 3 s; 4 more would end at 7 > 5
    assert fn.calls == 3
    assert any("deadline" in note for note in info.value.__notes__)


def test_fixed_and_no_sleep() -> None:  # test_no_sleep / test_fixed_sleep
    fixed = RetryConfig(base_delay=1.0, max_delay=1.0, exponential_base=1.0, jitter=False)
    none = RetryConfig(base_delay=0.0, max_delay=0.0, jitter=False)
    assert [fixed.backoff(n) for n in range(1, 5)] == [1.0] * 4
    assert [none.backoff(n) for n in range(1, 5)] == [0.0] * 4


def test_exponential() -> None:  # test_exponential / test_exponential_with_max_wait
    config = RetryConfig(base_delay=1.0, exponential_base=2.0, max_delay=40.0, jitter=False)
    assert [config.backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 32, 40]


@given(attempt=st.integers(min_value=1, max_value=10**9))
def test_exponential_past_any_float(attempt: int) -> None:
    # test_exponential_skips_power_after_reaching_max: no overflow at huge attempt numbers.
    config = RetryConfig(base_delay=1e-300, exponential_base=10.0, max_delay=60.0)
    low, high = config.delay_bounds(attempt)
    assert 0 <= low <= high <= 60.0


@given(attempt=st.integers(min_value=1, max_value=64), seed=st.integers(0, 2**32))
def test_jittered_delay_bounds(attempt: int, seed: int) -> None:
    # test_wait_random_exponential: ours is "equal jitter" in [d/2, d], tenacity's full
    # jitter is in [0, d] -- a retry is never immediate.
    p = RetryPolicy(RetryConfig(base_delay=0.5, max_delay=20.0), rng=random.Random(seed))
    nominal = p.config.backoff(attempt)
    assert nominal / 2 <= p.delay_for(attempt) <= nominal


async def test_retry_if_exception_message() -> None:  # test_retry_if_exception_message
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError("try again later")
        return "ok"

    assert await policy(5).execute(fn, retryable=lambda e: "again" in str(e)) == "ok"
    assert calls == 3


async def test_retry_until_exception_of_type() -> None:  # test_retry_until_exception_of_type
    fn = Flaky(2, error=KeyError)
    assert await policy(5).execute(fn, retryable=lambda e: not isinstance(e, ValueError))
    stopper = Flaky(10, error=ValueError)
    with pytest.raises(ValueError, match="failure 1"):
        await policy(5).execute(stopper, retryable=lambda e: not isinstance(e, ValueError))
    assert stopper.calls == 1


async def test_retry_exception_subclasses() -> None:  # test_retry_if_exception_of_type
    class TransientError(ConnectionError):
        pass

    fn = Flaky(2, error=TransientError)
    assert await policy(5).execute(fn, retryable=(KeyError, ConnectionError)) == "ok"


async def test_before_sleep_sees_error_attempt_and_delay() -> None:  # test_before_sleep
    seen: list[tuple[str, int, float]] = []

    def on_retry(error: BaseException, attempt: int, delay: float) -> None:
        seen.append((str(error), attempt, delay))

    await policy(3, base_delay=0.5).execute(Flaky(2), on_retry=on_retry)
    assert seen == [("failure 1", 1, 0.5), ("failure 2", 2, 1.0)]


async def test_stats_on_success_and_failure() -> None:  # test_stats / test_stats_failing
    p = policy(3)
    await p.execute(Flaky(0))
    assert (p.stats.executions, p.stats.retries, p.stats.tenacity_loops) == (1, 0, 0)
    with pytest.raises(ConnectionError):
        await p.execute(Flaky(10))
    assert (p.stats.executions, p.stats.retries, p.stats.give_ups) == (2, 2, 1)


async def test_callable_object_and_partial() -> None:  # test_retry_function_object
    async def add(a: int, b: int) -> int:
        return a + b

    assert await policy(2).execute(functools.partial(add, 1), 2) == 3
    fn = Flaky(1)
    assert await policy(2).execute(fn) == "ok"


async def test_try_again_is_not_special() -> None:  # test_retry_try_again
    # tenacity.TryAgain forces a retry; here it is an ordinary error (not retryable by
    # default) -- raise a retryable error, or pass retryable=, instead.
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise TryAgain

    with pytest.raises(TryAgain):
        await policy(3).execute(fn)
    assert calls == 1


# ------------------------------- a raising retryable predicate ends the call visibly (fixed)
@settings(max_examples=60, deadline=None)
@given(attempts=st.integers(min_value=2, max_value=6), data=st.data())
async def test_raising_predicate_is_reported_like_a_failed_callback(
    attempts: int, data: st.DataObject
) -> None:
    # tenacity lets an exception from its retry= callback propagate; ours does too, and --
    # like a raising on_retry -- the call is counted, reported to observers as given up
    # (callback_failed) and the error says why. It used to end the call unreported: no
    # give-up, no note, nothing for observers.
    fails_at = data.draw(st.integers(min_value=1, max_value=attempts), label="fails_at")
    seen: list[int] = []

    def retryable(error: BaseException) -> bool:
        seen.append(1)
        if len(seen) == fails_at:
            raise LookupError("predicate bug")
        return True

    observer = RecordingObserver()
    p = RetryPolicy(
        RetryConfig(max_attempts=attempts, base_delay=0.0, max_delay=0.0),
        name="peer",
        clock=ManualClock(),
        hooks=[observer],
        retryable=retryable,
    )
    fn = Flaky(10)
    with pytest.raises(LookupError, match="predicate bug") as info:
        await p.execute(fn)
    failed = info.value
    assert fn.calls == fails_at
    assert failed.__cause__ is fn.raised[-1]
    assert (p.stats.executions, p.stats.retries, p.stats.give_ups) == (1, fails_at - 1, 1)
    assert observer.give_ups == [("peer", fails_at, GiveUpReason.CALLBACK_FAILED, failed)]
    assert any("retryable raised LookupError" in note for note in failed.__notes__)


@settings(max_examples=40, deadline=None)
@given(failures=st.integers(min_value=0, max_value=6), attempts=st.integers(1, 6))
async def test_predicate_consulted_once_per_failed_attempt(failures: int, attempts: int) -> None:
    # As tenacity's retry= callback: one consultation per failed attempt (the first
    # attempt's error used to be judged twice -- a stateful predicate miscounted).
    consulted: list[BaseException] = []

    def retryable(error: BaseException) -> bool:
        consulted.append(error)
        return True

    fn = Flaky(failures)
    p = policy(attempts, base_delay=0.0, max_delay=0.0)
    with contextlib.suppress(ConnectionError):
        await p.execute(fn, retryable=retryable)
    assert consulted == fn.raised


async def test_raising_predicate_at_first_is_counted_by_ends_at_first() -> None:
    # ResiliencePolicy hands a failed first attempt to ends_at_first(): the same rule.
    def retryable(error: BaseException) -> bool:
        raise LookupError("predicate bug")

    p = RetryPolicy(RetryConfig(max_attempts=3), clock=ManualClock(), retryable=retryable)
    attempt_error = ConnectionError("down")
    with pytest.raises(LookupError) as info:
        p.ends_at_first(attempt_error)
    assert info.value.__cause__ is attempt_error
    assert (p.stats.executions, p.stats.give_ups) == (1, 1)

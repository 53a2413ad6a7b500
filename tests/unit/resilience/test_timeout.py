"""Timeout and Deadline: our deadline raises our error; nothing else is converted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from infra.exceptions import InfraTimeoutError, OperationTimeoutError, QueryTimeoutError
from infra.resilience.clock import ManualClock
from infra.resilience.timeout import Deadline, Timeout, current_deadline

TINY = 0.01


async def _never_finishes() -> None:
    await asyncio.sleep(3600)


async def _answer(value: int, *, plus: int = 0) -> int:
    await asyncio.sleep(0)
    return value + plus


async def test_call_returns_the_result_within_the_limit() -> None:
    """A fast call returns its value; args and kwargs are passed through."""
    assert await Timeout(1.0).call(_answer, 40, plus=2) == 42


async def test_call_accepts_a_plain_function_returning_an_awaitable() -> None:
    """fn may be any callable that returns an awaitable (e.g. a future)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str] = loop.create_future()
    loop.call_soon(fut.set_result, "ok")
    assert await Timeout(1.0).call(lambda: fut) == "ok"


async def test_slow_call_raises_operation_timeout_with_details_and_chain() -> None:
    """Our deadline raises OperationTimeoutError(timeout, component) from TimeoutError."""
    timeout = Timeout(TINY, component="redis")
    with pytest.raises(OperationTimeoutError) as info:
        await timeout.call(_never_finishes)
    err = info.value
    assert err.details["timeout"] == TINY
    assert err.timeout == TINY
    assert err.component == "redis"
    assert err.retryable is True
    assert isinstance(err.__cause__, TimeoutError)
    assert isinstance(err.__cause__.__cause__, asyncio.CancelledError)


async def test_configured_error_class_is_raised() -> None:
    """error=QueryTimeoutError makes a database timeout catchable as DatabaseError too."""
    with pytest.raises(QueryTimeoutError) as info:
        await Timeout(TINY, component="postgres", error=QueryTimeoutError).call(_never_finishes)
    assert info.value.details["timeout"] == TINY


async def test_async_with_raises_on_timeout_and_yields_a_deadline() -> None:
    """The context-manager form bounds its body and exposes the deadline."""
    seen: list[float] = []

    async def body() -> None:
        async with Timeout(TINY) as deadline:
            seen.append(deadline.remaining())
            await _never_finishes()

    with pytest.raises(OperationTimeoutError):
        await body()
    assert len(seen) == 1
    assert 0 < seen[0] <= TINY


async def test_outer_cancellation_stays_cancellation() -> None:
    """Cancelling the caller propagates CancelledError, not a timeout error."""
    started = asyncio.Event()

    async def body() -> None:
        started.set()
        await Timeout(10.0).call(_never_finishes)

    task = asyncio.create_task(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_outer_cancel_arriving_with_the_deadline_is_not_converted() -> None:
    """When an outer cancel lands while our deadline is being handled, cancel wins."""
    outcome: list[str] = []

    async def body() -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            async with Timeout(TINY):
                try:
                    await _never_finishes()
                except asyncio.CancelledError:
                    task.cancel()  # an outer cancel request arrives during handling
                    raise
        except OperationTimeoutError:
            outcome.append("timeout")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    task = asyncio.create_task(body())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["cancelled"]


async def test_enclosing_asyncio_timeout_keeps_its_own_expiry() -> None:
    """An outer asyncio.timeout firing first raises its TimeoutError, not ours."""
    with pytest.raises(TimeoutError) as info:
        async with asyncio.timeout(TINY):
            await Timeout(10.0).call(_never_finishes)
    assert not isinstance(info.value, InfraTimeoutError)


async def test_firing_leaves_the_task_cancel_count_balanced() -> None:
    """After our timeout fires and is converted, the task is not left 'cancelling'."""
    task = asyncio.current_task()
    assert task is not None
    before = task.cancelling()
    with pytest.raises(OperationTimeoutError):
        async with asyncio.timeout(10.0):  # an enclosing scope still works afterwards
            await Timeout(TINY).call(_never_finishes)
    assert task.cancelling() == before
    assert await Timeout(1.0).call(_answer, 1) == 1


async def test_awaited_inner_task_is_cancelled_on_timeout() -> None:
    """A task returned by fn is cancelled when the deadline fires."""
    inner = asyncio.ensure_future(_never_finishes())
    with pytest.raises(OperationTimeoutError):
        await Timeout(TINY).call(lambda: inner)
    await asyncio.sleep(0)
    assert inner.cancelled()


async def test_errors_from_the_body_pass_through_unchanged() -> None:
    """A body's own error (even its own TimeoutError) is not converted."""

    async def fails(exc: BaseException) -> None:
        raise exc

    with pytest.raises(ValueError, match="bad"):
        await Timeout(1.0).call(fails, ValueError("bad"))
    with pytest.raises(TimeoutError) as info:
        await Timeout(1.0).call(fails, TimeoutError("driver timeout"))
    assert not isinstance(info.value, InfraTimeoutError)


async def test_one_instance_serves_many_concurrent_calls() -> None:
    """Each call gets its own timer: 120 concurrent calls, the slow half time out."""
    timeout = Timeout(0.05)

    async def maybe_slow(i: int) -> int:
        if i % 2:
            await _never_finishes()
        await asyncio.sleep(0)
        return i

    async def via_context(i: int) -> int:
        async with timeout:
            return await maybe_slow(i)

    results = await asyncio.gather(
        *(timeout.call(maybe_slow, i) for i in range(60)),
        *(via_context(i) for i in range(60, 120)),
        return_exceptions=True,
    )
    for i, result in enumerate(results):
        if i % 2:
            assert isinstance(result, OperationTimeoutError)
        else:
            assert result == i
    assert timeout.open_scopes == 0


async def test_current_deadline_is_the_tightest_enclosing_one() -> None:
    """Nested scopes publish the tightest deadline; it is unset outside any scope."""
    clock = ManualClock()
    assert current_deadline() is None
    async with Timeout(5.0, clock=clock) as outer:
        assert current_deadline() is outer
        async with Timeout(60.0, clock=clock):
            assert current_deadline() is outer  # the outer 5 s is tighter
        async with Timeout(1.0, clock=clock) as inner:
            assert current_deadline() is inner
        assert current_deadline() is outer
    assert current_deadline() is None


async def test_virtual_clock_passing_the_deadline_raises_the_same_error() -> None:
    """With a ManualClock, a body that spends more virtual time than allowed times out."""
    clock = ManualClock()
    timeout = Timeout(1.0, clock=clock, component="fake")
    with pytest.raises(OperationTimeoutError) as info:
        await timeout.call(clock.sleep, 5.0)
    assert info.value.details["timeout"] == 1.0
    assert await timeout.call(_answer, 7) == 7
    await timeout.call(clock.sleep, 0.5)  # within the limit: no error


async def test_virtual_timeout_chains_a_failing_body_error() -> None:
    """A body that failed after the virtual deadline surfaces as a timeout, chained."""
    clock = ManualClock()

    async def slow_then_fail() -> None:
        await clock.sleep(2.0)
        raise ConnectionError("late")

    with pytest.raises(OperationTimeoutError) as info:
        await Timeout(1.0, clock=clock).call(slow_then_fail)
    assert isinstance(info.value.__cause__, ConnectionError)


@pytest.mark.parametrize(
    ("kwargs", "exc_type", "match"),
    [
        ({"seconds": 0}, ValueError, "seconds"),
        ({"seconds": -1.0}, ValueError, "seconds"),
        ({"seconds": float("inf")}, ValueError, "seconds"),
        ({"seconds": float("nan")}, ValueError, "seconds"),
        ({"seconds": "1"}, TypeError, "seconds"),
        ({"seconds": True}, TypeError, "seconds"),
        ({"seconds": 1.0, "error": TimeoutError}, TypeError, "InfraTimeoutError"),
        ({"seconds": 1.0, "error": "QueryTimeoutError"}, TypeError, "InfraTimeoutError"),
    ],
)
def test_invalid_arguments_are_rejected(
    kwargs: dict[str, Any], exc_type: type[Exception], match: str
) -> None:
    """Bad seconds or error class fail at construction, naming the argument."""
    with pytest.raises(exc_type, match=match):
        Timeout(**kwargs)


def test_deadline_counts_down_on_its_clock() -> None:
    """remaining/elapsed/expired/clamp follow the injected clock."""
    clock = ManualClock(start=100.0)
    deadline = Deadline(2.0, clock=clock)
    assert deadline.remaining() == 2.0
    assert deadline.clamp(5.0) == 2.0
    clock.advance(0.5)
    assert deadline.elapsed() == 0.5
    assert deadline.remaining() == 1.5
    assert deadline.clamp(1.0) == 1.0
    expired_early = deadline.expired
    clock.advance(2.0)
    assert not expired_early
    assert deadline.expired
    assert deadline.remaining() == 0.0
    assert deadline.clamp(1.0) == 0.0
    assert deadline.clock is clock


def test_repr_names_the_limit_and_error() -> None:
    """The repr shows what a policy is configured with."""
    text = repr(Timeout(2.5, component="qdrant", error=QueryTimeoutError))
    assert "2.5" in text
    assert "qdrant" in text
    assert "QueryTimeoutError" in text

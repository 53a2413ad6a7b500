"""Fallback: chosen errors are answered by the secondary; the original error is kept."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from infra.exceptions import (
    CacheConnectionError,
    InfraError,
    OperationTimeoutError,
    QuerySyntaxError,
)
from infra.resilience.fallback import Fallback, FallbackResult


async def _ok(value: str) -> str:
    return value


async def _raise(exc: BaseException) -> str:
    raise exc


class SecondarySource:
    """A fallback that records what it was given."""

    def __init__(self, answer: str = "from-secondary") -> None:
        self.answer = answer
        self.calls: list[tuple[BaseException, tuple[Any, ...], dict[str, Any]]] = []

    async def __call__(self, error: BaseException, *args: Any, **kwargs: Any) -> str:
        self.calls.append((error, args, kwargs))
        return self.answer


async def test_primary_success_does_not_call_the_fallback() -> None:
    """When the primary works, its value is returned and the fallback is untouched."""
    secondary = SecondarySource()
    assert await Fallback(secondary).call(_ok, "primary") == "primary"
    assert secondary.calls == []


async def test_matching_error_is_answered_by_the_fallback_with_the_error() -> None:
    """The fallback receives the original error as its argument."""
    secondary = SecondarySource()
    original = CacheConnectionError(component="redis")
    assert await Fallback(secondary).call(_raise, original) == "from-secondary"
    assert len(secondary.calls) == 1
    error, args, kwargs = secondary.calls[0]
    assert error is original
    assert (args, kwargs) == ((), {})


async def test_pass_args_gives_the_fallback_the_primary_arguments() -> None:
    """With pass_args=True the fallback gets (error, *args, **kwargs)."""
    secondary = SecondarySource()

    async def query(sql: str, *, limit: int) -> str:
        raise OperationTimeoutError(timeout=1.0)

    result = await Fallback(secondary, pass_args=True).call(query, "select 1", limit=5)
    assert result == "from-secondary"
    error, args, kwargs = secondary.calls[0]
    assert isinstance(error, OperationTimeoutError)
    assert args == ("select 1",)
    assert kwargs == {"limit": 5}


async def test_non_matching_error_propagates() -> None:
    """Errors outside `on` are not handled."""
    secondary = SecondarySource()
    fallback = Fallback(secondary, on=(CacheConnectionError,))
    with pytest.raises(QuerySyntaxError):
        await fallback.call(_raise, QuerySyntaxError())
    with pytest.raises(KeyError):
        await Fallback(secondary).call(_raise, KeyError("x"))  # default on=(InfraError,)
    assert secondary.calls == []


async def test_failing_fallback_raises_its_own_error_with_the_original_attached() -> None:
    """The fallback's error propagates, with the original as __context__ and in a note."""
    original = ConnectionError("redis://user:hunter2@cache:6379 unreachable")

    async def broken(error: BaseException) -> str:
        raise RuntimeError("replica down")

    with pytest.raises(RuntimeError, match="replica down") as info:
        await Fallback(broken, on=(ConnectionError,)).call(_raise, original)
    assert info.value.__context__ is original
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "ConnectionError" in notes
    assert "cache:6379" in notes
    assert "hunter2" not in notes


async def test_fallback_that_re_raises_the_original_gets_no_self_note() -> None:
    """A fallback may decline by re-raising the original error unchanged."""

    async def decline(error: BaseException) -> str:
        raise error

    original = CacheConnectionError()
    with pytest.raises(CacheConnectionError) as info:
        await Fallback(decline).call(_raise, original)
    assert info.value is original
    assert not getattr(info.value, "__notes__", [])


async def test_cancelled_error_is_never_handled() -> None:
    """Even on=(BaseException,) lets CancelledError through."""
    secondary = SecondarySource()
    fallback = Fallback(secondary, on=(BaseException,))
    with pytest.raises(asyncio.CancelledError):
        await fallback.call(_raise, asyncio.CancelledError())
    with pytest.raises(KeyboardInterrupt):
        await fallback.call(_raise, KeyboardInterrupt())
    assert secondary.calls == []
    assert not fallback.handles(asyncio.CancelledError())
    assert fallback.handles(ValueError())


async def test_cancelling_the_caller_cancels_instead_of_falling_back() -> None:
    """A task cancelled while in the primary ends cancelled; the fallback never runs."""
    secondary = SecondarySource()
    started = asyncio.Event()

    async def slow() -> str:
        started.set()
        await asyncio.sleep(3600)
        return "never"

    task = asyncio.create_task(Fallback(secondary, on=(BaseException,)).call(slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert secondary.calls == []


async def test_call_result_reports_whether_the_fallback_answered() -> None:
    """call_result carries the value and the handled error (None on success)."""
    fallback: Fallback[str] = Fallback(SecondarySource())
    ok = await fallback.call_result(_ok, "primary")
    assert ok == FallbackResult("primary")
    assert not ok.used_fallback
    original = CacheConnectionError()
    degraded = await fallback.call_result(_raise, original)
    assert degraded.value == "from-secondary"
    assert degraded.error is original
    assert degraded.used_fallback


async def test_value_fallback_returns_a_constant() -> None:
    """Fallback.value answers with a fixed value on a matching error."""
    fallback = Fallback.value("cached", on=(InfraError,))
    assert await fallback.call(_raise, CacheConnectionError()) == "cached"


@pytest.mark.parametrize(
    ("on", "match"),
    [
        ((), "non-empty tuple"),
        ([InfraError], "non-empty tuple"),
        ((InfraError, "ValueError"), "exception classes"),
        ((asyncio.CancelledError,), "CancelledError"),
    ],
)
def test_invalid_on_is_rejected(on: Any, match: str) -> None:
    """`on` must be a non-empty tuple of exception classes without CancelledError."""
    with pytest.raises(TypeError, match=match):
        Fallback(SecondarySource(), on=on)


def test_non_callable_fallback_is_rejected() -> None:
    """The fallback must be callable."""
    with pytest.raises(TypeError, match="fallback must be a callable"):
        Fallback("default")  # type: ignore[arg-type]


def test_repr_lists_handled_errors() -> None:
    """The repr names the handled error types."""
    text = repr(Fallback(SecondarySource(), on=(CacheConnectionError, OperationTimeoutError)))
    assert "CacheConnectionError" in text
    assert "OperationTimeoutError" in text

"""Fallback: answer from a secondary source when the primary fails with a chosen error.

Decisions:

* The fallback **receives the original error** as its first argument
  (``async def fallback(error) -> T``), so it can log it, pick a strategy by type, or
  re-raise. With ``pass_args=True`` it also receives the primary call's arguments
  (``fallback(error, *args, **kwargs)``) -- a read replica or a cache can answer the
  same query without a closure per call.
* :meth:`Fallback.call_result` returns a :class:`FallbackResult` carrying the value and
  the error that was handled (``None`` when the primary succeeded), for callers that need
  to know the answer was degraded (metrics, a "stale" flag in a response).
* If the fallback itself fails, *its* error propagates -- the caller should see what went
  wrong last -- with the original error as ``__context__`` and a note naming it.
* ``CancelledError`` (and ``KeyboardInterrupt``/``SystemExit``/``GeneratorExit``) is never
  handled, even with ``on=(BaseException,)``: cancelling a call must cancel it, not
  quietly substitute a default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, ParamSpec, TypeVar

from infra.exceptions import InfraError
from infra.redaction import redact_text

__all__ = ["Fallback", "FallbackResult"]

P = ParamSpec("P")
T = TypeVar("T")

_NEVER_HANDLED: Final = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


@dataclass(frozen=True, slots=True)
class FallbackResult(Generic[T]):
    """A value and, when the fallback produced it, the primary's error."""

    value: T
    error: BaseException | None = None

    @property
    def used_fallback(self) -> bool:
        """Whether the value came from the fallback."""
        return self.error is not None


def _check_on(on: tuple[type[BaseException], ...]) -> tuple[type[BaseException], ...]:
    if not isinstance(on, tuple) or not on:
        raise TypeError(f"on must be a non-empty tuple of exception classes, got {on!r}")
    for cls in on:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f"on must contain exception classes only, got {cls!r}")
        if issubclass(cls, asyncio.CancelledError):
            raise TypeError("on must not name CancelledError: a cancelled call is never replaced")
    return on


class Fallback(Generic[T]):
    """Call a primary; on an error in ``on``, return what ``fallback`` returns instead.

    Args:
        fallback: ``async (error) -> T``, or ``async (error, *args, **kwargs) -> T`` with
            ``pass_args=True``. Any callable returning an awaitable works.
        on: The errors that trigger the fallback (default: any :class:`InfraError`).
        pass_args: Also pass the primary call's arguments to the fallback.
    """

    __slots__ = ("_fallback", "on", "pass_args")

    def __init__(
        self,
        fallback: Callable[..., Awaitable[T]],
        *,
        on: tuple[type[BaseException], ...] = (InfraError,),
        pass_args: bool = False,
    ) -> None:
        if not callable(fallback):
            raise TypeError(f"fallback must be a callable returning an awaitable, got {fallback!r}")
        self._fallback = fallback
        self.on = _check_on(on)
        self.pass_args = pass_args

    @classmethod
    def value(cls, value: T, *, on: tuple[type[BaseException], ...] = (InfraError,)) -> Fallback[T]:
        """A fallback that answers with a fixed ``value``."""

        async def constant(_error: BaseException) -> T:
            return value

        return cls(constant, on=on)

    def handles(self, error: BaseException) -> bool:
        """Whether ``error`` would trigger the fallback."""
        return isinstance(error, self.on) and not isinstance(error, _NEVER_HANDLED)

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)``; on a handled error, the fallback's value."""
        try:
            return await fn(*args, **kwargs)
        except self.on as error:
            if isinstance(error, _NEVER_HANDLED):
                raise
            return await self._run_fallback(error, args, kwargs)

    async def call_result(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> FallbackResult[T]:
        """Like :meth:`call`, but also report whether (and why) the fallback answered."""
        try:
            return FallbackResult(await fn(*args, **kwargs))
        except self.on as error:
            if isinstance(error, _NEVER_HANDLED):
                raise
            return FallbackResult(await self._run_fallback(error, args, kwargs), error)

    async def _run_fallback(
        self, error: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        try:
            if self.pass_args:
                return await self._fallback(error, *args, **kwargs)
            return await self._fallback(error)
        except BaseException as fallback_error:
            if fallback_error is not error and not isinstance(fallback_error, _NEVER_HANDLED):
                if fallback_error.__context__ is None:
                    fallback_error.__context__ = error
                fallback_error.add_note(
                    f"raised by the fallback while handling {type(error).__name__}: "
                    f"{redact_text(str(error))}"
                )
            raise

    def __repr__(self) -> str:
        names = ", ".join(cls.__name__ for cls in self.on)
        return f"Fallback({self._fallback!r}, on=({names},), pass_args={self.pass_args})"

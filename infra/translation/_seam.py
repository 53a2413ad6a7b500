"""The public entry points: :func:`translate_exception` and the :func:`translated` scope.

Both finish a dispatched error the same way (``__cause__``, ``component``,
``details["operation"]``/``["driver_error"]``), so a result looks the same whichever
entry point produced it.
"""

from __future__ import annotations

from types import TracebackType
from typing import Final

from infra.exceptions import InfraError
from infra.translation._context import (
    Family,
    TranslationContext,
    clean_text,
    qualified_name,
)
from infra.translation._registry import dispatch

__all__ = ["TranslationScope", "translate_exception", "translated"]

# Control flow, not failure: translating these would break cancellation, interpreter exit
# and the iterator protocols.
_NEVER_TRANSLATED: Final = (StopIteration, StopAsyncIteration)


def _finish(result: InfraError, exc: BaseException, ctx: TranslationContext) -> InfraError:
    if result.component is None:
        result.component = ctx.component
    if ctx.operation is not None:
        result.details.setdefault("operation", clean_text(ctx.operation))
    result.details.setdefault("driver_error", qualified_name(type(exc)))
    result.__cause__ = exc
    result.__suppress_context__ = True
    return result


def translate_exception(
    exc: BaseException,
    *,
    component: str,
    family: Family = "generic",
    operation: str | None = None,
    timeout: float | None = None,
) -> InfraError:
    """Return (not raise) the :mod:`infra.exceptions` error for a driver exception.

    The result has ``__cause__`` set to ``exc`` and ``details["driver_error"]`` (and
    ``details["operation"]`` when given). An :class:`InfraError` is returned unchanged.

    Raises:
        TypeError: ``exc`` is cancellation, an interpreter exit or iterator control flow
            (not an ``Exception``, or ``StopIteration``): those must propagate as they are;
            or ``timeout`` is not a number.
        ValueError: ``component`` is empty, ``family`` unknown or ``timeout`` negative.
    """
    ctx = TranslationContext(component, family, operation, timeout)
    if isinstance(exc, InfraError):
        return exc
    if not isinstance(exc, Exception) or isinstance(exc, _NEVER_TRANSLATED):
        raise TypeError(
            f"{type(exc).__name__} is control flow, not a backend failure; let it propagate "
            "instead of translating it"
        )
    return _finish(dispatch(exc, ctx), exc, ctx)


class TranslationScope:
    """Context manager (``with`` and ``async with``) that translates escaping errors.

    Any ``Exception`` that is not already an :class:`InfraError` is re-raised as its
    translation ``from`` the original. Cancellation, ``KeyboardInterrupt``,
    ``SystemExit``, ``GeneratorExit`` and ``StopIteration``/``StopAsyncIteration`` pass
    through untouched. Nothing is ever swallowed. Stateless, so one scope may be reused.
    """

    __slots__ = ("_ctx",)

    def __init__(self, ctx: TranslationContext) -> None:
        self._ctx = ctx

    def __repr__(self) -> str:
        return (
            f"TranslationScope(component={self._ctx.component!r}, family={self._ctx.family!r}, "
            f"operation={self._ctx.operation!r})"
        )

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if (
            exc is None
            or isinstance(exc, InfraError)
            or not isinstance(exc, Exception)
            or isinstance(exc, _NEVER_TRANSLATED)
        ):
            return
        raise _finish(dispatch(exc, self._ctx), exc, self._ctx) from exc

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def translated(
    component: str,
    *,
    family: Family = "generic",
    operation: str | None = None,
    timeout: float | None = None,
) -> TranslationScope:
    """A scope that re-raises escaping driver errors as their translation.

    Usable as ``with translated("postgres", family="database", operation="fetch"):`` and
    as ``async with``. Arguments are validated here, at construction.
    """
    return TranslationScope(TranslationContext(component, family, operation, timeout))

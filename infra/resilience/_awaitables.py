"""Calling "any awaitable-returning callable", shared by the breaker and the retry policy.

Policies accept ``async def`` functions *and* plain functions that return an awaitable
(redis-py's asyncio commands are plain methods returning coroutines; tenacity's own
``__call__`` never awaits those). So a policy calls ``fn(*args, **kwargs)`` and awaits
whatever came back -- no ``iscoroutinefunction`` sniffing on the hot path.

If ``fn`` returned something that cannot be awaited, ``await`` raises a bare TypeError
that would otherwise be counted as a backend failure. :func:`misuse` recognises that case
(only on the error path, so the happy path pays nothing) and builds a clear error.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeAlias, TypeVar

__all__ = ["NOTHING", "AsyncCallable", "callable_name", "misuse"]

T = TypeVar("T")

#: Any callable whose call returns an awaitable of ``T``.
AsyncCallable: TypeAlias = Callable[..., Awaitable[T]]

#: Marks "fn has not returned yet" (``None`` is a legitimate return value).
NOTHING: Final[Any] = object()


def callable_name(fn: object) -> str:
    """A readable name for ``fn`` in error messages."""
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))


def misuse(fn: object, returned: object, exc: BaseException) -> TypeError | None:
    """A TypeError explaining the misuse when ``exc`` came from awaiting a non-awaitable."""
    if isinstance(exc, TypeError) and returned is not NOTHING and not inspect.isawaitable(returned):
        return TypeError(
            f"{callable_name(fn)} returned {type(returned).__name__}, which is not awaitable; "
            "pass an async function or a callable that returns an awaitable"
        )
    return None

"""The table every translation ends in: builtins, OS, socket and asyncio errors.

These carry no backend of their own, so each maps to the error *of the caller's family*:
``TimeoutError`` (which ``asyncio.TimeoutError`` is, since 3.11) becomes
``QueryTimeoutError`` for a database call, ``LLMTimeoutError`` for an LLM call and
``OperationTimeoutError`` otherwise; refused/reset/broken connections become that
family's connection error (retryable). ``Exception`` is the last row: anything unknown
becomes the family's base error and is *not* retryable, because retrying what we do not
understand hides bugs.

``UnicodeEncodeError`` is a caller error (role ``argument``): a driver raises it while
encoding a string the caller passed -- a lone surrogate in a Redis key, or in SQL text --
before anything is sent. (``UnicodeDecodeError`` is not: it is about what came back.)

``ValueError`` gets one family-specific heuristic: qdrant-client's local mode (the
embedded backend) raises plain ``ValueError`` for a missing collection or a wrong vector
size; with ``family="vector"`` those messages are recognised (see :mod:`._vector`).
"""

from __future__ import annotations

import errno
import socket

from infra.exceptions import InfraError
from infra.translation._context import DriverTable, TranslationContext, to
from infra.translation._vector import local_mode_error

__all__ = ["load"]

# errno values that mean "the peer or the path to it is gone", not "we did something
# wrong": the same call may succeed on a fresh connection.
_CONNECTION_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNREFUSED",
        "ECONNRESET",
        "ECONNABORTED",
        "EPIPE",
        "ENOTCONN",
        "EHOSTUNREACH",
        "EHOSTDOWN",
        "ENETUNREACH",
        "ENETDOWN",
        "ENETRESET",
        "ETIMEDOUT",
        "EADDRNOTAVAIL",
        "ESHUTDOWN",
    )
    if hasattr(errno, name)
)


def _os_error(exc: BaseException, ctx: TranslationContext) -> InfraError | None:
    code = getattr(exc, "errno", None)
    # asyncio's create_connection, when every resolved address fails, raises a bare
    # OSError("Multiple exceptions: [Errno 111] Connect call failed ...") without errno.
    multi_connect = code is None and "connect call failed" in str(exc).lower()
    if code in _CONNECTION_ERRNOS or multi_connect:
        return ctx.error(ctx.role_class("connection"), exc, details={"errno": code})
    return None


def _value_error(exc: BaseException, ctx: TranslationContext) -> InfraError | None:
    return local_mode_error(exc, ctx) if ctx.family == "vector" else None


def load() -> DriverTable:
    """Rows for builtins/OS errors; always loaded (every MRO ends in ``builtins``)."""
    return [
        (TimeoutError, to("timeout")),
        (ConnectionError, to("connection")),
        (socket.gaierror, to("connection", facts=lambda e: {"errno": getattr(e, "errno", None)})),
        (OSError, _os_error),
        (UnicodeEncodeError, to("argument")),
        (ValueError, _value_error),
        (Exception, to("base", retryable=False)),
    ]

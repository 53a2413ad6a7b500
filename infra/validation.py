"""Checks of caller input that run before any I/O, shared by the adapters and their fakes.

A caller's mistake must be told apart from a backend failure: it must not be retried,
must not count toward a circuit breaker and must not make a cache think its backend is
down. The surest way is to reject bad input *before* it reaches the driver, with an
:class:`~infra.exceptions.InvalidArgumentError` that names the argument and the fix. The
real adapters and the fakes in :mod:`infra.testing.fakes` call the same functions here,
so both raise the same type for the same input. Nothing here imports a driver.

Arguments rejected here never enter the call path (:mod:`infra.calls`): no breaker, no
retry, no span, no metric -- like a ``TypeError`` for a wrong call signature. Caller
errors the *server* reports (a constraint, a division by zero) do go through it.

The limits, and why:

* **Keys and lock names** (:func:`check_key`): a non-empty ``str`` of at most
  :data:`MAX_KEY_LENGTH` characters that encodes as UTF-8. Redis accepts keys up to
  512 MB, but a key is an identifier: a bound keeps a request field from becoming a
  megabyte key (and a megabyte in every log line that names it). 1024 characters (at
  most 4 KiB of UTF-8) leaves room for composite keys. A lone surrogate (``"\\ud800"``,
  what a JSON parser produces for an unpaired ``\\ud800`` escape) cannot be encoded, and
  redis-py would raise ``UnicodeEncodeError`` mid-command. Other characters, NUL
  included, are fine: Redis keys are binary-safe. ``bytes`` keys are refused: the port's
  keys are ``str``, and accepting both would make ``b"k"`` and ``"k"`` two names for one
  Redis key in the fakes and the in-process tier.
* **SQL text** (:func:`check_query`): a non-empty ``str`` without NUL characters or lone
  surrogates. PostgreSQL cannot receive a NUL in a statement: asyncpg sends it and the
  server answers with a protocol violation (SQLSTATE 08P01), which reads as a lost
  connection -- retried and counted by the breaker. A lone surrogate makes asyncpg raise
  ``UnicodeEncodeError`` half-way through a message and leaves the connection closed.
  No length limit: the server judges size (``QuerySyntaxError``, SQLSTATE 54001).
* **Parameters** are left to asyncpg's encoder (wrong type, out of range, unencodable:
  ``QueryArgumentError`` naming ``$n``) and the server (a NUL in a text value:
  ``QueryDataError``): both answer before the statement runs, and checking every
  argument here would cost every call. Only the *shape* of ``executemany``'s argument
  list is checked (:func:`check_rows`), because asyncpg accepts a ``str`` row as a
  sequence of one-character values.
* **Timeouts** (:func:`check_timeout`): ``None`` or a finite number of seconds in
  (0, 1e9); ``bool`` is refused (``True`` is not a duration).
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from infra.exceptions import InvalidArgumentError, InvalidKeyError, QueryArgumentError

__all__ = [
    "ISOLATION_LEVELS",
    "MAX_KEY_LENGTH",
    "check_column",
    "check_isolation",
    "check_key",
    "check_key_list",
    "check_latency_threshold",
    "check_mapping",
    "check_query",
    "check_rows",
    "check_timeout",
    "shown",
]

#: Longest cache key accepted, in characters (see the module docstring).
MAX_KEY_LENGTH: Final = 1024
#: Transaction isolation levels PostgreSQL offers (``read uncommitted`` is read committed).
ISOLATION_LEVELS: Final = ("read_committed", "repeatable_read", "serializable")
#: Longest timeout accepted, in seconds: larger values overflow event-loop timers.
_MAX_SECONDS: Final = 1e9


_SHOWN: Final = 60
_REPR: Final = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 40
_REPR.maxlevel = 2


def shown(value: object) -> str:
    """A short ``repr`` of a caller's value for an error message: at most 60 characters,
    and never an exception (a huge int's ``repr`` raises past 4300 digits). Error
    messages must stay small: they are logged, and redacted in full."""
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 -- a broken __repr__ must not replace the real error
        return f"<{type(value).__name__}>"
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _type_name(value: object) -> str:
    return type(value).__name__


def _surrogate_at(text: str) -> int | None:
    """Index of the first character UTF-8 cannot encode (a lone surrogate), or ``None``."""
    if text.isascii():  # O(1) in CPython: the common case costs nothing
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def check_key(
    key: object,
    *,
    argument: str = "key",
    what: str = "cache keys",
    component: str | None = None,
    max_length: int = MAX_KEY_LENGTH,
) -> str:
    """``key`` itself when it is a usable key, else :class:`InvalidKeyError`.

    Args:
        key: The value to check.
        argument: The argument's name in the caller's signature (for the error).
        what: What such keys are, in words, plural (``"cache keys"``, ``"lock names"``).
        component: ``component`` of the error.
        max_length: Longest accepted length, in characters.
    """
    if key.__class__ is not str:
        fix = "decode it first" if isinstance(key, bytes | bytearray) else "pass a str"
        raise InvalidKeyError(
            f"{what} must be str, got {_type_name(key)}; {fix}",
            argument=argument,
            component=component,
        )
    assert isinstance(key, str)  # noqa: S101 -- narrowed by the exact class check above
    if not key:
        raise InvalidKeyError(
            f"{what} must not be empty; use a stable identifier such as 'user:42'",
            argument=argument,
            component=component,
        )
    if len(key) > max_length:
        raise InvalidKeyError(
            f"{what} must have at most {max_length} characters, got {len(key)}; "
            "hash long or free-form input (e.g. to sha256 hex) into the key",
            argument=argument,
            component=component,
            details={"length": len(key), "max_length": max_length},
        )
    position = _surrogate_at(key)
    if position is not None:
        raise InvalidKeyError(
            f"{what} must encode as UTF-8, got a lone surrogate {key[position]!r} at index "
            f"{position}; clean the input (e.g. decode it with errors='replace')",
            argument=argument,
            component=component,
            details={"position": position},
        )
    return key


def check_key_list(keys: object, *, component: str | None = None) -> Sequence[Any]:
    """``keys`` itself when it is a list or tuple (its items are checked one by one with
    :func:`check_key` by the caller), else :class:`InvalidArgumentError`. A bare ``str``
    is refused: it is a sequence of one-character keys, never what was meant."""
    if isinstance(keys, str | bytes | bytearray) or not isinstance(keys, Sequence):
        raise InvalidArgumentError(
            f"keys must be a list or tuple of str, got {_type_name(keys)}",
            argument="keys",
            component=component,
        )
    return keys


def check_mapping(items: object, *, component: str | None = None) -> Mapping[Any, Any]:
    """``items`` itself when it is a mapping (of key to value), else InvalidArgumentError."""
    if not isinstance(items, Mapping):
        raise InvalidArgumentError(
            f"items must be a mapping of key to value, got {_type_name(items)}",
            argument="items",
            component=component,
        )
    return items


def check_query(query: object, *, component: str | None = None) -> str:
    """``query`` itself when it is sendable SQL text, else :class:`QueryArgumentError`."""
    # Every statement passes here: the common case (ASCII SQL) in one expression.
    if (
        query.__class__ is str
        and query.isascii()
        and "\x00" not in query
        and query
        and not query.isspace()
    ):
        return query
    if query.__class__ is not str:
        fix = "decode it first" if isinstance(query, bytes | bytearray) else "pass SQL text"
        raise QueryArgumentError(
            f"query must be a str of SQL, got {_type_name(query)}; {fix}",
            argument="query",
            component=component,
        )
    assert isinstance(query, str)  # noqa: S101 -- narrowed by the exact class check above
    nul = query.find("\x00")
    if nul >= 0:
        raise QueryArgumentError(
            f"query contains a NUL character at index {nul}, which PostgreSQL cannot "
            "receive; pass values as $n parameters (and binary data as bytes for bytea)",
            argument="query",
            component=component,
            details={"position": nul},
        )
    if not query or query.isspace():
        raise QueryArgumentError(
            "query is empty; pass the SQL statement to run",
            argument="query",
            component=component,
        )
    position = _surrogate_at(query)
    if position is not None:
        raise QueryArgumentError(
            f"query cannot be encoded as UTF-8: lone surrogate {query[position]!r} at "
            f"index {position}; clean the input, and pass values as $n parameters",
            argument="query",
            component=component,
            details={"position": position},
        )
    return query


def check_rows(args: object, *, component: str | None = None) -> list[Sequence[Any]]:
    """``executemany``'s argument rows as a list, each a sequence of parameter values.

    A one-shot iterable (a generator) is read once here, so a retried call sends the
    same rows again.
    """
    if isinstance(args, str | bytes | bytearray) or not isinstance(args, Iterable):
        raise QueryArgumentError(
            f"args must be a list of argument tuples, one per execution, got {_type_name(args)}",
            argument="args",
            component=component,
        )
    rows = list(args)
    for index, row in enumerate(rows):
        if isinstance(row, str | bytes | bytearray) or not isinstance(row, Sequence):
            raise QueryArgumentError(
                f"args[{index}] must be a tuple or list of parameter values, got "
                f"{_type_name(row)}; wrap a single value as (value,)",
                argument=f"args[{index}]",
                component=component,
            )
    return rows


def check_column(column: object, *, component: str | None = None) -> int:
    """A column index: an ``int`` (not ``bool``)."""
    if isinstance(column, bool) or not isinstance(column, int):
        raise QueryArgumentError(
            f"column must be an int index into the row, got {_type_name(column)}",
            argument="column",
            component=component,
        )
    return column


def check_timeout(
    timeout: object, *, argument: str = "timeout", component: str | None = None
) -> float | None:
    """``None``, or a finite number of seconds in (0, 1e9), else InvalidArgumentError."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidArgumentError(
            f"{argument} must be None or a positive number of seconds, got {_type_name(timeout)}",
            argument=argument,
            component=component,
        )
    if not (math.isfinite(timeout) and 0 < timeout < _MAX_SECONDS):
        raise InvalidArgumentError(
            f"{argument} must be None or a positive number of seconds below "
            f"{_MAX_SECONDS:g}, got {shown(timeout)}",
            argument=argument,
            component=component,
        )
    return float(timeout)


def check_isolation(isolation: object, *, component: str | None = None) -> None:
    """Reject an isolation level PostgreSQL does not offer (at the call, not at BEGIN)."""
    if isolation is not None and isolation not in ISOLATION_LEVELS:
        raise InvalidArgumentError(
            f"isolation must be None or one of {sorted(ISOLATION_LEVELS)}, got {shown(isolation)}",
            argument="isolation",
            component=component,
        )


def check_latency_threshold(latency_threshold_ms: object, *, component: str | None = None) -> float:
    """A health check's threshold: a non-negative number of milliseconds."""
    if isinstance(latency_threshold_ms, bool) or not isinstance(latency_threshold_ms, int | float):
        raise InvalidArgumentError(
            "latency_threshold_ms must be a number of milliseconds, got "
            f"{shown(latency_threshold_ms)}",
            argument="latency_threshold_ms",
            component=component,
        )
    if not latency_threshold_ms >= 0:
        raise InvalidArgumentError(
            f"latency_threshold_ms must be >= 0, got {shown(latency_threshold_ms)}",
            argument="latency_threshold_ms",
            component=component,
        )
    return float(latency_threshold_ms)

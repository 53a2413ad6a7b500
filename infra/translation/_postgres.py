"""asyncpg: SQLSTATE-classed server errors and the client's own interface errors.

asyncpg raises one class per SQLSTATE, arranged by SQLSTATE class (``23xxx`` under
``IntegrityConstraintViolationError`` and so on), so rows name the class bases and the
MRO walk does the rest. Facts kept in ``details``: ``sqlstate``, ``constraint``,
``table``, ``column``, ``schema``. The message is the server's primary message
(``args[0]``); asyncpg's ``DETAIL`` line is left out on purpose, because it quotes row
values (``Key (email)=(...) already exists``) that do not belong in logs.

Caller errors (:class:`~infra.exceptions.CallerError`: never retried, never counted by a
breaker) are whatever the *request* got wrong, by SQLSTATE class:

* 42, 0A, 26, 34, 3F, 54 -> ``QuerySyntaxError``: syntax, unknown names, unsupported
  features, a statement too large or complex (54001 "stack depth limit exceeded");
* 22, 21, P0 -> ``QueryDataError``: division by zero, out of range, invalid text for a
  type, a NUL character in a text value (22021), a scalar subquery returning several
  rows, ``RAISE EXCEPTION`` in server-side code;
* 23, 44 -> ``ConstraintViolationError`` (``UniqueViolationError`` for 23505);
* 25, 0B, 2D, 3B -> ``TransactionStateError``: a statement after a failed one in the same
  transaction (25P02), a write in a read-only transaction (25006), savepoint misuse.

Client-side refusals, measured on asyncpg 0.32 against PostgreSQL 18:

* a value the parameter's codec cannot encode (``'abc'`` for an ``int``, an int beyond
  int64, a lone surrogate in a ``str``, a ``dict`` for ``text``) raises
  ``asyncpg.DataError`` -- the SQLSTATE-22 class, but raised by the client before the
  Bind message, with the encoding error as ``__cause__`` -> ``QueryArgumentError`` naming
  the parameter (``details["argument"] = "$1"``). The value itself is left out of the
  message (it may be a secret);
* the wrong number of parameters (``the server expects 1 argument for this query, 2
  were passed``) and more than 32767 of them raise ``InterfaceError`` ->
  ``QueryArgumentError``;
* a NUL character in the SQL text is sent, and the server answers with a *protocol
  violation* (08P01) -- which would read as a lost connection -- and a lone surrogate in
  the SQL text raises ``UnicodeEncodeError`` and leaves the connection closed. Both are
  therefore rejected by the store before any I/O (:mod:`infra.validation`).

Backend failures:

* ``QueryCanceledError`` (57014; ``statement_timeout`` or a cancel request) ->
  ``QueryTimeoutError``, retryable, with the caller's ``timeout`` when known.
* ``InsufficientPrivilegeError`` -> ``BackendAuthenticationError``: the fix is the
  role's grants, not the statement.
* ``InterfaceError`` is asyncpg's catch-all client error; "connection is closed" style
  messages are connection failures (retryable). "pool is closed/closing" is a
  connection error that is *not* retryable: this pool will not come back.
* ``InternalClientError`` (``cannot switch to state 15; another operation is in
  progress``, ``protocol is in the "failed" state``, ``not connected``) means the
  connection's protocol state is no longer consistent -- seen when a connection is lost
  mid-operation during an outage. asyncpg aborts such a connection, so it is a
  *retryable* ``DatabaseConnectionError``: a repeat runs on a fresh one.
* Unknown ``PostgresError`` -> ``DatabaseError`` (``DatabaseConnectionError`` for class
  08), retryable when the SQLSTATE class says a repeat may succeed: 08 connection, 40
  transaction rollback, 53 insufficient resources, 57P0x operator intervention.
"""

from __future__ import annotations

import re
from typing import Any, Final

from infra.exceptions import (
    BackendAuthenticationError,
    ConfigurationError,
    ConstraintViolationError,
    DatabaseConnectionError,
    DatabaseError,
    InfraError,
    QueryArgumentError,
    QueryDataError,
    QuerySyntaxError,
    QueryTimeoutError,
    SerializationFailureError,
    TransactionStateError,
    UniqueViolationError,
)
from infra.translation._context import (
    DriverTable,
    TranslationContext,
    Translator,
    driver_text,
    to,
)

__all__ = ["load", "sqlstate_retryable"]

#: SQLSTATE class -> the caller error for a server error no more specific row matched.
_CALLER_CLASSES: Final[dict[str, type[InfraError]]] = {
    **dict.fromkeys(("42", "0A", "26", "34", "3F", "54"), QuerySyntaxError),
    **dict.fromkeys(("22", "21", "P0"), QueryDataError),
    **dict.fromkeys(("23", "44"), ConstraintViolationError),
    **dict.fromkeys(("25", "0B", "2D", "3B"), TransactionStateError),
}
#: asyncpg's client-side encoding failure: "invalid input for query argument $1: ..."
#: or "invalid input in executemany() argument sequence element #0: ...".
_CLIENT_INPUT: Final = re.compile(
    r"^invalid input (?:for query argument (?P<arg>\$\d+(?: in element #\d+)?)"
    r"|in executemany\(\) argument sequence (?P<row>element #\d+))"
)
#: asyncpg's InterfaceError for the wrong number of parameters, or too many of them.
_ARITY: Final = re.compile(
    r"server expects \d+ arguments? for this query|number of query arguments cannot exceed"
    r"|^query argument \$\d+"
)


def sqlstate_retryable(sqlstate: str | None) -> bool:
    """Whether a SQLSTATE's class means the same statement may succeed when repeated."""
    state = sqlstate or ""
    return state[:2] in {"08", "40", "53"} or state.startswith("57P0")


def _facts(exc: BaseException) -> dict[str, Any]:
    return {
        "sqlstate": getattr(exc, "sqlstate", None),
        "constraint": getattr(exc, "constraint_name", None),
        "table": getattr(exc, "table_name", None),
        "column": getattr(exc, "column_name", None),
        "schema": getattr(exc, "schema_name", None),
    }


def _primary_message(exc: BaseException) -> str:
    return str(exc.args[0]) if exc.args else ""


def _pg(cls: type[InfraError], *, retryable: bool | None = None) -> Translator:
    return to(cls, retryable=retryable, facts=_facts, text=_primary_message)


def _fallback(exc: BaseException, ctx: TranslationContext) -> InfraError:
    state = getattr(exc, "sqlstate", None) or ""
    caller = _CALLER_CLASSES.get(state[:2])
    if caller is not None:
        return ctx.error(caller, exc, text=_primary_message(exc), details=_facts(exc))
    cls = DatabaseConnectionError if state.startswith("08") else DatabaseError
    return ctx.error(
        cls,
        exc,
        text=_primary_message(exc),
        retryable=sqlstate_retryable(state),
        details=_facts(exc),
    )


def _data_error(exc: BaseException, ctx: TranslationContext) -> InfraError:
    """Class 22: the server refused a value -- or the client could not encode one."""
    match = _CLIENT_INPUT.match(_primary_message(exc))
    if match is None:
        return _fallback(exc, ctx)
    argument = match["arg"] or match["row"]
    cause = exc.__cause__
    reason = driver_text(cause) if cause is not None else "not a sequence of values"
    return ctx.error(
        QueryArgumentError,
        exc,
        text=f"query argument {argument} cannot be encoded for its parameter type: {reason}",
        details={"argument": argument},
    )


def _interface_error(exc: BaseException, ctx: TranslationContext) -> InfraError:
    text = str(exc).lower()
    if "pool is clos" in text:
        return ctx.error(DatabaseConnectionError, exc, retryable=False)
    if "connection" in text and "closed" in text:
        return ctx.error(DatabaseConnectionError, exc)
    if _ARITY.search(text):
        return ctx.error(
            QueryArgumentError, exc, text=_primary_message(exc), details={"argument": "args"}
        )
    return ctx.error(DatabaseError, exc)


def load() -> DriverTable:
    """Rows for ``asyncpg`` exceptions."""
    # asyncpg ships no type information (asyncpg-stubs may or may not be installed).
    from asyncpg import exceptions as pg  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
    from asyncpg.exceptions import _base  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    connection = _pg(DatabaseConnectionError)
    syntax = _pg(QuerySyntaxError)
    serialization = _pg(SerializationFailureError)
    auth = _pg(BackendAuthenticationError)
    return [
        (pg.UniqueViolationError, _pg(UniqueViolationError)),
        (pg.IntegrityConstraintViolationError, _pg(ConstraintViolationError)),
        (pg.InsufficientPrivilegeError, auth),
        (pg.SyntaxOrAccessError, syntax),  # syntax, undefined table/column/function ...
        (pg.DataError, _data_error),  # SQLSTATE 22, or a client-side encoding failure
        (_base.DataError, _pg(QueryArgumentError)),  # client side (older asyncpg)
        (pg.SerializationError, serialization),
        (pg.DeadlockDetectedError, serialization),
        (pg.QueryCanceledError, _pg(QueryTimeoutError)),
        (pg.InvalidAuthorizationSpecificationError, auth),  # incl. InvalidPasswordError
        (pg.PostgresConnectionError, connection),  # 08: does not exist, failure ...
        (pg.CannotConnectNowError, connection),
        (pg.AdminShutdownError, connection),
        (pg.CrashShutdownError, connection),
        (pg.TooManyConnectionsError, connection),
        (pg.InvalidCachedStatementError, _pg(DatabaseError, retryable=True)),
        (pg.PostgresError, _fallback),
        (_base.ClientConfigurationError, _pg(ConfigurationError)),
        (_base.TargetServerAttributeNotMatched, _pg(DatabaseConnectionError)),
        (_base.OutdatedSchemaCacheError, _pg(DatabaseError, retryable=True)),
        (pg.InterfaceError, _interface_error),
        (_base.InternalClientError, _pg(DatabaseConnectionError)),
    ]

"""asyncpg: SQLSTATE-classed server errors and the client's own interface errors.

asyncpg raises one class per SQLSTATE, arranged by SQLSTATE class (``23xxx`` under
``IntegrityConstraintViolationError`` and so on), so rows name the class bases and the
MRO walk does the rest. Facts kept in ``details``: ``sqlstate``, ``constraint``,
``table``, ``column``, ``schema``. The message is the server's primary message
(``args[0]``); asyncpg's ``DETAIL`` line is left out on purpose, because it quotes row
values (``Key (email)=(...) already exists``) that do not belong in logs.

Decisions:

* ``QueryCanceledError`` (57014; ``statement_timeout`` or a cancel request) ->
  ``QueryTimeoutError``, retryable, with the caller's ``timeout`` when known.
* ``InsufficientPrivilegeError`` -> ``BackendAuthenticationError``: the fix is the
  role's grants, not the statement.
* ``InterfaceError`` is asyncpg's catch-all client error; only "connection is closed"
  style messages are connection failures (retryable). "pool is closed/closing" is a
  connection error that is *not* retryable: this pool will not come back.
* Unknown ``PostgresError`` -> ``DatabaseError`` (``DatabaseConnectionError`` for class
  08), retryable when the SQLSTATE class says a repeat may succeed: 08 connection, 40
  transaction rollback, 53 insufficient resources, 57P0x operator intervention.
"""

from __future__ import annotations

from typing import Any

from infra.exceptions import (
    BackendAuthenticationError,
    ConfigurationError,
    ConstraintViolationError,
    DatabaseConnectionError,
    DatabaseError,
    InfraError,
    QuerySyntaxError,
    QueryTimeoutError,
    SerializationFailureError,
    UniqueViolationError,
)
from infra.translation._context import DriverTable, TranslationContext, Translator, to

__all__ = ["load", "sqlstate_retryable"]


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
    state = getattr(exc, "sqlstate", None)
    cls = DatabaseConnectionError if (state or "").startswith("08") else DatabaseError
    return ctx.error(
        cls,
        exc,
        text=_primary_message(exc),
        retryable=sqlstate_retryable(state),
        details=_facts(exc),
    )


def _interface_error(exc: BaseException, ctx: TranslationContext) -> InfraError:
    text = str(exc).lower()
    if "pool is clos" in text:
        return ctx.error(DatabaseConnectionError, exc, retryable=False)
    if "connection" in text and "closed" in text:
        return ctx.error(DatabaseConnectionError, exc)
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
        (pg.DataError, syntax),  # SQLSTATE 22: invalid value for the column type
        (_base.DataError, syntax),  # client side: argument cannot be encoded
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
        (_base.InternalClientError, _pg(DatabaseError)),
    ]

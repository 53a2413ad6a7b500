"""Transactions: a scope that owns one connection, and the store bound to it.

``async with store.transaction() as tx:`` acquires a connection, sends ``BEGIN`` and yields
a :class:`PostgresTransaction` -- a :class:`~infra.ports.RelationalStore` whose statements
all run on that connection. Leaving the block commits; an exception rolls back and
propagates. ``tx.transaction()`` nests: asyncpg turns a transaction started on a
connection that already has one into a ``SAVEPOINT``, and rolling it back leaves the outer
transaction intact.

Decisions:

* **No retries inside a transaction.** A statement that failed has aborted the
  transaction on the server (PostgreSQL refuses every further statement until a
  rollback), and a lost connection lost the transaction with it; repeating the one
  statement cannot help. Statements of a transaction therefore run with
  ``idempotent=False``; the breaker and telemetry still see each of them. Retrying the
  *whole* transaction is the caller's decision (``SerializationFailureError`` says so).
  ``BEGIN`` alone is retried like a read: on failure the connection is released and
  nothing was done.
* **Only BEGIN passes the bulkhead.** ``BEGIN`` of a top-level transaction waits for a
  pooled connection like any call, inside the policy's bulkhead. Everything after it
  (statements, savepoints, commit, rollback) runs on the connection the transaction
  holds, under the same policy minus its bulkhead
  (:meth:`~infra.resilience.ResiliencePolicy.without_bulkhead`): the pool already bounds
  those, and waiting for a slot there deadlocked -- callers holding every slot waited
  for a connection, while the transactions holding the connections waited for a slot
  (found at twice the pool size in concurrent transactions, with the bulkhead at the
  pool size), until timeouts failed both.
* **Manual begin/commit/rollback** rather than asyncpg's ``async with`` transaction,
  because each step is a call of its own through :class:`~infra.calls.BackendCalls`
  (``begin``, ``commit``, ``rollback``; ``savepoint``, ``release_savepoint``,
  ``rollback_to_savepoint`` when nested), with its own telemetry and translation.
  Statements get the same client-side limit as the pooled ones (the dead-peer deadline
  or asyncpg's timer, see :mod:`infra.storage._pool`).
* **The body's error wins.** If the rollback after a failed body fails too (the
  connection broke), that second error is logged and the body's error propagates; the
  pool's reset on release rolls back whatever is left.
* **An error handled inside the block still rolls the block back.** PostgreSQL aborts a
  transaction at its first failed statement, and a later ``COMMIT`` silently becomes a
  ``ROLLBACK``. So that this never passes unnoticed, a block that caught a statement's
  error and then ended normally is rolled back and raises ``DatabaseError`` (sqlstate
  ``25P02``) saying so; the remedy is a savepoint (``async with tx.transaction():``)
  around statements whose failure is handled -- rolling that back clears the error.
* **A finished transaction refuses statements** with a clear ``DatabaseError`` instead
  of asyncpg's "connection has been released back to the pool".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

import asyncpg
from asyncpg.transaction import Transaction

from infra.calls import BackendCalls
from infra.exceptions import InfraError, TransactionStateError
from infra.ports import Row
from infra.redaction import redact_text
from infra.storage._deadpeer import StatementDeadlines
from infra.storage._statements import (
    Connection,
    Statement,
    Timeouts,
    execute_many,
    execute_status,
    fetch_row,
    fetch_rows,
    fetch_value,
)
from infra.validation import (
    check_column,
    check_isolation,
    check_query,
    check_rows,
)

__all__ = ["IsolationLevel", "PostgresTransaction", "TransactionScope", "check_isolation"]

T = TypeVar("T")

#: The names of :data:`infra.validation.ISOLATION_LEVELS`, as a type.
IsolationLevel = Literal["read_committed", "repeatable_read", "serializable"]


_log = logging.getLogger("infra.storage.postgres")

HealthCheck = Callable[[float], Awaitable[tuple[bool, dict[str, Any]]]]


class _TransactionState:
    """Shared by a top-level transaction, its savepoints and their bound stores."""

    __slots__ = ("failure",)

    def __init__(self) -> None:
        #: The last statement error not yet undone by a savepoint rollback.
        self.failure: InfraError | None = None


class PostgresTransaction:
    """A :class:`~infra.ports.RelationalStore` bound to one open transaction.

    Made by ``transaction()``; valid until its ``async with`` block ends.
    """

    __slots__ = (
        "_active",
        "_calls",
        "_conn",
        "_deadlines",
        "_default_limits",
        "_health",
        "_state",
        "_timeouts",
    )

    def __init__(
        self,
        conn: Connection,
        calls: BackendCalls,
        timeouts: Timeouts,
        health: HealthCheck,
        *,
        state: _TransactionState,
        deadlines: StatementDeadlines | None,
    ) -> None:
        self._conn = conn
        self._deadlines = deadlines
        self._calls = calls
        self._timeouts = timeouts
        self._default_limits = timeouts.limits(None, deadlines=deadlines is not None)
        self._health = health
        self._state = state
        self._active = True

    @property
    def is_active(self) -> bool:
        """Whether the transaction block is still open."""
        return self._active

    def _finish(self) -> None:
        self._active = False

    def _check_active(self) -> None:
        if not self._active:
            raise TransactionStateError(
                "this transaction has ended; run statements inside its `async with` block "
                "or open a new transaction()",
                component=self._calls.component,
            )

    async def _run(
        self,
        operation: str,
        fn: Callable[[Connection, Statement], Awaitable[T]],
        query: str,
        args: Sequence[Any],
        *,
        column: int = 0,
        limit: float | None,
    ) -> T:
        self._check_active()
        limits = self._default_limits if limit is None else self._timeouts.limits(limit)
        statement = Statement(query, args, limits, column)
        try:
            if self._deadlines is not None and limits.watched:  # see infra.storage._pool
                return await self._calls.run(
                    operation,
                    self._deadlines.call,
                    self._calls.component,
                    self._conn,
                    fn,
                    statement,
                    idempotent=False,
                    timeout=limits.reported,
                )
            return await self._calls.run(
                operation, fn, self._conn, statement, idempotent=False, timeout=limits.reported
            )
        except InfraError as exc:
            self._state.failure = exc
            raise

    # Arguments are checked before _run: a rejected one sent nothing, so it neither
    # aborts the server's transaction nor marks this one failed.
    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Row]:
        """All rows of ``query``, as dicts."""
        check_query(query, component=self._calls.component)
        return await self._run("fetch", fetch_rows, query, args, limit=timeout)

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Row | None:
        """The first row as a dict, or ``None``."""
        check_query(query, component=self._calls.component)
        return await self._run("fetchrow", fetch_row, query, args, limit=timeout)

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        """One value of the first row, or ``None``."""
        check_query(query, component=self._calls.component)
        check_column(column, component=self._calls.component)
        return await self._run("fetchval", fetch_value, query, args, column=column, limit=timeout)

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        """Run a statement; returns the server's status tag."""
        check_query(query, component=self._calls.component)
        return await self._run("execute", execute_status, query, args, limit=timeout)

    async def executemany(
        self, query: str, args: Sequence[Sequence[Any]], *, timeout: float | None = None
    ) -> None:
        """Run a statement once per argument tuple."""
        check_query(query, component=self._calls.component)
        rows = check_rows(args, component=self._calls.component)
        await self._run("executemany", execute_many, query, rows, limit=timeout)

    def transaction(
        self,
        *,
        isolation: IsolationLevel | None = None,
        readonly: bool = False,
        deferrable: bool = False,
    ) -> TransactionScope:
        """A savepoint inside this transaction; rolling it back keeps the outer one."""
        self._check_active()
        check_isolation(isolation, component=self._calls.component)
        return TransactionScope(
            self._calls,  # already the held-connection calls (see TransactionScope)
            self._timeouts,
            self._health,
            deadlines=self._deadlines,
            conn=self._conn,
            state=self._state,
            isolation=isolation,
            readonly=readonly,
            deferrable=deferrable,
        )

    async def health_check(
        self, latency_threshold_ms: float = 100.0
    ) -> tuple[bool, dict[str, Any]]:
        """The owning store's health check (it does not use this transaction)."""
        return await self._health(latency_threshold_ms)

    def __repr__(self) -> str:
        state = "active" if self._active else "finished"
        return f"PostgresTransaction({state})"


class TransactionScope:
    """``async with`` scope of one transaction or savepoint; see the module docstring.

    Top-level scopes get ``acquire``/``release`` to borrow a pooled connection; nested
    scopes get the outer transaction's ``conn`` and ``state``. ``calls`` runs the
    top-level ``BEGIN`` (which waits for the connection); ``held`` (default ``calls``)
    runs everything on the held connection.
    """

    __slots__ = (
        "_acquire",
        "_bound",
        "_calls",
        "_conn",
        "_deadlines",
        "_health",
        "_held",
        "_nested",
        "_options",
        "_release",
        "_state",
        "_timeouts",
        "_tx",
    )

    def __init__(
        self,
        calls: BackendCalls,
        timeouts: Timeouts,
        health: HealthCheck,
        *,
        held: BackendCalls | None = None,
        deadlines: StatementDeadlines | None = None,
        conn: Connection | None = None,
        state: _TransactionState | None = None,
        acquire: Callable[[], Awaitable[Connection]] | None = None,
        release: Callable[[Connection], Awaitable[None]] | None = None,
        isolation: IsolationLevel | None = None,
        readonly: bool = False,
        deferrable: bool = False,
    ) -> None:
        if conn is None and (acquire is None or release is None):
            raise TypeError("a top-level transaction scope needs acquire and release")
        self._calls = calls
        self._held = held if held is not None else calls
        self._timeouts = timeouts
        self._health = health
        self._deadlines = deadlines
        self._conn = conn
        self._nested = conn is not None
        self._state = state if state is not None else _TransactionState()
        self._acquire = acquire
        self._release = release
        self._options = (isolation, readonly, deferrable)
        self._tx: Transaction | None = None
        self._bound: PostgresTransaction | None = None

    def _start_on(self, conn: Connection) -> Transaction:
        isolation, readonly, deferrable = self._options
        return conn.transaction(isolation=isolation, readonly=readonly, deferrable=deferrable)

    async def _begin(self) -> None:
        if self._nested:
            conn = self._conn
            assert conn is not None  # noqa: S101 -- nested scopes are built with a connection
            tx = self._start_on(conn)
            await tx.start()
        else:
            assert self._acquire is not None  # noqa: S101 -- checked in __init__
            assert self._release is not None  # noqa: S101
            conn = await self._acquire()
            try:
                tx = self._start_on(conn)
                await tx.start()
            except BaseException:
                await self._release(conn)
                raise
            self._conn = conn
        self._tx = tx

    async def __aenter__(self) -> PostgresTransaction:
        if self._bound is not None:
            raise RuntimeError("a transaction scope can be entered only once")
        if self._nested:
            await self._held.run("savepoint", self._begin, idempotent=False)
        else:
            await self._calls.run("begin", self._begin, idempotent=True)
        assert self._conn is not None  # noqa: S101 -- set by _begin
        self._bound = PostgresTransaction(
            self._conn,
            self._held,
            self._timeouts,
            self._health,
            state=self._state,
            deadlines=self._deadlines,
        )
        return self._bound

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._bound is not None  # noqa: S101 -- __aenter__ ran
        self._bound._finish()
        tx = self._tx
        assert tx is not None  # noqa: S101 -- set by _begin
        try:
            failure = self._state.failure
            if exc is None and failure is None:
                operation = "release_savepoint" if self._nested else "commit"
                await self._held.run(operation, tx.commit, idempotent=False)
                return
            rolled_back = await self._rollback(tx)
            if rolled_back and self._nested:
                self._state.failure = None  # ROLLBACK TO undid the failed statement
            if exc is None and failure is not None:
                raise _aborted(failure, self._held.component, nested=self._nested) from failure
        finally:
            if not self._nested and self._release is not None and self._conn is not None:
                await self._release(self._conn)

    async def _rollback(self, tx: Transaction) -> bool:
        """Roll back; a failure is logged, not raised (the body's error is the one to see;
        the pool's reset on release rolls back whatever is left)."""
        operation = "rollback_to_savepoint" if self._nested else "rollback"
        if self._conn is not None and _connection_lost(self._conn):
            return False  # the server ended the transaction with the connection
        try:
            await self._held.run(operation, tx.rollback, idempotent=False)
        except InfraError as error:
            _log.warning(
                "%s failed (%s: %s); the connection is reset when released",
                operation,
                type(error).__name__,
                redact_text(str(error)),
            )
            return False
        return True


def _connection_lost(conn: Connection) -> bool:
    """Whether ``conn`` is gone (closed, or detached because the pool terminated it)."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:  # "connection has been released back to the pool"
        return True


def _aborted(failure: InfraError, component: str | None, *, nested: bool) -> TransactionStateError:
    """The error for a block that caught a statement's error and then ended normally."""
    undone = "savepoint" if nested else "transaction"
    return TransactionStateError(
        f"the {undone} was rolled back: a statement in it failed "
        f"({type(failure).__name__}) and the block went on; PostgreSQL aborts a "
        "transaction at its first error -- wrap statements whose failure you handle in "
        "their own `async with tx.transaction():` (a savepoint)",
        component=component,
        details={"sqlstate": "25P02", "cause": type(failure).__name__},
    )

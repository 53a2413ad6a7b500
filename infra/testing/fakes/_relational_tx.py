"""Transactions of :class:`~infra.testing.fakes.relational.FakeRelationalStore`.

Split from the store module for length only; the two are one unit (this module uses the
store's private runners). The rules are the real store's (``infra/storage/_transaction``):
statements inside a transaction are never retried; ``BEGIN`` may be; a top-level
transaction holds the fake's one connection (an ``asyncio.Lock``) until it ends; nested
scopes are SQLite savepoints; and PostgreSQL's abort-on-first-error rule is emulated,
because SQLite would otherwise carry on after a failed statement.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from infra.exceptions import InfraError, PoolExhaustedError, TransactionStateError
from infra.ports import Row
from infra.redaction import redact_text
from infra.validation import check_column, check_isolation, check_query, check_rows, check_timeout

if TYPE_CHECKING:
    from infra.testing.fakes.relational import FakeRelationalStore

__all__ = ["FakeTransaction", "FakeTransactionScope", "check_isolation"]


T = TypeVar("T")
Runner = Callable[[str | None, tuple[Any, ...]], T]

_log = logging.getLogger("infra.testing.fakes.relational")


class _State:
    """Shared by a top-level transaction, its savepoints and their bound stores."""

    __slots__ = ("failure", "savepoints")

    def __init__(self) -> None:
        self.failure: InfraError | None = None
        self.savepoints = 0


class FakeTransaction:
    """The store a fake ``transaction()`` block yields; valid until the block ends."""

    __slots__ = ("_active", "_depth", "_state", "_store")

    def __init__(self, store: FakeRelationalStore, state: _State, depth: int) -> None:
        self._store = store
        self._state = state
        self._depth = depth
        self._active = True

    @property
    def is_active(self) -> bool:
        """Whether the block is still open."""
        return self._active

    def _finish(self) -> None:
        self._active = False

    def check_not_aborted(self) -> None:
        """PostgreSQL refuses statements after a failed one until a rollback."""
        if self._state.failure is not None:
            raise TransactionStateError(
                f"{TransactionStateError.default_message}: current transaction is aborted, "
                "commands ignored until end of transaction block",
                component=self._store._component,
                details={"sqlstate": "25P02"},
            )

    async def _run(
        self, operation: str, query: str, args: tuple[Any, ...], run: Runner[T], limit: Any
    ) -> T:
        if not self._active:
            raise TransactionStateError(
                "this transaction has ended; run statements inside its `async with` block "
                "or open a new transaction()",
                component=self._store._component,
            )
        check_timeout(limit, component=self._store._component)
        try:
            return await self._store._call(operation, query, args, run, idempotent=False, tx=self)
        except InfraError as exc:
            self._state.failure = exc
            raise

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Row]:
        """All rows as dicts."""
        check_query(query, component=self._store._component)
        return await self._run("fetch", query, args, self._store._rows, timeout)

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Row | None:
        """The first row as a dict, or ``None``."""
        check_query(query, component=self._store._component)
        return await self._run("fetchrow", query, args, self._store._row, timeout)

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        """One value of the first row, or ``None``."""
        check_query(query, component=self._store._component)
        check_column(column, component=self._store._component)
        run = self._store._value(column)
        return await self._run("fetchval", query, args, run, timeout)

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        """Run a statement; returns the status tag."""
        check_query(query, component=self._store._component)
        return await self._run("execute", query, args, self._store._status, timeout)

    async def executemany(
        self, query: str, args: Sequence[Sequence[Any]], *, timeout: float | None = None
    ) -> None:
        """Run a statement once per argument tuple."""
        check_query(query, component=self._store._component)
        rows = tuple(check_rows(args, component=self._store._component))
        await self._run("executemany", query, rows, self._store._many, timeout)

    def transaction(
        self,
        *,
        isolation: str | None = None,
        readonly: bool = False,
        deferrable: bool = False,
    ) -> FakeTransactionScope:
        """A savepoint inside this transaction (the options only apply at the top)."""
        check_isolation(isolation, component=self._store._component)
        del readonly, deferrable
        if not self._active:
            raise TransactionStateError(
                "this transaction has ended; open savepoints inside its block",
                component=self._store._component,
            )
        return FakeTransactionScope(self._store, depth=self._depth + 1, state=self._state)

    async def health_check(
        self, latency_threshold_ms: float = 100.0
    ) -> tuple[bool, dict[str, Any]]:
        """The owning store's health check."""
        return await self._store.health_check(latency_threshold_ms)

    def __repr__(self) -> str:
        return f"FakeTransaction({'active' if self._active else 'finished'}, depth={self._depth})"


class FakeTransactionScope:
    """``async with`` scope of one fake transaction (depth 0) or savepoint."""

    __slots__ = ("_bound", "_depth", "_readonly", "_savepoint", "_state", "_store")

    def __init__(
        self,
        store: FakeRelationalStore,
        *,
        depth: int,
        state: _State | None,
        readonly: bool = False,
    ) -> None:
        self._store = store
        self._readonly = readonly
        self._depth = depth
        self._state = state if state is not None else _State()
        self._savepoint = ""
        self._bound: FakeTransaction | None = None

    @property
    def _nested(self) -> bool:
        return self._depth > 0

    def _sql(self, sql: str) -> None:
        self._store._db.execute(sql)

    async def _control(
        self, operation: str, fn: Callable[[], Awaitable[None]], *, retry: bool
    ) -> None:
        """A control step through the store's policy, faults and error translation."""
        store = self._store
        store._check_open()

        async def attempt() -> None:
            store._check_open()
            store._attempted(operation, None, ())
            try:
                await fn()
            except sqlite3.Error as exc:
                raise store._translate(exc, operation) from exc

        await store._calls.run(operation, attempt, idempotent=retry)

    async def _begin(self) -> None:
        if self._nested:
            assert self._bound is None  # noqa: S101 -- entered once
            self._state.savepoints += 1
            self._savepoint = f"sp_{self._state.savepoints}"
            self._sql(f"SAVEPOINT {self._savepoint}")
            return
        lock = self._store._connection
        timeout = self._store._acquire_timeout
        try:
            async with asyncio.timeout(timeout):
                await lock.acquire()
        except TimeoutError as exc:
            raise PoolExhaustedError(
                f"the fake's one connection stayed in another transaction for {timeout:g} s",
                component=self._store._component,
                details={"max_size": 1, "waited": timeout},
            ) from exc
        try:
            self._sql("BEGIN")
            if self._readonly:
                self._sql("PRAGMA query_only = ON")
        except BaseException:
            lock.release()
            raise

    async def __aenter__(self) -> FakeTransaction:
        if self._bound is not None:
            raise RuntimeError("a transaction scope can be entered only once")
        if self._nested:
            FakeTransaction(self._store, self._state, self._depth).check_not_aborted()
        operation = "savepoint" if self._nested else "begin"
        await self._control(operation, self._begin, retry=not self._nested)
        self._bound = FakeTransaction(self._store, self._state, self._depth)
        return self._bound

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._bound is not None  # noqa: S101 -- __aenter__ ran
        self._bound._finish()
        try:
            failure = self._state.failure
            if exc is None and failure is None:
                await self._commit()
                return
            rolled_back = await self._rollback()
            if rolled_back and self._nested:
                self._state.failure = None
            if exc is None and failure is not None:
                raise _aborted(failure, self._store._component, nested=self._nested) from failure
        finally:
            if not self._nested:
                self._end_top_level()

    async def _commit(self) -> None:
        if self._nested:
            sql, operation = f"RELEASE SAVEPOINT {self._savepoint}", "release_savepoint"
        else:
            sql, operation = "COMMIT", "commit"

        async def commit() -> None:
            self._sql(sql)

        await self._control(operation, commit, retry=False)

    async def _rollback(self) -> bool:
        if self._nested:
            operation = "rollback_to_savepoint"
            statements = [f"ROLLBACK TO SAVEPOINT {self._savepoint}"]
            statements.append(f"RELEASE SAVEPOINT {self._savepoint}")
        else:
            operation, statements = "rollback", ["ROLLBACK"]

        async def rollback() -> None:
            for sql in statements:
                self._sql(sql)

        try:
            await self._control(operation, rollback, retry=False)
        except InfraError as error:
            _log.warning("%s failed (%s)", operation, redact_text(str(error)))
            return False
        return True

    def _end_top_level(self) -> None:
        """Whatever happened, the connection is free again and no transaction is open."""
        store = self._store
        if not store.is_closed:
            if store._db.in_transaction:
                store._db.execute("ROLLBACK")
            if self._readonly:
                store._db.execute("PRAGMA query_only = OFF")
        store._connection.release()


def _aborted(failure: InfraError, component: str, *, nested: bool) -> TransactionStateError:
    """The real store's error for a block that caught a statement's error and went on."""
    undone = "savepoint" if nested else "transaction"
    return TransactionStateError(
        f"the {undone} was rolled back: a statement in it failed "
        f"({type(failure).__name__}) and the block went on; PostgreSQL aborts a "
        "transaction at its first error -- wrap statements whose failure you handle in "
        "their own `async with tx.transaction():` (a savepoint)",
        component=component,
        details={"sqlstate": "25P02", "cause": type(failure).__name__},
    )

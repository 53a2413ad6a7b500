"""``FakeRelationalStore``: an in-memory :class:`~infra.ports.RelationalStore` for tests.

Backed by the standard library's ``sqlite3`` (``:memory:``), no server and no driver.
It passes the same contract suite as the real ``EnhancedPostgresStore``
(``tests/contract/test_relational_contract.py``), so code tested against it behaves the
same on PostgreSQL -- within the SQL subset below.

::

    store = FakeRelationalStore(policy=ResiliencePolicy.instant("postgres"))
    await store.execute("CREATE TABLE users (id integer PRIMARY KEY, name text)")
    await store.execute("INSERT INTO users VALUES ($1, $2)", 1, "ada")
    store.fail_next(ConnectionResetError(), times=2)      # the next 2 attempts fail
    assert await store.fetchval("SELECT name FROM users WHERE id = $1", 1) == "ada"

What behaves like the real store:

* ``$1..$n`` parameters; rows as ``dict``; ``fetchrow``/``fetchval`` give ``None`` for no
  rows; ``execute`` returns PostgreSQL's status tag (``"INSERT 0 1"``, ``"UPDATE 2"``,
  ``"DELETE 0"``, ``"CREATE TABLE"``, ``"SELECT 3"``); ``executemany`` returns ``None``.
* Errors are the real store's types with PostgreSQL's SQLSTATE in ``details``: duplicate
  key → ``UniqueViolationError`` (23505), NOT NULL/CHECK/FOREIGN KEY →
  ``ConstraintViolationError``, bad SQL / unknown table or column → ``QuerySyntaxError``.
* Transactions with savepoints (``isolation``/``readonly`` accepted; read-only ones refuse
  writes): commit on success, rollback on error, a failed nested
  block rolls back to its savepoint only; and PostgreSQL's rule that the first failed
  statement aborts the transaction (later statements raise ``DatabaseError`` 25P02, and
  a block that caught the error and ended normally is rolled back with a
  ``DatabaseError``).
* Every call runs through :class:`~infra.calls.BackendCalls` under the real store's
  names (component ``"postgres"``, system ``"postgresql"``, operations ``fetch``,
  ``execute``, ``begin``, ``commit`` ... and ``health_check`` outside the policy), so the
  injected ``policy`` applies the real store's retry rules -- reads and ``BEGIN`` may be
  retried, ``execute``/``executemany`` only with ``idempotent=True``, statements inside a
  transaction never -- and every call is recorded in the injected ``collector`` as the
  real store's would be (see :mod:`infra.testing.fakes._backend`). ``health_check`` is
  the real one's code (:mod:`infra.health_check`).
* After ``close()`` every call raises ``DatabaseConnectionError`` (not retryable).

Test controls: :meth:`FakeRelationalStore.fail_next` scripts failures per operation (an
``InfraError`` is raised as is; any other exception is translated as the real store
would translate it, e.g. ``ConnectionResetError`` → ``DatabaseConnectionError``), and
:attr:`FakeRelationalStore.calls` records every attempt.

Limits (the portable core; stay inside it in code the fake must cover):

* **SQL**: what both PostgreSQL and SQLite accept -- ``CREATE TABLE`` with ``integer``,
  ``bigint``, ``text``, ``real``, ``double precision`` columns, ``PRIMARY KEY``,
  ``UNIQUE``, ``NOT NULL``, ``CHECK``, ``REFERENCES``; ``INSERT``/``UPDATE``/``DELETE``
  (with ``RETURNING``), ``ON CONFLICT ... DO NOTHING/DO UPDATE``, ``SELECT`` with joins,
  ``GROUP BY``, ``ORDER BY``, ``LIMIT``/``OFFSET``, ``count/sum/min/max``. Not:
  ``::type`` casts, ``serial``/identity columns (pass ids), ``now()``, arrays, JSON
  operators, ``ILIKE``, ``SELECT ... FOR UPDATE``.
* **Values**: ``int``, ``float``, ``str``, ``bytes``, ``None``. Booleans come back as
  ``0``/``1``; dates and decimals are not supported.
* **Names**: give computed columns a lowercase alias (``SELECT count(*) AS n``);
  PostgreSQL folds unquoted names to lowercase, SQLite keeps them as written.
* **One connection**: a statement outside an open transaction waits for it to end, like
  a pool of size 1; after ``acquire_timeout`` it raises ``PoolExhaustedError``. There is
  no isolation between concurrent transactions and no statement timeout.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Collection, Sequence
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar

from infra.exceptions import DatabaseConnectionError, InfraError, PoolExhaustedError
from infra.health_check import HealthCheckResult, HealthProbe, probe_calls
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.ports import Row
from infra.resilience import ResiliencePolicy
from infra.testing.fakes._backend import FaultScript, fake_calls
from infra.testing.fakes._relational_sql import (
    refuse_nul_text,
    run_many,
    run_rows,
    run_status,
    run_value,
    translate_binding_error,
    translate_sqlite_error,
)
from infra.testing.fakes._relational_tx import FakeTransaction, FakeTransactionScope
from infra.translation import translate_exception
from infra.validation import (
    check_column,
    check_isolation,
    check_query,
    check_rows,
    check_timeout,
)

__all__ = ["FakeCall", "FakeRelationalStore", "FakeTransaction"]

T = TypeVar("T")
Fault = InfraError | Exception | type[Exception]
_OPERATIONS = (
    "fetch",
    "fetchrow",
    "fetchval",
    "execute",
    "executemany",
    "begin",
    "commit",
    "rollback",
    "savepoint",
    "release_savepoint",
    "rollback_to_savepoint",
    "connect",
    "health_check",
)


class FakeCall(NamedTuple):
    """One attempt the fake saw: the operation, its SQL (``None`` for control calls)
    and its arguments."""

    operation: str
    query: str | None
    args: tuple[Any, ...]


class FakeRelationalStore:
    """In-memory relational store; see the module docstring.

    Args:
        policy: Resilience policy every call runs under (default: none; tests usually
            pass ``ResiliencePolicy.instant("postgres")``).
        component: ``component`` of the errors raised (the real store's is ``"postgres"``).
        acquire_timeout: How long a statement waits for an open transaction to finish.
        name: Shown in ``repr``.
        collector: Where calls are recorded (default: ``get_metrics_collector()`` at
            call time).
    """

    def __init__(
        self,
        *,
        policy: ResiliencePolicy | None = None,
        component: str = "postgres",
        acquire_timeout: float = 1.0,
        name: str = "fake",
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        if not isinstance(acquire_timeout, int | float) or not acquire_timeout > 0:
            raise ValueError(f"acquire_timeout must be > 0 seconds, got {acquire_timeout!r}")
        if not component:
            raise ValueError("component must be a non-empty string, e.g. 'postgres'")
        self._component = component
        self.attach(policy=policy, collector=collector, tracing=tracing)
        self._acquire_timeout = float(acquire_timeout)
        self._name = name
        self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._connection = asyncio.Lock()  # held by an open top-level transaction
        self._faults = FaultScript(_OPERATIONS)
        self._closed = False
        #: Every attempt, in order (retries appear once per attempt).
        self.calls: list[FakeCall] = []

    # ---------------------------------------------------------------- test controls
    def fail_next(
        self, error: Fault, *, times: int = 1, operations: Collection[str] | None = None
    ) -> None:
        """Make the next ``times`` attempts of ``operations`` (default: any) raise
        ``error`` before touching the database.

        Operations: ``fetch``, ``fetchrow``, ``fetchval``, ``execute``, ``executemany``,
        ``begin``, ``commit``, ``rollback``, ``savepoint``, ``release_savepoint``,
        ``rollback_to_savepoint``, ``connect`` (``initialize``), ``health_check``.
        ``error`` may be an instance or a class (instantiated without arguments).
        """
        self._faults.add(error, times=times, operations=operations)

    def clear_faults(self) -> None:
        """Forget every scripted failure not yet used."""
        self._faults.clear()

    def attach(
        self,
        *,
        policy: ResiliencePolicy | None,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        """Run later calls under ``policy`` and record them into ``collector`` (what
        ``containers.testing.use_fakes`` does with the container's own providers); data
        and scripted faults are kept."""
        self._calls = fake_calls(
            self._component,
            family="database",
            system="postgresql",
            policy=policy,
            collector=collector,
            tracing=tracing,
        )
        self._probe = probe_calls(self._calls)

    # ----------------------------------------------------------------- introspection
    @property
    def policy(self) -> ResiliencePolicy:
        """The policy calls run under (a passthrough one when none was given)."""
        return self._calls.policy

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        policy = self.policy.describe()
        return f"FakeRelationalStore(name={self._name!r}, state={state}, policy={policy!r})"

    # --------------------------------------------------------------------- lifecycle
    async def initialize(self) -> None:
        """Nothing to connect; honours faults scripted for ``connect``."""
        await self._call("connect", None, (), self._nothing, idempotent=True, tx=None)

    async def close(self) -> None:
        """Close the database; idempotent. Later calls raise ``DatabaseConnectionError``."""
        if not self._closed:
            self._closed = True
            self._db.close()

    async def __aenter__(self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ statements
    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Row]:
        """All rows as dicts."""
        self._check_statement(query, timeout)
        return await self._call("fetch", query, args, self._rows, idempotent=True, tx=None)

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Row | None:
        """The first row as a dict, or ``None``."""
        self._check_statement(query, timeout)
        return await self._call("fetchrow", query, args, self._row, idempotent=True, tx=None)

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        """One value of the first row, or ``None``."""
        self._check_statement(query, timeout)
        check_column(column, component=self._component)
        return await self._call(
            "fetchval", query, args, self._value(column), idempotent=True, tx=None
        )

    async def execute(
        self, query: str, *args: Any, timeout: float | None = None, idempotent: bool = False
    ) -> str:
        """Run a statement (several, without arguments); returns the status tag."""
        self._check_statement(query, timeout)
        return await self._call(
            "execute", query, args, self._status, idempotent=idempotent, tx=None
        )

    async def executemany(
        self,
        query: str,
        args: Sequence[Sequence[Any]],
        *,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> None:
        """Run a statement once per argument tuple."""
        self._check_statement(query, timeout)
        rows = tuple(check_rows(args, component=self._component))
        await self._call("executemany", query, rows, self._many, idempotent=idempotent, tx=None)

    def transaction(
        self,
        *,
        isolation: str | None = None,
        readonly: bool = False,
        deferrable: bool = False,
    ) -> FakeTransactionScope:
        """``async with store.transaction() as tx:``; ``tx.transaction()`` = savepoint.

        ``isolation`` is checked like the real store's and otherwise moot (one
        connection: every transaction is serializable); ``readonly=True`` refuses writes
        (``DatabaseError``, SQLSTATE 25006); ``deferrable`` is accepted for parity."""
        self._check_open()
        check_isolation(isolation, component=self._component)
        del deferrable  # only meaningful for concurrent serializable readers
        return FakeTransactionScope(self, depth=0, state=None, readonly=readonly)

    # ---------------------------------------------------------------------- health
    async def health_check(
        self, latency_threshold_ms: float = 100.0, *, timeout: float | None = None
    ) -> HealthCheckResult:
        """The real store's check, by the same code (:mod:`infra.health_check`): a
        ``select 1`` outside the policy, recorded as ``health_check``; ``details``:
        ``status``, ``latency_ms``, ``circuit_breaker``, ``pool_size``, ``pool_free``
        (+ ``error``, ``message``); never raises for a failure."""
        probe = HealthProbe(
            send=self._ping,
            name="'select 1'",
            backend="the database",
            component=self._component,
            pool=self._pool_details,
        )
        breaker = self.policy.breaker
        return await probe.check(
            latency_threshold_ms, timeout=timeout, breaker=breaker, closed=self._closed
        )

    def _pool_details(self) -> dict[str, int]:
        busy = self._connection.locked()
        return {
            "pool_size": 0 if self._closed else 1,
            "pool_free": 0 if self._closed or busy else 1,
        }

    async def _ping(self) -> None:
        await self._probe.run("health_check", self._select_one)

    async def _select_one(self) -> None:
        """The probe's driver step: like the real pool's, it does not wait for the
        connection an open transaction holds."""
        self._check_open()
        self._attempted("health_check", "select 1", ())
        self._db.execute("select 1").fetchall()

    # ------------------------------------------------------------------ internals
    def _check_statement(self, query: object, timeout: object) -> None:
        """The real store's checks before any I/O (:mod:`infra.validation`)."""
        self._check_open()
        check_query(query, component=self._component)
        check_timeout(timeout, component=self._component)

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseConnectionError(
                f"FakeRelationalStore {self._name!r} is closed; create a new one",
                component=self._component,
                retryable=False,
            )

    async def _call(
        self,
        operation: str,
        query: str | None,
        args: tuple[Any, ...],
        run: Callable[[str | None, tuple[Any, ...]], T],
        *,
        idempotent: bool,
        tx: FakeTransaction | None,
    ) -> T:
        """One call, through the real store's path: telemetry, the policy, then
        :meth:`_attempt` (the driver step)."""
        self._check_open()
        return await self._calls.run(
            operation, self._attempt, operation, query, args, run, tx, idempotent=idempotent
        )

    async def _attempt(
        self,
        operation: str,
        query: str | None,
        args: tuple[Any, ...],
        run: Callable[[str | None, tuple[Any, ...]], T],
        tx: FakeTransaction | None,
    ) -> T:
        self._check_open()
        self._attempted(operation, query, args)
        if tx is None:
            await self._wait_for_connection()
        else:
            tx.check_not_aborted()
        try:
            refuse_nul_text(args, component=self._component)
            return run(query, args)
        except InfraError as exc:
            if exc.component is None:
                exc.component = self._component
            raise
        except Exception as exc:
            raise self._translate(exc, operation) from exc

    def _translate(self, exc: Exception, operation: str) -> InfraError:
        """The real store's error for ``exc`` (SQLite's mapped by SQLSTATE, others by the
        translation seam, e.g. ``IndexError`` → ``DatabaseError``)."""
        if isinstance(exc, sqlite3.Error):
            return translate_sqlite_error(exc, component=self._component, operation=operation)
        binding = translate_binding_error(exc, component=self._component, operation=operation)
        if binding is not None:
            return binding
        return translate_exception(
            exc, component=self._component, family="database", operation=operation
        )

    def _attempted(self, operation: str, query: str | None, args: tuple[Any, ...]) -> None:
        """Record the attempt and raise a scripted fault that applies to it."""
        self.calls.append(FakeCall(operation, query, args))
        exc = self._faults.take(operation)
        if exc is None:
            return
        if isinstance(exc, InfraError) or not isinstance(exc, Exception):
            raise exc
        raise translate_exception(
            exc, component=self._component, family="database", operation=operation
        ) from exc

    async def _wait_for_connection(self) -> None:
        """Wait (bounded) while a transaction holds the one connection."""
        if not self._connection.locked():
            return
        try:
            async with asyncio.timeout(self._acquire_timeout), self._connection:
                pass
        except TimeoutError as exc:
            raise PoolExhaustedError(
                f"the fake's one connection stayed in a transaction for "
                f"{self._acquire_timeout:g} s (pool max_size=1); did code inside a "
                "transaction use the store instead of the transaction?",
                component=self._component,
                details={"max_size": 1, "waited": self._acquire_timeout},
            ) from exc

    # Runners (infra.testing.fakes._relational_sql) are synchronous, so a statement is
    # atomic with respect to other tasks.
    def _rows(self, query: str | None, args: tuple[Any, ...]) -> list[Row]:
        return run_rows(self._db, query, args)

    def _row(self, query: str | None, args: tuple[Any, ...]) -> Row | None:
        rows = run_rows(self._db, query, args)
        return rows[0] if rows else None

    def _value(self, column: int) -> Callable[[str | None, tuple[Any, ...]], Any]:
        return functools.partial(run_value, self._db, column)

    def _status(self, query: str | None, args: tuple[Any, ...]) -> str:
        return run_status(self._db, query, args)

    def _many(self, query: str | None, args: tuple[Any, ...]) -> None:
        run_many(self._db, query, args)

    @staticmethod
    def _nothing(_query: str | None, _args: tuple[Any, ...]) -> None:
        return None

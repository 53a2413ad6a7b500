"""``PostgresStore``: the :class:`~infra.ports.RelationalStore` on an asyncpg pool.

::

    store = PostgresStore("postgresql://app@db/app")
    await store.initialize()                       # optional: the first call does it
    rows = await store.fetch("SELECT * FROM users WHERE id = $1", user_id)
    async with store.transaction() as tx:          # nested tx.transaction() = SAVEPOINT
        await tx.execute("UPDATE users SET name = $2 WHERE id = $1", user_id, name)
    await store.close()

Design decisions:

* **Parameters only.** Values always travel as ``$1..$n`` parameters, never formatted
  into SQL text, so a value can never become SQL. (Identifiers cannot be parameters;
  build those from a fixed allow-list, never from input.)
* **One call path.** Every method that touches the server goes through
  :class:`~infra.calls.BackendCalls` (telemetry → injected policy → translation), so
  each records one ``db_client_operation_duration_seconds`` sample (read in ms as
  ``postgres_query_latency_ms{operation}``) and a span, and raises only
  :mod:`infra.exceptions` types. The basic store's policy is a passthrough;
  :class:`~infra.storage.EnhancedPostgresStore` adds breaker and retry.
* **Retries only where safe.** ``fetch``/``fetchrow``/``fetchval`` are reads and may be
  retried; ``execute``/``executemany`` are not unless the caller passes
  ``idempotent=True`` (a write may have been applied before the error).
* **Lazy pool.** The pool is created by :meth:`initialize` or by the first call, once
  (:mod:`infra.storage._pool`). Creation runs inside the call's policy, so a database
  that is down at startup is retried and counted by the breaker like any other failure.
* **Timeouts, all bounded.** ``statement_timeout`` is a server setting of every pooled
  connection (the server cancels the statement: ``QueryTimeoutError`` with
  ``details["timeout"]``). The client-side limit (``command_timeout``, default
  ``statement_timeout`` + 1 s) catches a server or network that stopped answering; unless
  it is the shorter of the two it is enforced without a timer per call, by terminating
  the connection (:mod:`infra.storage._deadpeer`), else by asyncpg's timer. A per-call
  ``timeout=`` (asyncpg's precise timer) can only shorten the server's limit. Waiting
  for a pooled connection, and opening one, is bounded by ``acquire_timeout``
  (``PoolExhaustedError``); ``close()`` waits ``close_timeout`` for borrowed
  connections, then terminates them.
* **Pool gauges** (``postgres_pool_size/_active/_idle/_max/_pending/_utilization``,
  labelled ``pool=name``) are sampled from the live pool on each read through
  :func:`infra.observability.register_pool`, and unregistered on close.
* **No secrets shown.** ``repr`` and every error mask the DSN's password.
* **Caller errors are checked first.** The SQL text (a non-empty ``str`` without NUL or
  lone surrogates), ``executemany``'s rows, ``column`` and ``timeout`` are checked before
  any I/O (:mod:`infra.validation`): a bad one raises ``QueryArgumentError`` /
  ``InvalidArgumentError`` naming it, and never reaches the policy -- no retry, no
  breaker count. Parameter values are checked by asyncpg's encoder and the server,
  whose refusals are caller errors too (see :mod:`infra.translation._postgres`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Self

from config import Settings
from infra.calls import BackendCalls
from infra.exceptions import DatabaseConnectionError
from infra.health_check import HealthCheckResult, HealthProbe, probe_calls
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.ports import Row
from infra.redaction import register_secrets_in
from infra.resilience import ResiliencePolicy
from infra.storage._dsn import check_dsn, mask_dsn, server_endpoint
from infra.storage._options import validate_options
from infra.storage._pool import ManagedPool
from infra.storage._statements import (
    CallLimits,
    Statement,
    Timeouts,
    execute_many,
    execute_status,
    fetch_row,
    fetch_rows,
    fetch_value,
)
from infra.storage._transaction import IsolationLevel, TransactionScope
from infra.validation import (
    check_column,
    check_isolation,
    check_query,
    check_rows,
)

__all__ = ["PostgresStore"]

#: The health probe: no client limit of asyncpg's, no dead-peer deadline (``check_health``
#: bounds it).
_PING = Statement("select 1", (), CallLimits(watched=False, client=None, reported=None))


class PostgresStore:
    """A PostgreSQL store on an asyncpg pool; see the module docstring.

    Args:
        dsn: ``postgresql://user:password@host:port/database`` (URL form only).
        min_size: Connections the pool opens at creation and keeps.
        max_size: Upper bound of pooled connections.
        statement_timeout: Server-side limit per statement, seconds (``None``: the
            server's own setting).
        acquire_timeout: Longest wait for a pooled connection (and for opening one)
            before ``PoolExhaustedError``.
        command_timeout: Client-side limit per call when no ``timeout=`` is passed
            (default ``statement_timeout`` + 1 s; ``None`` with no statement timeout
            means no client limit).
        close_timeout: How long :meth:`close` waits for borrowed connections.
        health_timeout: Deadline of one :meth:`health_check` ping.
        server_settings: Extra session settings (``application_name``, ``search_path``).
        policy: The resilience policy every call runs under (default: passthrough).
        name: The pool's name in metrics (``pool`` label).
    """

    component: ClassVar[str] = "postgres"

    def __init__(
        self,
        dsn: str,
        min_size: int = 5,
        max_size: int = 20,
        *,
        statement_timeout: float | None = 30.0,
        acquire_timeout: float = 5.0,
        command_timeout: float | None = None,
        close_timeout: float = 10.0,
        health_timeout: float = 5.0,
        server_settings: Mapping[str, str] | None = None,
        policy: ResiliencePolicy | None = None,
        name: str = "default",
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        self._dsn = check_dsn(dsn)
        register_secrets_in(dsn, owner=self)  # masked by value wherever it is printed
        options = validate_options(
            min_size=min_size,
            max_size=max_size,
            statement_timeout=statement_timeout,
            acquire_timeout=acquire_timeout,
            command_timeout=command_timeout,
            close_timeout=close_timeout,
            health_timeout=health_timeout,
            server_settings=server_settings,
            policy=policy,
            name=name,
        )
        self._min_size, self._max_size = min_size, max_size
        self._timeouts = options.timeouts
        self._name = name
        address, port = server_endpoint(dsn)
        self._calls = BackendCalls(
            self.component,
            family="database",
            system="postgresql",
            policy=policy,
            server_address=address,
            server_port=port,
            collector=collector,
            tracing=tracing,
        )
        # Statements of an open transaction run on the connection it holds: the pool
        # bounds them, so they skip the bulkhead (see infra.storage._transaction).
        held_policy = self._calls.policy.without_bulkhead()
        self._held_calls = (
            self._calls
            if held_policy is self._calls.policy
            else BackendCalls(
                self.component,
                family="database",
                system="postgresql",
                policy=held_policy,
                server_address=address,
                server_port=port,
                collector=collector,
                tracing=tracing,
            )
        )
        # Operation handles, bound once: each statement method resolves nothing per call.
        self._fetch_op = self._calls.operation("fetch")
        self._fetchrow_op = self._calls.operation("fetchrow")
        self._fetchval_op = self._calls.operation("fetchval")
        self._execute_op = self._calls.operation("execute")
        self._executemany_op = self._calls.operation("executemany")
        # Health pings bypass the policy (see infra.health_check) but are recorded.
        self._health_calls = probe_calls(self._calls)
        self._health = HealthProbe(
            send=self._ping,
            name="'select 1'",
            backend="the database",
            component=self.component,
            timeout=health_timeout,
            pool=self._pool_details,
        )
        self._pool = ManagedPool(
            self._dsn,
            min_size=min_size,
            max_size=max_size,
            timeouts=self._timeouts,
            server_settings=options.server_settings,
            close_timeout=close_timeout,
            component=self.component,
            name=name,
            closed_error=self._closed_error,
            collector=collector,
        )
        has_deadlines = self._pool.deadlines is not None
        self._default_limits = self._timeouts.limits(None, deadlines=has_deadlines)
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        policy: ResiliencePolicy | None = None,
        name: str = "default",
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> Self:
        """A store configured by ``settings.db`` (URL, pool sizes, timeouts), recording
        into ``collector`` (default: ``get_metrics_collector()`` at call time)."""
        db = settings.db
        return cls(
            db.url,
            db.min_pool_size,
            db.max_pool_size,
            statement_timeout=db.statement_timeout,
            acquire_timeout=db.pool_acquire_timeout,
            command_timeout=db.command_timeout,
            policy=policy,
            name=name,
            collector=collector,
            tracing=tracing,
        )

    # ----------------------------------------------------------------- introspection
    @property
    def policy(self) -> ResiliencePolicy:
        """The resilience policy calls run under."""
        return self._calls.policy

    @property
    def timeouts(self) -> Timeouts:
        """The store's limits: ``statement`` (server), ``client``, ``acquire`` (seconds)."""
        return self._timeouts

    @property
    def name(self) -> str:
        """The pool's name in metrics."""
        return self._name

    @property
    def is_initialized(self) -> bool:
        """Whether the pool exists (and the store is not closed)."""
        return self._pool.is_initialized

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self.is_initialized else "not connected"
        return (
            f"{type(self).__name__}(dsn={mask_dsn(self._dsn)!r}, name={self._name!r}, "
            f"pool={self._min_size}..{self._max_size}, state={state}, "
            f"policy={self.policy.describe()!r})"
        )

    # --------------------------------------------------------------------- lifecycle
    async def initialize(self) -> None:
        """Create the pool now (idempotent; otherwise the first call does it)."""
        self._check_open()
        if self._pool.pool is None:
            await self._calls.run("connect", self._pool.get)

    async def close(self) -> None:
        """Close the pool; idempotent. Later calls raise ``DatabaseConnectionError``."""
        self._closed = True
        await self._pool.aclose()

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

    def _closed_error(self) -> DatabaseConnectionError:
        return DatabaseConnectionError(
            f"{type(self).__name__} {self._name!r} is closed; create a new store "
            "(or use the container's) instead of reusing a closed one",
            component=self.component,
            retryable=False,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _limits(self, timeout: float | None) -> CallLimits:
        """The limits of one call (see :meth:`Timeouts.limits`); the default is computed
        once: under the dead-peer deadline when the server's ``statement_timeout`` fires
        first (no timer per call), else asyncpg's timer."""
        if timeout is None:
            return self._default_limits
        return self._timeouts.limits(timeout)

    # ------------------------------------------------------------------ statements
    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Row]:
        """All rows of ``query`` as dicts (retried under the policy: a read)."""
        self._check_open()
        check_query(query, component=self.component)
        limits = self._limits(timeout)
        statement = Statement(query, args, limits)
        return await self._fetch_op.run(
            self._pool.run, fetch_rows, statement, timeout=limits.reported
        )

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Row | None:
        """The first row as a dict, or ``None`` (a read)."""
        self._check_open()
        check_query(query, component=self.component)
        limits = self._limits(timeout)
        statement = Statement(query, args, limits)
        return await self._fetchrow_op.run(
            self._pool.run, fetch_row, statement, timeout=limits.reported
        )

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        """One value of the first row, or ``None`` (a read)."""
        self._check_open()
        check_query(query, component=self.component)
        check_column(column, component=self.component)
        limits = self._limits(timeout)
        statement = Statement(query, args, limits, column)
        return await self._fetchval_op.run(
            self._pool.run, fetch_value, statement, timeout=limits.reported
        )

    async def execute(
        self, query: str, *args: Any, timeout: float | None = None, idempotent: bool = False
    ) -> str:
        """Run a statement; returns the status tag (``"UPDATE 3"``). Retried only when
        ``idempotent=True``."""
        self._check_open()
        check_query(query, component=self.component)
        limits = self._limits(timeout)
        statement = Statement(query, args, limits)
        return await self._execute_op.run(
            self._pool.run,
            execute_status,
            statement,
            idempotent=idempotent,
            timeout=limits.reported,
        )

    async def executemany(
        self,
        query: str,
        args: Sequence[Sequence[Any]],
        *,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> None:
        """Run a statement once per argument tuple (pipelined). Retried only when
        ``idempotent=True``."""
        self._check_open()
        check_query(query, component=self.component)
        rows = check_rows(args, component=self.component)
        limits = self._limits(timeout)
        statement = Statement(query, rows, limits)
        await self._executemany_op.run(
            self._pool.run, execute_many, statement, idempotent=idempotent, timeout=limits.reported
        )

    def transaction(
        self,
        *,
        isolation: IsolationLevel | None = None,
        readonly: bool = False,
        deferrable: bool = False,
    ) -> TransactionScope:
        """``async with store.transaction() as tx:`` -- commit on success, rollback on
        error; ``tx.transaction()`` opens a savepoint. See :mod:`._transaction`."""
        self._check_open()
        check_isolation(isolation, component=self.component)
        return TransactionScope(
            self._calls,
            self._timeouts,
            self.health_check,
            held=self._held_calls,
            deadlines=self._pool.deadlines,
            acquire=self._pool.acquire,
            release=self._pool.release,
            isolation=isolation,
            readonly=readonly,
            deferrable=deferrable,
        )

    # ---------------------------------------------------------------------- health
    async def health_check(
        self, latency_threshold_ms: float = 100.0, *, timeout: float | None = None
    ) -> HealthCheckResult:
        """``(is_healthy, details)`` from a ``select 1`` round trip, outside the policy;
        never raises for a backend failure. ``details``: ``status``, ``latency_ms``,
        ``circuit_breaker``, ``pool_size``, ``pool_free`` (+ ``error``, ``message``).
        See :mod:`infra.health_check` for the rules shared by every adapter."""
        breaker = self._calls.policy.breaker
        return await self._health.check(
            latency_threshold_ms, timeout=timeout, breaker=breaker, closed=self._closed
        )

    def _pool_details(self) -> dict[str, int]:
        size, free = self._pool.counts()
        return {"pool_size": size, "pool_free": free}

    async def _ping(self) -> None:
        await self._health_calls.run("health_check", self._pool.run, fetch_value, _PING)

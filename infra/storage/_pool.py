"""The asyncpg pool of one store: lazy creation, bounded acquire, gauges, bounded close.

* **Lazy, once.** ``asyncpg.create_pool`` runs on the first :meth:`ManagedPool.get`
  through :class:`~infra.lazy.LazyClientInitializer`: concurrent first callers share one
  creation, and a failed creation leaves nothing behind, so the next call tries again.
* **Bounded acquire, no timer when none is needed.** A timer per call is the dearest part
  of the hot path (asyncpg's ``acquire(timeout=...)`` even wraps the wait in
  ``asyncio.wait_for``, a task per call on Python 3.11). The pool counts the connections
  its callers hold or are acquiring; while that count is below ``max_size`` and nobody
  waits, a connection is free in asyncpg's queue, so the acquire cannot wait for another
  caller and runs without a timer. Otherwise the caller waits under an ``asyncio.timeout``
  of ``acquire_timeout``, counted as pending, and its expiry raises ``PoolExhaustedError``
  (``details["max_size"]``, ``details["waited"]``). The count can only overstate what is
  free in two short windows -- asyncpg reconnecting a dropped connection to keep
  ``min_size`` (bounded by the connect timeout, ``acquire_timeout``), and a release
  whose caller was cancelled while the connection was being reset (bounded by the
  server's ``statement_timeout``, when set) -- where an acquire may wait that long
  without a timer.
* **Client timeouts per call, not per connection.** The pool is created without
  ``command_timeout``: a connection-wide one would also arm a timer for the reset query
  asyncpg runs at every release, which the server's ``statement_timeout`` already
  bounds. When the server's limit is not the longer one, the client limit is enforced by
  the dead-peer deadline (:mod:`infra.storage._deadpeer`), without a timer per call;
  otherwise each statement passes asyncpg its own ``timeout=``.
* **Waiters counted here.** asyncpg does not expose how many callers wait for a
  connection; the ``pending`` gauge reads this pool's own count.
* **Cancelled or timed-out statements drop their connection** (:func:`_abandon`), so
  neither asyncpg's cancel request nor the release waits on a silent network.
* **Bounded close.** ``pool.close()`` waits for borrowed connections; after
  ``close_timeout`` they are terminated, so shutdown never hangs on a stuck query.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

from infra.exceptions import PoolExhaustedError
from infra.lazy import LazyClientInitializer
from infra.observability.metrics import MetricsCollector
from infra.observability.pools import asyncpg_pool_stats, register_pool
from infra.storage._deadpeer import StatementDeadlines
from infra.storage._statements import Connection, Statement, Timeouts

__all__ = ["ManagedPool", "Pool"]

T = TypeVar("T")

# asyncpg's classes are generic only in asyncpg-stubs, not at run time.
if TYPE_CHECKING:
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
else:
    Pool = asyncpg.Pool

_log = logging.getLogger("infra.storage.postgres")


class ManagedPool:
    """One store's pool; see the module docstring.

    Args:
        dsn: The connection URL (kept here only; never shown unmasked).
        component: Metric prefix and error component (``"postgres"``).
        name: The pool's ``pool`` label in the gauges.
        closed_error: Builds the error raised when the pool is used after :meth:`aclose`.
    """

    __slots__ = (
        "_borrowed",
        "_closed_error",
        "_collector",
        "_component",
        "_connect",
        "_deadlines",
        "_lazy",
        "_max_size",
        "_name",
        "_pending",
        "_timeouts",
        "_unregister",
        "close_timeout",
        "pool",
    )

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int,
        max_size: int,
        timeouts: Timeouts,
        server_settings: dict[str, str],
        close_timeout: float,
        component: str,
        name: str,
        closed_error: Callable[[], Exception],
        collector: MetricsCollector | None = None,
    ) -> None:
        self._collector = collector  # where the pool gauges go (None: the current one)
        self._connect: dict[str, Any] = {
            "dsn": dsn,
            "min_size": min_size,
            "max_size": max_size,
            "timeout": timeouts.acquire,  # per connection attempt
            "server_settings": server_settings,
        }
        self._timeouts = timeouts
        self.close_timeout = close_timeout
        self._component = component
        self._name = name
        self._closed_error = closed_error
        self._lazy: LazyClientInitializer[Pool] = LazyClientInitializer(
            self._create, closer=self._close, name=f"{component} pool {name!r}"
        )
        #: The live pool once created (the fast path reads it without awaiting).
        self.pool: Pool | None = None
        self._max_size = max_size
        self._borrowed = 0  # connections held or being acquired by this pool's callers
        self._pending = 0  # callers waiting for a connection (the slow path)
        self._unregister: Callable[[], None] | None = None
        # The server bounds statements first when its limit is not the longer one (it
        # starts counting after the client sent the statement); the client limit then
        # only catches a dead peer (see infra.storage._deadpeer).
        statement, client = timeouts.statement, timeouts.client
        self._deadlines = (
            StatementDeadlines(client)
            if statement is not None and client is not None and client >= statement
            else None
        )

    @property
    def deadlines(self) -> StatementDeadlines | None:
        """The dead-peer deadline enforcing the default client limit, if it applies."""
        return self._deadlines

    @property
    def is_initialized(self) -> bool:
        """Whether the pool exists now."""
        return self._lazy.is_initialized

    async def get(self) -> Pool:
        """The pool, created on first use."""
        if self._lazy.is_closed:
            raise self._closed_error()
        return await self._lazy.get()

    async def aclose(self) -> None:
        """Close the pool (if it was created); idempotent."""
        if self._deadlines is not None:
            await self._deadlines.aclose()
        await self._lazy.aclose()

    def counts(self) -> tuple[int, int]:
        """``(open connections, idle connections)``; zeros before creation."""
        pool = self.pool
        if pool is None or self._lazy.is_closed:
            return 0, 0
        return pool.get_size(), pool.get_idle_size()

    async def _create(self) -> Pool:
        pool: Pool = await asyncpg.create_pool(**self._connect)
        self.pool = pool
        sampler = asyncpg_pool_stats(pool, pending=self._pending_count)
        self._unregister = register_pool(
            self._component, self._name, sampler, collector=self._collector
        )
        return pool

    async def _close(self, pool: Pool) -> None:
        if self._unregister is not None:
            self._unregister()
            self._unregister = None
        try:
            async with asyncio.timeout(self.close_timeout):
                await pool.close()
        except TimeoutError:
            _log.warning(
                "%s pool %r: connections still borrowed after %g s; terminating them",
                self._component,
                self._name,
                self.close_timeout,
            )
            pool.terminate()

    def _pending_count(self) -> int:
        return self._pending

    async def acquire(self) -> Connection:
        """A connection, waiting at most ``acquire_timeout`` for one to be free."""
        pool = self.pool
        if pool is None:
            pool = await self.get()
        self._borrowed += 1
        try:
            if self._borrowed <= self._max_size and not self._pending:
                return await pool.acquire()  # one is free: no wait, no timer
            return await self._wait_for(pool)
        except BaseException:
            self._borrowed -= 1
            raise

    async def _wait_for(self, pool: Pool) -> Connection:
        self._pending += 1
        deadline = asyncio.timeout(self._timeouts.acquire)
        try:
            async with deadline:
                return await pool.acquire()
        except TimeoutError as exc:
            if deadline.expired():
                raise self._exhausted(pool, deadline.when()) from exc
            raise
        finally:
            self._pending -= 1

    async def release(self, conn: Connection) -> None:
        """Return ``conn`` to the pool (asyncpg resets its session state)."""
        pool = self.pool
        assert pool is not None  # noqa: S101 -- a connection implies a pool
        try:
            await pool.release(conn)
        finally:
            self._borrowed -= 1

    async def run(
        self, op: Callable[[Connection, Statement], Awaitable[T]], statement: Statement
    ) -> T:
        """``op(conn, statement)`` on a borrowed connection, under the dead-peer deadline
        when ``statement.limits.watched`` (asyncpg then applies no timer of its own)."""
        conn = await self.acquire()
        deadlines = self._deadlines if statement.limits.watched else None
        if deadlines is not None:
            deadlines.watch(conn)
        try:
            return await op(conn, statement)
        except Exception as exc:
            if deadlines is not None and deadlines.expired(conn):
                raise deadlines.timeout_error(self._component) from exc
            if isinstance(exc, TimeoutError):
                _abandon(conn)
            raise
        except asyncio.CancelledError:
            _abandon(conn)
            raise
        finally:
            if deadlines is not None:
                deadlines.done(conn)
            await self.release(conn)

    def _exhausted(self, pool: Pool, deadline_at: float | None) -> PoolExhaustedError:
        limit = self._timeouts.acquire
        now = asyncio.get_running_loop().time()
        waited = limit if deadline_at is None else now - (deadline_at - limit)
        return PoolExhaustedError(
            f"no pooled connection became free within {limit:g} s "
            f"(pool {self._name!r}, max_size={pool.get_max_size()})",
            component=self._component,
            details={
                "pool": self._name,
                "max_size": pool.get_max_size(),
                "pool_size": pool.get_size(),
                "waited": round(waited, 4),
                "acquire_timeout": limit,
                "pending": self._pending,
            },
        )


def _abandon(conn: Connection) -> None:
    """Drop a connection whose statement was cancelled or timed out, without waiting.

    asyncpg answers a cancelled statement by sending a CancelRequest over a *new*
    connection and, on release, waits for the old one to settle -- both with no time
    limit when the network has gone silent (found by the chaos tier: a blackholed link
    made an attempt timeout wait forever). A timed-out statement leaves the session in
    an unknown state anyway, so the connection is terminated (which also cancels
    asyncpg's pending cancel task) and the pool opens a fresh one when needed.
    """
    conn.terminate()

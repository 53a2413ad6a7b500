"""A coarse client-side deadline for statements the server already bounds.

When ``statement_timeout`` is set, a live server cancels a slow statement itself; the
client-side limit (longer: ``statement_timeout`` + 1 s by default) only matters when the
server or the network stopped answering -- a dead peer. For that job a precise timer per
statement is the wrong tool: asyncpg's ``timeout=`` arms an event-loop timer on every
call, and cancelled timers are popped from the loop's heap with Python-level comparisons
-- measured ~7 µs per call on the benchmark machine, a third of this store's whole
overhead. No library offers a cheaper coarse deadline for asyncio, so this module keeps
one:

* each statement registers its connection with a deadline in a dict (O(1), no timer);
* one watcher task per store wakes every ``resolution`` seconds (``limit / 4``, at most
  1 s) while statements are in flight, and exits when none are;
* a statement past its deadline has its connection **terminated** (not cancelled:
  a cancel request would travel the same dead path). The waiting call fails at once and
  :meth:`StatementDeadlines.expired` tells the store to raise ``QueryTimeoutError`` with the
  client limit in ``details["timeout"]``; asyncpg's pool replaces the connection.

The deadline fires between ``limit`` and ``limit + resolution`` seconds. Limits the
server does not bound first (no ``statement_timeout``, a ``command_timeout`` below it, a
per-call ``timeout=``) keep asyncpg's precise timer and its cancel request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from infra.exceptions import QueryTimeoutError

__all__ = ["StatementDeadlines"]

T = TypeVar("T")

_log = logging.getLogger("infra.storage.postgres")


class StatementDeadlines:
    """Terminates connections whose statement outlived ``limit`` seconds."""

    __slots__ = ("_expired", "_inflight", "_task", "limit", "resolution")

    def __init__(self, limit: float) -> None:
        if not limit > 0:
            raise ValueError(f"limit must be > 0 seconds, got {limit!r}")
        self.limit = limit
        self.resolution = min(1.0, limit / 4)
        self._inflight: dict[Any, float] = {}
        self._expired: set[Any] = set()
        self._task: asyncio.Task[None] | None = None

    def watch(self, conn: Any) -> None:
        """Start the deadline of a statement about to run on ``conn``."""
        self._inflight[conn] = time.monotonic() + self.limit
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="postgres-statement-deadlines"
            )

    def done(self, conn: Any) -> None:
        """The statement on ``conn`` ended (either way)."""
        self._inflight.pop(conn, None)

    def expired(self, conn: Any) -> bool:
        """Whether ``conn`` was terminated here (asked once, then forgotten)."""
        if conn in self._expired:
            self._expired.discard(conn)
            return True
        return False

    def timeout_error(self, component: str) -> QueryTimeoutError:
        """The error a call whose connection was terminated here raises."""
        return QueryTimeoutError(
            f"no answer from the server within {self.limit:g} s; the connection was "
            "terminated (the server or the network stopped responding)",
            timeout=self.limit,
            component=component,
        )

    async def call(
        self, component: str, conn: Any, op: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """``op(conn, *args)`` under these deadlines (for connections not from ``run``)."""
        self.watch(conn)
        try:
            return await op(conn, *args)
        except Exception as exc:
            if self.expired(conn):
                raise self.timeout_error(component) from exc
            raise
        finally:
            self.done(conn)

    async def _run(self) -> None:
        try:
            while self._inflight:
                await asyncio.sleep(self.resolution)
                now = time.monotonic()
                late = [conn for conn, deadline in self._inflight.items() if deadline <= now]
                for conn in late:
                    del self._inflight[conn]
                    self._expired.add(conn)
                    _log.warning(
                        "postgres statement got no answer within %g s; terminating its "
                        "connection (the server or the network stopped responding)",
                        self.limit,
                    )
                    conn.terminate()
        finally:
            self._task = None

    async def aclose(self) -> None:
        """Stop watching (on store close)."""
        task, self._task = self._task, None
        self._inflight.clear()
        if task is not None:
            task.cancel()
            # Our own task, cancelled just above: its CancelledError is expected.
            await asyncio.gather(task, return_exceptions=True)

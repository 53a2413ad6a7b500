"""Statement functions shared by the pooled store and the transaction-bound store.

Each takes the connection and one :class:`Statement` (text, arguments, column, and the
client limit asyncpg applies), so the pooled store passes a connection it acquired and the
transaction store passes its own; the call itself (telemetry, policy, translation) is
:class:`infra.calls.BackendCalls`' job. The limits of one call are a :class:`CallLimits`,
worked out by :meth:`Timeouts.limits`.

Rows: ``asyncpg.Record`` is *not* a :class:`~collections.abc.Mapping` -- iterating one
yields its values, not its keys, and ``isinstance(record, Mapping)`` is false -- so rows
cross the port as plain ``dict`` s (``infra.ports.Row``). ``dict(record.items())`` is the
cheapest conversion (measured: ~0.9 µs for two columns against ~2.8 µs for
``dict(record)``, next to a ~150 µs loopback round trip). ``fetchval`` returns the bare
value and pays nothing.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from asyncpg.pool import PoolConnectionProxy

from infra.exceptions import QueryArgumentError
from infra.ports import Row
from infra.validation import check_timeout

__all__ = [
    "CallLimits",
    "Connection",
    "Statement",
    "Timeouts",
    "check_call_timeout",
    "execute_many",
    "execute_status",
    "fetch_row",
    "fetch_rows",
    "fetch_value",
    "statement_timeout_setting",
]

# asyncpg's classes are generic only in asyncpg-stubs, not at run time.
if TYPE_CHECKING:
    Connection: TypeAlias = PoolConnectionProxy[Any]
else:
    Connection = PoolConnectionProxy

#: Added to ``statement_timeout`` for the client-side default: the server's cancellation
#: (a clean ``QueryCanceledError``) arrives first; the client timer only catches a network
#: that stopped answering.
CLIENT_GRACE_S = 1.0


def statement_timeout_setting(seconds: float) -> str:
    """``statement_timeout`` in whole milliseconds, at least 1 (``0`` would disable it)."""
    return str(max(1, math.ceil(seconds * 1000.0)))


class CallLimits(NamedTuple):
    """The time limits of one call (seconds; ``None`` = none of that kind)."""

    #: The store's default client limit is enforced by the dead-peer deadline (no timer
    #: per call; ``client`` is then ``None``).
    watched: bool
    #: The limit asyncpg applies to the statement with its own timer.
    client: float | None
    #: The limit a timeout error reports (the smaller of the client and server limits).
    reported: float | None


class Statement(NamedTuple):
    """One statement for the functions below: immutable, built once per call (a
    NamedTuple: the cheapest immutable object to build, next to a loopback round trip)."""

    query: str
    args: Sequence[Any]
    #: Its time limits; ``limits.client`` is asyncpg's ``timeout=``.
    limits: CallLimits
    #: ``fetchval``'s column.
    column: int = 0


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The time limits of one store, in seconds (``None`` = no limit of that kind)."""

    statement: float | None
    client: float | None
    acquire: float

    def limits(self, per_call: float | None, *, deadlines: bool = False) -> CallLimits:
        """The limits of one call with ``timeout=per_call``.

        Without a per-call timeout the client limit is the store's default, enforced by the
        dead-peer deadline when ``deadlines`` (one applies), else by asyncpg's timer. An
        explicit ``timeout=`` always gets asyncpg's precise timer.
        """
        if per_call is None:
            return CallLimits(deadlines, None if deadlines else self.client, self.reported(None))
        check_call_timeout(per_call)
        return CallLimits(False, per_call, self.reported(per_call))

    def reported(self, per_call: float | None) -> float | None:
        """The limit a timeout error reports: the smaller of the client limit in effect
        and the server's ``statement_timeout`` (the smaller one fires first)."""
        client = self.client if per_call is None else per_call
        if client is None:
            return self.statement
        if self.statement is None:
            return client
        return min(client, self.statement)


def check_call_timeout(timeout: float | None) -> None:
    """Reject a per-call timeout that is not a positive number of seconds
    (``InvalidArgumentError``, also a ``ValueError``)."""
    check_timeout(timeout, component="postgres")


async def fetch_rows(conn: Connection, statement: Statement) -> list[Row]:
    """All rows as dicts."""
    query, args, limits, _ = statement
    records = await conn.fetch(query, *args, timeout=limits.client)
    return [dict(record.items()) for record in records]


async def fetch_row(conn: Connection, statement: Statement) -> Row | None:
    """The first row as a dict, or ``None``."""
    query, args, limits, _ = statement
    record = await conn.fetchrow(query, *args, timeout=limits.client)
    return None if record is None else dict(record.items())


# The three below return the driver's coroutine instead of awaiting it: one coroutine
# frame fewer per call on the hot path (the caller awaits it).
def fetch_value(conn: Connection, statement: Statement) -> Awaitable[Any]:
    """One value of the first row, or ``None``.

    A ``column`` the row does not have is the caller's mistake (``QueryArgumentError``),
    not a backend failure; asyncpg reports it as a bare ``IndexError``. Only calls asking
    for another column than the first pay the frame that tells them apart (a row without
    any column, ``SELECT FROM t``, read at column 0, stays a plain ``DatabaseError``).
    """
    query, args, limits, column = statement
    if column == 0:
        return conn.fetchval(query, *args, column=0, timeout=limits.client)
    return _fetch_value_at(conn, statement)


async def _fetch_value_at(conn: Connection, statement: Statement) -> Any:
    query, args, limits, column = statement
    try:
        return await conn.fetchval(query, *args, column=column, timeout=limits.client)
    except IndexError:
        raise QueryArgumentError(
            f"column={column} is out of range for the row the query returned; "
            "ask for an existing column (0 is the first)",
            argument="column",
            component="postgres",
        ) from None


def execute_status(conn: Connection, statement: Statement) -> Awaitable[str]:
    """The server's status tag (``"INSERT 0 1"``)."""
    query, args, limits, _ = statement
    return conn.execute(query, *args, timeout=limits.client)


def execute_many(conn: Connection, statement: Statement) -> Awaitable[None]:
    """One statement per argument tuple (``statement.args`` holds the rows), pipelined by
    asyncpg."""
    query, rows, limits, _ = statement
    return conn.executemany(query, rows, timeout=limits.client)

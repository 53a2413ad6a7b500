"""Single flight: one load per key at a time, in this process and across processes.

In-process -- :class:`SingleFlight`
    The first caller for a key (the *leader*) runs the work itself and publishes the
    outcome on a future; callers arriving meanwhile (*followers*) await that future
    through :func:`asyncio.shield`. All of them get the same result, or the same
    exception (a failing load is shared, never remembered: the next call starts afresh).
    The leader runs the work inline rather than in a task of its own: a task would cost
    two extra event-loop iterations per load (measured: +35 µs on a 100 µs Redis read).
    Cancellation stays local: a cancelled follower stops waiting and nothing else
    changes; a cancelled leader abandons the work, and its followers -- whose own calls
    were not cancelled -- start it again, one of them becoming the new leader. The
    flight is removed as soon as it ends, so a later caller starts a new one.

Across processes -- :class:`RedisFillLease`
    A lease per key: ``SET lock NX PX lease`` with a random owner token. The holder loads
    and writes L2, then releases with a compare-and-delete Lua script (a holder whose
    lease expired must not delete its successor's lock). The others wait for L2 to be
    filled (see :class:`~infra.cache.three_tier_cache.ThreeTierCache`). The lease always
    expires, so a crashed holder delays the others by at most ``lease_seconds``. A load
    that outlives its lease may run twice; choose a lease well above the loader's p99.
    Writers delete the lock key with the value (``set``/``delete``), which tells a holder
    that its load is older than a write: :meth:`RedisFillLease.holds` then answers
    ``False`` and the holder does not write its value back.

Only the raw Redis commands live here; the caller runs them through its telemetry and
error-translation path.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, TypeVar

from redis.asyncio import Redis

__all__ = ["RedisFillLease", "SingleFlight"]

T = TypeVar("T")

# KEYS[1]: the lock; ARGV[1]: the owner token. Deletes only our own lock.
_RELEASE_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class _LeaderCancelledError(Exception):
    """Handed to followers when the leader was cancelled: they start over."""


class SingleFlight(Generic[T]):
    """Coalesce concurrent calls per key into one run of the work."""

    __slots__ = ("_flights", "coalesced")

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[T]] = {}
        self.coalesced = 0
        """Times a caller joined a flight already in progress."""

    def __len__(self) -> int:
        return len(self._flights)

    def in_flight(self, key: str) -> bool:
        """Whether work for ``key`` is running now."""
        return key in self._flights

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        """The result of ``work()``, shared with every concurrent caller for ``key``.

        When a flight for ``key`` is already running, ``work`` is not called: its result
        (or exception) is the flight's.
        """
        while (flight := self._flights.get(key)) is not None:
            self.coalesced += 1
            with contextlib.suppress(_LeaderCancelledError):  # else start over
                return await asyncio.shield(flight)
        flight = self._flights[key] = asyncio.get_running_loop().create_future()
        try:
            result = await work()
        except Exception as exc:
            _settle(flight, exc)
            raise
        except BaseException:  # cancelled (or the interpreter is exiting)
            _settle(flight, _LeaderCancelledError())
            raise
        else:
            flight.set_result(result)
            return result
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]


def _settle(flight: asyncio.Future[Any], exc: BaseException) -> None:
    flight.set_exception(exc)
    # Followers re-raise it from the future; reading it here keeps asyncio from logging
    # "Future exception was never retrieved" when there were none.
    flight.exception()


class RedisFillLease:
    """Per-key fill leases in Redis (``SET NX PX`` + owner-checked release).

    Args:
        redis: The raw asyncio client.
        lease_seconds: How long a lease lives unless released (must exceed the loader's
            worst case for "exactly once" to hold).
    """

    __slots__ = ("_lease_ms", "_redis", "_release")

    def __init__(self, redis: Redis, *, lease_seconds: float) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds!r}")
        self._redis = redis
        self._lease_ms = max(1, round(lease_seconds * 1000))
        self._release = redis.register_script(_RELEASE_SCRIPT)

    async def acquire(self, lock_key: str) -> str | None:
        """The owner token if the lease was granted, ``None`` if another holder has it."""
        token = secrets.token_hex(8)
        granted = await self._redis.set(lock_key, token, nx=True, px=self._lease_ms)
        return token if granted else None

    async def holds(self, lock_key: str, token: str) -> bool:
        """Whether ``token`` still owns the lease (not expired, not deleted by a writer)."""
        current = await self._redis.get(lock_key)
        if isinstance(current, bytes):
            current = current.decode()
        return bool(current == token)

    async def release(self, lock_key: str, token: str) -> bool:
        """Delete the lock if ``token`` still owns it; whether it did."""
        deleted = await self._release(keys=[lock_key], args=[token])
        return bool(deleted)

"""The lease watchdog: renews a held lock every ``lease / 3`` and reports when it cannot.

Renewal is the owner-checked ``extend`` of the lock itself, so a renewal can never
resurrect a lock someone else now holds. What counts as *lost*:

* the backend answers that this owner no longer holds the lock (``LockNotOwnedError``:
  it expired, or someone deleted it) -- reported at once;
* renewals keep failing (connection errors, timeouts, an open breaker) until the lease,
  as measured locally, has run out -- reported when it runs out.

The local estimate of the lease end is conservative: it starts from the clock reading
taken *before* the granting or renewing request was sent (the server starts its lease
later than that), and loss is declared a drift margin early (1 % of the lease plus 2 ms,
the allowance Redlock uses for clock rate differences). A failed renewal is retried
every ``lease / 9`` or sooner; each attempt is bounded by the time left, so a hung
connection cannot keep the watchdog quiet past the lease.

**At least one renewal is attempted before loss is declared**, even when the watchdog
wakes up after the estimated end (the event loop was blocked, the process paused): the
owner-checked extend then either succeeds -- the server still held the key for this
owner, so nobody else held the lock meanwhile and nothing was lost -- or fails, and that
failure becomes the ``LockLostError``'s ``__cause__`` (usually ``LockNotOwnedError``: the
key expired). Such a late attempt is bounded by ``lease / 9``. So ``__cause__`` is always
the error of the last renewal attempt.

The watchdog only detects and reports (``on_lost`` is called at most once, with a
:class:`~infra.exceptions.LockLostError` whose ``__cause__`` is the last error); what to
do about it -- cancel the critical section -- is :class:`infra.cache._hold.Hold`'s job.
Time comes from the lock's injectable clock; the per-attempt bound uses the event loop's
timer (``asyncio.timeout``), which under a ``ManualClock`` is merely generous.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from infra.exceptions import LockLostError, LockNotOwnedError
from infra.ports import LockLease
from infra.resilience.clock import Clock

__all__ = ["DRIFT_FACTOR", "DRIFT_FLOOR_S", "LeaseWatchdog"]

#: Fraction of the lease reserved for clock-rate differences between hosts.
DRIFT_FACTOR: Final = 0.01
#: Fixed part of that reserve, in seconds.
DRIFT_FLOOR_S: Final = 0.002


class LeaseWatchdog:
    """Keeps ``lease`` alive with ``renew`` until :meth:`stop`; see the module docstring.

    Args:
        lease: The lease as granted.
        renew: The lock's owner-checked extend (``lock.extend``).
        clock: The lock's clock.
        granted_at: Clock reading taken just before the granting request was sent.
        on_lost: Called once, from the watchdog's task, when the lease is lost.
        component: ``component`` of the :class:`LockLostError`.
    """

    __slots__ = (
        "_clock",
        "_component",
        "_interval",
        "_margin",
        "_on_lost",
        "_renew",
        "_task",
        "_valid_until",
        "lease",
        "renewals",
    )

    def __init__(
        self,
        lease: LockLease,
        renew: Callable[[LockLease], Awaitable[LockLease]],
        *,
        clock: Clock,
        granted_at: float,
        on_lost: Callable[[LockLostError], None],
        component: str,
    ) -> None:
        self.lease = lease
        self.renewals = 0
        self._renew = renew
        self._clock = clock
        self._on_lost = on_lost
        self._component = component
        self._interval = lease.lease_seconds / 3
        self._margin = lease.lease_seconds * DRIFT_FACTOR + DRIFT_FLOOR_S
        self._valid_until = granted_at + lease.lease_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start renewing in a background task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="semantica-lock-watchdog")

    async def stop(self) -> None:
        """Stop renewing and wait until the task has ended (idempotent)."""
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait([task])

    async def _run(self) -> None:
        try:
            while True:
                await self._clock.sleep(self._interval)
                if not await self._renew_once():
                    return
        except Exception as exc:  # noqa: BLE001 -- a failure must not stop renewals silently
            self._lose("the lock watchdog failed", exc)

    async def _renew_once(self) -> bool:
        """One renewal, retried until it succeeds or the lease runs out."""
        clock = self._clock
        last_error: BaseException | None = None
        while True:
            started = clock.now()
            left = self._valid_until - self._margin - started
            if left <= 0 and last_error is not None:
                self._lose("the lease could not be renewed before it ended", last_error)
                return False
            late = left <= 0  # woke after the estimated end: one bounded, last try
            try:
                async with asyncio.timeout(self._interval / 3 if late else left):
                    self.lease = await self._renew(self.lease)
            except LockNotOwnedError as exc:
                self._lose("the lock expired or was taken over", exc)
                return False
            except Exception as exc:  # noqa: BLE001 -- any error: retry while the lease lasts
                last_error = exc
                if not late:
                    await clock.sleep(min(self._interval / 3, left / 2))
                continue
            self._valid_until = started + self.lease.lease_seconds
            self.renewals += 1
            return True

    def _lose(self, reason: str, cause: BaseException | None) -> None:
        error = LockLostError(
            f"lease on lock {self.lease.name!r} was lost while it was held: {reason}",
            component=self._component,
            details={
                "lock": self.lease.name,
                "fence": self.lease.fencing_token,
                "renewals": self.renewals,
            },
        )
        error.__cause__ = cause
        self._on_lost(error)

    def __repr__(self) -> str:
        return (
            f"LeaseWatchdog(lock={self.lease.name!r}, interval={self._interval:g}, "
            f"renewals={self.renewals})"
        )

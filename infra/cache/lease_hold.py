"""``lock.hold(name)``: acquire, run the body, release -- and never hide a lost lease.

Exit rules, in order (``body`` = the code inside ``async with``):

1. **Watchdog reported the lease lost** while the body ran. The watchdog has already
   cancelled the body's task (``task.cancel()``; the body sees ``CancelledError`` at its
   next ``await``). On exit that cancellation is withdrawn (``task.uncancel()``) and
   ``hold`` raises :class:`~infra.exceptions.LockLostError` (``__cause__``: the
   renewal's error; ``__context__``: whatever the body raised). If someone *else* also
   cancelled the task, the ``CancelledError`` propagates instead -- a cancellation is
   never swallowed. No release is sent: the key is either someone else's or expired
   (the watchdog declares loss only when the lease can no longer be ours), and a release
   to a Redis that stopped answering would only delay the error.
2. **Body succeeded, release failed.** The failure is surfaced: release found the lock
   no longer ours (the lease expired during the body) -> ``LockLostError`` chained from
   the ``LockNotOwnedError``; Redis unreachable -> that (translated) error.
3. **Body raised, release failed too.** The body's exception propagates unchanged; the
   release failure is attached to it as a note (``exc.__notes__``) and logged.
4. Otherwise the body's outcome (value or exception) passes through.

**The body may release the lock itself** (``await lock.release(lease)``, e.g. to let the
next holder in before slow follow-up work). That release is this hold's: the watchdog
stops, and on exit nothing more is sent and nothing is reported lost -- a lease the
holder gave back was not lost. If that release fails, its error reaches the body as
usual and the hold is unchanged (the watchdog keeps renewing; on exit the release is
tried again and rule 2 or 3 applies). A loss the watchdog detects while the body's
release is in flight is held back: dropped when the release succeeds (the lease ended
because we gave it back), reported as in rule 1 when it fails.

With the watchdog off, rule 2 is how an over-long critical section becomes visible --
after the fact. The fencing token is what keeps the storage safe meanwhile.

A ``Hold`` is single-use; call ``lock.hold()`` again for another round.

The watchdog
------------

:class:`LeaseWatchdog` renews a held lock every ``lease / 3`` and reports when it cannot.

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
after :func:`retry_delay`: half the time left, but at most ``lease / 9`` and at least
``lease / 30`` (the floor: without it the waits would halve towards the lease's end, so a
backend that is down would be hit ever faster, without bound, just when it struggles),
and never past the lease's end, where loss is declared. Each attempt is bounded by the
time left, so a hung connection cannot keep the watchdog quiet past the lease.

**At least one renewal is attempted before loss is declared**, even when the watchdog
wakes up after the estimated end (the event loop was blocked, the process paused): the
owner-checked extend then either succeeds -- the server still held the key for this
owner, so nobody else held the lock meanwhile and nothing was lost -- or fails, and that
failure becomes the ``LockLostError``'s ``__cause__`` (usually ``LockNotOwnedError``: the
key expired). Such a late attempt is bounded by ``lease / 9``. So ``__cause__`` is always
the error of the last renewal attempt.

The watchdog only detects and reports (``on_lost`` is called at most once, with a
:class:`~infra.exceptions.LockLostError` whose ``__cause__`` is the last error); what to
do about it -- cancel the critical section -- is :class:`Hold`'s job.
Time comes from the lock's injectable clock; the per-attempt bound uses the event loop's
timer (``asyncio.timeout``), which under a ``ManualClock`` is merely generous.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Final

from infra.exceptions import LockLostError, LockNotOwnedError
from infra.ports import LockLease
from infra.resilience.clock import Clock

if TYPE_CHECKING:
    from infra.cache.lease_lock import LeaseLockBase

__all__ = [
    "DRIFT_FACTOR",
    "DRIFT_FLOOR_S",
    "RETRY_CEILING",
    "RETRY_FLOOR",
    "Hold",
    "LeaseWatchdog",
    "retry_delay",
]

_log = logging.getLogger("infra.cache.lock")


class Hold:
    """The async context manager ``LeaseLockBase.hold`` returns; see the module docstring."""

    __slots__ = (
        "_cancelling",
        "_exiting",
        "_lease",
        "_lease_s",
        "_lock",
        "_lost",
        "_lost_while_releasing",
        "_name",
        "_released",
        "_releasing",
        "_task",
        "_use_watchdog",
        "_wait_s",
        "_watchdog",
        "_we_cancelled",
    )

    def __init__(
        self, lock: LeaseLockBase, name: str, lease_s: float, wait_s: float, watchdog: bool
    ) -> None:
        self._lock = lock
        self._name = name
        self._lease_s = lease_s
        self._wait_s = wait_s
        self._use_watchdog = watchdog
        self._lease: LockLease | None = None
        self._watchdog: LeaseWatchdog | None = None
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._exiting = False
        self._lost: LockLostError | None = None
        self._we_cancelled = False
        self._releasing = False  # the body's own release is in flight
        self._released = False  # the body released the lock itself
        self._lost_while_releasing: LockLostError | None = None

    @property
    def watchdog(self) -> LeaseWatchdog | None:
        """The running watchdog, if this hold uses one."""
        return self._watchdog

    async def __aenter__(self) -> LockLease:
        if self._lease is not None or self._exiting:
            raise RuntimeError("a hold() context manager is single-use; call lock.hold() again")
        lease, granted_at = await self._lock._acquire_timed(self._name, self._lease_s, self._wait_s)
        self._lease = lease
        self._lock._holds[lease.owner] = self
        if self._use_watchdog:
            task = asyncio.current_task()
            if task is None:  # pragma: no cover - an async with always runs inside a task
                raise RuntimeError("hold(watchdog=True) must run inside an asyncio task")
            self._task = task
            self._cancelling = task.cancelling()
            self._watchdog = LeaseWatchdog(
                lease,
                self._lock.extend,
                clock=self._lock.clock,
                granted_at=granted_at,
                on_lost=self._on_lost,
                component=self._lock.component,
            )
            self._watchdog.start()
        return lease

    async def release_in_body(self, lease: LockLease) -> None:
        """The body calls ``lock.release(lease)`` on this hold's lease (see the module
        docstring); raises what that release raises."""
        self._releasing = True
        try:
            await self._lock._release_lease(lease)
        except BaseException:
            self._releasing = False
            pending, self._lost_while_releasing = self._lost_while_releasing, None
            if pending is not None:
                self._on_lost(pending)
            raise
        self._releasing = False
        self._released = True
        self._lost_while_releasing = None
        self._lock._holds.pop(lease.owner, None)
        if self._watchdog is not None:
            await self._watchdog.stop()

    def _on_lost(self, error: LockLostError) -> None:
        if self._exiting or self._released or self._lost is not None:
            return  # the body has finished or gave the lock back; nothing was lost
        if self._releasing:
            self._lost_while_releasing = error  # decided by the release's outcome
            return
        self._lost = error
        self._lock.metrics.lost()
        if self._task is not None:
            self._we_cancelled = self._task.cancel(msg=str(error))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._exiting = True
        if self._watchdog is not None:
            await self._watchdog.stop()
        lease = self._lease
        if lease is None:  # pragma: no cover - __aexit__ without a successful __aenter__
            return False
        self._lock._holds.pop(lease.owner, None)
        if self._lost is not None:  # declared lost (and the body cancelled) before any release
            self._exit_lost(self._lost, exc)
            return False
        if self._released:
            return False  # the body gave the lock back itself: nothing to send or report
        try:
            await self._lock._release_lease(lease)
        except LockNotOwnedError as err:
            self._lock.metrics.lost()
            lost = LockLostError(
                f"lease on lock {lease.name!r} expired or was taken over before hold() "
                "exited; the critical section may have overlapped another holder's",
                component=self._lock.component,
                details={
                    "lock": lease.name,
                    "fence": lease.fencing_token,
                    "lease_seconds": lease.lease_seconds,
                },
            )
            if exc is None:
                raise lost from err
            self._attach(exc, lost)
        except Exception as err:
            if exc is None:
                raise
            self._attach(exc, err)
        return False

    def _exit_lost(self, lost: LockLostError, exc: BaseException | None) -> None:
        external_cancel = False
        if self._we_cancelled and self._task is not None:
            external_cancel = self._task.uncancel() > self._cancelling
        if external_cancel and isinstance(exc, asyncio.CancelledError):
            return  # someone else cancelled us too: let the CancelledError propagate
        raise lost

    def _attach(self, exc: BaseException, error: BaseException) -> None:
        exc.add_note(f"hold({self._name!r}) could not release the lock: {error}")
        _log.warning(
            "lock release failed after the critical section raised",
            extra={
                "component": self._lock.component,
                "error_type": type(error).__name__,
                "body_error_type": type(exc).__name__,
            },
        )


# --------------------------------------------------------------------- watchdog
#: Fraction of the lease reserved for clock-rate differences between hosts.
DRIFT_FACTOR: Final = 0.01
#: Fixed part of that reserve, in seconds.
DRIFT_FLOOR_S: Final = 0.002
#: Retry waits after a failed renewal, as fractions of the lease: at most / at least.
RETRY_CEILING: Final = 1 / 9
RETRY_FLOOR: Final = 1 / 30


def retry_delay(lease_seconds: float, left: float) -> float:
    """Wait before retrying a failed renewal with ``left`` seconds of lease to go.

    Half the time left, within ``[lease / 30, lease / 9]``, and never beyond ``left``:
    every wait but the last (which ends where the lease does) is at least ``lease / 30``,
    so at most 31 retries fit in one lease, however the failures fall.
    """
    wanted = min(lease_seconds * RETRY_CEILING, max(lease_seconds * RETRY_FLOOR, left / 2))
    return min(wanted, max(left, 0.0))


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
                if late:
                    continue
                delay = retry_delay(self.lease.lease_seconds, left)
                await clock.sleep(delay)
                if delay >= left:  # slept to the lease's end: no time for another try
                    self._lose("the lease could not be renewed before it ended", exc)
                    return False
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

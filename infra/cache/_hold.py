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
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import TYPE_CHECKING

from infra.cache._watchdog import LeaseWatchdog
from infra.exceptions import LockLostError, LockNotOwnedError
from infra.ports import LockLease

if TYPE_CHECKING:
    from infra.cache._lock_base import LeaseLockBase

__all__ = ["Hold"]

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

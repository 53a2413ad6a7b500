"""Bulkhead: cap the concurrent calls into one backend so it cannot exhaust the others.

``max_concurrent`` calls run; up to ``max_queue`` more wait in FIFO order, each at most
``max_wait`` seconds; anything beyond is rejected at once with
:class:`~infra.exceptions.BulkheadFullError`.

Why not :class:`asyncio.Semaphore`: it has no bounded queue, no queue length to report
and no per-waiter timeout; with ``asyncio.timeout`` around the wait alone (a timer per
waiter) a queued call cost about three times what it costs here (figures in
docs/decisions.md). The permit logic here is small and written for the two guarantees
that matter:

* **Permits are always returned.** A released slot is *handed* directly to the oldest
  waiter (``in_flight`` does not dip, so a newcomer cannot barge ahead of the queue). A
  waiter cancelled before its turn leaves the queue; one cancelled after it was handed a
  slot but before it resumed passes the slot on; a cancelled runner frees its slot in
  ``finally``. Counters therefore return to zero after any mix of cancellations.
* **FIFO.** Waiters are served strictly in arrival order.

**One timer for the whole queue.** Every waiter waits the same ``max_wait`` and joins
at the back, so the oldest waiter's deadline always comes first. The bulkhead keeps one
event-loop timer armed for the front waiter's deadline; when it fires it rejects every
waiter whose ``max_wait`` passed and re-arms for the new front (a waiter served or
cancelled before its deadline leaves the timer as it is: it then fires once for nothing
and re-arms). Under load that is about one timer per ``max_wait`` instead of a
``call_later`` handle armed and cancelled per queued call, which doubled what a queued
call costs here (figures in docs/decisions.md). The uncontended path is a counter: no
Future, no timer. Hooks are optional; when absent, each call pays one ``is None`` check.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Literal, ParamSpec, Protocol, TypeVar

from infra.exceptions import BulkheadFullError

__all__ = ["Bulkhead", "BulkheadHooks"]

P = ParamSpec("P")
T = TypeVar("T")

_log = logging.getLogger(__name__)


class BulkheadHooks(Protocol):
    """Observer of a bulkhead (metrics, logs). Hooks must be fast and must not block."""

    def on_bulkhead_change(self, name: str, in_flight: int, queued: int) -> None:
        """Called after ``in_flight`` or ``queued`` changed."""
        ...

    def on_bulkhead_reject(self, name: str, reason: Literal["full", "max_wait"]) -> None:
        """Called when a call is refused (no room, or its queue wait ran out)."""
        ...


class Bulkhead:
    """Limit concurrency to ``max_concurrent`` with a bounded FIFO queue.

    Args:
        max_concurrent: Calls allowed to run at once (>= 1).
        max_queue: Calls allowed to wait for a slot (>= 0; 0 rejects at once when full).
        max_wait: Longest time a queued call waits, in seconds; ``None`` waits as long as
            it takes.
        name: Reported as ``component`` on errors and to hooks.
        hooks: Optional :class:`BulkheadHooks`.
    """

    __slots__ = (
        "_hooks",
        "_in_flight",
        "_max_concurrent",
        "_timer",
        "_timer_loop",
        "_waiters",
        "max_queue",
        "max_wait",
        "name",
    )

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_queue: int = 0,
        max_wait: float | None = None,
        name: str = "bulkhead",
        hooks: BulkheadHooks | None = None,
    ) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int):
            raise TypeError(f"max_concurrent must be an int, got {type(max_concurrent).__name__}")
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int):
            raise TypeError(f"max_queue must be an int, got {type(max_queue).__name__}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0 (0 = reject when full), got {max_queue}")
        if max_wait is not None and (
            isinstance(max_wait, bool)
            or not isinstance(max_wait, int | float)
            or not math.isfinite(max_wait)
            or max_wait <= 0
        ):
            raise ValueError(
                f"max_wait must be None or seconds > 0, got {max_wait!r} "
                f"(use max_queue=0 to reject instead of waiting)"
            )
        self._max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.max_wait = None if max_wait is None else float(max_wait)
        self.name = name
        self._hooks = hooks
        self._in_flight = 0
        # (deadline on the loop's clock, future) per waiter, oldest first.
        self._waiters: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None  # armed for the front's deadline
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    @property
    def max_concurrent(self) -> int:
        """Calls allowed to run at once."""
        return self._max_concurrent

    @property
    def in_flight(self) -> int:
        """Calls holding a slot (running, or handed a slot and about to resume)."""
        return self._in_flight

    @property
    def queued(self) -> int:
        """Calls waiting for a slot."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody queues for it (no waiting); ``True`` when
        taken -- pair it with :meth:`release`. A caller on a hot path tries this first
        and awaits :meth:`acquire` only when it returns ``False``: no coroutine per call
        while the bulkhead is not full."""
        if self._in_flight < self._max_concurrent and not self._waiters:
            self._in_flight += 1
            if self._hooks is not None:
                self._notify_change()
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if allowed; pair with :meth:`release`."""
        if self.try_acquire():
            return
        if len(self._waiters) >= self.max_queue:
            self._reject("full")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (math.inf if self.max_wait is None else loop.time() + self.max_wait, waiter)
        self._waiters.append(entry)
        if self._hooks is not None:
            self._notify_change()
        if self.max_wait is not None and (self._timer is None or self._timer_loop is not loop):
            self._arm(loop, entry[0])  # otherwise armed for an older waiter: no later
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a slot just before the cancel landed: pass it on, then propagate.
                # (A waiter whose max_wait expired holds no slot: nothing to release.)
                self.release()
            else:
                self._leave_queue(entry)
            raise

    def release(self) -> None:
        """Return a slot: hand it to the oldest waiter, or free it."""
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter; in_flight unchanged
                if self._hooks is not None:
                    self._notify_change()
                return
        if self._in_flight <= 0:
            raise RuntimeError(f"bulkhead {self.name!r} released more often than acquired")
        self._in_flight -= 1
        if self._hooks is not None:
            self._notify_change()

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` holding a slot."""
        await self.acquire()
        try:
            return await fn(*args, **kwargs)
        finally:
            self.release()

    async def __aenter__(self) -> Bulkhead:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._timer_loop = loop
        self._timer = loop.call_at(when, self._expire, loop, when)

    def _expire(self, loop: asyncio.AbstractEventLoop, armed_at: float) -> None:
        """Timer callback: reject the waiters whose max_wait passed; re-arm for the next."""
        self._timer = None
        # The loop ran this handle, so it considers ``armed_at`` reached (it runs handles
        # up to one clock resolution early).
        limit = max(loop.time(), armed_at)
        waiters = self._waiters
        while waiters:
            deadline, waiter = waiters[0]
            # A done waiter here was cancelled (a served one is popped before its result
            # is set) and has not resumed yet: it leaves the queue now.
            if deadline > limit and not waiter.done():
                self._arm(loop, deadline)
                return
            waiters.popleft()
            if self._hooks is not None:
                self._notify_change()
            if not waiter.done():
                waiter.set_exception(self._error("max_wait"))

    def _leave_queue(self, entry: tuple[float, asyncio.Future[None]]) -> None:
        try:
            self._waiters.remove(entry)
        except ValueError:
            return  # already popped by release()
        if self._hooks is not None:
            self._notify_change()

    def _reject(self, reason: Literal["full", "max_wait"]) -> None:
        raise self._error(reason)

    def _error(self, reason: Literal["full", "max_wait"]) -> BulkheadFullError:
        if self._hooks is not None:
            try:
                self._hooks.on_bulkhead_reject(self.name, reason)
            except Exception:  # noqa: BLE001 -- an observer must never break permit accounting
                _log.exception("bulkhead hook on_bulkhead_reject failed")
        message = (
            f"bulkhead {self.name!r} full: {self._in_flight} running, {len(self._waiters)} queued"
            if reason == "full"
            else f"bulkhead {self.name!r}: no slot within max_wait={self.max_wait}s"
        )
        return BulkheadFullError(
            message,
            component=self.name,
            details={
                "reason": reason,
                "max_concurrent": self._max_concurrent,
                "max_queue": self.max_queue,
                "max_wait": self.max_wait,
                "in_flight": self._in_flight,
                "queued": len(self._waiters),
            },
        )

    def _notify_change(self) -> None:
        if self._hooks is None:
            return
        try:
            self._hooks.on_bulkhead_change(self.name, self._in_flight, len(self._waiters))
        except Exception:  # noqa: BLE001 -- an observer must never break permit accounting
            _log.exception("bulkhead hook on_bulkhead_change failed")

    def __repr__(self) -> str:
        return (
            f"Bulkhead(name={self.name!r}, max_concurrent={self._max_concurrent}, "
            f"max_queue={self.max_queue}, max_wait={self.max_wait}, "
            f"in_flight={self._in_flight}, queued={len(self._waiters)})"
        )

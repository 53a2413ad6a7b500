"""Injectable time for every resilience component.

Policies never call :func:`time.monotonic` or :func:`asyncio.sleep` directly; they take a
:class:`Clock`. Production uses :class:`MonotonicClock`; tests use :class:`ManualClock`,
whose ``sleep`` advances virtual time instantly, so a test of a 60 s breaker recovery or a
5-attempt backoff takes microseconds and is deterministic.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "MonotonicClock"]


@runtime_checkable
class Clock(Protocol):
    """A monotonic time source with a matching sleep."""

    def now(self) -> float:
        """Seconds on a monotonic scale (only differences are meaningful)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class MonotonicClock:
    """Real time: :func:`time.monotonic` and :func:`asyncio.sleep`."""

    __slots__ = ()

    # The C function itself, not a method wrapping it: no Python frame per reading, and
    # every layer reads the clock on every call.
    now = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "MonotonicClock()"


class ManualClock:
    """Virtual time for tests: ``sleep`` advances the clock and yields once to the loop.

    ``advance`` moves time forward without sleeping. ``sleeps`` records every requested
    sleep so a test can assert on backoff delays.
    """

    __slots__ = ("_now", "sleeps")

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        self._now += seconds
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r})"

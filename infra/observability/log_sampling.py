"""Log sampling: repetitive lines are rate limited per key, and what was dropped is summed up.

During an outage every failed call used to write a line -- tens of thousands per second
of the same "redis get failed: CircuitBreakerOpenError" -- which costs a core and buries
the lines that matter. The failure log and the retry log therefore ask a
:class:`LogSampler` first::

    if logger.isEnabledFor(level) and log_sampler().admit(logger, level, key):
        logger.log(level, ...)        # formatted, redacted and serialized only here

Rules:

* **Per key, fixed windows.** A key is ``(component, operation, kind)`` -- kind is the
  error type (or the give-up reason) -- so a new kind of failure is always seen, however
  loud another one is. In each window of ``window`` seconds, starting at the key's first
  line, the first ``burst`` lines are written and the rest are counted.
* **Nothing is lost silently.** The count is written as one summary line, "suppressed N
  similar", carrying the key's fields and ``suppressed=N``: before the key's next written
  line once its window is over, and for every key at :meth:`LogSampler.flush` (the
  container flushes at shutdown; a breaker closing flushes its component's keys, so the
  outage's story ends with its totals). Per key and window at most ``burst + 1`` lines
  are written, whatever the call rate.
* **Decided before anything is built.** ``admit`` is a dict lookup and two integer
  updates under a lock; callers check the logger level and ask the sampler before they
  format a message, run redaction or build the ``extra`` dict, so a suppressed line costs
  next to nothing (the fail-fast path depends on it).
* **Not sampled**: state transitions (a breaker opening or closing, a cache degrading or
  recovering) are logged once each by whoever owns the state, never through a sampler.

The sampler is process-wide, like logging itself: :func:`configure_log_sampling` (called
by ``configure_logging_from_settings`` with ``SEMANTICA_LOG_SAMPLE_BURST`` and
``SEMANTICA_LOG_SAMPLE_WINDOW``) replaces it, flushing the old one. Keys are bounded by
contract (component, operation and error type are small fixed sets); past ``max_keys``
distinct keys, further ones share one overflow key, so memory stays bounded.

Why not a library: structlog and stdlib logging have no rate limiting, and the logging
filters on PyPI drop lines without a per-key count, or decide after the record (and its
message) was built -- the cost this module exists to avoid.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Final

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_WINDOW",
    "LogKey",
    "LogSampler",
    "configure_log_sampling",
    "flush_log_sampling",
    "log_sampler",
]

#: Lines written per key and window by default.
DEFAULT_BURST: Final = 5
#: Window length in seconds by default.
DEFAULT_WINDOW: Final = 10.0
_OVERFLOW: Final = ("other", "other", "other")

#: ``(component, operation, kind)``; kind is an error type name or a give-up reason.
LogKey = tuple[str, str, str]


class _Window:
    """One key's current window: when it started, lines written, lines suppressed."""

    __slots__ = ("level", "logger", "start", "suppressed", "written")

    def __init__(self, start: float, logger: logging.Logger, level: int) -> None:
        self.start = start
        self.written = 0
        self.suppressed = 0
        self.logger = logger
        self.level = level


class LogSampler:
    """Writes the first ``burst`` lines per key in each ``window`` seconds; counts the rest.

    Args:
        burst: Lines written per key and window (>= 1).
        window: Window length in seconds (> 0).
        clock: Monotonic time source (tests pass a fake one).
        max_keys: Distinct keys tracked; further keys share one overflow key.
    """

    __slots__ = ("_burst", "_clock", "_keys", "_lock", "_max_keys", "_window")

    def __init__(
        self,
        burst: int = DEFAULT_BURST,
        window: float = DEFAULT_WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 4096,
    ) -> None:
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an integer >= 1 (lines per window), got {burst!r}")
        if (
            isinstance(window, bool)
            or not isinstance(window, int | float)
            or not math.isfinite(window)
            or window <= 0
        ):
            raise ValueError(f"window must be a finite number of seconds > 0, got {window!r}")
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be an integer >= 1, got {max_keys!r}")
        self._burst = burst
        self._window = float(window)
        self._clock = clock
        self._max_keys = max_keys
        self._keys: dict[LogKey, _Window] = {}
        # Lines may come from worker threads (asyncio.to_thread); the lock is taken only
        # on the failure path, never on a successful call.
        self._lock = threading.Lock()

    @property
    def burst(self) -> int:
        """Lines written per key and window."""
        return self._burst

    @property
    def window(self) -> float:
        """Window length in seconds."""
        return self._window

    def admit(self, logger: logging.Logger, level: int, key: LogKey) -> bool:
        """Whether to write this line of ``key``; counts it as suppressed otherwise.

        When the key's window is over and lines were suppressed in it, their summary is
        written first (through the logger and level of the key's window).
        """
        now = self._clock()
        due: tuple[LogKey, _Window, float] | None = None
        with self._lock:
            entry = self._keys.get(key)
            if entry is None:
                if len(self._keys) >= self._max_keys:
                    key = _OVERFLOW
                    entry = self._keys.get(key)
                if entry is None:
                    entry = self._keys[key] = _Window(now, logger, level)
            if now - entry.start >= self._window:
                if entry.suppressed:
                    due = (key, _copy(entry), now - entry.start)
                entry.start, entry.written, entry.suppressed = now, 0, 0
                entry.logger, entry.level = logger, level
            if entry.written < self._burst:
                entry.written += 1
                admitted = True
            else:
                entry.suppressed += 1
                admitted = False
        if due is not None:
            _summarize(*due)
        return admitted

    def suppressed(self, component: str | None = None) -> int:
        """Lines suppressed and not yet summarized (of ``component`` only, if given)."""
        with self._lock:
            return sum(
                entry.suppressed
                for key, entry in self._keys.items()
                if component is None or key[0] == component
            )

    def flush(self, component: str | None = None) -> int:
        """Write the summary of every key with suppressed lines (of ``component`` only, if
        given) now; returns how many lines the summaries account for."""
        now = self._clock()
        due: list[tuple[LogKey, _Window, float]] = []
        with self._lock:
            for key, entry in self._keys.items():
                if entry.suppressed and (component is None or key[0] == component):
                    due.append((key, _copy(entry), now - entry.start))
                    entry.suppressed = 0
        for item in due:
            _summarize(*item)
        return sum(entry.suppressed for _, entry, _ in due)

    def __repr__(self) -> str:
        return f"LogSampler(burst={self._burst}, window={self._window:g}s)"


def _copy(entry: _Window) -> _Window:
    copy = _Window(entry.start, entry.logger, entry.level)
    copy.written, copy.suppressed = entry.written, entry.suppressed
    return copy


def _summarize(key: LogKey, entry: _Window, period: float) -> None:
    component, operation, kind = key
    entry.logger.log(
        entry.level,
        "%s %s: suppressed %d similar line(s) (%s) in the last %.1f s",
        component,
        operation,
        entry.suppressed,
        kind,
        period,
        extra={
            "component": component,
            "operation": operation,
            "error_type": kind,
            "suppressed": entry.suppressed,
            "period_s": round(period, 3),
        },
    )


_sampler = LogSampler()
_slot_lock = threading.Lock()


def log_sampler() -> LogSampler:
    """The process-wide sampler the failure and retry logs ask."""
    return _sampler


def configure_log_sampling(
    burst: int = DEFAULT_BURST,
    window: float = DEFAULT_WINDOW,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> LogSampler:
    """Install a new process-wide sampler (the old one's pending summaries are written)."""
    global _sampler
    fresh = LogSampler(burst, window, clock=clock)
    with _slot_lock:
        old, _sampler = _sampler, fresh
    old.flush()
    return fresh


def flush_log_sampling(component: str | None = None) -> int:
    """Write the pending summaries of the process-wide sampler (see :meth:`LogSampler.flush`)."""
    return _sampler.flush(component)

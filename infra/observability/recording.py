"""Series values and how they are written: the hot half of the metrics storage.

Split from :mod:`infra.observability.series` (families, labels, folding), which
re-exports everything here. One *series* is one label set of a metric:
:class:`CounterSeries`, :class:`GaugeSeries`, :class:`HistogramSeries` (read through a
:class:`HistogramSnapshot`), plus :class:`DurationRecorder`, the instrument helper's
fused write of one successful call.

* **No lock on the owning thread.** Counters and histograms are recorded on every backend
  call, so their writes must be cheap, yet a worker thread (``asyncio.to_thread``) may
  record too, and ``+=`` is a read-modify-write that two threads can interleave. Each
  counter and histogram series therefore has an *owner*, the thread that created it (in
  practice the event-loop thread: series are created by the first call that records
  them). The owner writes its own fields with no lock (an uncontended ``with lock:``
  costs ~0.4 µs here, as much as the rest of an observe); any other thread writes a
  separate *foreign* shard under the series' lock. No field is ever written by two
  threads, so no update is lost, under the GIL or without it. (A thread id is reused
  only after its thread ended, so an owner shard still has one writer at a time.)
* **The owner buffers, then folds.** Next to a real backend call an observe costs
  several times what it costs in a tight loop (measured around a loopback ``SELECT 1``:
  ~2.3 µs of CPU per call for two observes and an increment, against ~0.3 µs in a loop),
  most likely cache misses: the bucket search walks a tuple of 81 boxed floats that the
  driver and the event loop evicted since the last call. So the owner appends each value
  to a small buffer and folds 64 at a time into the buckets in one warm loop (measured:
  ~1 µs of CPU saved per call).
* **Reads merge the shards and the buffer, and tolerate a torn update.** A read on the
  owner thread (``get_histogram_stats`` from a handler) folds the buffer first and is
  exact: nothing else writes the owner's fields, and a synchronous read cannot
  interleave with the owner's own writes. A read on another thread (a Prometheus scrape
  served by prometheus-client's threaded HTTP server) counts the buffer without
  consuming it, and may run while the owner is mid-update: it can then miss values being
  folded (the next read has them) or see a sum that lags the counts, but it never counts
  a value twice (the fold and the read touch the fields in opposite orders, see
  ``_Shard.fold``). The count is never stored separately: it is the sum of the bucket
  counts, so the exported buckets, ``+Inf`` and ``_count`` always agree. Gauges keep a
  lock on ``inc`` (they are set, not incremented, on hot paths).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from dataclasses import dataclass
from threading import get_ident

__all__ = [
    "CounterSeries",
    "DurationRecorder",
    "GaugeSeries",
    "HistogramSeries",
    "HistogramSnapshot",
]


class CounterSeries:
    """One label set of a counter.

    ``value`` holds what the owning thread added: code that runs only on that thread (the
    event loop) may add to it directly (``series.value += 1``, no call, no check), as the
    cache tiers do. Everyone else calls :meth:`inc`. Read the total with :meth:`get`.
    """

    __slots__ = ("_foreign", "_lock", "_owner", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self._foreign = 0.0
        self._owner = get_ident()
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (must not be negative); lock-free on the owning thread."""
        if amount < 0:
            raise ValueError(f"counters only go up; got amount={amount!r}")
        if get_ident() == self._owner:
            self.value += amount
        else:
            with self._lock:
                self._foreign += amount

    def get(self) -> float:
        """The counter's total, every thread's increments included."""
        return self.value + self._foreign


class GaugeSeries:
    """One label set of a gauge."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self._lock = threading.Lock()

    def set(self, value: float) -> None:
        """Set the current value."""
        self.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (may be negative)."""
        with self._lock:
            self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount``."""
        self.inc(-amount)

    def get(self) -> float:
        """The current value."""
        return self.value


#: Observations an owner buffers before folding them into buckets (see the module doc).
_BATCH = 64


class _Shard:
    """Per-bucket counts plus sum/min/max, written by one writer (see the module doc).

    The owner's shard also buffers raw values in ``pending`` and folds them in batches;
    a foreign shard (written under the series' lock) adds each value at once.
    """

    __slots__ = ("counts", "max", "min", "pending", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.pending: list[float] = []

    def add(self, bounds: tuple[float, ...], value: float) -> None:
        """Count one value now."""
        self.counts[bisect_left(bounds, value)] += 1  # first bound >= value: Prometheus "le"
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def fold(self, bounds: tuple[float, ...]) -> None:
        """Move the buffered values into counts, sum, min and max (writer thread only).

        The buffer is swapped out first and sum/min/max are written last, the reverse of
        the order :meth:`HistogramSeries.snapshot` reads in, so a concurrent reader may
        miss values being folded (it sees them at its next read) but never counts one
        twice.
        """
        pending = self.pending
        if not pending:
            return
        self.pending = []
        counts = self.counts
        total, low, high = self.sum, self.min, self.max
        for value in pending:
            counts[bisect_left(bounds, value)] += 1
            total += value
            # `if` beats min()/max() calls in this loop.
            if value < low:  # noqa: PLR1730
                low = value
            if value > high:  # noqa: PLR1730
                high = value
        self.sum, self.min, self.max = total, low, high


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A histogram series read at one moment: per-bucket (non-cumulative) counts, the last
    one the overflow bucket, and the exact sum/min/max; ``count`` is ``sum(counts)``."""

    counts: list[int]
    sum: float
    min: float
    max: float

    @property
    def count(self) -> int:
        """Observations recorded."""
        return sum(self.counts)


class HistogramSeries:
    """One label set of a histogram: per-bucket counts plus exact sum/min/max.

    On the owning thread ``observe`` appends the value to a buffer (no lock, no bucket
    search); every :data:`_BATCH` values, and before any read on that thread, the buffer
    is folded into the buckets with ``bisect`` (O(log n) in the number of buckets). Read
    through :meth:`snapshot` or the ``count``/``sum``/``min``/``max``/``counts``
    properties (every thread and the buffer merged).
    """

    __slots__ = ("_bounds", "_foreign", "_lock", "_mine", "_owner")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._mine = _Shard(len(bounds) + 1)
        self._foreign: _Shard | None = None
        self._owner = get_ident()
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Record one value (NaN is ignored)."""
        if value != value:  # NaN: comparisons would misplace it  # noqa: PLR0124
            return
        if get_ident() != self._owner:
            self._observe_foreign(value)
            return
        pending = self._mine.pending
        pending.append(value)
        if len(pending) >= _BATCH:
            self._mine.fold(self._bounds)

    def _observe_foreign(self, value: float) -> None:
        with self._lock:
            shard = self._foreign
            if shard is None:
                shard = self._foreign = _Shard(len(self._bounds) + 1)
            shard.add(self._bounds, value)

    def snapshot(self) -> HistogramSnapshot:
        """Every thread's observations merged (see the module docstring on torn reads)."""
        mine, bounds = self._mine, self._bounds
        if get_ident() == self._owner:
            mine.fold(bounds)  # on the owner nothing can interleave: an exact read
        # sum/min/max, then counts, then the buffer: the reverse of _Shard.fold's writes.
        total, low, high = mine.sum, mine.min, mine.max
        counts = list(mine.counts)  # one C-level copy: a consistent list of counts
        for value in list(mine.pending):  # only on another thread: the owner's buffer
            counts[bisect_left(bounds, value)] += 1
            total += value
            low, high = min(low, value), max(high, value)
        with self._lock:
            shard = self._foreign
            if shard is not None:
                counts = [a + b for a, b in zip(counts, shard.counts, strict=True)]
                total += shard.sum
                low, high = min(low, shard.min), max(high, shard.max)
        return HistogramSnapshot(counts, total, low, high)

    @property
    def counts(self) -> list[int]:
        """Per-bucket counts (a copy); the last entry is the overflow bucket."""
        return self.snapshot().counts

    @property
    def count(self) -> int:
        """Observations recorded."""
        return self.snapshot().count

    @property
    def sum(self) -> float:
        """Sum of the observed values."""
        return self.snapshot().sum

    @property
    def min(self) -> float:
        """Smallest observed value (``inf`` when empty)."""
        return self.snapshot().min

    @property
    def max(self) -> float:
        """Largest observed value (``-inf`` when empty)."""
        return self.snapshot().max


class DurationRecorder:
    """One call's success, recorded in one go: ``seconds * 1000`` into a millisecond
    histogram series, ``seconds`` into a seconds histogram series, one increment of a
    counter series.

    The instrument helper records exactly this on every successful backend call. As
    three method calls it would cost three ownership checks and three calls; here, when
    all three series belong to the calling thread, it is one check, two buffer appends
    and one add (the same writes ``observe``/``inc`` make). Otherwise, or for NaN, it
    falls back to the three methods, so the thread-safety rules above are unchanged.
    """

    __slots__ = ("_counter", "_ms", "_ms_bounds", "_owner", "_s", "_s_bounds", "_series")

    def __init__(
        self, ms: HistogramSeries, seconds: HistogramSeries, counter: CounterSeries
    ) -> None:
        self._series = (ms, seconds, counter)
        same = ms._owner == seconds._owner == counter._owner
        self._owner: int | None = ms._owner if same else None  # None: never the caller
        self._ms, self._ms_bounds = ms._mine, ms._bounds
        self._s, self._s_bounds = seconds._mine, seconds._bounds
        self._counter = counter

    def record(self, seconds: float) -> None:
        """Record one successful call that took ``seconds``."""
        if get_ident() != self._owner or seconds != seconds:  # noqa: PLR0124 - NaN
            ms, sec, counter = self._series
            ms.observe(seconds * 1000.0)
            sec.observe(seconds)
            counter.inc()
            return
        shard = self._ms
        pending = shard.pending
        pending.append(seconds * 1000.0)
        if len(pending) >= _BATCH:
            shard.fold(self._ms_bounds)
        shard = self._s
        pending = shard.pending
        pending.append(seconds)
        if len(pending) >= _BATCH:
            shard.fold(self._s_bounds)
        self._counter.value += 1.0

"""The in-process tier of :class:`~infra.cache.three_tier_cache.ThreeTierCache`.

A size-bounded LRU whose entries each carry their own expiry, plus the bookkeeping that
keeps a slow fill from writing a stale value after an invalidation.

Design decisions:

* **Written by hand on** :class:`collections.OrderedDict`. ``cachetools`` (not a
  dependency) has one TTL per cache, and we need one per entry: negative entries live
  shorter, and every write is jittered. ``OrderedDict`` keeps recency order in C, so a
  hit is a dict lookup, a clock read and ``move_to_end`` (well under a microsecond).
* **Expiry is lazy.** An expired entry is dropped when it is read, or pushed out by LRU
  order when the cache is full (an entry nobody reads is the least recently used one).
  No timer task, nothing to cancel.
* **Absence is a value.** A cached "this key does not exist" is stored as :data:`ABSENT`,
  so a lookup has three answers: a value, ``ABSENT``, or :data:`MISS` (not cached).
* **Bounded staleness.** While the owner cannot hear invalidations (its coherence
  subscription is down, or Redis is unreachable) it keeps serving L1, but no entry may
  live longer than the staleness bound from then on: :meth:`L1Cache.cap_expiry` shortens
  every entry at once, and the owner gives new entries the bound as their TTL.
* **Fill tokens.** A read-through fill takes time (an L2 round trip, a database query).
  If the key is invalidated meanwhile -- a local ``set``/``delete``, or a message from
  another process -- the fill's result may be older than the invalidation and must not
  land in L1. :meth:`L1Cache.begin_fill` registers the key; every invalidation of it (by
  key, prefix or :meth:`L1Cache.clear`) voids the registration; :meth:`L1Cache.finish_fill`
  stores only if the registration survived. Concurrent fills of one key (a plain read
  beside a load) share one registration, counted, so one finishing does not void the
  other. The three-tier cache also asks :meth:`L1Cache.fill_is_valid` before writing a
  loaded value back to L2.

Not thread-safe: one instance belongs to one event loop, like the cache that owns it.
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict
from typing import Final, Literal

from infra.resilience.clock import Clock

__all__ = ["ABSENT", "MISS", "Absent", "L1Cache", "Miss"]


class Absent(enum.Enum):
    """Type of :data:`ABSENT`: a cached answer that the key does not exist (falsy)."""

    ABSENT = "ABSENT"

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "ABSENT"

    __str__ = __repr__


class Miss(enum.Enum):
    """Type of :data:`MISS`: nothing is cached for the key (internal to the tiers)."""

    MISS = "MISS"

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "MISS"

    __str__ = __repr__


ABSENT: Final = Absent.ABSENT
"""Cached absence: the key is known not to exist (negative caching)."""

MISS: Final = Miss.MISS
"""No entry: the tier knows nothing about the key."""


class L1Cache:
    """LRU of at most ``max_size`` entries, each with its own time to live.

    Args:
        max_size: Entries kept; the least recently used one is evicted beyond it.
        clock: Time source for expiry (a ``ManualClock`` in tests).
    """

    __slots__ = ("_data", "_filling", "_max_size", "_now", "_tokens", "evictions")

    def __init__(self, max_size: int, *, clock: Clock) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size!r}")
        self._max_size = max_size
        self._now = clock.now
        self._data: OrderedDict[str, tuple[object, float]] = OrderedDict()
        self._filling: dict[str, list[int]] = {}  # key -> [token, fills in progress]
        self._tokens = itertools.count(1)
        self.evictions = 0
        """Entries pushed out by the size bound (not by expiry or invalidation)."""

    @property
    def max_size(self) -> int:
        """The size bound."""
        return self._max_size

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> object:
        """The cached value, :data:`ABSENT`, or :data:`MISS`; a hit becomes most recent."""
        entry = self._data.get(key)
        if entry is None:
            return MISS
        if entry[1] <= self._now():
            del self._data[key]
            return MISS
        self._data.move_to_end(key)
        return entry[0]

    def set(self, key: str, value: object, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds; voids a pending fill of ``key``."""
        self._filling.pop(key, None)
        self._store(key, value, ttl)

    def discard(self, key: str) -> bool:
        """Drop ``key`` (and void its pending fill); whether an entry was there."""
        self._filling.pop(key, None)
        return self._data.pop(key, None) is not None

    def discard_prefix(self, prefix: str) -> int:
        """Drop every key starting with ``prefix``; how many entries went."""
        for key in [k for k in self._filling if k.startswith(prefix)]:
            del self._filling[key]
        doomed = [k for k in self._data if k.startswith(prefix)]
        for key in doomed:
            del self._data[key]
        return len(doomed)

    def cap_expiry(self, seconds: float) -> None:
        """Let no entry live more than ``seconds`` from now (O(size); rare events only)."""
        deadline = self._now() + seconds
        data = self._data
        for key, (value, expires) in data.items():
            if expires > deadline:
                data[key] = (value, deadline)  # same key: order and size unchanged

    def clear(self) -> None:
        """Drop everything and void every pending fill."""
        self._filling.clear()
        self._data.clear()

    # ------------------------------------------------------------------ fills
    def begin_fill(self, key: str) -> int:
        """Register a fill of ``key``; pass the token to :meth:`finish_fill` or
        :meth:`abandon_fill` (one of them, exactly once)."""
        entry = self._filling.get(key)
        if entry is None:
            entry = self._filling[key] = [next(self._tokens), 0]
        entry[1] += 1
        return entry[0]

    def fill_is_valid(self, key: str, token: int) -> bool:
        """Whether no invalidation of ``key`` happened since :meth:`begin_fill`."""
        entry = self._filling.get(key)
        return entry is not None and entry[0] == token

    def finish_fill(self, key: str, token: int, value: object, ttl: float) -> bool:
        """Store the fill's result unless it was voided; whether it was stored."""
        if not self._end_fill(key, token):
            return False
        self._store(key, value, ttl)
        return True

    def abandon_fill(self, key: str, token: int) -> None:
        """End a fill that produced nothing (its loader failed, or L2 had nothing)."""
        self._end_fill(key, token)

    def _end_fill(self, key: str, token: int) -> bool:
        entry = self._filling.get(key)
        if entry is None or entry[0] != token:
            return False
        entry[1] -= 1
        if entry[1] == 0:
            del self._filling[key]
        return True

    def _store(self, key: str, value: object, ttl: float) -> None:
        data = self._data
        data[key] = (value, self._now() + ttl)
        data.move_to_end(key)
        if len(data) > self._max_size:
            data.popitem(last=False)
            self.evictions += 1

    def __repr__(self) -> str:
        return f"L1Cache(size={len(self._data)}, max_size={self._max_size})"

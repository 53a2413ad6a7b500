"""``FakeCache``: an in-memory :class:`~infra.ports.CacheStore` for tests, verified by the
same contract suite as :class:`~infra.cache.RedisCache` (``tests/contract``).

::

    clock = ManualClock()
    cache = FakeCache(clock=clock)
    await cache.set("k", {"v": 1}, ttl=30)
    clock.advance(31)
    assert await cache.get("k") is None

    cache.fail_next(CacheConnectionError("redis down"), times=2)   # next 2 calls fail

What makes it trustworthy rather than a dict:

* **Same serializer round trip.** Values are stored as the bytes the serializer produces
  (JSON by default) and decoded on read, so an unencodable value raises
  ``CacheSerializationError`` exactly as with Redis, and a read returns a fresh copy
  (mutating a value you got back does not change the cache).
* **Same validation**, by the same functions (:mod:`infra.validation`): keys are
  non-empty ``str`` of at most 1024 characters that encode as UTF-8 (else
  ``InvalidKeyError``), the same TTL rules (:func:`infra.cache.ttl_to_ms`: positive
  seconds, millisecond resolution), ``None`` storable and told apart from a miss only by
  :meth:`exists`.
* **Time is injected** (:class:`~infra.resilience.clock.Clock`): with a
  :class:`~infra.resilience.ManualClock`, ``clock.advance(s)`` expires keys instantly and
  deterministically.
* **Fault injection**: :meth:`fail_next` makes the next *n* backend operations (optionally
  only one kind, e.g. ``"get"``) raise the given error, as a broken connection would;
  validation and encoding still happen first, as in the real adapter.
* Each operation yields to the event loop once, as network I/O would, so races in the
  code under test are not hidden by a fake that never suspends.
* It imports no driver.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Mapping, Sequence
from time import perf_counter
from typing import Any

from infra.cache.serialization import JsonSerializer, Serializer
from infra.cache.ttl_policy import ttl_to_ms
from infra.resilience.clock import Clock, MonotonicClock
from infra.validation import (
    check_key,
    check_key_list,
    check_latency_threshold,
    check_mapping,
    check_timeout,
)

__all__ = ["FakeCache"]


class FakeCache:
    """In-memory cache with TTLs on an injectable clock and scripted failures.

    Args:
        clock: Time source for expiry (default: real monotonic time).
        serializer: Same role as in ``RedisCache`` (default: JSON).
    """

    def __init__(self, *, clock: Clock | None = None, serializer: Serializer | None = None) -> None:
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError("serializer must have dumps(value) -> bytes and loads(bytes)")
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._serializer: Serializer = serializer if serializer is not None else JsonSerializer()
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self._faults: deque[tuple[BaseException | type[BaseException], str | None]] = deque()
        #: Operation names in the order they reached the "backend" (failed ones included).
        self.calls: list[str] = []

    # ------------------------------------------------------------------ test controls
    @property
    def clock(self) -> Clock:
        """The clock deciding expiry."""
        return self._clock

    @property
    def serializer(self) -> Serializer:
        """The value serializer."""
        return self._serializer

    def fail_next(
        self,
        exc: BaseException | type[BaseException],
        *,
        times: int = 1,
        operation: str | None = None,
    ) -> None:
        """Make the next ``times`` operations (only ``operation`` ones, e.g. ``"get"``,
        when given) raise ``exc`` -- an instance, or a class instantiated per failure."""
        if not (isinstance(exc, BaseException) or _is_exception_class(exc)):
            raise TypeError(f"exc must be an exception or exception class, got {exc!r}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be a positive int, got {times!r}")
        self._faults.extend([(exc, operation)] * times)

    def clear(self) -> None:
        """Forget every key and every pending fault."""
        self._data.clear()
        self._faults.clear()

    def keys(self) -> list[str]:
        """Keys currently stored (expired ones dropped)."""
        self._purge()
        return list(self._data)

    def __len__(self) -> int:
        return len(self.keys())

    # -------------------------------------------------------------------- the port
    async def get(self, key: str) -> Any | None:
        """The value, or ``None`` when absent or expired."""
        check_key(key)
        await self._backend("get")
        entry = self._live(key)
        return None if entry is None else self._serializer.loads(entry)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` in seconds (``None`` = no expiry)."""
        check_key(key)
        px = ttl_to_ms(ttl)
        payload = self._serializer.dumps(value)
        await self._backend("set")
        self._data[key] = (payload, self._expiry(px))

    async def delete(self, *keys: str) -> int:
        """Remove keys; returns how many existed."""
        for key in keys:
            check_key(key)
        if not keys:
            return 0
        await self._backend("delete")
        removed = 0
        for key in dict.fromkeys(keys):  # Redis counts a repeated key once
            if self._live(key) is not None:
                del self._data[key]
                removed += 1
        return removed

    async def mget(self, keys: Sequence[str]) -> list[Any | None]:
        """Values in the order of ``keys`` (``None`` for misses)."""
        check_key_list(keys)
        for key in keys:
            check_key(key)
        if not keys:
            return []
        await self._backend("mget")
        loads = self._serializer.loads
        return [None if (entry := self._live(k)) is None else loads(entry) for k in keys]

    async def mset(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        """Store several values with one TTL (all encoded before anything is stored)."""
        check_mapping(items)
        px = ttl_to_ms(ttl)
        for key in items:
            check_key(key)
        pairs = {key: self._serializer.dumps(value) for key, value in items.items()}
        if not pairs:
            return
        await self._backend("mset")
        expiry = self._expiry(px)
        for key, payload in pairs.items():
            self._data[key] = (payload, expiry)

    async def exists(self, key: str) -> bool:
        """Whether ``key`` is stored (tells a stored ``None`` from a miss)."""
        check_key(key)
        await self._backend("exists")
        return self._live(key) is not None

    async def ttl(self, key: str) -> float | None:
        """Seconds ``key`` has left; ``math.inf`` if it never expires, ``None`` if absent."""
        check_key(key)
        await self._backend("ttl")
        if self._live(key) is None:
            return None
        expires_at = self._data[key][1]
        if expires_at is None:
            return math.inf
        return round(expires_at - self._clock.now(), 3)

    async def health_check(
        self,
        latency_threshold_ms: float = 100.0,
        *,
        timeout: float = 2.0,
    ) -> tuple[bool, dict[str, Any]]:
        """Same shape as ``RedisCache.health_check``; a pending fault makes it unhealthy."""
        check_latency_threshold(latency_threshold_ms)
        check_timeout(timeout)
        details: dict[str, Any] = {"latency_threshold_ms": latency_threshold_ms}
        start = perf_counter()
        try:
            await self._backend("ping")
        # Like the real check: report the failure, never raise it.
        except Exception as exc:  # noqa: BLE001
            details.update(status="unhealthy", error=type(exc).__name__, message=str(exc))
        else:
            details["status"] = "healthy"
        details["latency_ms"] = round((perf_counter() - start) * 1000.0, 3)
        details["circuit_breaker"] = None
        return details["status"] != "unhealthy", details

    async def aclose(self) -> None:
        """Nothing to close; present so code written for ``RedisCache`` runs unchanged."""

    def __repr__(self) -> str:
        return f"FakeCache(keys={len(self._data)}, serializer={self._serializer.name!r})"

    # --------------------------------------------------------------------- internals
    async def _backend(self, operation: str) -> None:
        """Where the real adapter does I/O: yield once, then fail if a fault is due."""
        await asyncio.sleep(0)
        self.calls.append(operation)
        for index, (exc, only) in enumerate(self._faults):
            if only is None or only == operation:
                del self._faults[index]
                raise exc() if isinstance(exc, type) else exc

    def _expiry(self, px: int | None) -> float | None:
        return None if px is None else self._clock.now() + px / 1000.0

    def _live(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        payload, expires_at = entry
        if expires_at is not None and self._clock.now() >= expires_at:
            del self._data[key]
            return None
        return payload

    def _purge(self) -> None:
        now = self._clock.now()
        for key in [k for k, (_, at) in self._data.items() if at is not None and now >= at]:
            del self._data[key]


def _is_exception_class(exc: object) -> bool:
    return isinstance(exc, type) and issubclass(exc, BaseException)

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
* **Same call path.** Every operation runs through :class:`~infra.calls.BackendCalls` under
  the real adapter's names (component ``"redis"``, system ``"redis"``, operations
  ``get``/``set``/``delete``/``mget``/``mset``/``exists``/``ttl``, ``ping`` for the health
  check outside the policy): the injected ``policy`` retries and breaks exactly as for
  ``RedisCache``, and the calls are recorded in the injected ``collector`` (see
  :mod:`infra.testing.fakes._backend`).
* **Fault injection**: :meth:`fail_next` makes the next *n* attempts (optionally only
  one kind, e.g. ``"get"``) raise the given error where the driver would, inside the
  policy: ``fail_next(ConnectionError())`` becomes a retryable ``CacheConnectionError``
  and is retried by a retrying policy, as a dropped connection to Redis is. Validation
  and encoding still happen first, as in the real adapter.
* Each operation yields to the event loop once, as network I/O would, so races in the
  code under test are not hidden by a fake that never suspends.
* It imports no driver.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from infra.cache.serialization import JsonSerializer, Serializer
from infra.cache.ttl_policy import ttl_to_ms
from infra.health_check import HealthCheckResult, HealthProbe, probe_calls
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.resilience import ResiliencePolicy
from infra.resilience.clock import Clock, MonotonicClock
from infra.testing.fakes._backend import Fault, FaultScript, fake_calls
from infra.validation import (
    check_key,
    check_key_list,
    check_mapping,
)

__all__ = ["FakeCache"]

T = TypeVar("T")
_OPERATIONS = ("get", "set", "delete", "mget", "mset", "exists", "ttl", "ping")


class FakeCache:
    """In-memory cache with TTLs on an injectable clock and scripted failures.

    Args:
        clock: Time source for expiry (default: real monotonic time).
        serializer: Same role as in ``RedisCache`` (default: JSON).
        policy: Resilience policy every operation runs under, as in ``RedisCache``
            (default: none).
        collector: Where calls are recorded (default: ``get_metrics_collector()`` at
            call time).
        component: Component name of metrics and errors (``RedisCache``'s: ``"redis"``).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        serializer: Serializer | None = None,
        policy: ResiliencePolicy | None = None,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
        component: str = "redis",
    ) -> None:
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError("serializer must have dumps(value) -> bytes and loads(bytes)")
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._serializer: Serializer = serializer if serializer is not None else JsonSerializer()
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self._faults = FaultScript(_OPERATIONS)
        self._component = component
        self.attach(policy=policy, collector=collector, tracing=tracing)
        #: Attempts in the order they reached the "backend" (failed ones and retries
        #: included).
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

    @property
    def policy(self) -> ResiliencePolicy:
        """The resilience policy calls run under."""
        return self._calls.policy

    def attach(
        self,
        *,
        policy: ResiliencePolicy | None,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        """Run later operations under ``policy`` and record them into ``collector``
        (what ``containers.testing.use_fakes`` does with the container's own providers);
        data and scripted faults are kept."""
        self._calls = fake_calls(
            self._component,
            family="cache",
            system="redis",
            policy=policy,
            collector=collector,
            tracing=tracing,
        )
        self._probe = probe_calls(self._calls)

    def fail_next(self, exc: Fault, *, times: int = 1, operation: str | None = None) -> None:
        """Make the next ``times`` attempts (only ``operation`` ones, e.g. ``"get"``, when
        given) raise ``exc`` -- an instance, or a class instantiated per failure -- where
        the driver would, inside the policy (see the module docstring)."""
        self._faults.add(exc, times=times, operations=None if operation is None else (operation,))

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
        check_key(key, component=self._component)
        entry = await self._calls.run("get", self._io, "get", self._live, key)
        return None if entry is None else self._serializer.loads(entry)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` in seconds (``None`` = no expiry)."""
        check_key(key, component=self._component)
        px = ttl_to_ms(ttl)
        payload = self._serializer.dumps(value)
        await self._calls.run("set", self._io, "set", self._store, {key: payload}, px)

    async def delete(self, *keys: str) -> int:
        """Remove keys; returns how many existed."""
        for key in keys:
            check_key(key, component=self._component)
        if not keys:
            return 0
        return await self._calls.run("delete", self._io, "delete", self._delete, keys)

    async def mget(self, keys: Sequence[str]) -> list[Any | None]:
        """Values in the order of ``keys`` (``None`` for misses)."""
        for key in check_key_list(keys, component=self._component):
            check_key(key, component=self._component)
        if not keys:
            return []
        entries = await self._calls.run("mget", self._io, "mget", self._live_many, keys)
        loads = self._serializer.loads
        return [None if entry is None else loads(entry) for entry in entries]

    async def mset(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        """Store several values with one TTL (all encoded before anything is stored)."""
        check_mapping(items, component=self._component)
        px = ttl_to_ms(ttl)
        # Key and value checked item by item, in RedisCache's order (same first error).
        dumps = self._serializer.dumps
        pairs = {check_key(k, component=self._component): dumps(v) for k, v in items.items()}
        if not pairs:
            return
        await self._calls.run("mset", self._io, "mset", self._store, pairs, px)

    async def exists(self, key: str) -> bool:
        """Whether ``key`` is stored (tells a stored ``None`` from a miss)."""
        check_key(key, component=self._component)
        return await self._calls.run("exists", self._io, "exists", self._exists, key)

    async def ttl(self, key: str) -> float | None:
        """Seconds ``key`` has left; ``math.inf`` if it never expires, ``None`` if absent."""
        check_key(key, component=self._component)
        return await self._calls.run("ttl", self._io, "ttl", self._ttl, key)

    async def health_check(
        self,
        latency_threshold_ms: float = 100.0,
        *,
        timeout: float = 2.0,
    ) -> HealthCheckResult:
        """``RedisCache.health_check``, by the same code (:mod:`infra.health_check`): a
        ``ping`` outside the policy, recorded; a fault scripted for it makes it
        unhealthy."""
        probe = HealthProbe(
            send=self._send_ping,
            name="PING",
            backend="Redis",
            component=self._component,
            threshold_in_details=True,
        )
        breaker = self._calls.policy.breaker
        return await probe.check(latency_threshold_ms, timeout=timeout, breaker=breaker)

    async def _send_ping(self) -> None:
        await self._probe.run("ping", self._io, "ping", _nothing, idempotent=False)

    async def aclose(self) -> None:
        """Nothing to close; present so code written for ``RedisCache`` runs unchanged."""

    def __repr__(self) -> str:
        return f"FakeCache(keys={len(self._data)}, serializer={self._serializer.name!r})"

    # --------------------------------------------------------------------- internals
    async def _io(self, operation: str, apply: Callable[..., T], *args: Any) -> T:
        """The driver step of one attempt: yield once, as network I/O would, fail if a
        fault is due, else apply the change to the stored data."""
        await asyncio.sleep(0)
        self.calls.append(operation)
        fault = self._faults.take(operation)
        if fault is not None:
            raise fault
        return apply(*args)

    def _store(self, pairs: Mapping[str, bytes], px: int | None) -> None:
        expiry = self._expiry(px)
        for key, payload in pairs.items():
            self._data[key] = (payload, expiry)

    def _delete(self, keys: Sequence[str]) -> int:
        removed = 0
        for key in dict.fromkeys(keys):  # Redis counts a repeated key once
            if self._live(key) is not None:
                del self._data[key]
                removed += 1
        return removed

    def _live_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._live(key) for key in keys]

    def _exists(self, key: str) -> bool:
        return self._live(key) is not None

    def _ttl(self, key: str) -> float | None:
        if self._live(key) is None:
            return None
        expires_at = self._data[key][1]
        if expires_at is None:
            return math.inf
        return round(expires_at - self._clock.now(), 3)

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


def _nothing() -> None:
    return None

"""The Redis tier (L2) of :class:`~infra.cache.three_tier_cache.ThreeTierCache`.

Everything the three-tier cache sends to Redis goes through :class:`L2Tier`: values
through the :class:`~infra.ports.CacheStore` port (``RedisCache`` or a fake), and the
commands the port does not have -- fill leases, ``PUBLISH``, the tag index, ``SCAN`` --
through the raw ``redis.asyncio`` client, run by :class:`~infra.calls.BackendCalls` (so
they get telemetry, the injected policy and error translation like any adapter call).

Key layout (``ns`` = the cache namespace; ``base`` = the port's own key prefix, read from
``RedisCache.key("")`` so raw keys sit next to the values)::

    base + ns:v:<key>          the value, wrapped: [value] present, [] cached absence
    base + ns:lock:<key>       fill lease (cross-process single flight)
    base + ns:tag:<tag>        SET of keys written with that tag
    base + ns:invalidations    the coherence channel

The wrapper makes a cached absence unambiguous whatever the serializer, and a value of
some other shape under ``ns:v:`` (not written by us) reads as a miss.

Degradation
    Any :class:`~infra.exceptions.InfraError` from Redis (connection refused, timeout, an
    open breaker) puts the tier in *degraded* mode: the first failure logs one warning and
    counts ``cache_degraded_total``; later operations are skipped without touching the
    network (counted as ``cache_l2_errors_total{reason="skipped"}``) except one probe per
    ``probe_interval``. The first success after that logs recovery once and calls
    ``on_recovered`` (the cache clears its L1: invalidations may have been missed). A
    value that cannot be *encoded* is a caller bug and raises; one that cannot be
    *decoded* reads as a miss (counted) and is overwritten by the next fill.

Without a raw client (``redis=None``: tests, one process) there are no leases and no
channel, and the tag and prefix indexes are kept in memory for the keys this process
wrote -- correct only when this process is L2's sole writer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from time import perf_counter
from typing import Any, TypeVar

from redis.asyncio import Redis

from infra.cache.l1 import ABSENT, MISS
from infra.cache.singleflight import RedisFillLease
from infra.cache.tier_metrics import TierMetrics
from infra.calls import BackendCalls
from infra.exceptions import CacheSerializationError, InfraError
from infra.ports import CacheStore
from infra.redaction import redact_text
from infra.resilience import ResiliencePolicy
from infra.resilience.clock import Clock

__all__ = ["L2Tier", "glob_escape"]

_log = logging.getLogger("infra.cache.three_tier")
T = TypeVar("T")
_SCAN_COUNT = 1000


def glob_escape(text: str) -> str:
    """``text`` with Redis glob metacharacters escaped (for ``SCAN MATCH``)."""
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


class L2Tier:
    """Values, leases, tags, prefixes and publishing on Redis, with degradation.

    Args:
        store: The value store (the port).
        redis: The raw client for leases, pub/sub, tags and ``SCAN``; ``None`` = none.
        namespace: The cache namespace (see the key layout above).
        clock: Time for probe scheduling and the in-memory index.
        probe_interval: While degraded, at most one operation per this many seconds
            tries Redis.
        lease_seconds: Fill lease duration.
        policy: Resilience policy for the raw commands (``None`` = passthrough).
        metrics: The cache's metric series.
        on_recovered: Called once when Redis answers again after a degradation.
    """

    def __init__(
        self,
        store: CacheStore,
        redis: Redis | None,
        *,
        namespace: str,
        clock: Clock,
        probe_interval: float,
        lease_seconds: float,
        policy: ResiliencePolicy | None,
        metrics: TierMetrics,
        on_recovered: Callable[[], None],
    ) -> None:
        self._store = store
        self._redis = redis
        self._clock = clock
        self._probe_interval = probe_interval
        self._metrics = metrics
        self._on_recovered = on_recovered
        self._vprefix = f"{namespace}:v:"
        key_of = getattr(store, "key", None)
        base = key_of("") if redis is not None and callable(key_of) else ""
        self._base_v = f"{base}{self._vprefix}"
        self._lock_prefix = f"{base}{namespace}:lock:"
        self._tag_prefix = f"{base}{namespace}:tag:"
        self.channel = f"{base}{namespace}:invalidations"
        self._calls = BackendCalls("redis", family="cache", system="redis", policy=policy)
        self._lease = None if redis is None else RedisFillLease(redis, lease_seconds=lease_seconds)
        self._degraded = False
        self._next_probe = 0.0
        # In-memory indexes, used only without a raw client.
        self._local_tags: dict[str, set[str]] = {}
        self._local_keys: dict[str, float] = {}

    @property
    def distributed(self) -> bool:
        """Whether a raw client is configured (leases, coherence, shared indexes)."""
        return self._redis is not None

    @property
    def degraded(self) -> bool:
        """Whether Redis is considered unreachable."""
        return self._degraded

    # ---------------------------------------------------------------- degradation
    def _available(self, operation: str) -> bool:
        if not self._degraded:
            return True
        now = self._clock.now()
        if now >= self._next_probe:
            self._next_probe = now + self._probe_interval
            return True  # this operation is the probe
        self._metrics.l2_error(operation, "skipped")
        return False

    def _failed(self, operation: str, exc: InfraError) -> None:
        self._metrics.l2_error(operation, type(exc).__name__)
        if self._degraded:
            return
        self._degraded = True
        self._next_probe = self._clock.now() + self._probe_interval
        self._metrics.degraded_total.inc()
        self._metrics.degraded.set(1)
        _log.warning(
            "cache %s: L2 unreachable (%s); reads fall through to the loader, writes to L2 "
            "are skipped until it answers again (probing every %gs)",
            self._metrics.name,
            redact_text(f"{type(exc).__name__}: {exc.message}"),
            self._probe_interval,
            extra={"cache": self._metrics.name, "operation": operation},
        )

    def _succeeded(self) -> None:
        if not self._degraded:
            return
        self._degraded = False
        self._metrics.degraded.set(0)
        _log.info("cache %s: L2 reachable again; L1 cleared", self._metrics.name)
        self._on_recovered()

    async def _guard(
        self, operation: str, default: T, fn: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """``await fn(*args)``, or ``default`` when degraded or on a backend failure."""
        if not self._available(operation):
            return default
        try:
            result = await fn(*args)
        except CacheSerializationError:
            raise
        except InfraError as exc:
            self._failed(operation, exc)
            return default
        self._succeeded()
        return result

    async def _raw(
        self, operation: str, default: T, fn: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """Like :meth:`_guard` for a raw command, through the telemetry/policy path."""
        return await self._guard(operation, default, self._calls.run, operation, fn, *args)

    # --------------------------------------------------------------------- values
    async def read(self, key: str, *, record: bool = True) -> object:
        """The value, :data:`ABSENT`, or :data:`MISS` (also when degraded or failing).

        ``record=False`` leaves the hit/miss counters alone (re-reads while waiting for
        another process's fill are not lookups of their own).
        """
        if self._degraded and not self._available("get"):
            return MISS
        start = perf_counter()
        try:
            raw = await self._store.get(self._vprefix + key)
        except CacheSerializationError as exc:
            self._metrics.l2_error("get", type(exc).__name__)
            raw = None
        except InfraError as exc:
            self._failed("get", exc)
            return MISS
        if self._degraded:
            self._succeeded()
        # The common case inline (a one-element list); _unwrap handles the rest.
        if raw.__class__ is list and len(raw) == 1 and raw[0] is not None:
            value = raw[0]
        else:
            value = _unwrap(raw)
        if not record:
            return value
        self._metrics.l2_latency.observe((perf_counter() - start) * 1000.0)
        if value is MISS:
            if raw is not None:
                self._metrics.l2_error("get", "unrecognised")
            self._metrics.l2_misses.value += 1.0  # see TierMetrics: loop-thread only
        else:
            self._metrics.l2_hits.value += 1.0
        return value

    async def write(self, key: str, value: object, ttl: float) -> bool:
        """Store ``value`` (or :data:`ABSENT`) for ``ttl`` s; whether it reached Redis."""
        wrapped = [] if value is ABSENT else [value]
        done = await self._guard("set", False, self._set, self._vprefix + key, wrapped, ttl)
        if done and self._redis is None:
            self._local_keys[key] = self._clock.now() + ttl
        return done

    async def _set(self, name: str, wrapped: list[object], ttl: float) -> bool:
        await self._store.set(name, wrapped, ttl=ttl)
        return True

    async def delete(self, keys: Sequence[str]) -> int:
        """Remove ``keys``' values; how many existed (0 when unreachable)."""
        if not keys:
            return 0
        for key in keys:
            self._local_keys.pop(key, None)
        return await self._guard(
            "delete", 0, self._store.delete, *(self._vprefix + k for k in keys)
        )

    # --------------------------------------------------------------------- leases
    async def acquire_lease(self, key: str) -> str | None:
        """A lease token, or ``None`` (held elsewhere, or unreachable: see ``degraded``)."""
        if self._lease is None:
            return None
        return await self._raw("lease_acquire", None, self._lease.acquire, self._lock_prefix + key)

    async def holds_lease(self, key: str, token: str) -> bool:
        """Whether ``token`` still owns ``key``'s lease (no writer intervened)."""
        if self._lease is None:
            return True
        return await self._raw(
            "lease_check", False, self._lease.holds, self._lock_prefix + key, token
        )

    async def release_lease(self, key: str, token: str) -> None:
        """Release ``key``'s lease if ``token`` still owns it."""
        if self._lease is not None:
            await self._raw(
                "lease_release", False, self._lease.release, self._lock_prefix + key, token
            )

    # ---------------------------------------------------------------- publishing
    async def announce(self, payload: str, unlock: Iterable[str] = ()) -> bool:
        """``PUBLISH`` ``payload``, deleting the leases of ``unlock`` in the same round
        trip (a writer voids in-flight fills of what it wrote)."""
        if self._redis is None:
            return True
        locks = [self._lock_prefix + k for k in unlock]
        return await self._raw("publish", False, self._publish, payload, locks)

    async def _publish(self, payload: str, locks: list[str]) -> bool:
        assert self._redis is not None  # noqa: S101 - announce() checked it
        async with self._redis.pipeline(transaction=False) as pipe:
            if locks:
                pipe.delete(*locks)
            pipe.publish(self.channel, payload)
            await pipe.execute()
        return True

    # ------------------------------------------------------------ tags, prefixes
    async def add_tags(self, key: str, tags: Sequence[str], ttl: float) -> None:
        """Record ``key`` under each tag, for at least ``ttl`` seconds."""
        if not tags:
            return
        if self._redis is None:
            for tag in tags:
                self._local_tags.setdefault(tag, set()).add(key)
            return
        await self._raw("tag_add", False, self._tag, key, tags, max(1, round(ttl * 1000)))

    async def _tag(self, key: str, tags: Sequence[str], ttl_ms: int) -> bool:
        assert self._redis is not None  # noqa: S101 - add_tags() checked it
        async with self._redis.pipeline(transaction=False) as pipe:
            for tag in tags:
                name = self._tag_prefix + tag
                pipe.sadd(name, key)
                # The index must outlive its longest-lived member: set a TTL if it has
                # none, else only ever extend it.
                pipe.pexpire(name, ttl_ms, nx=True)
                pipe.pexpire(name, ttl_ms, gt=True)
            await pipe.execute()
        return True

    async def pop_tag(self, tag: str) -> list[str]:
        """The keys recorded under ``tag``, removing the tag's index atomically."""
        if self._redis is None:
            return sorted(self._local_tags.pop(tag, ()))
        return await self._raw("tag_pop", [], self._pop_tag, self._tag_prefix + tag)

    async def _pop_tag(self, name: str) -> list[str]:
        assert self._redis is not None  # noqa: S101 - pop_tag() checked it
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.smembers(name)
            pipe.delete(name)
            members, _ = await pipe.execute()
        return sorted(_text(m) for m in members)

    async def keys_with_prefix(self, prefix: str) -> list[str]:
        """Keys whose value is in L2 and that start with ``prefix`` (``SCAN``; O(keyspace))."""
        if self._redis is None:
            now = self._clock.now()
            expired = [k for k, until in self._local_keys.items() if until <= now]
            for key in expired:
                del self._local_keys[key]
            return sorted(k for k in self._local_keys if k.startswith(prefix))
        pattern = glob_escape(self._base_v + prefix) + "*"
        return await self._raw("scan", [], self._scan, pattern)

    async def _scan(self, pattern: str) -> list[str]:
        assert self._redis is not None  # noqa: S101 - keys_with_prefix() checked it
        cut = len(self._base_v)
        names = [name async for name in self._redis.scan_iter(match=pattern, count=_SCAN_COUNT)]
        return sorted(_text(name)[cut:] for name in names)


def _unwrap(raw: Any) -> object:
    if isinstance(raw, list):
        if not raw:
            return ABSENT
        if len(raw) == 1 and raw[0] is not None:
            return raw[0]
    return MISS


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

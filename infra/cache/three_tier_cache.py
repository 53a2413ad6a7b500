"""A read-through cache in three tiers: L1 in-process, L2 Redis, L3 your loader.

::

    cache = ThreeTierCache(RedisCache(client), redis=client, namespace="users")
    user = await cache.get(f"user:{uid}", lambda: store.fetchrow(SQL, uid))
    await cache.set(f"user:{uid}", fresh, tags=[f"org:{org}"])
    await cache.invalidate(tag=f"org:{org}")       # or prefix="user:"

How a ``get(key, loader)`` is answered
    L1 hit: a dict lookup and a counter, about a microsecond, no ``await`` underneath.
    Otherwise one *flight* per key per process (:class:`~infra.cache.singleflight.
    SingleFlight`) reads L2, and on a miss takes the key's fill lease in Redis so that
    one process in the whole deployment runs the loader; the others wait for the value
    to appear in L2 (woken by a pub/sub "filled" message, or polling). The holder writes
    the value to L2, then L1. A loader that raises is shared with every waiter and
    remembered nowhere.

Absence (negative caching)
    A loader returns ``None`` for "does not exist"; that answer is cached for
    ``negative_ttl`` (shorter than ``l2_ttl``) in both tiers. ``get(key, loader)`` then
    returns ``None``. Without a loader ``get(key)`` tells the cases apart: ``None`` means
    nothing is cached, :data:`ABSENT` (falsy) means absence is cached. ``set(key,
    ABSENT)`` caches absence explicitly; ``None`` itself is never a cacheable value.

TTLs
    ``l1_ttl <= l2_ttl`` is enforced, and every write is jittered by ``±ttl_jitter``
    (fraction) so entries written together do not expire together. An L1 entry never
    outlives the L2 entry written with it.

Coherence and invalidation
    With a raw ``redis`` client, every ``set``/``delete``/``invalidate`` is published
    and other processes drop the entry from their L1 (see :mod:`infra.cache.coherence`
    for the protocol, reconnects and why pub/sub); a writer also deletes the key's fill
    lease, so an in-flight fill that read older data does not write it back. Tags are a
    Redis SET per tag (``<ns>:tag:<tag>``) holding the keys written with it, its TTL
    extended to its longest member; ``invalidate(tag=)`` pops the set atomically and
    deletes those keys. ``invalidate(prefix=)`` uses ``SCAN`` (cost grows with the
    keyspace; one node only in Redis Cluster). Without ``redis`` the cache is
    single-process: no coherence or leases, and tag/prefix indexes live in memory.

When Redis is down
    Reads fall through to the loader, writes to L2 are skipped, the caller sees no error;
    the first failure logs one warning and counts ``cache_degraded_total``, and a probe
    per ``probe_interval`` detects recovery, which clears L1. While the coherence
    subscription is down L1 is bypassed (reads go to L2 or the loader), so no process
    serves entries it could not hear invalidated. Writes that could not reach Redis are
    not replayed on recovery: L2 may serve such an entry until its TTL ends.

Limits
    One instance belongs to one event loop (L1 is not thread-safe). In-process single
    flight keys on the cache key only: concurrent callers with different loaders for one
    key get the first caller's result. The tag index needs Redis >= 7.0 (``PEXPIRE NX``/
    ``GT``). A load that outlives ``fill_lease`` may run twice across processes. Between
    a filler's lease check and its L2 write lies one round trip in which a concurrent
    ``delete`` can still be overwritten by the value the fill loaded.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from functools import partial
from types import TracebackType
from typing import Any, Final, Self, TypeVar, overload

from redis.asyncio import Redis

from config import Settings
from infra.cache.coherence import InvalidationBus, Message, encode_message
from infra.cache.fill import Filler, Loader
from infra.cache.l1 import ABSENT, MISS, Absent, L1Cache
from infra.cache.l2 import L2Tier
from infra.cache.singleflight import SingleFlight
from infra.cache.tier_metrics import TierMetrics
from infra.cache.ttl_policy import TtlPolicy, check_cache_settings, check_seconds
from infra.observability.metrics import MetricsCollector, get_metrics_collector
from infra.ports import CacheStore
from infra.resilience import ResiliencePolicy
from infra.resilience.clock import Clock, MonotonicClock

__all__ = ["ABSENT", "Absent", "ThreeTierCache"]

T = TypeVar("T")
_KEYS_PER_MESSAGE: Final = 500


class ThreeTierCache:
    """L1 (in-process LRU) → L2 (a :class:`~infra.ports.CacheStore`) → L3 (a loader).

    Args:
        l2: The shared store, normally :class:`~infra.cache.RedisCache`.
        redis: The raw client behind ``l2`` for coherence, cross-process single flight
            and the tag index; ``None`` = single-process mode (see the module docstring).
        namespace: Prefix of every key, lease, tag and the channel (one per dataset).
        name: The ``cache`` metric label (default: ``namespace``).
        l1_max_size: L1 entries kept (LRU beyond).
        l1_ttl, l2_ttl: Lifetimes in seconds; ``l1_ttl <= l2_ttl``.
        negative_ttl: Lifetime of a cached absence (capped at ``l1_ttl`` in L1).
        ttl_jitter: Each TTL is scaled by a random factor in ``[1-j, 1+j]``; ``0 <= j < 1``.
        fill_lease: Cross-process fill lease; keep it above the loader's worst case.
        lease_poll_interval: How often a process waiting for another's fill re-reads L2.
        heartbeat_interval: Coherence subscription liveness check (see coherence).
        probe_interval: While Redis is unreachable, one attempt per this many seconds.
        policy: Resilience policy for the raw Redis commands (leases, publish, tags).
        clock: Time source for TTLs and probing (``ManualClock`` in tests).
        rng: Random source for jitter (seed it in tests).
        metrics: Collector; default :func:`~infra.observability.get_metrics_collector`.
    """

    def __init__(
        self,
        l2: CacheStore,
        *,
        redis: Redis | None = None,
        namespace: str = "cache",
        name: str | None = None,
        l1_max_size: int = 10_000,
        l1_ttl: float = 60.0,
        l2_ttl: float = 300.0,
        negative_ttl: float = 30.0,
        ttl_jitter: float = 0.1,
        fill_lease: float = 10.0,
        lease_poll_interval: float = 0.02,
        heartbeat_interval: float = 1.0,
        probe_interval: float = 1.0,
        policy: ResiliencePolicy | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        metrics: MetricsCollector | None = None,
    ) -> None:
        self.ttls = TtlPolicy(
            l1_ttl=l1_ttl, l2_ttl=l2_ttl, negative_ttl=negative_ttl, jitter=ttl_jitter, rng=rng
        )
        for arg, value in (
            ("fill_lease", fill_lease),
            ("lease_poll_interval", lease_poll_interval),
            ("probe_interval", probe_interval),
        ):
            check_seconds(arg, value)
        if redis is not None and not isinstance(redis, Redis):
            raise TypeError(
                "redis must be a redis.asyncio.Redis (the client behind l2; a cluster client "
                f"is not supported for pub/sub coherence), got {type(redis).__name__}"
            )
        if not isinstance(namespace, str) or not namespace or any(c.isspace() for c in namespace):
            raise ValueError(f"namespace must be a non-empty str without spaces, got {namespace!r}")
        self.namespace = namespace
        self.name = name or namespace
        self._clock = clock if clock is not None else MonotonicClock()
        self._metrics = TierMetrics(metrics or get_metrics_collector(), self.name)
        self._l1_hits = self._metrics.l1_hits  # the hot path reads one attribute
        self._l1 = L1Cache(l1_max_size, clock=self._clock)
        self._l2 = L2Tier(
            l2,
            redis,
            namespace=namespace,
            clock=self._clock,
            probe_interval=probe_interval,
            lease_seconds=fill_lease,
            policy=policy,
            metrics=self._metrics,
            on_recovered=partial(self._reset_l1, "recovered"),
        )
        self._flight: SingleFlight[object] = SingleFlight()
        self.origin = secrets.token_hex(6)
        self._bus: InvalidationBus | None = None
        if redis is not None:
            self._bus = InvalidationBus(
                redis,
                self._l2.channel,
                origin=self.origin,
                on_message=self._on_message,
                on_state=self._on_coherence,
                heartbeat_interval=heartbeat_interval,
            )
        self._filler = Filler(
            l1=self._l1,
            l2=self._l2,
            bus=self._bus,
            metrics=self._metrics,
            ttls=self.ttls,
            clock=self._clock,
            poll_interval=lease_poll_interval,
            origin=self.origin,
        )
        # L1 is read only while coherent: always without Redis, else while subscribed.
        self._coherent = self._bus is None
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        l2: CacheStore,
        redis: Redis | None = None,
        namespace: str = "cache",
        **overrides: Any,
    ) -> Self:
        """A cache sized and timed by ``settings.cache`` (``overrides`` win)."""
        view = settings.cache
        check_cache_settings(view)
        options: dict[str, Any] = {
            "l1_max_size": view.l1_max_size,
            "l1_ttl": view.l1_ttl,
            "l2_ttl": view.l2_ttl,
            "negative_ttl": view.negative_ttl,
            "ttl_jitter": view.ttl_jitter,
        }
        options.update(overrides)
        return cls(l2, redis=redis, namespace=namespace, **options)

    # ------------------------------------------------------------------------ reads
    @overload
    async def get(self, key: str) -> Any: ...

    @overload
    async def get(self, key: str, loader: Loader[T]) -> T | None: ...

    async def get(self, key: str, loader: Loader[Any] | None = None) -> Any:
        """Read ``key`` through the tiers.

        With ``loader``: the value, or ``None`` when it does not exist (the loader
        returned ``None`` now or earlier). Without: the value, :data:`ABSENT` when absence
        is cached, or ``None`` when nothing is cached (L1 and L2 only).
        """
        if self._coherent:
            value = self._l1.get(key)
            if value is not MISS:
                self._l1_hits.value += 1.0  # see TierMetrics: a plain add, loop-thread only
                return None if value is ABSENT and loader is not None else value
        return await self._get_slow(key, loader)

    async def _get_slow(self, key: str, loader: Loader[Any] | None) -> Any:
        _check_key(key)
        self._start()
        self._metrics.l1_misses.value += 1.0
        if loader is None:
            value = await self._fill(key, None)
            return None if value is MISS else value
        if self._flight.in_flight(key):
            self._metrics.coalesced_process.inc()
        value = await self._flight.run(key, partial(self._fill, key, loader))
        return None if value is ABSENT else value

    async def _fill(self, key: str, loader: Loader[Any] | None) -> object:
        """L2, then (with a loader) L3; fills L1 unless an invalidation intervened."""
        token = self._l1.begin_fill(key) if self._coherent else None
        cap: float | None = None  # the L2 lifetime of a value we wrote: L1 stays within it
        try:
            value = await self._l2.read(key)
            if value is MISS and loader is not None:
                value, cap = await self._filler.load(key, loader, token)
        except BaseException:
            if token is not None:
                self._l1.abandon_fill(key, token)
            raise
        if token is not None:
            if value is MISS:
                self._l1.abandon_fill(key, token)
            else:
                self._l1.finish_fill(key, token, value, self.ttls.l1(value, cap=cap))
        return value

    # ----------------------------------------------------------------------- writes
    async def set(
        self, key: str, value: Any, *, ttl: float | None = None, tags: Sequence[str] = ()
    ) -> None:
        """Write ``value`` (or :data:`ABSENT`) to L2 and L1 and tell other processes.

        ``ttl`` overrides ``l2_ttl`` (or ``negative_ttl`` for ``ABSENT``); L1 keeps it at
        most ``l1_ttl``. ``tags`` make it reachable by ``invalidate(tag=...)``.
        """
        _check_key(key)
        if value is None:
            raise TypeError(
                "None cannot be cached (it means 'not cached'); use ABSENT to cache absence"
            )
        if isinstance(tags, str):
            raise TypeError(f"tags must be a list of str, got the str {tags!r}")
        if ttl is not None:
            check_seconds("ttl", ttl)
        self._start()
        l2_ttl = self.ttls.l2(value, ttl)
        await self._l2.write(key, value, l2_ttl)
        await self._l2.add_tags(key, tags, l2_ttl)
        if self._coherent:
            self._l1.set(key, value, self.ttls.l1(value, cap=l2_ttl))
        else:
            self._l1.discard(key)
        await self._l2.announce(encode_message(Message(self.origin, keys=(key,))), (key,))

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from every tier and other processes' L1; whether L2 had it."""
        _check_key(key)
        self._start()
        existed = await self._l2.delete([key])
        self._l1.discard(key)  # after L2: voids fills that read the old value
        await self._l2.announce(encode_message(Message(self.origin, keys=(key,))), (key,))
        return existed > 0

    async def invalidate(self, *, prefix: str | None = None, tag: str | None = None) -> int:
        """Remove every key starting with ``prefix`` (``""`` = all), or written with
        ``tag``; returns how many L2 entries went."""
        if (prefix is None) == (tag is None):
            raise TypeError("invalidate() takes exactly one of prefix= or tag=")
        self._start()
        if tag is not None:
            keys = await self._l2.pop_tag(tag)
            removed = await self._delete_many(keys)
            for key in keys:
                self._l1.discard(key)
            for i in range(0, len(keys), _KEYS_PER_MESSAGE):
                chunk = tuple(keys[i : i + _KEYS_PER_MESSAGE])
                await self._l2.announce(encode_message(Message(self.origin, keys=chunk)), chunk)
            return removed
        assert prefix is not None  # noqa: S101 - checked above; narrows for mypy
        keys = await self._l2.keys_with_prefix(prefix)
        removed = await self._delete_many(keys)
        self._l1.discard_prefix(prefix)
        await self._l2.announce(encode_message(Message(self.origin, prefix=prefix)))
        return removed

    async def clear(self) -> int:
        """Invalidate everything in this namespace."""
        return await self.invalidate(prefix="")

    async def _delete_many(self, keys: Sequence[str]) -> int:
        removed = 0
        for i in range(0, len(keys), _KEYS_PER_MESSAGE):
            removed += await self._l2.delete(keys[i : i + _KEYS_PER_MESSAGE])
        return removed

    # -------------------------------------------------------------------- lifecycle
    def _start(self) -> None:
        if self._bus is not None and not self._closed:
            self._bus.start()

    async def start(self, timeout: float = 1.0) -> bool:
        """Start the coherence subscription now and wait up to ``timeout`` s for it;
        whether L1 is in use. (Otherwise the first call starts it and L1 joins in as
        soon as the subscription is confirmed.)"""
        if self._bus is None:
            return True
        if self._closed:
            return False
        return await self._bus.wait_connected(timeout)

    async def close(self) -> None:
        """Stop the coherence subscription and drop L1 (the clients belong to the caller).

        A closed cache with Redis keeps answering from L2 and the loader, without L1 (it
        can no longer hear invalidations).
        """
        self._closed = True
        if self._bus is not None:
            await self._bus.close()
            self._coherent = False
        self._l1.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---------------------------------------------------------------- introspection
    @property
    def coherent(self) -> bool:
        """Whether L1 is in use (always without Redis; else while subscribed)."""
        return self._coherent

    @property
    def degraded(self) -> bool:
        """Whether Redis is considered unreachable."""
        return self._l2.degraded

    @property
    def l1_size(self) -> int:
        """Entries in L1 now."""
        return len(self._l1)

    @property
    def bus(self) -> InvalidationBus | None:
        """The coherence subscriber (``None`` without Redis)."""
        return self._bus

    # ------------------------------------------------------------------- internals
    def _reset_l1(self, reason: str) -> None:
        self._l1.clear()
        self._metrics.l1_reset(reason)

    def _on_coherence(self, connected: bool) -> None:
        self._reset_l1("subscribed" if connected else "lost")
        self._coherent = connected

    def _on_message(self, message: Message | None) -> None:
        self._metrics.invalidations_received.inc()
        if message is None:
            self._reset_l1("unparseable")
        elif message.prefix is not None:
            self._l1.discard_prefix(message.prefix)
        else:
            for key in message.keys:
                self._l1.discard(key)

    def __repr__(self) -> str:
        return (
            f"ThreeTierCache(namespace={self.namespace!r}, l1={self._l1!r}, "
            f"coherent={self._coherent}, degraded={self._l2.degraded})"
        )


def _check_key(key: object) -> None:
    if key.__class__ is not str:
        raise TypeError(f"cache keys must be str, got {type(key).__name__}")
    if not key:
        raise ValueError("cache keys must be non-empty")

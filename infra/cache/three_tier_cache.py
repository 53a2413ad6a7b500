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
    for the protocol, reconnects and why pub/sub). A writer's value change, the removal
    of the key's fill lease and the publication are one atomic step (a Lua script), and
    a filler's "is the lease still mine? then write" is another, so a fill that read
    older data can never write it back over a concurrent ``set``/``delete`` (see
    :mod:`infra.cache.l2` and :mod:`infra.cache.fill`). Tags are a Redis SET per tag
    (``<ns>:tag:<tag>``) holding the keys written with it, its TTL extended to its
    longest member; ``invalidate(tag=)`` pops the set atomically and deletes those keys.
    ``invalidate(prefix=)`` uses ``SCAN`` (cost grows with the keyspace; one node only in
    Redis Cluster). Without ``redis`` the cache is single-process: no coherence or
    leases, and tag/prefix indexes live in memory.

Read-through with tags: a load must not outlive an invalidation
    A caller that loads a value itself and stores it with tags (``get(key)``, load,
    ``set(key, value, tags=...)``) can lose a race with another process: its load reads
    the source *before* a write, its ``set`` lands *after* that write's
    ``invalidate(tag=)``, and the pre-write value sits in L2 until its TTL. The fence::

        snapshot = await cache.tag_snapshot()        # before loading
        value = await load()
        stored = await cache.set_if_unchanged(key, value, since=snapshot, tags=tags)

    ``set_if_unchanged`` stores (in L2 and L1) only if none of ``tags``, and no prefix, was
    invalidated after the snapshot; the check and the write are one Lua script, and the
    invalidation that pops a tag's index moves its version in the same script (see
    :mod:`infra.cache.l2`). A refused write-back returns ``False`` and leaves L2 and this
    L1 untouched; the caller still has its value. The snapshot is the namespace's
    invalidation sequence (one ``GET``), not per-tag counters, so tags that are only
    known after the load (a result's own ids) are covered too. Never stored: when the
    snapshot or the write could not reach Redis, or the snapshot is older than
    ``fence_window``. Without ``redis`` the same sequence lives in memory.

The consistency promise
    * Healthy (subscribed, Redis reachable): another process's write reaches this L1
      within the pub/sub delivery time (about a millisecond, measured by the benchmark).
    * While the coherence subscription is down or Redis is unreachable, L1 keeps
      serving, but no entry is served more than ``max_staleness`` seconds (default 1 s)
      after that started or after it was loaded, whichever is later; misses go to L2
      or the loader, still one load per key per process at a time (single flight).
      Loader calls are therefore bounded by distinct keys x staleness windows.
    * A load made without a lease (Redis unreachable) is never written to L2.
    * Writes that could not reach Redis are skipped (the caller sees no error) and their
      keys invalidated in L2 when Redis answers again, before this process uses L2.

When Redis is down
    Only unreachability (connection errors, timeouts, an open breaker) degrades the
    cache; the first such failure logs one warning and counts ``cache_degraded_total``.
    Reads are answered from L1 (within the staleness bound) or the loader, with no
    error; with a retrying policy an operation whose first attempt failed gives up
    ``fallback_timeout`` later (default 0.25 s). One probe per ``probe_interval`` (the
    first a full interval after the failure, or when the subscription comes back) checks
    Redis on a fresh connection and replays the skipped writes as invalidations; then
    the cache logs its recovery once and clears L1. Outcomes of requests that started
    before a transition are ignored, so one outage is one degradation and one recovery.
    Other backend errors (a refused write, a wrong password) are raised by writes and
    counted, then answered by the loader, on reads; they never degrade the cache.

Limits
    One instance belongs to one event loop (L1 is not thread-safe). In-process single
    flight keys on the cache key only: concurrent callers with different loaders for one
    key get the first caller's result. The tag index needs Redis >= 7.0 (``PEXPIRE NX``/
    ``GT``). A prefix invalidation refuses every fenced write loaded before it, whatever
    its key. A load that outlives ``fill_lease`` may run twice across processes (and is
    then not written back). A process that dies during an outage cannot replay its
    skipped writes, and processes that recover before it may read the values those
    writes replaced until it does (at most ``probe_interval`` after Redis answers).
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar, overload

from redis.asyncio import Redis

from config import Settings
from infra.cache.coherence import InvalidationBus, Message
from infra.cache.fill import Filled, Filler, Loader
from infra.cache.l1 import ABSENT, MISS, Absent, L1Cache
from infra.cache.l2 import L2Tier
from infra.cache.singleflight import SingleFlight
from infra.cache.tier_metrics import TierMetrics
from infra.cache.ttl_policy import TtlPolicy, check_cache_settings, check_seconds
from infra.exceptions import InvalidArgumentError
from infra.observability.metrics import MetricsCollector, get_metrics_collector
from infra.observability.tracing import TracingState
from infra.ports import CacheStore
from infra.resilience import ResiliencePolicy
from infra.resilience.clock import Clock, MonotonicClock
from infra.validation import check_key

#: ``component`` of the errors this cache raises itself (argument checks).
_COMPONENT = "three_tier_cache"

__all__ = ["ABSENT", "Absent", "TagSnapshot", "ThreeTierCache"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TagSnapshot:
    """The invalidations seen before a load: pass it to ``set_if_unchanged(since=)``.

    Made by :meth:`ThreeTierCache.tag_snapshot`; opaque to callers.
    """

    sequence: int | None
    """The namespace's invalidation sequence (``None``: Redis did not answer)."""
    taken: float
    """When it was read, on the cache's clock."""


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
        probe_interval: While Redis is unreachable, one probe per this many seconds.
        max_staleness: While the cache cannot hear invalidations (subscription down or
            Redis unreachable), the longest an L1 entry is served (the staleness bound).
        fallback_timeout: With a retrying ``policy``, how long an L2 operation may keep
            retrying after its first attempt failed with a connection error or timeout.
        fence_window: The longest a load may take between :meth:`tag_snapshot` and its
            fenced ``set``; an older snapshot is refused (tag versions are kept twice as
            long in Redis).
        policy: Resilience policy for the Redis commands (default: one attempt each --
            the cache's own degradation is its breaker, the loader its fallback).
        clock: Time source for TTLs and probing (``ManualClock`` in tests).
        rng: Random source for jitter (seed it in tests).
        metrics: Collector; default :func:`~infra.observability.get_metrics_collector`.
            L2's Redis commands are recorded into it too (``None``: the current one).
        tracing: The tracing state L2's command spans start from (``None``: the current
            one at call time); the application container passes its own.
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
        max_staleness: float = 1.0,
        fallback_timeout: float = 0.25,
        fence_window: float = 60.0,
        policy: ResiliencePolicy | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        metrics: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        self.ttls = TtlPolicy(
            l1_ttl=l1_ttl, l2_ttl=l2_ttl, negative_ttl=negative_ttl, jitter=ttl_jitter, rng=rng
        )
        for arg, value in (
            ("fill_lease", fill_lease),
            ("lease_poll_interval", lease_poll_interval),
            ("probe_interval", probe_interval),
            ("max_staleness", max_staleness),
            ("fallback_timeout", fallback_timeout),
            ("fence_window", fence_window),
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
        self.max_staleness = max_staleness
        self.fence_window = fence_window
        self.origin = secrets.token_hex(6)
        self._l2 = L2Tier(
            l2,
            redis,
            namespace=namespace,
            origin=self.origin,
            clock=self._clock,
            probe_interval=probe_interval,
            lease_seconds=fill_lease,
            fallback_timeout=fallback_timeout,
            policy=policy,
            metrics=self._metrics,
            collector=metrics,
            tracing=tracing,
            version_ttl=2 * fence_window,
            on_degraded=partial(self._cap_l1, "degraded"),
            on_recovered=partial(self._reset_l1, "recovered"),
        )
        self._flight: SingleFlight[object] = SingleFlight()
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
        )
        # Whether L1 hears invalidations: always without Redis, else while subscribed.
        self._coherent = self._bus is None
        self._closed = False
        # Start on first use: the first operation that misses L1 waits (once, shared by
        # every concurrent first caller) for the subscription, so L1 serves from the
        # first value on instead of voiding the fills that raced the subscription.
        self._warm = self._bus is None
        self._starting: asyncio.Future[bool] | None = None
        self._first_use_wait = fallback_timeout

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
            "max_staleness": view.max_staleness,
            "fallback_timeout": view.fallback_timeout,
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
        try:
            value = self._l1.get(key)
        except TypeError:  # unhashable: not a str
            _check_key(key)
            raise
        if value is not MISS:
            self._l1_hits.value += 1.0  # see TierMetrics: a plain add, loop-thread only
            return None if value is ABSENT and loader is not None else value
        return await self._get_slow(key, loader)

    async def _get_slow(self, key: str, loader: Loader[Any] | None) -> Any:
        _check_key(key)
        if not self._warm:
            await self._warm_up()
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
        token = None if self._closed else self._l1.begin_fill(key)
        filled: Filled | None = None
        try:
            value = await self._l2.read(key)
            if value is MISS and loader is not None:
                filled = await self._filler.load(key, loader, token)
                value = filled.value
        except BaseException:
            if token is not None:
                self._l1.abandon_fill(key, token)
            raise
        if token is not None:
            if value is MISS or (filled is not None and not filled.keep):
                self._l1.abandon_fill(key, token)
            else:
                cap = None if filled is None else filled.l2_ttl
                self._l1.finish_fill(key, token, value, self._l1_ttl(value, cap))
        return value

    def _l1_ttl(self, value: object, cap: float | None) -> float:
        """The L1 lifetime of a value written now: within the staleness bound while the
        cache cannot hear invalidations."""
        ttl = self.ttls.l1(value, cap=cap)
        return min(ttl, self.max_staleness) if self._blind() else ttl

    def _blind(self) -> bool:
        """Whether invalidations may go unheard: Redis mode, and the subscription is down
        or Redis unreachable."""
        return self._bus is not None and (not self._coherent or self._l2.degraded)

    # ----------------------------------------------------------------------- writes
    async def tag_snapshot(self) -> TagSnapshot:
        """The invalidations seen so far (one ``GET``): take it *before* loading a value
        you will store with ``set_if_unchanged(..., since=snapshot)``."""
        if not self._warm:
            await self._warm_up()
        taken = self._clock.now()
        return TagSnapshot(await self._l2.snapshot(), taken)

    async def set(
        self, key: str, value: Any, *, ttl: float | None = None, tags: Sequence[str] = ()
    ) -> None:
        """Write ``value`` (or :data:`ABSENT`) to L2 and L1 and tell other processes.

        ``ttl`` overrides ``l2_ttl`` (or ``negative_ttl`` for ``ABSENT``); L1 keeps it at
        most ``l1_ttl``. ``tags`` make it reachable by ``invalidate(tag=...)``.
        """
        l2_ttl = await self._check_write(key, value, ttl, tags)
        await self._l2.write(key, value, l2_ttl, tags)
        if self._closed:
            self._l1.discard(key)
        else:
            self._l1.set(key, value, self._l1_ttl(value, l2_ttl))

    async def set_if_unchanged(
        self,
        key: str,
        value: Any,
        *,
        since: TagSnapshot,
        ttl: float | None = None,
        tags: Sequence[str] = (),
    ) -> bool:
        """The write-back of a value loaded after ``since`` (a :meth:`tag_snapshot`):
        like :meth:`set`, but stored in neither tier if one of ``tags``, or a prefix, was
        invalidated after the snapshot; whether it was stored (``False`` also when Redis
        could not be asked, or the snapshot is older than ``fence_window``). See the
        module docstring."""
        if not isinstance(since, TagSnapshot):
            raise InvalidArgumentError(
                "since must be the TagSnapshot from cache.tag_snapshot() taken before the "
                f"load, got {type(since).__name__}",
                argument="since",
                component=_COMPONENT,
            )
        l2_ttl = await self._check_write(key, value, ttl, tags)
        return await self._fenced_set(key, value, l2_ttl, tags, since)

    async def _check_write(
        self, key: str, value: Any, ttl: float | None, tags: Sequence[str]
    ) -> float:
        """The checks every write makes before any I/O; the value's L2 lifetime."""
        _check_key(key)
        if value is None:
            raise InvalidArgumentError(
                "None cannot be cached (it means 'not cached'); use ABSENT to cache absence",
                argument="value",
                component=_COMPONENT,
            )
        _check_tags(tags)
        if ttl is not None:
            check_seconds("ttl", ttl)
        if not self._warm:
            await self._warm_up()
        return self.ttls.l2(value, ttl)

    async def _fenced_set(
        self, key: str, value: Any, l2_ttl: float, tags: Sequence[str], snapshot: TagSnapshot
    ) -> bool:
        """The write-back of a load made after ``snapshot``: stored in L2, then L1, only
        if no invalidation of its tags (or a prefix) came after the snapshot. The L1 fill
        token is voided by any invalidation of ``key`` heard meanwhile (this process's or
        another's), whatever order the replies arrive in."""
        token = None if self._closed else self._l1.begin_fill(key)
        stored = False
        try:
            age = self._clock.now() - snapshot.taken
            if snapshot.sequence is not None and age < self.fence_window:
                stored = await self._l2.write(key, value, l2_ttl, tags, since=snapshot.sequence)
        finally:
            if token is not None:
                if stored:
                    self._l1.finish_fill(key, token, value, self._l1_ttl(value, l2_ttl))
                else:
                    self._l1.abandon_fill(key, token)
        return stored

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from every tier and other processes' L1; whether L2 had it."""
        _check_key(key)
        if not self._warm:
            await self._warm_up()
        existed = await self._l2.delete([key])
        self._l1.discard(key)  # after L2: voids fills that read the old value
        return existed > 0

    async def invalidate(self, *, prefix: str | None = None, tag: str | None = None) -> int:
        """Remove every key starting with ``prefix`` (``""`` = all), or written with
        ``tag``; returns how many L2 entries went."""
        if (prefix is None) == (tag is None):
            raise InvalidArgumentError(
                "invalidate() takes exactly one of prefix= or tag=; pass prefix='user:' "
                "or tag='org:7'",
                argument="prefix" if prefix is None else "tag",
                component=_COMPONENT,
            )
        if not self._warm:
            await self._warm_up()
        if tag is not None:
            _check_tags((tag,))
            keys, removed = await self._l2.invalidate_tag(tag)
            if self._bus is not None and self._l2.degraded:
                # The tag's members are in Redis, out of reach: whatever L1 holds may be one.
                self._reset_l1("degraded")
            for key in keys:
                self._l1.discard(key)
            return removed
        if not isinstance(prefix, str):
            raise InvalidArgumentError(
                f"prefix must be a str, got {type(prefix).__name__}",
                argument="prefix",
                component=_COMPONENT,
            )
        if prefix:  # "" invalidates the whole namespace
            check_key(prefix, argument="prefix", what="key prefixes", component=_COMPONENT)
        removed = await self._l2.invalidate_prefix(prefix)
        self._l1.discard_prefix(prefix)
        return removed

    async def clear(self) -> int:
        """Invalidate everything in this namespace."""
        return await self.invalidate(prefix="")

    # -------------------------------------------------------------------- lifecycle
    async def _warm_up(self) -> None:
        """The first use: start the subscription and wait for it, once for every
        concurrent first caller, at most ``fallback_timeout`` seconds (the time the cache
        already grants a failing Redis operation before it falls back). A fill made before
        the subscription is confirmed is voided by that confirmation (messages may have
        been missed until then), so without this wait L1 stayed empty until ``start()``
        was awaited. If Redis does not answer in time the operation goes on as before the
        subscription (L1 entries capped at ``max_staleness``, or degraded)."""
        if self._bus is None or self._closed:
            return
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._bus.wait_connected(self._first_use_wait))
        starting = self._starting
        try:
            # Shielded: a first caller cancelled while waiting must not end the others' wait.
            await asyncio.shield(starting)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not starting.cancelled() or (task is not None and task.cancelling()):
                raise  # this caller was cancelled
            return  # close() ended the wait: go on closed (L2 and the loader only)
        self._warm = True

    async def start(self, timeout: float = 1.0) -> bool:
        """Start the coherence subscription now and wait up to ``timeout`` s for it;
        whether L1 is in use. Optional: the first operation that misses L1 starts it and
        waits for it (at most ``fallback_timeout``); a lifespan calls this to pay that
        wait before the first request."""
        if self._bus is None:
            return True
        if self._closed:
            return False
        connected = await self._bus.wait_connected(timeout)
        self._warm = self._warm or connected
        return connected

    async def close(self) -> None:
        """Stop the coherence subscription and drop L1 (the clients belong to the caller).

        A closed cache with Redis keeps answering from L2 and the loader, without L1 (it
        can no longer hear invalidations).
        """
        self._closed = True
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        if self._bus is not None:
            await self._bus.close()
            self._coherent = False
        self._l1.clear()
        await self._l2.close()

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
        """Whether L1 hears invalidations (always without Redis; else while subscribed).
        While it does not, L1 entries live at most ``max_staleness``."""
        return self._coherent

    @property
    def degraded(self) -> bool:
        """Whether Redis is considered unreachable."""
        return self._l2.degraded

    @property
    def pending_invalidations(self) -> int:
        """Skipped writes (and lease releases) waiting for Redis to come back."""
        return self._l2.pending

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

    def _cap_l1(self, reason: str) -> None:
        """Invalidations may go unheard from now on: entries live at most the bound."""
        self._l1.cap_expiry(self.max_staleness)
        self._metrics.l1_reset(reason)

    def _on_coherence(self, connected: bool) -> None:
        if connected:
            self._reset_l1("subscribed")  # messages may have been missed meanwhile
            self._coherent = True
            self._l2.recover_soon()  # the subscription is back: so may Redis be
        else:
            self._coherent = False
            self._cap_l1("lost")

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
    """The one key rule of every cache adapter (:func:`infra.validation.check_key`): a
    typed, non-retryable ``InvalidKeyError`` before any I/O, never a degraded cache."""
    check_key(key, component=_COMPONENT)


def _check_tags(tags: object) -> None:
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise InvalidArgumentError(
            f"tags must be a list of str, got {type(tags).__name__}; pass e.g. ['user']",
            argument="tags",
            component=_COMPONENT,
        )
    for tag in tags:
        check_key(tag, argument="tags", what="tags", component=_COMPONENT)

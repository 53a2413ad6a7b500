"""The Redis tier (L2) of :class:`~infra.cache.three_tier_cache.ThreeTierCache`.

Everything the three-tier cache sends to Redis goes through :class:`L2Tier`. Two modes:

* **Redis mode** (a raw ``redis.asyncio`` client is given): every command -- values,
  fill leases, the writers' scripts, ``PUBLISH``, the tag index, ``SCAN`` -- runs on the
  raw client through :class:`~infra.calls.BackendCalls` (telemetry, the cache's policy,
  error translation), encoded with the port's serializer under the port's key prefix,
  so the data is exactly what the port (``RedisCache``) itself reads and writes.
* **Port mode** (no raw client: tests, one process): values go through the
  :class:`~infra.ports.CacheStore` port; there are no leases and no channel, and the tag
  and prefix indexes are kept in memory for the keys this process wrote -- correct only
  when this process is L2's sole writer.

Key layout (``ns`` = the cache namespace; ``base`` = the port's own key prefix, read from
``RedisCache.key("")`` so raw keys sit next to the values)::

    base + ns:v:<key>          the value, wrapped: [value] present, [] cached absence
    base + ns:lock:<key>       fill lease (cross-process single flight)
    base + ns:tag:<tag>        SET of keys written with that tag
    base + ns:tagseq           the invalidation sequence (INCR'd by every tag or prefix
                               invalidation; never expires)
    base + ns:tagv:<tag>       the sequence number of the tag's last invalidation
    base + ns:prefixv          the sequence number of the last prefix invalidation
    base + ns:invalidations    the coherence channel

The wrapper makes a cached absence unambiguous whatever the serializer, and a value of
some other shape under ``ns:v:`` (not written by us) reads as a miss.

Atomic writes
    A writer changes a value and removes its fill lease in one step: ``set`` is one Lua
    script (``SET`` value, ``DEL`` lock, the tag index, ``PUBLISH`` the invalidation) and
    ``delete``/``invalidate`` are another (``DEL`` values and their locks, ``PUBLISH``).
    A filler's "do I still hold the lease? then write" is one step as well (see
    :mod:`infra.cache.singleflight`). So between a writer's value change and its lease
    removal there is no moment in which a filler can still see its lease and write back
    an older value.

Fenced (conditional) writes: a fill that must not outlive an invalidation
    A caller that loads a value and stores it *with tags* (read-through outside the
    cache's own leased fill, e.g. ``CachedGraphStore``) reads the sequence before it loads
    (:meth:`L2Tier.snapshot`, one ``GET``) and writes with ``since=`` that number. The
    write script then stores only if no tag it writes under, and no prefix, was
    invalidated after the snapshot (``tagv:<tag> <= since``, ``prefixv <= since``) and
    the sequence did not go backwards (Redis lost its data) -- checked and written in one
    atomic step. Invalidating a tag pops its set and sets its version in one script, so a
    fenced write lands either before the pop (and is deleted by it) or after the version
    moved (and is refused). One global sequence rather than a counter per tag, because
    the tags of a result (the nodes in a neighbourhood) are known only after the load:
    a snapshot of the sequence is a snapshot of every tag's version at once. Versions
    live ``version_ttl`` seconds; the cache refuses snapshots older than half of that.
    In port mode the same sequence and versions are kept in memory.

Degradation: which errors, and what it does
    Only *unreachability* degrades the tier: :class:`~infra.exceptions.BackendConnectionError`,
    :class:`~infra.exceptions.InfraTimeoutError` and an open breaker
    (:class:`~infra.exceptions.CircuitBreakerOpenError`, the policy's own verdict that
    Redis is down). Anything else -- a key the driver cannot encode, a wrong password, a
    full pool -- is the caller's or the deployment's problem and is raised to the caller,
    typed; it never marks the cache degraded. A stored value that cannot be *decoded*
    reads as a miss (counted) and is overwritten by the next fill.

    The first unreachable error logs one warning, counts ``cache_degraded_total`` and
    calls ``on_degraded`` (the cache caps its L1 lifetimes: it can no longer hear
    invalidations). While degraded, operations are skipped without touching the network
    (``cache_l2_errors_total{reason="skipped"}``); reads fall through to L1/the loader.

Hysteresis: one degradation per outage, one recovery
    * Each operation remembers the *epoch* (a counter bumped on every transition) it
      started in. A failure or success of an operation that started before the latest
      transition says nothing about Redis now and changes nothing: an in-flight request
      that fails after a recovery does not degrade the cache again, and one that started
      before the failure cannot mark a dead Redis reachable.
    * Only a *probe* recovers: at most one per ``probe_interval`` (the first one a full
      interval after the failure), run by the next operation that needs Redis, or at once
      when the coherence subscription comes back (:meth:`L2Tier.recover_soon`). A probe
      drops the pool's idle connections (redis-py can hand out connections that died with
      the server -- seen under RESP3), sends ``PING`` on a fresh one, then replays what
      the outage skipped (below). Only when all of it succeeded does the tier log the
      recovery once and call ``on_recovered`` (the cache clears L1).

Skipped writes are made safe, never silently lost
    A write, delete, invalidation or lease release that was skipped or failed while Redis
    was unreachable is remembered (key, tag, prefix, or lease token; beyond
    ``_MAX_PENDING`` keys the whole namespace). Recovery deletes those keys (with their
    leases, announcing the invalidation to other processes), invalidates those tags and
    prefixes and releases those leases -- before this process uses L2 again. So a value
    that a skipped write replaced cannot outlive the outage in L2, even when Redis kept
    its data across a restart. What remains: other processes that recover earlier may
    read such a key's older L2 value until this process's probe runs (at most
    ``probe_interval`` after Redis answers again), and if this process dies before
    Redis returns, nobody replays its skipped writes.

Bounded fallback
    With a policy that retries, an operation whose first attempt failed with a
    connection error or timeout is abandoned ``fallback_timeout`` seconds later, whatever
    the retry schedule says (the caller then gets the fallback answer); a policy without
    retries (the default: a cache falls back, it does not insist) abandons at once. A
    peer that accepts but never answers is bounded by the client's socket timeout. The
    port mode leaves this to the port's own policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from time import perf_counter
from typing import Any, Final, TypeVar, cast

from redis.asyncio import Redis

from infra.cache.coherence import Message, encode_message
from infra.cache.l1 import ABSENT, MISS
from infra.cache.serialization import Serializer
from infra.cache.singleflight import (
    LEASE_GRANTED,
    LEASE_NO_ANSWER,
    LEASE_VALUE,
    RedisFillLease,
)
from infra.cache.tier_metrics import TierMetrics
from infra.calls import BackendCalls
from infra.exceptions import (
    BackendConnectionError,
    CacheSerializationError,
    CircuitBreakerOpenError,
    InfraError,
    InfraTimeoutError,
)
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.ports import CacheStore
from infra.redaction import redact_text
from infra.resilience import ResiliencePolicy
from infra.resilience.clock import Clock
from infra.translation import translate_exception

__all__ = ["L2Tier", "glob_escape", "is_unreachable"]

_log = logging.getLogger("infra.cache.three_tier")
T = TypeVar("T")
_SCAN_COUNT: Final = 1000
#: Keys per coherence message and per delete script.
KEYS_PER_MESSAGE: Final = 500
#: Skipped writes remembered one by one; beyond this the namespace is invalidated.
_MAX_PENDING: Final = 10_000

# KEYS[1]: the value, KEYS[2]: its lock, KEYS[3..2+n]: the n tag sets; fenced writes add
# the sequence, prefixv and the n tag versions. ARGV[1]: the encoded value, ARGV[2]: its
# TTL (ms), ARGV[3]: the channel, ARGV[4]: the invalidation message, ARGV[5]: the tag
# index TTL (ms), ARGV[6]: the key as stored in the tag sets, ARGV[7]: n, ARGV[8]: the
# snapshot a fenced write was loaded after ("" = unconditional). 1 written, 0 refused.
_WRITE_SCRIPT: Final = """
local n = tonumber(ARGV[7])
if ARGV[8] ~= '' then
  local since = tonumber(ARGV[8])
  if tonumber(redis.call('GET', KEYS[3 + n]) or '0') < since then
    return 0
  end
  for i = 4 + n, #KEYS do
    if tonumber(redis.call('GET', KEYS[i]) or '0') > since then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
for i = 3, 2 + n do
  redis.call('SADD', KEYS[i], ARGV[6])
  redis.call('PEXPIRE', KEYS[i], ARGV[5], 'NX')
  redis.call('PEXPIRE', KEYS[i], ARGV[5], 'GT')
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""

# KEYS: value, lock, value, lock, ... ARGV[1]: the channel, ARGV[2]: the message ("" for
# none). Returns how many values existed.
_DELETE_SCRIPT: Final = """
local existed = 0
for i = 1, #KEYS, 2 do
  existed = existed + redis.call('DEL', KEYS[i])
  redis.call('DEL', KEYS[i + 1])
end
if ARGV[2] ~= '' then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return existed
"""


# KEYS[1]: the tag set, KEYS[2]: the sequence, KEYS[3]: the tag's version. ARGV[1]: the
# version's TTL (ms). Pops the set and moves the version past every earlier snapshot.
_POP_TAG_SCRIPT: Final = """
local members = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[3], redis.call('INCR', KEYS[2]), 'PX', ARGV[1])
return members
"""

# KEYS[1]: the sequence, KEYS[2]: prefixv. ARGV[1]: its TTL (ms). Before a prefix
# invalidation: every fenced write loaded before it is refused from now on.
_BUMP_PREFIX_SCRIPT: Final = """
redis.call('SET', KEYS[2], redis.call('INCR', KEYS[1]), 'PX', ARGV[1])
return 1
"""


def glob_escape(text: str) -> str:
    """``text`` with Redis glob metacharacters escaped (for ``SCAN MATCH``)."""
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the backend cannot be reached (the only errors that degrade
    the cache): a connection error, a timeout, or a breaker that is open."""
    return isinstance(exc, BackendConnectionError | InfraTimeoutError | CircuitBreakerOpenError)


@dataclass(slots=True)
class _Pending:
    """What the outage skipped, replayed by recovery (see the module docstring)."""

    keys: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    prefixes: set[str] = field(default_factory=set)
    leases: dict[str, str] = field(default_factory=dict)  # key -> owner token
    everything: bool = False

    def __bool__(self) -> bool:
        return bool(self.keys or self.tags or self.prefixes or self.leases or self.everything)

    def add_keys(self, keys: Iterable[str]) -> None:
        if not self.everything:
            self.keys.update(keys)
            if len(self.keys) > _MAX_PENDING:
                self.everything, self.keys = True, set()

    def take(self) -> _Pending:
        taken = _Pending(self.keys, self.tags, self.prefixes, self.leases, self.everything)
        self.keys, self.tags, self.prefixes, self.leases = set(), set(), set(), {}
        self.everything = False
        return taken

    def merge(self, other: _Pending) -> None:
        self.add_keys(other.keys)
        self.tags |= other.tags
        self.prefixes |= other.prefixes
        self.leases.update(other.leases)
        self.everything |= other.everything


class L2Tier:
    """Values, leases, tags, prefixes and publishing on Redis, with degradation.

    Args:
        store: The value store (the port); in Redis mode its ``serializer`` and ``key()``
            define the encoding and key prefix.
        redis: The raw client (Redis mode), or ``None`` (port mode).
        namespace: The cache namespace (see the key layout above).
        origin: The owning cache's id, carried by the messages it publishes.
        clock: Time for probe scheduling and the in-memory index.
        probe_interval: While degraded, at most one probe per this many seconds.
        lease_seconds: Fill lease duration.
        fallback_timeout: How long an operation may keep retrying after its first
            attempt failed with a connection error (Redis mode, retrying policies).
        policy: Resilience policy for the raw commands (``None`` = one attempt each).
        metrics: The cache's metric series.
        collector: The collector the raw commands' calls are recorded into (``None``: the
            current one at call time), like the adapters' ``collector=``.
        tracing: The tracing state their spans start from (``None``: the current one).
        on_degraded: Called once when Redis becomes unreachable.
        on_recovered: Called once when it answers again and the replay succeeded.
        version_ttl: How long a tag's (or the prefix) invalidation version is kept, in
            seconds: a fenced write whose snapshot is older cannot be checked.
    """

    def __init__(
        self,
        store: CacheStore,
        redis: Redis | None,
        *,
        namespace: str,
        origin: str,
        clock: Clock,
        probe_interval: float,
        lease_seconds: float,
        fallback_timeout: float,
        policy: ResiliencePolicy | None,
        metrics: TierMetrics,
        on_degraded: Callable[[], None],
        on_recovered: Callable[[], None],
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
        version_ttl: float = 120.0,
    ) -> None:
        self._store = store
        self._version_ms = max(1, round(version_ttl * 1000))
        self._version_ttl = version_ttl
        self._redis = redis
        self._origin = origin
        self._clock = clock
        self._probe_interval = probe_interval
        self._fallback = fallback_timeout
        self._metrics = metrics
        self._on_degraded = on_degraded
        self._on_recovered = on_recovered
        self._vprefix = f"{namespace}:v:"
        base = ""
        if redis is not None:
            key_of = getattr(store, "key", None)
            serializer = getattr(store, "serializer", None)
            if not callable(key_of) or not isinstance(serializer, Serializer):
                raise TypeError(
                    "with redis=, l2 must be the RedisCache over that client (its key() and "
                    f"serializer define the stored format), got {type(store).__name__}"
                )
            base = key_of("")
            self._dumps, self._loads = serializer.dumps, serializer.loads
            # redis-py types commands as "value or awaitable"; the asyncio client's are
            # awaitables. Bound once: the hit path resolves nothing per call.
            self._redis_get = cast("Callable[[str], Awaitable[bytes | None]]", redis.get)
        self._base_v = f"{base}{self._vprefix}"
        self._lock_prefix = f"{base}{namespace}:lock:"
        self._tag_prefix = f"{base}{namespace}:tag:"
        self._seq_key = f"{base}{namespace}:tagseq"
        self._tagv_prefix = f"{base}{namespace}:tagv:"
        self._prefixv_key = f"{base}{namespace}:prefixv"
        self.channel = f"{base}{namespace}:invalidations"
        self._calls = BackendCalls(
            "redis",
            family="cache",
            system="redis",
            policy=policy,
            collector=collector,
            tracing=tracing,
        )
        self._get_op = self._calls.operation("get")
        # Only a retrying policy can keep an operation past its first failed attempt.
        self._bounded = self._calls.policy.retry is not None
        self._lease = None if redis is None else RedisFillLease(redis, lease_seconds=lease_seconds)
        if redis is not None:
            self._write_script = redis.register_script(_WRITE_SCRIPT)
            self._delete_script = redis.register_script(_DELETE_SCRIPT)
            self._pop_tag_script = redis.register_script(_POP_TAG_SCRIPT)
            self._bump_prefix_script = redis.register_script(_BUMP_PREFIX_SCRIPT)
        self._degraded = False
        self._epoch = 0
        self._next_probe = 0.0
        self._recovering = False
        self._pending = _Pending()
        self._tasks: set[asyncio.Task[Any]] = set()
        # In-memory indexes, used only without a raw client.
        self._local_tags: dict[str, set[str]] = {}
        self._local_keys: dict[str, float] = {}
        # The fence in port mode: the sequence, and tag -> (version, kept until) in the
        # order they were set (so the expired ones are at the front).
        self._local_seq = 0
        self._local_versions: OrderedDict[str, tuple[int, float]] = OrderedDict()

    @property
    def distributed(self) -> bool:
        """Whether a raw client is configured (leases, coherence, shared indexes)."""
        return self._redis is not None

    @property
    def degraded(self) -> bool:
        """Whether Redis is considered unreachable."""
        return self._degraded

    @property
    def pending(self) -> int:
        """Skipped writes and lease releases waiting for recovery (keys, tags, prefixes,
        leases; a namespace-wide invalidation counts one)."""
        p = self._pending
        return len(p.keys) + len(p.tags) + len(p.prefixes) + len(p.leases) + p.everything

    # ================================================================ degradation
    async def _enter(self, operation: str) -> int | None:
        """The epoch ``operation`` runs in, or ``None`` to skip it (degraded, no probe)."""
        if self._degraded and not await self._try_recover():
            self._metrics.l2_error(operation, "skipped")
            return None
        return self._epoch

    def _failed(self, operation: str, exc: BaseException, epoch: int) -> None:
        self._metrics.l2_error(operation, type(exc).__name__)
        if self._degraded or epoch != self._epoch:
            return  # already degraded, or it started before the latest transition
        self._degraded = True
        self._epoch += 1
        self._next_probe = self._clock.now() + self._probe_interval
        self._metrics.degraded_total.inc()
        self._metrics.degraded.set(1)
        message = exc.message if isinstance(exc, InfraError) else str(exc)
        _log.warning(
            "cache %s: L2 unreachable (%s); reads are answered by L1 and the loader, "
            "writes to L2 are skipped and invalidated when it answers again (probing "
            "every %gs)",
            self._metrics.name,
            redact_text(f"{type(exc).__name__}: {message}"),
            self._probe_interval,
            extra={"cache": self._metrics.name, "operation": operation},
        )
        self._on_degraded()

    async def _try_recover(self) -> bool:
        """Probe and replay, if a probe is due; whether the tier is healthy now."""
        if not self._degraded:
            return True
        now = self._clock.now()
        if self._recovering or now < self._next_probe:
            return False
        self._recovering = True
        self._next_probe = now + self._probe_interval
        replayed = 0
        try:
            await self._probe()
            replayed = await self._replay()
        except (InfraError, TimeoutError) as exc:
            self._metrics.l2_error("probe", type(exc).__name__)
            return False
        finally:
            self._recovering = False
        self._degraded = False
        self._epoch += 1
        self._metrics.degraded.set(0)
        _log.info(
            "cache %s: L2 reachable again; %d skipped write(s) invalidated, L1 cleared",
            self._metrics.name,
            replayed,
            extra={"cache": self._metrics.name},
        )
        self._on_recovered()
        return True

    async def _probe(self) -> None:
        """Raise unless Redis answers now (on a fresh connection)."""
        if self._redis is None:
            healthy, details = await self._store.health_check()
            if not healthy:
                raise BackendConnectionError(
                    f"L2 health check failed: {details.get('error', 'unhealthy')}",
                    component="redis",
                )
            return
        # Connections the server closed may sit idle in the pool (and redis-py may hand
        # them out unchecked); the ones in use belong to requests that started before
        # the failure, whose outcome is ignored anyway.
        with contextlib.suppress(OSError):  # closing a dead socket may complain
            await self._redis.connection_pool.disconnect(inuse_connections=False)
        await self._call("ping", self._redis.ping, idempotent=False)

    async def _replay(self) -> int:
        """Apply what the outage skipped; how many keys/tags/prefixes/leases. On failure
        what was not applied stays pending and the error propagates."""
        replayed = 0
        while self._pending:
            batch = self._pending.take()
            try:
                replayed += await self._apply(batch)
            except BaseException:
                self._pending.merge(batch)
                raise
        return replayed

    async def _apply(self, batch: _Pending) -> int:
        if batch.leases:
            await self._release_now(batch.leases.items())
            batch.leases = {}
        prefixes = {""} if batch.everything else batch.prefixes
        for tag in sorted(batch.tags):
            # Popping a tag's index is destructive: its keys join the batch at once, so a
            # failure further on leaves them pending rather than forgotten.
            batch.keys.update(await self._pop_tag(tag))
            batch.tags.discard(tag)
        if prefixes:
            await self._bump_prefix()
        found = set(batch.keys)
        for prefix in sorted(prefixes):
            found.update(await self._keys_with_prefix(prefix))
        keys = sorted(found)
        for i in range(0, len(keys), KEYS_PER_MESSAGE):
            await self._delete_now(keys[i : i + KEYS_PER_MESSAGE], announce=True)
        for prefix in sorted(prefixes):
            await self._publish_prefix(prefix)
        count = len(keys) + len(prefixes)
        self._metrics.replayed.inc(count)
        return count

    def recover_soon(self) -> None:
        """Try to recover in the background when the next probe is due (the coherence
        subscription is back: Redis answers)."""
        if not self._degraded or self._recovering:
            return
        delay = max(0.0, self._next_probe - self._clock.now())
        self._spawn(self._recover_after(delay))

    async def _recover_after(self, delay: float) -> None:
        await self._clock.sleep(delay)
        await self._try_recover()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Finish background lease releases (briefly) and stop background recovery."""
        tasks = list(self._tasks)
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=self._fallback)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    # ========================================================= running commands
    def _call(
        self, operation: str, fn: Callable[..., Awaitable[T]], *args: Any, idempotent: bool = True
    ) -> Awaitable[T]:
        """Run a raw command through the call path, abandoned ``fallback_timeout`` after
        its first attempt failed (only a retrying policy makes a second attempt)."""
        if not self._bounded:
            return self._calls.run(operation, fn, *args, idempotent=idempotent)
        return self._bounded_call(operation, fn, args, idempotent)

    async def _bounded_call(
        self,
        operation: str,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        idempotent: bool,
    ) -> T:
        # asyncio.timeout is a cancel scope we can arm from inside, when an attempt fails.
        async with asyncio.timeout(None) as scope:
            return await self._calls.run(
                operation, self._attempt, scope, fn, *args, idempotent=idempotent
            )

    async def _attempt(
        self, scope: asyncio.Timeout, fn: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        try:
            return await fn(*args)
        except Exception as exc:
            if scope.when() is None and is_unreachable(
                translate_exception(exc, component="redis", family="cache")
            ):
                scope.reschedule(asyncio.get_running_loop().time() + self._fallback)
            raise

    async def _guarded(
        self, operation: str, fn: Callable[..., Awaitable[T]], *args: Any, read: bool = False
    ) -> tuple[bool, T | None]:
        """``(True, fn(*args))``, or ``(False, None)`` when skipped (degraded) or Redis is
        unreachable (counted; the tier degrades if that is news).

        Other backend errors propagate from writes -- the caller's write did not happen
        -- and are counted and answered ``(False, None)`` on the read path (``read``),
        where the loader can still answer; they never degrade the tier.
        """
        epoch = await self._enter(operation)
        if epoch is None:
            return False, None
        try:
            return True, await fn(*args)
        except (InfraError, TimeoutError) as exc:
            if is_unreachable(exc) or isinstance(exc, TimeoutError):
                self._failed(operation, exc, epoch)
                return False, None
            self._metrics.l2_error(operation, type(exc).__name__)
            if not read:
                raise
            return False, None

    # ===================================================================== values
    async def read(self, key: str, *, record: bool = True) -> object:  # noqa: PLR0912 - hot path, inlined
        """The value, :data:`ABSENT`, or :data:`MISS` (also when degraded or failing).

        ``record=False`` leaves the hit/miss counters alone (re-reads while waiting for
        another process's fill are not lookups of their own).
        """
        if self._degraded and await self._enter("get") is None:
            return MISS
        epoch = self._epoch
        start = perf_counter()
        try:
            if self._redis is None:
                value = self._unwrap(await self._store.get(self._vprefix + key))
            else:
                if self._bounded:
                    raw = await self._bounded_call(
                        "get", self._redis_get, (self._base_v + key,), True
                    )
                else:
                    raw = await self._get_op.run(self._redis_get, self._base_v + key)
                if raw is None:
                    value = MISS
                else:  # the common case inline: a one-element list
                    wrapped = self._loads(raw)
                    if wrapped.__class__ is list and len(wrapped) == 1 and wrapped[0] is not None:
                        value = wrapped[0]
                    else:
                        value = self._unwrap(wrapped)
        except CacheSerializationError as exc:
            self._metrics.l2_error("get", type(exc).__name__)
            value = MISS
        except (InfraError, TimeoutError) as exc:
            if is_unreachable(exc) or isinstance(exc, TimeoutError):
                self._failed("get", exc, epoch)
            else:
                self._metrics.l2_error("get", type(exc).__name__)
            return MISS
        if not record:
            return value
        self._metrics.l2_latency.observe((perf_counter() - start) * 1000.0)
        if value is MISS:
            self._metrics.l2_misses.value += 1.0  # see TierMetrics: loop-thread only
        else:
            self._metrics.l2_hits.value += 1.0
        return value

    def _decode(self, raw: bytes | None) -> object:
        return MISS if raw is None else self._unwrap(self._loads(raw))

    def _unwrap(self, wrapped: Any) -> object:
        """The value inside our wrapper; :data:`MISS` (counted) for any other shape."""
        if wrapped.__class__ is list and len(wrapped) == 1 and wrapped[0] is not None:
            return wrapped[0]
        value = _unwrap(wrapped)
        if value is MISS and wrapped is not None:
            self._metrics.l2_error("get", "unrecognised")
        return value

    async def write(
        self,
        key: str,
        value: object,
        ttl: float,
        tags: Sequence[str],
        *,
        quiet: bool = False,
        since: int | None = None,
    ) -> bool:
        """Store ``value`` (or :data:`ABSENT`) for ``ttl`` s -- with its lease removed, its
        tags recorded and the invalidation published, atomically; whether it was stored
        (if Redis was unreachable, the key is invalidated on recovery).

        With ``since`` (a :meth:`snapshot`), only if none of ``tags`` and no prefix was
        invalidated after that snapshot, checked in the same atomic step (else ``False``).

        Raises:
            CacheSerializationError: ``value`` cannot be encoded (before any I/O).
            InfraError: Redis refused the write -- not unreachability, which is absorbed;
                with ``quiet`` (a read's write-back) it is counted instead.
        """
        wrapped: list[object] = [] if value is ABSENT else [value]
        if self._redis is None:
            done, stored = await self._guarded(
                "set", self._store_set, key, wrapped, ttl, tags, since, read=quiet
            )
        else:
            payload = self._dumps(wrapped)  # an unencodable value raises before any I/O
            done, stored = await self._guarded(
                "set", self._write_now, key, payload, ttl, tags, since, read=quiet
            )
        if not done:
            self._pending.add_keys((key,))
        return done and bool(stored)

    async def _store_set(
        self,
        key: str,
        wrapped: list[object],
        ttl: float,
        tags: Sequence[str],
        since: int | None,
    ) -> bool:
        if since is not None and not self._local_unchanged(tags, since):
            return False
        await self._store.set(self._vprefix + key, wrapped, ttl=ttl)
        if since is not None and not self._local_unchanged(tags, since):
            # An invalidation ran while the port wrote: undo, as Redis's atomic check would.
            await self._store.delete(self._vprefix + key)
            return False
        self._local_keys[key] = self._clock.now() + ttl
        for tag in tags:
            self._local_tags.setdefault(tag, set()).add(key)
        return True

    async def _write_now(
        self, key: str, payload: bytes, ttl: float, tags: Sequence[str], since: int | None
    ) -> bool:
        ttl_ms = max(1, round(ttl * 1000))
        keys = [self._base_v + key, self._lock_prefix + key]
        keys += [self._tag_prefix + tag for tag in tags]
        if since is not None:
            keys += [self._seq_key, self._prefixv_key]
            keys += [self._tagv_prefix + tag for tag in tags]
        message = encode_message(Message(self._origin, keys=(key,)))
        fence = "" if since is None else since
        args = [payload, ttl_ms, self.channel, message, ttl_ms, key, len(tags), fence]
        return bool(await self._call("set", self._write_script, keys, args))

    # ====================================================================== fence
    async def snapshot(self) -> int | None:
        """The invalidation sequence now (one ``GET``), for a fenced :meth:`write` of a
        value loaded after it; ``None`` when Redis gave no answer (then nothing may be
        stored with it)."""
        done, seq = await self._guarded("tag_snapshot", self._snapshot_now, read=True)
        return seq if done else None

    async def _snapshot_now(self) -> int:
        if self._redis is None:
            return self._local_seq
        raw = await self._call("tag_snapshot", self._redis.get, self._seq_key)
        return 0 if raw is None else int(raw)

    def _local_unchanged(self, tags: Sequence[str], since: int) -> bool:
        """Port mode: whether no tag in ``tags`` and no prefix was invalidated after
        ``since`` (the in-memory twin of the write script's check)."""
        if self._local_seq < since:
            return False
        now = self._clock.now()
        for name in ("", *(f"t:{tag}" for tag in tags)):  # "" = any prefix
            version, until = self._local_versions.get(name, (0, now))
            if until > now and version > since:
                return False
        return True

    def _local_bump(self, name: str) -> None:
        """Port mode: invalidating ``name`` ("t:<tag>", or "" for a prefix)."""
        self._local_seq += 1
        now = self._clock.now()
        self._local_versions.pop(name, None)
        self._local_versions[name] = (self._local_seq, now + self._version_ttl)
        while self._local_versions:
            oldest = next(iter(self._local_versions))
            if self._local_versions[oldest][1] > now:
                break
            del self._local_versions[oldest]

    async def delete(self, keys: Sequence[str], *, announce: bool = True) -> int:
        """Remove ``keys``' values and leases, publishing their invalidation (unless not
        ``announce``) in the same atomic step; how many existed (0 when unreachable: they
        are then invalidated on recovery)."""
        removed = 0
        for i in range(0, len(keys), KEYS_PER_MESSAGE):
            chunk = keys[i : i + KEYS_PER_MESSAGE]
            done, existed = await self._guarded("delete", self._delete_now, chunk, announce)
            if done:
                removed += existed or 0
            else:
                self._pending.add_keys(chunk)
        return removed

    async def _delete_now(self, keys: Sequence[str], announce: bool = True) -> int:
        if not keys:
            return 0
        if self._redis is None:
            for key in keys:
                self._local_keys.pop(key, None)
            return int(await self._store.delete(*(self._vprefix + k for k in keys)))
        names: list[str] = []
        for key in keys:
            names += (self._base_v + key, self._lock_prefix + key)
        message = encode_message(Message(self._origin, keys=tuple(keys))) if announce else ""
        return int(await self._call("delete", self._delete_script, names, [self.channel, message]))

    async def invalidate_tag(self, tag: str) -> tuple[list[str], int]:
        """Remove every key written with ``tag``: ``(keys, how many existed)``."""
        done, keys = await self._guarded("tag_pop", self._pop_tag, tag)
        if not done or keys is None:
            self._pending.tags.add(tag)
            return [], 0
        return keys, await self.delete(keys)

    async def invalidate_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix`` (``SCAN``; O(keyspace)) and tell
        other processes to drop the prefix; how many existed."""
        done, _ = await self._guarded("prefix_fence", self._bump_prefix)
        if done:
            done, keys = await self._guarded("scan", self._keys_with_prefix, prefix)
        if not done or keys is None:
            self._pending.prefixes.add(prefix)
            return 0
        removed = await self.delete(keys, announce=False)  # the prefix message covers them
        published, _ = await self._guarded("publish", self._publish_prefix, prefix)
        if not published:
            self._pending.prefixes.add(prefix)
        return removed

    async def _bump_prefix(self) -> None:
        """Refuse, from now on, every fenced write whose snapshot is older (first step of
        a prefix invalidation: a write that lands before it is found by the scan)."""
        if self._redis is None:
            self._local_bump("")
            return
        keys = [self._seq_key, self._prefixv_key]
        await self._call("prefix_fence", self._bump_prefix_script, keys, [self._version_ms])

    async def _publish_prefix(self, prefix: str) -> None:
        if self._redis is not None:
            message = encode_message(Message(self._origin, prefix=prefix))
            await self._call("publish", self._redis.publish, self.channel, message)

    # ===================================================================== leases
    async def lease_or_read(self, key: str, token: str) -> tuple[int, object]:
        """Read ``key`` or, if it is not stored, try to take its fill lease with
        ``token``, in one round trip: ``(LEASE_VALUE, value)``, ``(LEASE_GRANTED, MISS)``,
        ``(LEASE_HELD_ELSEWHERE, MISS)``, or ``(LEASE_NO_ANSWER, MISS)`` when Redis gave no
        usable answer. Unless the answer is ``LEASE_GRANTED``, whatever lease ``token``
        might hold is released (now, in the background, or on recovery)."""
        status = LEASE_NO_ANSWER
        try:
            done, reply = await self._guarded(
                "lease", self._lease_or_read_now, key, token, read=True
            )
            if not done or reply is None:
                return LEASE_NO_ANSWER, MISS
            status, raw = reply
            if status != LEASE_VALUE:
                return status, MISS
            try:
                return status, self._decode(raw)
            except CacheSerializationError as exc:
                self._metrics.l2_error("get", type(exc).__name__)
                return LEASE_NO_ANSWER, MISS
        finally:
            if status not in (LEASE_GRANTED, LEASE_VALUE):
                self.release_later(key, token)

    async def _lease_or_read_now(self, key: str, token: str) -> tuple[int, bytes | None]:
        assert self._lease is not None  # noqa: S101 - only called in Redis mode
        # idempotent=False: a repeat would find our own lock and wait for itself.
        return await self._call(
            "lease",
            self._lease.lease_or_read,
            self._base_v + key,
            self._lock_prefix + key,
            token,
            idempotent=False,
        )

    async def fill(self, key: str, token: str, value: object, ttl: float) -> bool:
        """Write a loaded value if ``token`` still holds ``key``'s lease, release the
        lease and publish "filled", in one atomic step; whether it was written (never
        raises a backend error: the value was loaded, only caching it failed)."""
        written: bool | None = None
        try:
            payload = self._dumps([] if value is ABSENT else [value])
            _, written = await self._guarded(
                "fill", self._fill_now, key, token, payload, ttl, read=True
            )
            return bool(written)
        finally:
            if written is None:  # not sent, or no answer: the lease may still be ours
                self.release_later(key, token)

    async def _fill_now(self, key: str, token: str, payload: bytes, ttl: float) -> bool:
        assert self._lease is not None  # noqa: S101 - only called in Redis mode
        fill = partial(
            self._lease.fill,
            payload=payload,
            ttl_ms=max(1, round(ttl * 1000)),
            channel=self.channel,
            message=encode_message(Message(self._origin, filled=key)),
        )
        return await self._call(
            "fill", fill, self._base_v + key, self._lock_prefix + key, token, idempotent=False
        )

    async def release(self, key: str, token: str) -> None:
        """Release ``key``'s lease if ``token`` still owns it (on recovery if Redis is
        unreachable now; in the background if this task is being cancelled)."""
        done = False
        try:
            done, _ = await self._guarded(
                "lease_release", self._release_now, ((key, token),), read=True
            )
        finally:
            if not done:
                self.release_later(key, token)

    def release_later(self, key: str, token: str) -> None:
        """Make sure a lease ``token`` may hold is released: on recovery when degraded,
        else by a background task (the caller cannot wait: cancelled, or failing)."""
        if self._degraded:
            self._pending.leases[key] = token
        else:
            self._spawn(self._release_in_background(key, token))

    async def _release_in_background(self, key: str, token: str) -> None:
        try:
            done, _ = await self._guarded(
                "lease_release", self._release_now, ((key, token),), read=True
            )
        # Nobody awaits this task: an unexpected error is logged here, and the lease
        # then ends by its own expiry.
        except Exception:  # noqa: BLE001
            _log.debug(
                "cache %s: background lease release failed", self._metrics.name, exc_info=True
            )
            return
        if not done and self._degraded:
            self._pending.leases[key] = token

    async def _release_now(self, leases: Iterable[tuple[str, str]]) -> int:
        assert self._lease is not None  # noqa: S101 - only called in Redis mode
        locks = [(self._lock_prefix + key, token) for key, token in leases]
        return await self._call("lease_release", self._lease.release, locks)

    # ====================================================================== tags
    async def _pop_tag(self, tag: str) -> list[str]:
        """Take the tag's keys and move its version on, in one atomic step."""
        if self._redis is None:
            self._local_bump(f"t:{tag}")
            return sorted(self._local_tags.pop(tag, ()))
        keys = [self._tag_prefix + tag, self._seq_key, self._tagv_prefix + tag]
        members = await self._call("tag_pop", self._pop_tag_script, keys, [self._version_ms])
        return sorted(_text(m) for m in members)

    async def _keys_with_prefix(self, prefix: str) -> list[str]:
        if self._redis is None:
            now = self._clock.now()
            expired = [k for k, until in self._local_keys.items() if until <= now]
            for key in expired:
                del self._local_keys[key]
            return sorted(k for k in self._local_keys if k.startswith(prefix))
        pattern = glob_escape(self._base_v + prefix) + "*"
        return await self._call("scan", self._scan, pattern)

    async def _scan(self, pattern: str) -> list[str]:
        assert self._redis is not None  # noqa: S101 - Redis mode only
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

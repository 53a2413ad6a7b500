"""A lease-based distributed lock on one Redis server, with fencing tokens.

::

    lock = RedisDistributedLock(redis_client, policy=policy)
    async with lock.hold("invoice:42", lease=10, wait=2) as lease:
        await store.execute(
            "UPDATE invoices SET total = $1, fence = $2 WHERE id = 42 AND fence < $2",
            total, lease.fencing_token,
        )

What it guarantees, and how:

* **Atomic grant with a lease, always.** One Lua script does ``SET key owner NX PX
  lease`` and, only when that succeeds, ``INCR`` of the lock's fencing counter, returning
  the new value. There is no code path that creates the key without a TTL, so a crashed
  holder blocks others for at most one lease.
* **Owner token**: 128 random bits (``secrets.token_hex(16)``) per ``acquire`` call.
  Release and extend are Lua compare-and-delete / compare-and-``PEXPIRE``; a caller
  whose lease expired (or was never the owner) gets :class:`~infra.exceptions.LockNotOwnedError`
  and cannot touch the new holder's lock.
* **Fencing token**: strictly increasing on every grant of a name, including grants
  after an expiry. The counter key has no TTL (a few dozen bytes per distinct lock name
  ever used; high-cardinality names keep that many counters). If the counter is lost
  (``FLUSHDB``, failover to a replica that had not received it), tokens restart lower --
  a storage write path that checks ``token > stored`` then rejects writes (safe, but
  stuck until the stored fence is reset).
* **Fail closed.** Every call goes through :class:`~infra.calls.BackendCalls`
  (component ``"redis_lock"``, family ``"cache"``): telemetry, the injected resilience
  policy, and translation. If Redis cannot be asked, ``acquire`` raises
  (``CacheConnectionError``, ``CircuitBreakerOpenError``, a timeout...) -- it never
  assumes the lock.
* **Caller errors first.** A lock name must be a non-empty ``str`` of at most 256
  characters that encodes as UTF-8 (``InvalidKeyError``), leases and waits finite
  numbers of seconds, a released or extended lease the ``LockLease`` that ``acquire``
  returned (``InvalidArgumentError``) -- checked before any I/O, so a bad argument is
  never retried and never counts toward the breaker.
* **Bounded waiting** with jittered exponential backoff, ``wait=0`` = one try; then
  :class:`~infra.exceptions.LockAcquireTimeoutError` (``details["lock"]``). Lock names
  appear in errors, never as metric labels.
* **Cancellation-safe** and the ``hold`` exit rules: see :mod:`infra.cache.lease_lock`
  and :mod:`infra.cache.lease_hold`. Optional **watchdog** (``watchdog=True``): renews at
  lease/3, cancels the body and raises ``LockLostError`` when the lease is lost (see
  :mod:`infra.cache.lease_hold`).

What the policy may retry (``idempotent=`` per operation):

* ``acquire`` -- yes. Replaying the script with the same owner token either grants
  (nothing held), re-grants our own lock with the *same* token (the lost reply case), or
  refuses; it can never grant twice or leave a lock nobody knows about.
* ``extend`` -- yes: replaying sets the same TTL again.
* ``release`` -- no. A replay after a lost reply would find the key gone and report
  ``LockNotOwnedError`` for a release that worked; the transport error is the honest
  answer, and the lease bounds the damage.
* ``abandon`` (cleanup after a cancelled or failed grant) -- no: one best-effort try.

Limits -- read before relying on it (docs/distributed_lock.md has the long version):

* **One Redis server.** Replication is asynchronous: if the primary fails after granting
  and before a replica received the grant, the promoted replica does not know the lock
  and grants it again. Redlock (majority of independent servers) is not implemented: it
  needs several independent Redis deployments, still depends on bounded clock drift and
  process pauses, and gives no fencing token -- the fencing token on one server is the
  cheaper and sounder tool.
* **Clocks.** Lease expiry is measured by the Redis server's clock; holders estimate it
  with their own monotonic clock from the moment they *sent* the request. A holder that
  is paused (GC, swap, a blocked event loop) longer than its lease can still believe it
  holds the lock. The lock alone is therefore an efficiency tool; for correctness the
  resource must check the fencing token.

The scripts
-----------

The Lua scripts behind :class:`~infra.cache.distributed_lock.RedisDistributedLock`.

Each lock operation is one script, so it is atomic on the server and costs one round trip.
Keys, for a lock ``name`` under ``namespace``::

    {namespace}{{{name}}}                      the lock: value = owner token, PX = lease
    {namespace}{{{name}}}:fence                fencing counter (INCR), never expires
    {namespace}{{{name}}}:abandoned:{owner}    marker: this owner gave up (PX = lease)

The braces make ``{name}`` a Redis Cluster hash tag, so the keys of one lock always share
a slot, as a multi-key script requires. (Whatever the namespace or name contain, every
key starts with the same ``namespace{name}`` prefix, which holds a complete ``{...}``
pair, so the slot is the same for all of them.)

Replies are integers or arrays of integers, which redis-py returns as ``int`` whatever
the client's ``decode_responses`` and RESP version.
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis, RedisCluster

from infra.cache.lease_lock import (
    LOCK_ACQUIRE_TIMEOUTS_TOTAL,
    LOCK_ACQUIRE_WAIT_MS,
    LOCK_LOST_TOTAL,
    LeaseLockBase,
    LockBackoff,
    check_lock_name,
)
from infra.calls import BackendCalls
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.resilience import ResiliencePolicy
from infra.resilience.clock import Clock

__all__ = [
    "ABANDON",
    "ACQUIRE",
    "DEFAULT_LOCK_NAMESPACE",
    "EXTEND",
    "LOCK_ACQUIRE_TIMEOUTS_TOTAL",
    "LOCK_ACQUIRE_WAIT_MS",
    "LOCK_LOST_TOTAL",
    "RELEASE",
    "RedisDistributedLock",
    "abandoned_key",
    "fence_key",
    "lock_key",
]

# KEYS: lock, fence, abandoned-marker.  ARGV: owner, lease_ms.
# Reply: {1, fencing_token} granted | {0, holder_pttl_ms} refused (pttl -1/-2 = unknown).
# * SET NX PX grants and starts the lease atomically; INCR runs only on a grant, so every
#   grant -- also after an expiry -- gets a larger token than any before it.
# * A request from an owner that already holds the lock (the policy retried a call whose
#   reply was lost) is granted again with the same token and a fresh lease: replaying
#   acquire can neither double-grant nor leak the lock.
# * An abandoned owner (its caller was cancelled; see ABANDON) is refused, so a request
#   still in flight when the cleanup ran cannot grant a lock nobody will release.
ACQUIRE: Final = """
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {0, -2}
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2])}
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  local token = redis.call('GET', KEYS[2])
  if not token then
    token = redis.call('INCR', KEYS[2])
  end
  return {1, tonumber(token)}
end
return {0, redis.call('PTTL', KEYS[1])}
"""

# KEYS: lock.  ARGV: owner.  Reply: 1 released | 0 not the owner (expired or taken over).
RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lock.  ARGV: owner, lease_ms.  Reply: 1 extended | 0 not the owner.
EXTEND: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lock, abandoned-marker.  ARGV: owner, lease_ms.  Reply: 1 if a grant was undone.
# The marker outlives any request of this owner that could still arrive (one lease).
ABANDON: Final = """
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lock_key(namespace: str, name: str) -> str:
    """The key holding the lock's owner token."""
    return f"{namespace}{{{name}}}"


def fence_key(lock: str) -> str:
    """The fencing counter of the lock whose key is ``lock``."""
    return f"{lock}:fence"


def abandoned_key(lock: str, owner: str) -> str:
    """The marker that refuses ``owner`` further grants of ``lock``."""
    return f"{lock}:abandoned:{owner}"


DEFAULT_LOCK_NAMESPACE: Final = "semantica:lock:"


class RedisDistributedLock(LeaseLockBase):
    """:class:`~infra.ports.DistributedLock` on a ``redis.asyncio`` client.

    Args:
        redis_client: A standalone or cluster client (e.g. from
            ``infra.cache.build_redis_client``), built without redis-py's own retries
            (:func:`infra.resilience.redis_no_retry_kwargs`); the lock shares its pool.
        namespace: Prefix of every key this lock writes.
        default_lease: Lease (s) when a call passes none.
        default_wait: Longest wait (s) when a call passes none.
        policy: Resilience policy for every Redis call (``None`` = passthrough).
        clock: Time for waits, backoff and the watchdog (``ManualClock`` in tests).
        watchdog: Default for ``hold(..., watchdog=)``.
        backoff: Pause between refused grants (default :class:`LockBackoff`).
        component: Names metrics and errors.
        collector: Where calls are recorded (the application container injects its
            own); default: ``get_metrics_collector()`` at call time.

    Construction talks to nothing: scripts are registered locally and loaded by
    redis-py on first use (``EVALSHA``, falling back to ``SCRIPT LOAD`` on ``NOSCRIPT``).
    """

    __slots__ = (
        "_abandon_script",
        "_acquire",
        "_acquire_op",
        "_calls",
        "_extend_script",
        "_namespace",
        "_release_op",
        "_release_script",
    )

    def __init__(
        self,
        redis_client: Redis | RedisCluster,
        *,
        namespace: str = DEFAULT_LOCK_NAMESPACE,
        default_lease: float = 30.0,
        default_wait: float = 10.0,
        policy: ResiliencePolicy | None = None,
        clock: Clock | None = None,
        watchdog: bool = False,
        backoff: LockBackoff | None = None,
        component: str = "redis_lock",
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        super().__init__(
            component=component,
            default_lease=default_lease,
            default_wait=default_wait,
            clock=clock,
            watchdog=watchdog,
            backoff=backoff,
            collector=collector,
        )
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(
                f"namespace must be a non-empty string such as 'myapp:lock:', got {namespace!r}"
            )
        self._namespace = namespace
        address = getattr(redis_client, "connection_pool", None)
        kwargs = getattr(address, "connection_kwargs", {}) if address is not None else {}
        self._calls = BackendCalls(
            component,
            family="cache",
            system="redis",
            policy=policy,
            server_address=kwargs.get("host"),
            server_port=kwargs.get("port"),
            collector=collector,
            tracing=tracing,
        )
        # Operation handles bound once: acquire/release run on every lock use.
        self._acquire_op = self._calls.operation("acquire")
        self._release_op = self._calls.operation("release")
        self._acquire = redis_client.register_script(ACQUIRE)
        self._release_script = redis_client.register_script(RELEASE)
        self._extend_script = redis_client.register_script(EXTEND)
        self._abandon_script = redis_client.register_script(ABANDON)

    @property
    def namespace(self) -> str:
        """The key prefix."""
        return self._namespace

    def key(self, name: str) -> str:
        """The Redis key that holds lock ``name`` (for inspection and tests).

        Raises:
            InvalidKeyError: ``name`` is not a usable lock name (see ``acquire``).
        """
        return lock_key(self._namespace, check_lock_name(name, self.component))

    # --------------------------------------------------------- backend primitives
    async def _grant(self, name: str, owner: str, lease_ms: int) -> tuple[int | None, float]:
        key = lock_key(self._namespace, name)
        keys = [key, fence_key(key), abandoned_key(key, owner)]
        granted, value = await self._acquire_op.run(
            self._acquire, keys, [owner, lease_ms], idempotent=True
        )
        if granted == 1:
            return int(value), 0.0
        return None, max(0.0, int(value) / 1000.0)

    async def _release(self, name: str, owner: str) -> bool:
        keys = [lock_key(self._namespace, name)]
        released = await self._release_op.run(self._release_script, keys, [owner], idempotent=False)
        return bool(released)

    async def _extend(self, name: str, owner: str, lease_ms: int) -> bool:
        keys = [lock_key(self._namespace, name)]
        extended = await self._calls.run(
            "extend", self._extend_script, keys, [owner, lease_ms], idempotent=True
        )
        return bool(extended)

    async def _abandon(self, name: str, owner: str, lease_ms: int) -> None:
        key = lock_key(self._namespace, name)
        await self._calls.run(
            "abandon",
            self._abandon_script,
            [key, abandoned_key(key, owner)],
            [owner, lease_ms],
            idempotent=False,
        )

    def __repr__(self) -> str:
        return (
            f"RedisDistributedLock(namespace={self._namespace!r}, "
            f"default_lease={self._default_lease:g}, default_wait={self._default_wait:g}, "
            f"watchdog={self._watchdog}, policy={self._calls.policy.describe()!r})"
        )

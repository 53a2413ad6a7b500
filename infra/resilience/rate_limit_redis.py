"""A token bucket shared by every process that uses the same Redis key.

The whole decision -- refill, grant or refuse, compute the wait -- is one Lua script, so
it is atomic on the server, and it reads the time with ``redis.call('TIME')``: the
clients' clocks never enter the arithmetic, so skewed hosts cannot mint tokens. The
script is registered with ``register_script`` (redis-py sends ``EVALSHA`` and reloads the
script itself on ``NOSCRIPT``). Each call sets the key's TTL to the time a drained bucket
needs to refill completely (plus a second); an expired bucket reads as full, which is
exactly what it would hold, so idle buckets cost no memory and lose nothing.

``acquire`` loops: run the script; if refused, sleep the wait the server computed (on
the injected clock) and try again. Within one process, acquirers queue on a FIFO
:class:`asyncio.Lock` so only one of them polls Redis at a time and none overtakes an
earlier one; ``try_acquire`` refuses while a local caller waits, like the in-process
limiter. Across processes the order is whoever asks first after a refill (a true
cross-process queue would need a reservation per waiter and a refund on cancellation;
not worth a second round trip for every call).

Timeouts: a wait the server reports as longer than the time left fails at once with
``details["retry_after_s"]``; time spent queued behind local callers counts against the
same ``timeout`` (timed by the event loop).

**Redis calls take the adapters' one call path** (:class:`~infra.calls.BackendCalls`,
component ``"redis_rate_limit"``, family ``"cache"``): telemetry (span, latency, outcome
counters), an optional resilience policy of the limiter's own, and error translation.
So a Redis outage reaches callers as a typed, retryable
:class:`~infra.exceptions.CacheConnectionError` (a timeout as ``CacheTimeoutError``...),
never as a raw ``redis.exceptions`` error. The limiter fails closed: no token is assumed
when Redis cannot be asked. The bucket script may be retried by that policy: a retry
after a lost reply can only charge the bucket twice (fewer grants, never more). Used as
the rate-limit layer of another component's ``ResiliencePolicy``, the limiter's errors
never count against that component's breaker -- the attempt never reached its backend
(see :mod:`infra.resilience.policy`).

This module imports ``redis``; :mod:`infra.resilience.rate_limit` does not.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Final

from redis.asyncio import Redis

from infra.resilience.clock import Clock, MonotonicClock
from infra.resilience.policy import ResiliencePolicy
from infra.resilience.rate_limit import check_bucket, check_request, exceeded_error

if TYPE_CHECKING:
    from infra.calls import BackendOperation
    from infra.observability.metrics import MetricsCollector
    from infra.observability.tracing import TracingState

__all__ = ["DEFAULT_KEY_PREFIX", "RedisTokenBucketLimiter"]

DEFAULT_KEY_PREFIX: Final = "semantica:ratelimit:"

# KEYS[1]: the bucket (hash with fields tokens, ts). ARGV: rate, capacity, requested, ttl_ms.
# Returns {granted (0/1), wait_seconds (string), tokens_left (string)}; floats travel as
# strings because Redis truncates Lua numbers in replies to integers.
_BUCKET_SCRIPT: Final = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local requested = tonumber(ARGV[3])
local ttl_ms = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
elseif now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate)
  ts = now
end
local granted = 0
local wait = 0
if tokens + 1e-9 >= requested then
  tokens = math.max(0, tokens - requested)
  granted = 1
else
  wait = (requested - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', ts)
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return {granted, string.format('%.17g', wait), string.format('%.17g', tokens)}
"""


class RedisTokenBucketLimiter:
    """Distributed token bucket: same interface as :class:`TokenBucketLimiter`.

    Args:
        redis: An asyncio Redis client, best built without redis-py's own retries
            (``infra.cache.build_redis_client``) so that ``policy`` alone decides.
        key: The bucket's name; every limiter using it shares the bucket.
        rate: Tokens added per second (> 0).
        capacity: Largest burst (> 0). A new or expired bucket starts full.
        clock: Sleeps between attempts; defaults to real monotonic time.
        name: Reported as ``component`` on rate-limit errors; defaults to ``key``.
        prefix: Namespace prepended to ``key``.
        policy: Resilience policy for the limiter's own Redis calls (``None`` =
            passthrough); not the policy the limiter is a layer of.
        component: ``component`` of the Redis calls (metrics label, errors).
        record: ``False`` turns the calls' telemetry off.
        collector: The collector the calls are recorded into (``None``: the current one
            at call time); the application container passes its own.
        tracing: The tracing state their spans start from (``None``: the current one).
    """

    __slots__ = (
        "_capacity",
        "_clock",
        "_lock",
        "_rate",
        "_redis",
        "_reset_op",
        "_run_op",
        "_script",
        "_ttl_ms",
        "key",
        "name",
    )

    def __init__(
        self,
        redis: Redis,
        key: str,
        rate: float,
        capacity: float,
        *,
        clock: Clock | None = None,
        name: str | None = None,
        prefix: str = DEFAULT_KEY_PREFIX,
        policy: ResiliencePolicy | None = None,
        component: str = "redis_rate_limit",
        record: bool = True,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        # Imported here: infra.calls imports infra.resilience, whose package imports us.
        from infra.calls import BackendCalls  # noqa: PLC0415

        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        self._rate, self._capacity = check_bucket(rate, capacity)
        self._redis = redis
        self.key = f"{prefix}{key}"
        self.name = name if name is not None else key
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._ttl_ms = math.ceil(self._capacity / self._rate * 1000) + 1000
        self._script = redis.register_script(_BUCKET_SCRIPT)
        self._lock = asyncio.Lock()
        pool = getattr(redis, "connection_pool", None)
        connection: dict[str, Any] = getattr(pool, "connection_kwargs", None) or {}
        port = connection.get("port")
        calls = BackendCalls(
            component,
            family="cache",
            system="redis",
            policy=policy,
            server_address=connection.get("host"),
            server_port=int(port) if port is not None else None,
            record=record,
            collector=collector,
            tracing=tracing,
        )
        self._run_op: BackendOperation = calls.operation("acquire")
        self._reset_op: BackendOperation = calls.operation("reset")

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._rate

    @property
    def capacity(self) -> float:
        """Largest burst."""
        return self._capacity

    async def acquire(self, tokens: float = 1, timeout: float | None = None) -> None:
        """Wait until ``tokens`` are granted by the shared bucket.

        Raises:
            RateLimitExceededError: not granted within ``timeout`` seconds.
            ValueError: ``tokens`` is not positive or exceeds ``capacity``.
        """
        amount = check_request(tokens, timeout, self._capacity)
        if timeout is None:
            async with self._lock:
                await self._acquire_in_turn(amount, None, None)
            return
        deadline = self._clock.now() + timeout
        if self._lock.locked():
            try:
                async with asyncio.timeout(timeout):
                    await self._lock.acquire()
            except TimeoutError as exc:
                raise exceeded_error(
                    self.name, tokens=amount, timeout=timeout, retry_after=None, reason="queued"
                ) from exc
        else:
            await self._lock.acquire()
        try:
            await self._acquire_in_turn(amount, deadline, timeout)
        finally:
            self._lock.release()

    async def try_acquire(self, tokens: float = 1) -> bool:
        """Take ``tokens`` if the shared bucket has them and no local caller waits."""
        amount = check_request(tokens, None, self._capacity)
        if self._lock.locked():
            return False
        granted, _wait = await self._run(amount)
        return granted

    async def reset(self) -> None:
        """Delete the shared bucket (it reads as full afterwards)."""
        await self._reset_op.run(self._redis.delete, self.key)

    async def _acquire_in_turn(
        self, amount: float, deadline: float | None, timeout: float | None
    ) -> None:
        while True:
            granted, wait = await self._run(amount)
            if granted:
                return
            if deadline is not None and self._clock.now() + wait > deadline:
                raise exceeded_error(self.name, tokens=amount, timeout=timeout, retry_after=wait)
            await self._clock.sleep(wait)

    async def _run(self, amount: float) -> tuple[bool, float]:
        reply = await self._run_op.run(
            self._script, [self.key], [self._rate, self._capacity, amount, self._ttl_ms]
        )
        granted, wait = reply[0], reply[1]
        return int(granted) == 1, float(wait)

    def __repr__(self) -> str:
        return (
            f"RedisTokenBucketLimiter(name={self.name!r}, key={self.key!r}, "
            f"rate={self._rate!r}, capacity={self._capacity!r})"
        )

"""``RedisCache``: the :class:`~infra.ports.CacheStore` port on ``redis.asyncio``.

::

    cache = RedisCache(client, policy=policy, namespace="app")   # client injected
    await cache.set("user:42", {"name": "Ada"}, ttl=30)           # SET app:user:42 ... PX
    await cache.get("user:42")                                    # {"name": "Ada"}

    async with RedisCache.from_settings(Settings()) as cache:     # builds its own client
        ...

Design decisions:

* **One path per call.** Every public method that talks to Redis runs its command
  through :class:`~infra.calls.BackendCalls` (component ``"redis"``, family ``"cache"``):
  telemetry, then the injected :class:`~infra.resilience.ResiliencePolicy`, then error
  translation -- a refused connection is a retryable ``CacheConnectionError``. The client
  is built with redis-py's own retries off (see :mod:`infra.cache._client`), so the
  policy's attempt count is the real one.
* **Which calls retry.** GET, MGET, EXISTS, PTTL, SET/MSET of a fixed value and DEL are
  idempotent: repeating them leaves the same state, so they retry (a DEL retried after a
  lost reply may report fewer deletions than happened). PING in :meth:`health_check`
  never retries: a health check reports, it does not insist. ``INCR`` is deliberately
  absent: a counter is stored as a bare integer, not in a serializer's tagged format.
* **Values** go through the injected :class:`~infra.cache.serialization.Serializer`
  (JSON by default) *before* any I/O, so an unencodable value raises
  ``CacheSerializationError`` and nothing is sent.
* **None.** Storing ``None`` is allowed (JSON ``null``), but ``get`` also returns
  ``None`` for a miss, as the port says; :meth:`exists` tells them apart. Negative caching
  should store an explicit marker instead.
* **TTL** is seconds (``float`` allowed), sent as ``PX`` milliseconds rounded to the
  nearest millisecond, at least 1 ms. ``mset`` with a TTL is one pipelined round trip of
  ``SET .. PX`` (not atomic); without a TTL it is one ``MSET`` (atomic on one server).
* **Cluster.** With a ``RedisCluster`` client, ``mget``/``mset`` use redis-py's
  ``*_nonatomic`` variants, which split keys by slot.
* **Keys** are non-empty ``str`` of at most :data:`~infra.validation.MAX_KEY_LENGTH`
  (1024) characters that encode as UTF-8; ``namespace="app"`` prefixes them as
  ``app:<key>``. Any other key raises ``InvalidKeyError`` (a caller error, also a
  ``TypeError``/``ValueError``) before anything is sent, so it is never retried and never
  counts toward the breaker -- a lone surrogate from a JSON body used to reach redis-py
  and come back as a generic, counted ``CacheError``. Arguments redis-py itself refuses
  are translated to the same type (:mod:`infra.translation._redis`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from config import Settings
from infra.cache._client import (
    RedisClient,
    build_redis_client,
    close_redis_client,
    redis_pool_stats,
)
from infra.cache.serialization import JsonSerializer, Serializer
from infra.cache.ttl_policy import ttl_to_ms
from infra.calls import BackendCalls
from infra.health_check import HealthCheckResult, HealthProbe, probe_calls
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.redaction import register_secret
from infra.resilience import ResiliencePolicy
from infra.validation import (
    MAX_KEY_LENGTH,
    check_key,
    check_key_list,
    check_mapping,
)

__all__ = ["RedisCache"]

_COMPONENT = "redis"


class RedisCache:
    """A :class:`~infra.ports.CacheStore` on a ``redis.asyncio`` client.

    Args:
        client: A ``redis.asyncio.Redis`` (standalone or Sentinel) or ``RedisCluster``,
            built with ``decode_responses=False``; normally injected by the container.
        policy: The resilience policy; ``None`` = passthrough.
        serializer: Encodes values; default :class:`~infra.cache.serialization.JsonSerializer`.
        namespace: Optional key prefix; keys become ``"<namespace>:<key>"``.
        record: ``False`` turns telemetry off (benchmarks of the bare path).
        owns_client: :meth:`aclose` closes ``client`` (set by :meth:`from_settings`).
        collector: Where calls are recorded (the application container injects its
            own); default: ``get_metrics_collector()`` at call time.
    """

    __slots__ = (
        "_calls",
        "_client",
        "_delete",
        "_exists",
        "_get",
        "_health",
        "_health_calls",
        "_loads",
        "_mget",
        "_mset",
        "_owns_client",
        "_ping",
        "_prefix",
        "_pttl",
        "_run_get",
        "_serializer",
        "_set",
        "namespace",
    )

    def __init__(
        self,
        client: RedisClient,
        *,
        policy: ResiliencePolicy | None = None,
        serializer: Serializer | None = None,
        namespace: str = "",
        record: bool = True,
        owns_client: bool = False,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        _check_client(client)
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str, got {type(namespace).__name__}")
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError("serializer must have dumps(value) -> bytes and loads(bytes)")
        self._client = client
        self._serializer: Serializer = serializer if serializer is not None else JsonSerializer()
        self._loads = self._serializer.loads
        self.namespace = namespace
        self._prefix = "" if not namespace else namespace.rstrip(":") + ":"
        self._owns_client = owns_client
        address, port = _server_of(client)
        self._calls = BackendCalls(
            _COMPONENT,
            family="cache",
            system="redis",
            policy=policy,
            server_address=address,
            server_port=port,
            record=record,
            collector=collector,
            tracing=tracing,
        )
        # Health pings bypass the policy (see infra.health_check) but are recorded.
        self._health_calls = probe_calls(self._calls)
        self._health = HealthProbe(
            send=self._send_ping,
            name="PING",
            backend="Redis",
            component=_COMPONENT,
            pool=self._pool_details,
            threshold_in_details=True,
        )
        # The GET handle's bound run: the 3-tier cache's L2 hit path resolves nothing per
        # call (see infra.calls on operation handles).
        self._run_get = self._calls.operation("get").run
        # redis-py types commands as "value or awaitable"; the asyncio client always
        # returns awaitables. Bound once here: the casts are free and so is every call.
        c: Any = client
        cluster = isinstance(client, RedisCluster)
        self._get = cast("Callable[[str], Awaitable[bytes | None]]", c.get)
        self._set = cast("Callable[[str, bytes, None, int | None], Awaitable[Any]]", c.set)
        self._delete = cast("Callable[..., Awaitable[int]]", c.delete)
        self._exists = cast("Callable[[str], Awaitable[int]]", c.exists)
        self._pttl = cast("Callable[[str], Awaitable[int]]", c.pttl)
        self._ping = cast("Callable[[], Awaitable[Any]]", c.ping)
        self._mget = cast(
            "Callable[[list[str]], Awaitable[list[bytes | None]]]",
            c.mget_nonatomic if cluster else c.mget,
        )
        self._mset = cast(
            "Callable[[dict[str, bytes]], Awaitable[Any]]",
            c.mset_nonatomic if cluster else c.mset,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        policy: ResiliencePolicy | None = None,
        *,
        serializer: Serializer | None = None,
        namespace: str = "",
        protocol: int | None = None,
    ) -> Self:
        """A cache owning a new client built from ``settings.redis`` (closed by
        :meth:`aclose`); ``policy`` defaults to ``ResiliencePolicy.from_settings``."""
        if policy is None:
            policy = ResiliencePolicy.from_settings(settings, component=_COMPONENT)
        client = build_redis_client(settings, protocol=protocol)
        return cls(
            client, policy=policy, serializer=serializer, namespace=namespace, owns_client=True
        )

    # ---------------------------------------------------------------------- properties
    @property
    def client(self) -> RedisClient:
        """The underlying client (for commands this adapter does not cover)."""
        return self._client

    @property
    def policy(self) -> ResiliencePolicy:
        """The resilience policy calls run under."""
        return self._calls.policy

    @property
    def serializer(self) -> Serializer:
        """The value serializer."""
        return self._serializer

    def key(self, key: str) -> str:
        """The Redis key ``key`` is stored under (namespace applied); ``key("")`` is the
        namespace prefix itself (what every key of this cache starts with).

        Raises:
            InvalidKeyError: ``key`` is not a ``str`` of at most 1024 characters that
                encodes as UTF-8. (Reads and writes refuse ``""`` too.)
        """
        if key.__class__ is str and not key:
            return self._prefix
        return self._name(key)

    def _name(self, key: str) -> str:
        """The Redis key of a usable ``key``; else ``InvalidKeyError``, before any I/O."""
        # The common case (a short ASCII str) in four cheap tests; check_key does the rest.
        if key.__class__ is not str or not key or len(key) > MAX_KEY_LENGTH or not key.isascii():
            check_key(key, component=_COMPONENT)
        return self._prefix + key

    # -------------------------------------------------------------------- the port
    async def get(self, key: str) -> Any | None:
        """The value, or ``None`` when absent or expired."""
        # The hot path (a 3-tier cache's L2 hit): _name() inlined, attributes read once.
        if key.__class__ is not str or not key or len(key) > MAX_KEY_LENGTH or not key.isascii():
            check_key(key, component=_COMPONENT)
        data = await self._run_get(self._get, self._prefix + key)
        return None if data is None else self._loads(data)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` in seconds (``None`` = no expiry)."""
        name = self._name(key)
        px = ttl_to_ms(ttl)
        payload = self._serializer.dumps(value)
        await self._calls.run("set", self._set, name, payload, None, px)

    async def delete(self, *keys: str) -> int:
        """Remove keys; returns how many existed (no round trip for no keys)."""
        names = [self._name(k) for k in keys]
        if not names:
            return 0
        return int(await self._calls.run("delete", self._delete, *names))

    async def mget(self, keys: Sequence[str]) -> list[Any | None]:
        """Values in the order of ``keys`` (``None`` for misses)."""
        names = [self._name(k) for k in check_key_list(keys, component=_COMPONENT)]
        if not names:
            return []
        raw = await self._calls.run("mget", self._mget, names)
        loads = self._serializer.loads
        return [None if data is None else loads(data) for data in raw]

    async def mset(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        """Store several values with one TTL (every value is encoded before any I/O)."""
        check_mapping(items, component=_COMPONENT)
        px = ttl_to_ms(ttl)
        dumps = self._serializer.dumps
        pairs = {self._name(k): dumps(v) for k, v in items.items()}
        if not pairs:
            return
        if px is None:
            await self._calls.run("mset", self._mset, pairs)
        else:
            await self._calls.run("mset", self._set_many_px, pairs, px)

    async def _set_many_px(self, pairs: dict[str, bytes], px: int) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for name, payload in pairs.items():
                pipe.set(name, payload, px=px)
            await pipe.execute()

    # ---------------------------------------------------------------------- extras
    async def exists(self, key: str) -> bool:
        """Whether ``key`` is stored (tells a stored ``None`` from a miss)."""
        return int(await self._calls.run("exists", self._exists, self._name(key))) > 0

    async def ttl(self, key: str) -> float | None:
        """Seconds ``key`` has left; ``math.inf`` if it never expires, ``None`` if absent."""
        ms = int(await self._calls.run("ttl", self._pttl, self._name(key)))
        if ms == -2:
            return None
        return math.inf if ms == -1 else ms / 1000.0

    async def health_check(
        self, latency_threshold_ms: float = 100.0, *, timeout: float = 2.0
    ) -> HealthCheckResult:
        """PING, timed, outside the policy (never retried, never seen by the breaker).
        ``(True, {"status": "healthy"|"degraded", ...})`` when it answers (degraded above
        ``latency_threshold_ms``), ``(False, {"status": "unhealthy", "error": ...,
        "message": ...})`` otherwise. Never raises; waits at most ``timeout`` seconds.
        See :mod:`infra.health_check` for the rules shared by every adapter."""
        breaker = self._calls.policy.breaker
        return await self._health.check(latency_threshold_ms, timeout=timeout, breaker=breaker)

    def _send_ping(self) -> Awaitable[Any]:
        return self._health_calls.run("ping", self._ping, idempotent=False)

    def _pool_details(self) -> dict[str, int | None]:
        sampler = redis_pool_stats(self._client)
        if sampler is None:  # a cluster: one pool per node
            return {}
        stats = sampler()
        return {"pool_size": stats.size, "pool_free": stats.idle, "pool_max": stats.max}

    # ------------------------------------------------------------------- lifecycle
    async def aclose(self) -> None:
        """Close the client if this cache created it (:meth:`from_settings`); an injected
        client belongs to whoever injected it (the container closes its own)."""
        if self._owns_client:
            self._owns_client = False
            await close_redis_client(self._client)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"RedisCache(namespace={self.namespace!r}, serializer={self._serializer.name!r}, "
            f"policy={self._calls.policy.describe()!r})"
        )


def _check_client(client: object) -> None:
    if not isinstance(client, Redis | RedisCluster):
        raise TypeError(
            "client must be a redis.asyncio.Redis or RedisCluster "
            f"(see infra.cache.build_redis_client), got {type(client).__name__}"
        )
    kwargs = getattr(client, "connection_kwargs", None)
    if kwargs is None:
        kwargs = client.connection_pool.connection_kwargs  # type: ignore[union-attr]
    # An injected client's password is masked by value while the client lives.
    register_secret(kwargs.get("password"), owner=client)
    if kwargs.get("decode_responses"):
        raise ValueError(
            "RedisCache needs a client built with decode_responses=False: values are bytes"
        )


def _server_of(client: RedisClient) -> tuple[str | None, int | None]:
    """``server.address``/``server.port`` for spans; ``None`` when not fixed (Sentinel)."""
    if isinstance(client, RedisCluster):
        nodes = client.startup_nodes
        return (nodes[0].host, int(nodes[0].port)) if nodes else (None, None)
    kwargs = client.connection_pool.connection_kwargs
    host, port = kwargs.get("host") or kwargs.get("path"), kwargs.get("port")
    return (str(host) if host else None), (int(port) if port is not None else None)

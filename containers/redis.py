"""The Redis container: client as a lazy resource, its own policy, the cache adapter.

::

    redis = RedisContainer(settings=core.settings)
    cache = await redis.cache()            # first use builds the client (no I/O yet)
    await cache.set("k", {"v": 1}, ttl=30)
    await redis.shutdown_resources()       # closes the client and its pool

Follows :mod:`containers.core`'s pattern: nothing connects at construction (redis-py
connects on the first command, so even starting the container opens no socket), and
redis-py is imported when the client resource first starts; the client is a
``providers.Resource`` closed on shutdown; the policy, serializer and namespace are
providers of their own, so a deployment or a test overrides them alone, before the cache
is first built::

    redis.policy.override(providers.Object(ResiliencePolicy.instant("redis")))
    redis.serializer.override(providers.Object(SignedPickleSerializer(key)))

While the client resource is alive its connection pool is sampled into the pool gauges
(``redis_pool_size``, ``redis_pool_active``, ...; standalone and Sentinel clients).
Telemetry is injected: every adapter here records into ``collector`` (``None`` by
default: ``get_metrics_collector()``); the application container passes its
observability container's ``metrics``.
``lock`` is the :class:`~infra.cache.RedisDistributedLock` on the same client, with a
policy of its own (``lock_policy``): lock calls must not trip the cache's breaker, nor the
other way round. ``three_tier`` is the coherent :class:`~infra.cache.ThreeTierCache`
(L1 memory -> L2 this cache -> your loader), a resource because its cross-process
invalidation subscription is stopped on shutdown.

``cache`` and ``lock`` are singletons: one adapter per started container, handed out as
the same object to every ``@inject`` (an adapter rebuilt per injection cost more than the
call it served). They are built on the client resource, so ``lifecycle.stop()`` resets
them with it and the next ``start()`` builds them on the new client.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from config import Settings
from containers.core import resilience_policy
from infra.exceptions import ConfigurationError

if TYPE_CHECKING:
    from infra.cache import (
        RedisCache,
        RedisClient,
        RedisDistributedLock,
        Serializer,
        ThreeTierCache,
    )
    from infra.observability import MetricsCollector
    from infra.observability.tracing import TracingState
    from infra.resilience import ResiliencePolicy

__all__ = ["RedisContainer", "redis_client", "three_tier_cache"]

_log = logging.getLogger("containers.redis")


async def redis_client(
    settings: Settings, collector: MetricsCollector | None = None
) -> AsyncIterator[RedisClient]:
    """The ``redis.asyncio`` client ``settings.redis`` describes, closed on shutdown."""
    # Loaded on first start, with redis-py itself.
    from infra.cache import (  # noqa: PLC0415
        build_redis_client,
        close_redis_client,
        redis_pool_stats,
    )
    from infra.observability.pools import register_pool  # noqa: PLC0415

    client = build_redis_client(settings)
    sampler = redis_pool_stats(client)
    unregister = (
        None if sampler is None else register_pool("redis", "default", sampler, collector=collector)
    )
    try:
        yield client
    finally:
        if unregister is not None:
            unregister()
        try:
            await close_redis_client(client)
        # Shutdown logs a failing cleanup and carries on with the other resources.
        except Exception:  # noqa: BLE001
            _log.warning("closing the Redis client failed", exc_info=True)


async def three_tier_cache(
    settings: Settings,
    l2: RedisCache,
    client: RedisClient,
    collector: MetricsCollector | None = None,
    tracing: TracingState | None = None,
) -> AsyncIterator[ThreeTierCache]:
    """The coherent L1 -> L2 cache ``settings.cache`` describes; its subscription
    (cross-process L1 invalidation) stopped on shutdown."""
    from redis.asyncio import Redis  # noqa: PLC0415 - loaded on first start

    from infra.cache import ThreeTierCache  # noqa: PLC0415

    if not isinstance(client, Redis):
        # Coherence uses pub/sub and leases on one connection; a cluster client is not
        # supported yet, and an L1 that cannot hear invalidations would serve stale data.
        raise ConfigurationError(
            "the 3-tier cache needs a standalone or Sentinel Redis for L1 coherence; "
            "SEMANTICA_REDIS_MODE=cluster is not supported for it yet",
            component="cache",
        )
    cache = ThreeTierCache.from_settings(
        settings, l2=l2, redis=client, metrics=collector, tracing=tracing
    )
    try:
        yield cache
    finally:
        try:
            await cache.close()
        # Shutdown logs a failing cleanup and carries on with the other resources.
        except Exception:  # noqa: BLE001
            _log.warning("closing the 3-tier cache failed", exc_info=True)


def _json_serializer() -> Serializer:
    from infra.cache.serialization import JsonSerializer  # noqa: PLC0415 - loaded on first use

    return JsonSerializer()


def _redis_cache(
    client: RedisClient,
    policy: ResiliencePolicy,
    serializer: Serializer,
    namespace: str,
    *,
    collector: MetricsCollector | None,
    tracing: TracingState | None = None,
) -> RedisCache:
    from infra.cache import RedisCache  # noqa: PLC0415 - loaded on first start

    return RedisCache(
        client,
        policy=policy,
        serializer=serializer,
        namespace=namespace,
        collector=collector,
        tracing=tracing,
    )


def _redis_lock(
    client: RedisClient,
    policy: ResiliencePolicy,
    collector: MetricsCollector | None,
    tracing: TracingState | None = None,
) -> RedisDistributedLock:
    from infra.cache import RedisDistributedLock  # noqa: PLC0415 - loaded on first start

    return RedisDistributedLock(client, policy=policy, collector=collector, tracing=tracing)


class RedisContainer(containers.DeclarativeContainer):
    """Redis for the application; see the module docstring."""

    settings: providers.Dependency[Settings] = providers.Dependency(instance_of=Settings)
    resilience_hooks = providers.List()
    policy: providers.Singleton[ResiliencePolicy] = providers.Singleton(
        resilience_policy,
        settings,
        component="redis",
        hooks=resilience_hooks,
        pool_size=settings.provided.redis.max_connections,
    )
    #: The lock's own policy: its breaker must not share state with cache reads. Its
    #: bulkhead keeps the general default (the smaller pool): lock calls are few, and the
    #: pool makes any excess wait for a connection rather than fail.
    lock_policy: providers.Singleton[ResiliencePolicy] = providers.Singleton(
        resilience_policy, settings, component="redis_lock", hooks=resilience_hooks
    )
    serializer: providers.Singleton[Serializer] = providers.Singleton(_json_serializer)
    namespace: providers.Object[str] = providers.Object("")
    #: The metrics collector every adapter here records into (``None``: the current one).
    collector: providers.Provider[MetricsCollector | None] = providers.Object(None)
    #: The tracing state the adapters' spans start from (``None``: the current one).
    tracing: providers.Provider[TracingState | None] = providers.Object(None)
    client: providers.Resource[RedisClient] = providers.Resource(redis_client, settings, collector)
    cache: providers.Singleton[RedisCache] = providers.Singleton(
        _redis_cache,
        client=client,
        policy=policy,
        serializer=serializer,
        namespace=namespace,
        collector=collector,
        tracing=tracing,
    )
    lock: providers.Singleton[RedisDistributedLock] = providers.Singleton(
        _redis_lock, client, policy=lock_policy, collector=collector, tracing=tracing
    )
    three_tier: providers.Resource[ThreeTierCache] = providers.Resource(
        three_tier_cache, settings, cache, client, collector, tracing
    )

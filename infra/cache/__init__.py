"""Caching: the Redis adapter, its serializers and client construction.

::

    from infra.cache import RedisCache

    async with RedisCache.from_settings(Settings(), namespace="app") as cache:
        await cache.set("user:42", {"name": "Ada"}, ttl=30)
        assert await cache.get("user:42") == {"name": "Ada"}

Public names (``__all__``):

* :class:`RedisCache` -- the :class:`~infra.ports.CacheStore` port on ``redis.asyncio``
  (see :mod:`infra.cache.redis`); its fake is ``infra.testing.fakes.cache.FakeCache``.
* Serializers (:mod:`infra.cache.serialization`): :class:`Serializer` (the protocol),
  :class:`JsonSerializer` (default), :class:`MsgpackSerializer` (needs the optional
  ``msgpack`` package), :class:`SignedPickleSerializer` (opt-in, HMAC-verified before
  unpickling), and ``RAW_BYTES_TAG``.
* :func:`build_redis_client` / :func:`close_redis_client` / :func:`redis_pool_stats` and
  the :data:`RedisClient` type -- standalone, cluster or Sentinel client from
  ``settings.redis``, with redis-py's own retries off.
* :func:`ttl_to_ms` -- TTL validation shared by the adapter and its fake
  (:mod:`infra.cache.ttl_policy`, which also holds the 3-tier cache's TTL rules).
* :class:`RedisDistributedLock` -- the lease lock on Redis. The lock is three modules by
  concept: :mod:`infra.cache.lease_lock` (the lock over four backend primitives, shared
  with the fake; its metrics), :mod:`infra.cache.lease_hold` (``lock.hold()``: the
  critical section and the watchdog renewing its lease), :mod:`infra.cache.distributed_lock`
  (the Redis primitives: Lua scripts and keys).
* :class:`ThreeTierCache` (:mod:`infra.cache.three_tier_cache`): L1 in process, L2 in
  Redis, the loader as L3, kept coherent by invalidation messages.

Exports are resolved lazily (module ``__getattr__``): importing a driver-free module of
this package -- ``infra.cache.serialization``, which the in-memory fake uses -- must not
import ``redis``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import infra._needs_config  # noqa: F401 - first: names a shadowing config module

if TYPE_CHECKING:
    from infra.cache._client import (
        RedisClient,
        build_redis_client,
        close_redis_client,
        redis_pool_stats,
    )
    from infra.cache.distributed_lock import RedisDistributedLock
    from infra.cache.redis import RedisCache
    from infra.cache.serialization import (
        RAW_BYTES_TAG,
        JsonSerializer,
        MsgpackSerializer,
        Serializer,
        SignedPickleSerializer,
    )
    from infra.cache.three_tier_cache import ThreeTierCache
    from infra.cache.ttl_policy import ttl_to_ms

__all__ = [
    "RAW_BYTES_TAG",
    "JsonSerializer",
    "MsgpackSerializer",
    "RedisCache",
    "RedisClient",
    "RedisDistributedLock",
    "Serializer",
    "SignedPickleSerializer",
    "ThreeTierCache",
    "build_redis_client",
    "close_redis_client",
    "redis_pool_stats",
    "ttl_to_ms",
]

_MODULE_OF: dict[str, str] = {
    "RAW_BYTES_TAG": "infra.cache.serialization",
    "JsonSerializer": "infra.cache.serialization",
    "MsgpackSerializer": "infra.cache.serialization",
    "Serializer": "infra.cache.serialization",
    "SignedPickleSerializer": "infra.cache.serialization",
    "ttl_to_ms": "infra.cache.ttl_policy",
    "RedisCache": "infra.cache.redis",
    "RedisClient": "infra.cache._client",
    "build_redis_client": "infra.cache._client",
    "close_redis_client": "infra.cache._client",
    "redis_pool_stats": "infra.cache._client",
    "RedisDistributedLock": "infra.cache.distributed_lock",
    "ThreeTierCache": "infra.cache.three_tier_cache",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'infra.cache' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once; later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

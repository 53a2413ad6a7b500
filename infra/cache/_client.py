"""Build, close and sample the ``redis.asyncio`` client from settings.

One function per concern, shared by :meth:`RedisCache.from_settings
<infra.cache.redis.RedisCache.from_settings>` and the container
(:mod:`containers.redis`):

* :func:`build_redis_client` maps ``settings.redis`` onto one of three clients, connecting
  to nothing (the first command connects):

  - ``standalone`` (default): ``redis.asyncio.Redis`` on a blocking connection pool from
    the URL (``redis://``, ``rediss://`` for TLS, ``unix://``); see *Pool waits* below;
  - ``cluster``: ``redis.asyncio.cluster.RedisCluster`` with the URL's host and port as
    the startup node (``db`` must be 0; TLS from ``rediss://``);
  - ``sentinel``: ``redis.asyncio.sentinel.Sentinel([(host, port)])`` with the URL's host
    and port as the Sentinel, then ``master_for(settings.redis.sentinel_master)``. The
    password and db apply to the primary; Sentinel connections get the socket timeouts,
    TLS and the no-retry policy, not the password (build the client yourself for
    authenticated Sentinels).

* **Our policy, not redis-py's retries.** Every connection gets ``retry=Retry(NoBackoff(),
  0)`` (:func:`infra.resilience.redis_no_retry`) and no ``retry_on_error``; the cluster
  client's own retry object is the same zero-retry one. ``retry_on_timeout`` is left at
  its default ``False`` (passing it is deprecated since redis-py 6). So the number of
  connection attempts a call makes is exactly the policy's ``retry_max_attempts``.
* ``max_connections`` and ``socket_timeout`` come from settings; the connect timeout
  equals the socket timeout.
* **Pool waits (standalone).** A command that finds every pooled connection busy waits up
  to ``SEMANTICA_REDIS_POOL_ACQUIRE_TIMEOUT`` for one to be released (redis-py's
  ``BlockingConnectionPool``), then fails with ``MaxConnectionsError``, which the
  translation seam turns into ``PoolExhaustedError`` -- not retried, and not counted by
  the breaker. redis-py's plain ``ConnectionPool`` instead fails at once, and the policy
  retried that after a backoff of about a second: under a burst above the pool size,
  calls took a second instead of milliseconds. redis-py reports its own wait timeout as a
  generic ``ConnectionError`` (indistinguishable from a refused connection, which *is* an
  outage); :class:`_WaitingConnectionPool` re-raises it as ``MaxConnectionsError``, and
  arms the wait's timer only when no connection is free (a timer per command was the
  dearest part of redis-py's blocking pool under concurrency). Cluster and Sentinel
  clients keep redis-py's own pools: there the pool fails at once, with the same
  ``PoolExhaustedError``. Settings keep the bulkhead within the pool size, so a policy's
  own calls never wait here; other users of the same client (the lock, the 3-tier
  cache's coherence subscription) can.
* **The password setting wins over a password inside the URL.** redis-py's ``from_url``
  lets URL options override keyword arguments; we parse the URL ourselves
  (``parse_url``) and apply ``SEMANTICA_REDIS_PASSWORD`` last. The password is never put
  in a message; redis-py's own reprs print ``<REDACTED>``.
* ``client_name`` (default: the service name, spaces replaced) names our connections in
  ``CLIENT LIST``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, TypeAlias

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError

from config import Settings
from config.groups import RedisMode, RedisSettings
from infra.exceptions import ConfigurationError
from infra.observability.pools import PoolStats
from infra.redaction import register_secret
from infra.resilience.client_retries import redis_no_retry

__all__ = ["RedisClient", "build_redis_client", "close_redis_client", "redis_pool_stats"]

RedisClient: TypeAlias = Redis | RedisCluster
"""What :class:`~infra.cache.redis.RedisCache` accepts (Sentinel gives a ``Redis``)."""

_log = logging.getLogger("infra.cache.redis")


def build_redis_client(
    settings: Settings | RedisSettings,
    *,
    protocol: int | None = None,
    client_name: str | None = None,
) -> RedisClient:
    """The client ``settings.redis`` describes; see the module docstring. Connects nothing.

    Args:
        settings: ``Settings`` or its ``settings.redis`` view.
        protocol: ``2`` (RESP2) or ``3`` (RESP3); ``None`` keeps redis-py's default.
        client_name: Connection name; default the service name (``Settings`` only).

    Raises:
        ConfigurationError: Settings that contradict each other (named in the message).
    """
    view = settings.redis if isinstance(settings, Settings) else settings
    if client_name is None and isinstance(settings, Settings):
        client_name = settings.service_name
    if protocol not in (None, 2, 3):
        raise ValueError(f"protocol must be 2, 3 or None, got {protocol!r}")
    options = _url_options(view)
    common: dict[str, Any] = {
        "socket_timeout": view.socket_timeout,
        "socket_connect_timeout": view.socket_timeout,
        "retry": redis_no_retry(),
    }
    if protocol is not None:
        common["protocol"] = protocol
    if client_name:
        common["client_name"] = re.sub(r"\s+", "-", client_name.strip())
    if view.password is not None:
        options["password"] = view.password.get_secret_value()
    client: RedisClient
    if view.mode is RedisMode.CLUSTER:
        client = _cluster(view, options, common)
    elif view.mode is RedisMode.SENTINEL:
        client = _sentinel(view, options, common)
    else:
        pool = _WaitingConnectionPool(
            **{**common, **options},
            max_connections=view.max_connections,
            timeout=view.pool_acquire_timeout,
        )
        client = Redis.from_pool(pool)
    # Masked by value in every rendered text while the client lives (infra.redaction).
    register_secret(options.get("password"), owner=client)
    return client


class _WaitingConnectionPool(BlockingConnectionPool):
    """redis-py's blocking pool, with a typed wait timeout and no timer when a connection
    is free (see *Pool waits* in the module docstring).

    Only :meth:`get_connection` is changed, using redis-py's public pool API: when
    ``can_get_connection()`` and nobody waits, the plain pool's acquire runs (it cannot
    wait, so it needs no timer); otherwise the blocking acquire waits under ``timeout``.
    Releases always go through the blocking pool, which wakes a waiter.
    """

    def __init__(self, *, max_connections: int, timeout: float, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, timeout=timeout, **kwargs)
        self._waiting = 0  # callers in the blocking acquire (they go first)

    # redis-py calls get_connection() without arguments (its arguments are deprecated).
    async def get_connection(self) -> AbstractConnection:  # type: ignore[override]
        """A connection; waits at most ``timeout`` s for one, then ``MaxConnectionsError``."""
        if not self._waiting and self.can_get_connection():
            try:
                # The plain pool's acquire (no timer): a connection is free right now.
                connection: AbstractConnection = await ConnectionPool.get_connection(self)  # type: ignore[no-untyped-call]
            except MaxConnectionsError:
                pass  # another task took the last one meanwhile: wait like everyone else
            else:
                return connection
        self._waiting += 1
        try:
            connection = await super().get_connection()  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            # redis-py raises ConnectionError("No connection available.") from the
            # expired wait's TimeoutError; a failed connect has no such cause.
            if isinstance(exc.__cause__, TimeoutError):
                raise MaxConnectionsError(
                    f"no pooled connection became free within {self.timeout:g} s "
                    f"(max_connections={self.max_connections})"
                ) from exc
            raise
        finally:
            self._waiting -= 1
        return connection


def _url_options(view: RedisSettings) -> dict[str, Any]:
    try:
        options: dict[str, Any] = dict(parse_url(view.url))
    except ValueError as exc:  # redis-py's messages name the option, never the password
        raise _config(f"SEMANTICA_REDIS_URL is not usable: {exc}") from None
    connection_class = options.get("connection_class")
    if view.ssl and connection_class is not SSLConnection:
        raise _config(
            "SEMANTICA_REDIS_SSL=true but SEMANTICA_REDIS_URL is not a rediss:// URL; "
            "write rediss:// in the URL (or unset SEMANTICA_REDIS_SSL)"
        )
    if view.mode is not RedisMode.STANDALONE and connection_class is UnixDomainSocketConnection:
        raise _config(f"SEMANTICA_REDIS_MODE={view.mode.value} needs a redis:// or rediss:// URL")
    return options


def _cluster(view: RedisSettings, options: dict[str, Any], common: dict[str, Any]) -> RedisCluster:
    if options.get("db", 0) != 0:
        raise _config("Redis Cluster has only database 0: use /0 in SEMANTICA_REDIS_URL")
    return RedisCluster(
        host=options.get("host", "localhost"),
        port=options.get("port", 6379),
        username=options.get("username"),
        password=options.get("password"),
        ssl=options.get("connection_class") is SSLConnection,
        max_connections=view.max_connections,
        **common,
    )


def _sentinel(view: RedisSettings, options: dict[str, Any], common: dict[str, Any]) -> Redis:
    ssl = options.get("connection_class") is SSLConnection
    address = (options.get("host", "localhost"), int(options.get("port", 26379)))
    sentinel_kwargs = {k: v for k, v in common.items() if k != "client_name"}
    # redis-py leaves Sentinel's constructor unannotated.
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        [address], sentinel_kwargs={**sentinel_kwargs, "ssl": ssl}
    )
    master: Redis = sentinel.master_for(
        view.sentinel_master,
        db=options.get("db", 0),
        username=options.get("username"),
        password=options.get("password"),
        ssl=ssl,
        max_connections=view.max_connections,
        **common,
    )
    return master


def _config(message: str) -> ConfigurationError:
    return ConfigurationError(message, component="redis")


async def close_redis_client(client: RedisClient) -> None:
    """Close ``client`` and its pool(s); for a Sentinel-managed client, the Sentinel
    connections too. A failing close is logged and the rest still closes."""
    try:
        await client.aclose()
    finally:
        manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
        if isinstance(manager, Sentinel):
            try:
                await manager.aclose()
            # Shutdown carries on: one stuck Sentinel connection must not block the rest.
            except Exception:  # noqa: BLE001
                _log.warning("closing the Redis Sentinel connections failed", exc_info=True)


def redis_pool_stats(client: RedisClient) -> Callable[[], PoolStats] | None:
    """A pool sampler for :func:`infra.observability.register_pool` (standalone and
    Sentinel clients; ``None`` for a cluster, whose pools are per node)."""
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, ConnectionPool):
        return None

    def sample() -> PoolStats:
        # redis-py offers no public counters; these two accessors are its own
        # (single-underscore) helpers, stable across redis-py 5..8.
        idle = len(list(pool._get_free_connections()))
        used = len(list(pool._get_in_use_connections()))
        return PoolStats(size=idle + used, used=used, idle=idle, max=pool.max_connections)

    return sample

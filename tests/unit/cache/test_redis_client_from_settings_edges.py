"""build_redis_client at its edges: the view instead of Settings, names, URLs, clusters.

Built clients connect to nothing, so these read the arguments the client would connect
with (its public ``connection_kwargs``/``startup_nodes``) and close it afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from config import Settings
from infra.cache import RedisClient, build_redis_client, close_redis_client, redis_pool_stats
from infra.exceptions import ConfigurationError


@pytest.fixture
async def built() -> AsyncIterator[Callable[[RedisClient], RedisClient]]:
    clients: list[RedisClient] = []

    def keep(client: RedisClient) -> RedisClient:
        clients.append(client)
        return client

    yield keep
    for client in clients:
        await close_redis_client(client)


def kwargs_of(client: RedisClient) -> dict[str, Any]:
    assert isinstance(client, Redis)
    return client.connection_pool.connection_kwargs


async def test_the_settings_view_builds_a_client_without_a_name(
    built: Callable[[RedisClient], RedisClient],
) -> None:
    view = Settings(redis_url="redis://10.1.2.3:6390/4", service_name="svc").redis
    kwargs = kwargs_of(built(build_redis_client(view)))
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("10.1.2.3", 6390, 4)
    assert "client_name" not in kwargs  # only Settings carries a service name


async def test_an_explicit_client_name_wins_and_blanks_are_joined(
    built: Callable[[RedisClient], RedisClient],
) -> None:
    settings = Settings(service_name="the service")
    assert kwargs_of(built(build_redis_client(settings)))["client_name"] == "the-service"
    named = built(build_redis_client(settings, client_name="  worker \t pool  "))
    assert kwargs_of(named)["client_name"] == "worker-pool"
    view_named = built(build_redis_client(settings.redis, client_name="x"))
    assert kwargs_of(view_named)["client_name"] == "x"


def test_an_unparsable_url_is_a_configuration_error_naming_the_variable() -> None:
    view = Settings().redis.model_copy(update={"url": "redis://host:not-a-port/0"})
    with pytest.raises(ConfigurationError, match="SEMANTICA_REDIS_URL is not usable: ") as raised:
        build_redis_client(view)
    assert raised.value.component == "redis"
    assert raised.value.__cause__ is None  # redis-py's error is summarised, not chained


async def test_a_cluster_url_without_a_database_is_database_zero(
    built: Callable[[RedisClient], RedisClient],
) -> None:
    client = built(build_redis_client(Settings(redis_mode="cluster", redis_url="redis://n1:7001")))
    assert isinstance(client, RedisCluster)
    node = client.startup_nodes[0]
    assert (node.host, node.port) == ("n1", 7001)
    assert redis_pool_stats(client) is None  # per-node pools: no single sampler


def test_the_cluster_database_error_says_how_to_fix_it() -> None:
    with pytest.raises(ConfigurationError) as raised:
        build_redis_client(Settings(redis_mode="cluster", redis_url="redis://h:7000/1"))
    assert raised.value.message == (
        "Redis Cluster has only database 0: use /0 in SEMANTICA_REDIS_URL"
    )
    assert raised.value.component == "redis"


async def test_the_pool_sampler_counts_idle_and_used_connections(redis_url: str) -> None:
    client = build_redis_client(Settings(redis_url=redis_url, redis_max_connections=7))
    try:
        sample = redis_pool_stats(client)
        assert sample is not None
        before = sample()
        assert (before.size, before.used, before.idle, before.max) == (0, 0, 0, 7)
        await client.ping()
        after = sample()
        assert (after.size, after.used, after.idle, after.max) == (1, 0, 1, 7)
    finally:
        await close_redis_client(client)


async def test_a_cluster_url_with_nothing_in_it_means_localhost_6379_and_its_user(
    built: Callable[[RedisClient], RedisClient],
) -> None:
    bare = built(build_redis_client(Settings(redis_mode="cluster", redis_url="redis://")))
    assert isinstance(bare, RedisCluster)
    node = bare.startup_nodes[0]
    assert node.host in {"localhost", "127.0.0.1"}  # redis-py writes localhost as 127.0.0.1
    assert node.port == 6379
    user = built(
        build_redis_client(Settings(redis_mode="cluster", redis_url="redis://ops:pw@n1:7000/0"))
    )
    assert isinstance(user, RedisCluster)
    assert user.connection_kwargs["username"] == "ops"


@pytest.mark.parametrize("tls", [False, True])
async def test_a_sentinel_client_from_a_bare_url(
    built: Callable[[RedisClient], RedisClient], tls: bool
) -> None:
    url = ("rediss" if tls else "redis") + "://ops:pw@"
    client = built(
        build_redis_client(
            Settings(redis_mode="sentinel", redis_url=url, redis_sentinel_master="primary")
        )
    )
    assert isinstance(client, Redis)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.connection_kwargs["username"] == "ops"
    assert ("SSL" in pool.connection_class.__name__) is tls
    [sentinel] = pool.sentinel_manager.sentinels
    sentinel_pool = sentinel.connection_pool
    assert (sentinel_pool.connection_kwargs["host"], sentinel_pool.connection_kwargs["port"]) == (
        "localhost",
        26379,
    )
    assert ("SSL" in sentinel_pool.connection_class.__name__) is tls


async def test_closing_a_sentinel_client_closes_the_sentinels_and_logs_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = build_redis_client(Settings(redis_mode="sentinel", redis_url="redis://s1:26379/0"))
    assert isinstance(client, Redis)
    assert isinstance(client.connection_pool, SentinelConnectionPool)
    manager = client.connection_pool.sentinel_manager
    closed: list[bool] = []

    async def failing_close() -> None:
        closed.append(True)
        raise ConnectionError("sentinel gone")

    manager.aclose = failing_close  # the Sentinel's own public close, failing
    await close_redis_client(client)  # does not raise: shutdown carries on
    assert closed == [True]
    [record] = [r for r in caplog.records if r.name == "infra.cache.redis"]
    assert record.getMessage() == "closing the Redis Sentinel connections failed"
    assert record.levelname == "WARNING"
    assert record.exc_info  # the traceback is logged (exc_info=False would leave False)
    assert record.exc_info[0] is ConnectionError


async def test_the_pool_sampler_counts_a_connection_in_use(redis_url: str) -> None:
    client = build_redis_client(Settings(redis_url=redis_url))
    blocker = build_redis_client(Settings(redis_url=redis_url))
    try:
        sample = redis_pool_stats(client)
        assert sample is not None
        waiting = asyncio.ensure_future(client.blpop(["semantica:never-pushed"], timeout=5))
        for _ in range(500):  # until the BLPOP holds its connection (bounded, no clock)
            if sample().used == 1:
                break
            await asyncio.sleep(0.01)
        busy = sample()
        assert (busy.used, busy.idle, busy.size) == (1, 0, 1)
        await blocker.lpush("semantica:never-pushed", "x")  # lets BLPOP return
        assert await waiting is not None
        done = sample()
        assert (done.used, done.idle, done.size) == (0, 1, 1)
    finally:
        await blocker.delete("semantica:never-pushed")
        await close_redis_client(client)
        await close_redis_client(blocker)


async def test_a_sentinel_port_in_the_url_is_used(
    built: Callable[[RedisClient], RedisClient],
) -> None:
    client = built(
        build_redis_client(Settings(redis_mode="sentinel", redis_url="redis://s9:26390/0"))
    )
    assert isinstance(client, Redis)
    assert isinstance(client.connection_pool, SentinelConnectionPool)
    [sentinel] = client.connection_pool.sentinel_manager.sentinels
    kwargs = sentinel.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"]) == ("s9", 26390)

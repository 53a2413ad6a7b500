"""build_redis_client at its edges: the view instead of Settings, names, URLs, clusters.

Built clients connect to nothing, so these read the arguments the client would connect
with (its public ``connection_kwargs``/``startup_nodes``) and close it afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

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
    view = dataclasses.replace(Settings().redis, url="redis://host:not-a-port/0")
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
    assert "Redis Cluster has only database 0: use /0 in SEMANTICA_REDIS_URL" in str(raised.value)
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

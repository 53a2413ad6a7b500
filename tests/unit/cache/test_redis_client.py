"""Client construction from settings, checked on the constructed objects (no server).

Standalone clients are also exercised for real in tests/integration/test_redis_cache.py.
Cluster and Sentinel cannot be started here, so for them these tests are the proof:
they read the connection arguments the built client would connect with. That checks
our mapping of settings, not a live failover or slot redirect.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelConnectionPool

from config import Settings
from infra.cache import RedisCache, RedisClient, build_redis_client, close_redis_client
from infra.exceptions import ConfigurationError
from infra.resilience import ResiliencePolicy

SECRET = "pw-Zq81-never-shown"


@pytest.fixture
async def build() -> AsyncIterator[Callable[..., RedisClient]]:
    """build_redis_client(Settings(**kw)); every client built is closed after the test."""
    built: list[RedisClient] = []

    def make(protocol: int | None = None, **fields: Any) -> RedisClient:
        client = build_redis_client(Settings(**fields), protocol=protocol)
        built.append(client)
        return client

    yield make
    for client in built:
        await close_redis_client(client)


def _standalone_kwargs(client: RedisClient) -> dict[str, Any]:
    assert isinstance(client, Redis)
    return client.connection_pool.connection_kwargs


def test_standalone_maps_pool_size_timeouts_db_and_no_retries(
    build: Callable[..., RedisClient],
) -> None:
    """max_connections, socket timeouts, db and a zero-retry policy reach the pool."""
    client = build(
        redis_url="redis://10.0.0.5:6390/2",
        redis_max_connections=7,
        redis_socket_timeout=1.5,
        service_name="my service",
    )
    assert isinstance(client, Redis)
    pool = client.connection_pool
    assert pool.max_connections == 7
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("10.0.0.5", 6390, 2)
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 1.5
    assert kwargs["retry"].get_retries() == 0
    assert kwargs["client_name"] == "my-service"
    assert "retry_on_error" not in kwargs
    # built, not connected (redis-py leaves make_connection unannotated)
    connection = pool.make_connection()  # type: ignore[no-untyped-call]
    assert connection.retry.get_retries() == 0
    assert connection.retry_on_error == []
    assert connection.retry_on_timeout is False


def test_settings_password_wins_over_a_password_in_the_url(
    build: Callable[..., RedisClient],
) -> None:
    """SEMANTICA_REDIS_PASSWORD is applied last (redis-py would let the URL win)."""
    client = build(redis_url="redis://:url-password@127.0.0.1:6379/0", redis_password=SECRET)
    assert _standalone_kwargs(client)["password"] == SECRET
    assert _standalone_kwargs(build(redis_url="redis://:url-pw@h:1/0"))["password"] == "url-pw"


def test_tls_comes_from_rediss_or_from_redis_ssl(build: Callable[..., RedisClient]) -> None:
    """rediss:// and redis_ssl=True (URL built from host/port) both select TLS."""
    by_url = build(redis_url="rediss://cache.example:6380/0")
    by_flag = build(redis_host="cache.example", redis_ssl=True)
    plain = build(redis_host="cache.example")
    for client in (by_url, by_flag):
        assert isinstance(client, Redis)
        assert client.connection_pool.connection_class is SSLConnection
    assert isinstance(plain, Redis)
    assert plain.connection_pool.connection_class is not SSLConnection


def test_unix_socket_urls_are_supported(build: Callable[..., RedisClient]) -> None:
    """unix:///path selects a Unix-domain-socket connection."""
    client = build(redis_url="unix:///run/redis.sock?db=1")
    assert isinstance(client, Redis)
    assert client.connection_pool.connection_class is UnixDomainSocketConnection
    assert _standalone_kwargs(client)["path"] == "/run/redis.sock"


def test_protocol_is_passed_through(build: Callable[..., RedisClient]) -> None:
    """protocol=2 / 3 selects RESP2 / RESP3; anything else is a ValueError."""
    assert _standalone_kwargs(build(protocol=2))["protocol"] == 2
    assert _standalone_kwargs(build(protocol=3))["protocol"] == 3
    with pytest.raises(ValueError, match="protocol"):
        build_redis_client(Settings(), protocol=4)


def test_ssl_flag_with_a_plain_url_is_a_configuration_error() -> None:
    """redis_ssl=True with an explicit redis:// URL contradicts itself; the password in
    the URL is not quoted."""
    with pytest.raises(ConfigurationError, match="rediss://") as info:
        build_redis_client(Settings(redis_url=f"redis://:{SECRET}@h:1/0", redis_ssl=True))
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


async def test_cluster_mode_builds_a_redis_cluster_without_retries(
    build: Callable[..., RedisClient],
) -> None:
    """redis_mode=cluster: startup node from the URL, TLS, password, pool size, 0 retries."""
    client = build(
        redis_mode="cluster",
        redis_url="rediss://node-1.example:7000/0",
        redis_password=SECRET,
        redis_max_connections=9,
        redis_socket_timeout=2.5,
    )
    assert isinstance(client, RedisCluster)
    node = client.startup_nodes[0]
    assert (node.host, node.port) == ("node-1.example", 7000)
    assert client.retry.get_retries() == 0
    kwargs = client.connection_kwargs
    assert kwargs["connection_class"] is SSLConnection
    assert kwargs["password"] == SECRET
    assert kwargs["max_connections"] == 9
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 2.5
    assert "retry" not in kwargs  # node connections default to Retry(NoBackoff(), 0)
    cache = RedisCache(client, namespace="app")  # the adapter accepts a cluster client
    assert cache.key("k") == "app:k"


def test_cluster_mode_refuses_a_database_other_than_zero() -> None:
    """Redis Cluster has only db 0."""
    with pytest.raises(ConfigurationError, match="database 0"):
        build_redis_client(Settings(redis_mode="cluster", redis_url="redis://h:7000/3"))


async def test_sentinel_mode_asks_the_sentinel_for_the_named_primary(
    build: Callable[..., RedisClient],
) -> None:
    """redis_mode=sentinel: host/port address the Sentinel; password/db go to the primary;
    neither side retries on its own."""
    client = build(
        redis_mode="sentinel",
        redis_host="sentinel-1.example",
        redis_port=26379,
        redis_sentinel_master="cache-primary",
        redis_password=SECRET,
        redis_db=3,
        redis_max_connections=11,
    )
    assert isinstance(client, Redis)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "cache-primary"
    assert pool.max_connections == 11
    kwargs = pool.connection_kwargs
    assert (kwargs["password"], kwargs["db"]) == (SECRET, 3)
    assert kwargs["retry"].get_retries() == 0
    sentinels = pool.sentinel_manager.sentinels
    assert len(sentinels) == 1
    sentinel_kwargs = sentinels[0].connection_pool.connection_kwargs
    assert (sentinel_kwargs["host"], sentinel_kwargs["port"]) == ("sentinel-1.example", 26379)
    assert sentinel_kwargs["retry"].get_retries() == 0
    assert sentinel_kwargs.get("password") is None


def test_unix_socket_is_refused_for_cluster_and_sentinel() -> None:
    """Cluster and Sentinel need a TCP address."""
    for mode in ("cluster", "sentinel"):
        with pytest.raises(ConfigurationError, match="redis://"):
            build_redis_client(Settings(redis_mode=mode, redis_url="unix:///run/r.sock"))


async def test_reprs_never_show_the_password(build: Callable[..., RedisClient]) -> None:
    """Neither the client nor the cache prints the password."""
    client = build(redis_url="redis://127.0.0.1:6379/0", redis_password=SECRET)
    cache = RedisCache(client, policy=ResiliencePolicy.passthrough("redis"))
    assert SECRET not in repr(client)
    assert SECRET not in repr(cache)
    assert SECRET not in repr(Settings(redis_password=SECRET).redis)


def test_cache_constructor_checks_its_arguments(build: Callable[..., RedisClient]) -> None:
    """Wrong client type, decode_responses=True, bad namespace or serializer are refused."""
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        RedisCache(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisCache(Redis(decode_responses=True))
    client = build()
    with pytest.raises(TypeError, match="namespace"):
        RedisCache(client, namespace=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="serializer"):
        RedisCache(client, serializer=object())  # type: ignore[arg-type]


def test_namespace_prefixes_keys_once(build: Callable[..., RedisClient]) -> None:
    """namespace "app" (or "app:") stores "k" as "app:k"; no namespace leaves keys alone."""
    client = build()
    assert RedisCache(client, namespace="app").key("k") == "app:k"
    assert RedisCache(client, namespace="app:").key("k") == "app:k"
    assert RedisCache(client).key("k") == "k"


def test_cache_package_public_api_is_pinned_and_resolves() -> None:
    """infra.cache exports exactly these names, each importable."""
    import infra.cache as package

    assert set(package.__all__) == {
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
    }
    for name in package.__all__:
        assert getattr(package, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = package.Nope


def test_type_hints_of_public_signatures_resolve_at_run_time() -> None:
    """Wiring and pydantic read annotations at run time: they must all resolve."""
    import typing

    from infra.cache import JsonSerializer, SignedPickleSerializer
    from infra.testing.fakes.cache import FakeCache

    for fn in (
        RedisCache.__init__,
        RedisCache.from_settings,
        RedisCache.health_check,
        RedisCache.mset,
        build_redis_client,
        close_redis_client,
        FakeCache.__init__,
        FakeCache.fail_next,
        SignedPickleSerializer.__init__,
        JsonSerializer.loads,
    ):
        assert typing.get_type_hints(fn), fn

"""RedisCache and RedisContainer against real sockets: the embedded Redis, and tiny
loopback servers that count (or ignore) connections to play a broken Redis.

Attempts are counted on the server side, so "3 attempts" means three TCP connections
really arrived -- redis-py's own retries would show up as extra connections.
"""

from __future__ import annotations

import ast
import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers
from redis.asyncio import Redis

from config import Settings
from containers.lifecycle import resolve
from containers.redis import RedisContainer
from infra.cache import RedisCache
from infra.exceptions import (
    BackendAuthenticationError,
    CacheConnectionError,
    CircuitBreakerOpenError,
)
from infra.observability import MetricsCollector, reset_metrics_collector, set_metrics_collector
from infra.resilience import ManualClock, ResiliencePolicy
from infra.testing.chaos import ChaosProxy

pytestmark = pytest.mark.redis

SECRET = "pw-Zq81-never-shown"


@pytest.fixture
async def dropping_server(redis_url: str) -> AsyncIterator[ChaosProxy]:
    """A Redis that drops us: a proxy in front of the real one that accepts each
    connection, counts it (``stats.accepted``) and resets it at once."""
    async with ChaosProxy.for_url(redis_url) as proxy:
        proxy.refuse()
        yield proxy


@pytest.fixture
def collector() -> Iterator[MetricsCollector]:
    """A fresh metrics collector installed for the test."""
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    yield fresh
    reset_metrics_collector()


def dead_settings(url: str, **overrides: Any) -> Settings:
    """Settings for a broken server: short socket timeout, defaults otherwise."""
    return Settings(redis_url=url, redis_socket_timeout=1.0, **overrides)


def virtual_policy(settings: Settings) -> ResiliencePolicy:
    """The policy settings describe, on a ManualClock: backoff costs no real time."""
    return ResiliencePolicy.from_settings(settings, component="redis", clock=ManualClock())


# -------------------------------------------------------------------------- basics
async def until_connections(server: Redis, name: str, count: int) -> None:
    """Wait until the server has ``count`` connections named ``name`` (a client's close
    reaches the server a moment after the client closed); fail after 30 s (a hang
    guard: a loaded machine may take a while, and no bound is under test here)."""
    async with asyncio.timeout(30.0):
        while len([c for c in await server.client_list() if c["name"] == name]) != count:  # noqa: ASYNC110 -- polling the server; no event to await
            await asyncio.sleep(0.005)


async def test_from_settings_round_trips_on_the_embedded_server(
    redis_url: str, redis_client: Redis
) -> None:
    """from_settings builds a working, pooled client and closes it on exit."""
    name = f"svc-{uuid.uuid4().hex[:12]}"  # the client's connection name
    settings = Settings(redis_url=redis_url, redis_max_connections=4, service_name=name)
    async with RedisCache.from_settings(settings, namespace=f"t-{uuid.uuid4().hex}") as cache:
        await cache.set("user:1", {"name": "Ada"}, ttl=5)
        assert await cache.get("user:1") == {"name": "Ada"}
        raw = await cache.client.get(cache.key("user:1"))
        assert raw == b'J{"name":"Ada"}'
        assert 0 < await cache.client.pttl(cache.key("user:1")) <= 5000
        await cache.delete("user:1")
        assert isinstance(cache.client, Redis)
        assert cache.client.connection_pool.max_connections == 4
        await until_connections(redis_client, name, 1)  # pooled: one, reused
    await until_connections(redis_client, name, 0)  # closed on exit


@pytest.mark.parametrize("protocol", [2, 3])
async def test_get_set_mget_mset_under_resp2_and_resp3(redis_url: str, protocol: int) -> None:
    """Both protocol versions negotiate and serve every command the adapter uses."""
    settings = Settings(redis_url=redis_url)
    namespace = f"resp{protocol}-{uuid.uuid4().hex}"
    async with RedisCache.from_settings(settings, namespace=namespace, protocol=protocol) as cache:
        info = await cache.client.client_info()
        assert int(info["resp"]) == protocol
        await cache.set("a", [1, "x"])
        await cache.mset({"b": {"k": None}, "c": 2.5}, ttl=5)
        await cache.mset({"d": True})
        assert await cache.get("a") == [1, "x"]
        assert await cache.mget(["a", "b", "c", "d", "zz"]) == [
            [1, "x"],
            {"k": None},
            2.5,
            True,
            None,
        ]
        ttl = await cache.ttl("b")
        assert ttl is not None
        assert 0 < ttl <= 5
        assert await cache.exists("c") is True
        assert await cache.delete("a", "b", "c", "d") == 4


# ------------------------------------------------------------ our retries, not theirs
async def test_refused_connection_is_retryable_after_exactly_the_configured_attempts(
    dropping_server: ChaosProxy,
) -> None:
    """retry_max_attempts=3: three TCP connections arrive, then CacheConnectionError."""
    settings = dead_settings(dropping_server.url, retry_max_attempts=3)
    async with RedisCache.from_settings(settings, virtual_policy(settings)) as cache:
        with pytest.raises(CacheConnectionError) as info:
            await cache.get("k")
    assert info.value.retryable is True
    assert info.value.component == "redis"
    assert dropping_server.stats.accepted == 3


async def test_without_retries_one_attempt_is_made(dropping_server: ChaosProxy) -> None:
    """retry_enabled=False means one connection attempt, not redis-py's eleven."""
    settings = dead_settings(dropping_server.url, retry_enabled=False)
    async with RedisCache.from_settings(settings, virtual_policy(settings)) as cache:
        with pytest.raises(CacheConnectionError):
            await cache.set("k", 1)
    assert dropping_server.stats.accepted == 1


async def test_a_closed_port_is_a_retryable_connection_error(refusing_port: int) -> None:
    """Nothing listening at all (ECONNREFUSED) is also a retryable CacheConnectionError."""
    url = f"redis://127.0.0.1:{refusing_port}/0"  # held by the fixture: nobody can listen
    settings = dead_settings(url, retry_enabled=False)
    async with RedisCache.from_settings(settings, virtual_policy(settings)) as cache:
        with pytest.raises(CacheConnectionError) as info:
            await cache.get("k")
    assert info.value.retryable is True


async def test_breaker_opens_on_a_dead_server_then_fails_fast(
    dropping_server: ChaosProxy,
) -> None:
    """After the threshold, calls are rejected without touching the network; after the
    breaker timeout one probe goes out."""
    settings = dead_settings(
        dropping_server.url,
        retry_enabled=False,
        circuit_breaker_failure_threshold=2,
        circuit_breaker_timeout=30.0,
    )
    policy = virtual_policy(settings)
    async with RedisCache.from_settings(settings, policy) as cache:
        for _ in range(2):
            with pytest.raises(CacheConnectionError):
                await cache.get("k")
        for _ in range(5):
            with pytest.raises(CircuitBreakerOpenError) as info:
                await cache.get("k")
        assert dropping_server.stats.accepted == 2
        assert info.value.details["failure_count"] == 2
        ok, details = await cache.health_check()
        assert (ok, details["circuit_breaker"]) == (False, "open")
        assert isinstance(policy.clock, ManualClock)
        policy.clock.advance(30.0)
        with pytest.raises(CacheConnectionError):
            await cache.get("k")
        assert dropping_server.stats.accepted == 3


async def test_wrong_password_is_an_authentication_error_without_the_password(
    redis_url: str, redis_client: Redis
) -> None:
    """A password the server rejects: BackendAuthenticationError, not retried, and the
    password appears in no message (an ACL user of our own; the server stays open)."""
    user = f"u{uuid.uuid4().hex[:8]}"
    await redis_client.acl_setuser(user, enabled=True, passwords=["+right-password"])
    try:
        url = redis_url.replace("redis://", f"redis://{user}@", 1)
        settings = Settings(redis_url=url, redis_password=SECRET)
        async with RedisCache.from_settings(settings, virtual_policy(settings)) as cache:
            with pytest.raises(BackendAuthenticationError) as info:
                await cache.get("k")
    finally:
        await redis_client.acl_deluser(user)
    assert info.value.retryable is False
    for text in (str(info.value), repr(info.value), str(info.value.__cause__)):
        assert SECRET not in text


# ---------------------------------------------------------------- metrics and health
async def test_calls_record_latency_and_outcomes(
    redis_url: str, collector: MetricsCollector, dropping_server: ChaosProxy
) -> None:
    """Each call adds one redis_command_latency_ms sample and one outcome count."""
    settings = Settings(redis_url=redis_url)
    async with RedisCache.from_settings(settings, namespace=f"m-{uuid.uuid4().hex}") as cache:
        await cache.set("k", 1)
        await cache.get("k")
        await cache.get("k")
    stats = collector.get_histogram_stats("redis_command_latency_ms", operation="get")
    assert stats.count == 2
    assert stats.p99 > 0
    assert collector.get_counter("backend_calls_total", component="redis", outcome="ok") == 3
    dead = dead_settings(dropping_server.url, retry_enabled=False)
    async with RedisCache.from_settings(dead, virtual_policy(dead)) as broken:
        with pytest.raises(CacheConnectionError):
            await broken.get("k")
    errors = collector.get_counter(
        "backend_errors_total", component="redis", error_type="CacheConnectionError"
    )
    assert errors == 1


async def test_health_check_healthy_then_degraded_by_threshold(redis_url: str) -> None:
    """A live server is healthy; a zero threshold makes the same answer degraded."""
    async with RedisCache.from_settings(Settings(redis_url=redis_url)) as cache:
        # A threshold no loaded machine reaches: this check is about the classification.
        ok, details = await cache.health_check(latency_threshold_ms=60_000.0)
        assert (ok, details["status"], details["circuit_breaker"]) == (True, "healthy", "closed")
        assert details["pool_size"] >= 1
        assert details["pool_max"] == 50
        ok, details = await cache.health_check(latency_threshold_ms=0.0)
        assert (ok, details["status"]) == (True, "degraded")


async def test_health_check_of_a_dead_server_reports_instead_of_raising(
    dropping_server: ChaosProxy,
) -> None:
    """A dead server: (False, {"status": "unhealthy", "error": ...})."""
    settings = dead_settings(dropping_server.url)
    async with RedisCache.from_settings(settings, virtual_policy(settings)) as cache:
        ok, details = await cache.health_check()
    assert ok is False
    assert details["status"] == "unhealthy"
    assert details["error"] == "CacheConnectionError"
    assert dropping_server.stats.accepted == 1  # a health check never retries


async def test_health_check_of_a_hung_server_gives_up_at_its_timeout(redis_url: str) -> None:
    """A server that never answers is unhealthy after ``timeout``, not socket_timeout."""
    async with ChaosProxy.for_url(redis_url) as hung:
        hung.blackhole()  # connections open, nothing ever answers
        settings = Settings(redis_url=hung.url, redis_socket_timeout=30.0)
        async with RedisCache.from_settings(settings, virtual_policy(settings)) as cache:
            ok, details = await asyncio.wait_for(cache.health_check(timeout=0.05), 5.0)
    assert (ok, details["status"], details["error"]) == (False, "unhealthy", "TimeoutError")
    assert details["latency_ms"] < 5000


# ------------------------------------------------------------------------ container
def _container(settings: Settings) -> RedisContainer:
    return RedisContainer(settings=providers.Object(settings))


async def test_container_connects_nothing_until_a_command_runs(
    dropping_server: ChaosProxy,
) -> None:
    """Construction, init_resources and building the cache open no connection."""
    container = _container(dead_settings(dropping_server.url))
    container.check_dependencies()
    started = container.init_resources()
    assert started is not None  # async resources: an awaitable
    await started
    cache = await resolve(container.cache)
    assert isinstance(cache, RedisCache)
    await asyncio.sleep(0.01)
    assert dropping_server.stats.accepted == 0
    stopping = container.shutdown_resources()
    assert stopping is not None  # async resources: an awaitable
    await stopping
    assert dropping_server.stats.accepted == 0


def test_container_requires_settings() -> None:
    """The settings input is declared: check_dependencies names it."""
    with pytest.raises(Exception, match="settings"):
        RedisContainer().check_dependencies()


async def test_container_cache_works_and_shutdown_closes_its_connections(
    redis_url: str, collector: MetricsCollector
) -> None:
    """On the embedded server: the cache works, the pool is sampled, and after shutdown
    the server no longer lists our connection."""
    name = f"svc-{uuid.uuid4().hex[:12]}"
    container = _container(Settings(redis_url=redis_url, service_name=name))
    cache = await resolve(container.cache)
    await cache.set("container-key", {"ok": True})
    assert await cache.get("container-key") == {"ok": True}
    assert collector.get_gauge("redis_pool_size", pool="default") == 1
    listed = await cache.client.client_list()
    assert [c["name"] for c in listed].count(name) == 1
    await cache.delete("container-key")
    stopping = container.shutdown_resources()
    assert stopping is not None  # async resources: an awaitable
    await stopping
    async with Redis.from_url(redis_url) as observer:
        # The server drops a closed connection a moment after the client closed it.
        await until_connections(observer, name, 0)
    assert collector.get_gauge("redis_pool_size", pool="default") == 0


async def test_container_policy_override_reaches_the_cache(redis_url: str) -> None:
    """Overriding the policy provider changes the policy the cache runs under; the cache
    is one instance per container, so the override goes in before it is (re)built."""
    container = _container(Settings(redis_url=redis_url))
    default_cache = await resolve(container.cache)
    assert "retry(3 attempts" in default_cache.policy.describe()
    assert await resolve(container.cache) is default_cache
    custom = ResiliencePolicy.passthrough("redis")
    with container.policy.override(providers.Object(custom)):
        container.cache.reset()
        cache = await resolve(container.cache)
        assert cache.policy is custom
    stopping = container.shutdown_resources()
    assert stopping is not None  # async resources: an awaitable
    await stopping


# ----------------------------------------------------------------------------- docs
DOC = Path(__file__).resolve().parents[2] / "docs" / "redis.md"


def _doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_docs_have_examples() -> None:
    """docs/redis.md has runnable examples (at least one per capability)."""
    assert len(_doc_blocks()) >= 5


@pytest.mark.parametrize("index", range(len(_doc_blocks()) if DOC.exists() else 0))
async def test_doc_example_runs(
    index: int, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ```python block of docs/redis.md runs against the embedded server."""
    monkeypatch.setenv("SEMANTICA_REDIS_URL", redis_url)
    source = _doc_blocks()[index]
    code = compile(source, f"docs/redis.md#{index}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, Any] = {"__name__": "doc_example"}
    result = eval(code, namespace)  # noqa: S307 - our own documentation, under test
    if asyncio.iscoroutine(result):
        await result

"""What each RedisCache method does on a real Redis, and what it reports doing.

Every method that talks to Redis is recorded under its own operation name (the
latency histogram and outcome counters are how operators tell them apart); the stored
state after each call is read back with a separate raw client.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from config import Settings
from infra.cache import JsonSerializer, RedisCache
from infra.observability import MetricsCollector, reset_metrics_collector, set_metrics_collector
from infra.resilience import ResiliencePolicy


@pytest.fixture
def collector() -> Iterator[MetricsCollector]:
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    yield fresh
    reset_metrics_collector()


@pytest.fixture
async def cache(redis_client: Redis) -> RedisCache:
    return RedisCache(
        redis_client,
        policy=ResiliencePolicy.passthrough("redis"),
        namespace=f"t{uuid.uuid4().hex[:8]}",
    )


def calls(collector: MetricsCollector, operation: str) -> int:
    return collector.get_histogram_stats("redis_command_latency_ms", operation=operation).count


async def test_each_method_is_recorded_under_its_own_operation(
    cache: RedisCache, collector: MetricsCollector
) -> None:
    await cache.set("a", 1)
    await cache.get("a")
    await cache.mset({"b": 2, "c": 3})
    await cache.mset({"d": 4}, ttl=30)
    await cache.mget(["a", "b"])
    await cache.exists("a")
    await cache.ttl("a")
    await cache.delete("a", "b")
    healthy, _details = await cache.health_check()
    assert healthy
    counts = {
        op: calls(collector, op)
        for op in ("set", "get", "mset", "mget", "exists", "ttl", "delete", "ping")
    }
    assert counts == {
        "set": 1,
        "get": 1,
        "mset": 2,
        "mget": 1,
        "exists": 1,
        "ttl": 1,
        "delete": 1,
        "ping": 1,
    }
    assert collector.get_counter("backend_calls_total", component="redis", outcome="ok") == 9


async def test_stored_state_matches_each_call(cache: RedisCache, redis_client: Redis) -> None:
    ns = cache.namespace
    await cache.set("plain", {"x": [1, 2]})
    assert await redis_client.pttl(f"{ns}:plain") == -1  # no TTL asked, none set
    await cache.set("short", "v", ttl=20)
    assert 0 < await redis_client.pttl(f"{ns}:short") <= 20_000
    await cache.mset({"m1": 1, "m2": None}, ttl=40)
    for name in ("m1", "m2"):
        assert 20_000 < await redis_client.pttl(f"{ns}:{name}") <= 40_000
    await cache.mset({"n1": "one", "n2": "two"})
    assert await redis_client.pttl(f"{ns}:n1") == -1
    assert await cache.mget(["n2", "missing", "n1", "m2"]) == ["two", None, "one", None]
    assert await cache.get("plain") == {"x": [1, 2]}


async def test_exists_tells_a_stored_none_from_a_miss(cache: RedisCache) -> None:
    await cache.set("none", None)
    assert await cache.get("none") is None
    assert await cache.exists("none") is True
    assert await cache.exists("missing") is False


async def test_ttl_reports_none_for_absent_and_infinity_for_no_expiry(cache: RedisCache) -> None:
    assert await cache.ttl("missing") is None
    await cache.set("forever", 1)
    assert await cache.ttl("forever") == math.inf
    await cache.set("soon", 1, ttl=12.5)
    left = await cache.ttl("soon")
    assert left is not None
    assert 10.0 < left <= 12.5
    assert left != round(left)  # milliseconds, not whole seconds


async def test_delete_counts_only_keys_that_existed(cache: RedisCache) -> None:
    await cache.mset({"a": 1, "b": 2})
    assert await cache.delete("a", "b", "never") == 2
    assert await cache.delete("a") == 0
    assert await cache.mget(["a", "b"]) == [None, None]


async def test_a_namespace_keeps_keys_apart(redis_client: Redis) -> None:
    policy = ResiliencePolicy.passthrough("redis")
    one = RedisCache(redis_client, policy=policy, namespace="one")
    two = RedisCache(redis_client, policy=policy, namespace="two")
    bare = RedisCache(redis_client, policy=policy)
    await one.set("k", 1)
    await two.set("k", 2)
    await bare.set("k", 3)
    assert (await one.get("k"), await two.get("k"), await bare.get("k")) == (1, 2, 3)
    assert await bare.get("one:k") == 1
    assert await redis_client.exists("one:k", "two:k", "k") == 3


class Reversing:
    """A serializer of our own: JSON text, stored backwards."""

    name = "reversing"

    def dumps(self, value: object) -> bytes:
        return JsonSerializer().dumps(value)[::-1]

    def loads(self, data: bytes) -> object:
        return JsonSerializer().loads(data[::-1])


async def test_the_serializer_is_the_one_given(redis_client: Redis) -> None:
    packed = Reversing()
    cache = RedisCache(
        redis_client, policy=ResiliencePolicy.passthrough("redis"), serializer=packed
    )
    assert cache.serializer is packed
    await cache.set("k", {"a": 1})
    assert await redis_client.get("k") == packed.dumps({"a": 1})
    assert await cache.get("k") == {"a": 1}
    default = RedisCache(redis_client, policy=ResiliencePolicy.passthrough("redis"))
    assert isinstance(default.serializer, JsonSerializer)
    assert default.client is redis_client


async def test_from_settings_has_no_namespace_and_closes_its_own_client(redis_url: str) -> None:
    async with RedisCache.from_settings(Settings(redis_url=redis_url)) as cache:
        assert cache.namespace == ""
        assert cache.key("k") == "k"
        assert cache.policy.breaker is not None  # the settings' policy, not a passthrough
        await cache.set("k", "v", ttl=5)
        assert await cache.get("k") == "v"
        # Renames this connection only; a new connection would get the settings' name.
        await cache.client.client_setname("renamed-connection")
    client = cache.client
    try:
        # The cache owned the client: its connection was closed, the next one is new.
        assert await client.client_getname() != "renamed-connection"
    finally:
        await client.aclose()


async def test_an_injected_client_stays_open_after_the_cache_closes(redis_client: Redis) -> None:
    await redis_client.client_setname("injected-connection")
    async with RedisCache(redis_client, policy=ResiliencePolicy.passthrough("redis")) as cache:
        await cache.set("k", 1)
    await cache.aclose()  # twice: still not ours to close
    # Still the same connection (a reconnect would have lost the name).
    assert await redis_client.client_getname() == "injected-connection"
    assert await cache.get("k") == 1


async def test_health_check_of_an_unreachable_server_reports_the_error() -> None:
    client = Redis.from_url("redis://127.0.0.1:9/0")  # nothing listens on the discard port
    cache = RedisCache(client, policy=ResiliencePolicy.passthrough("redis"))
    try:
        healthy, details = await cache.health_check(latency_threshold_ms=50.0)
    finally:
        await client.aclose()
    assert healthy is False
    assert details["status"] == "unhealthy"
    assert details["error"] == "CacheConnectionError"
    assert details["message"]
    assert details["latency_threshold_ms"] == 50.0
    assert details["circuit_breaker"] is None  # a passthrough policy has no breaker
    assert details["latency_ms"] >= 0


async def test_health_check_messages_are_cut_at_300_characters(
    redis_client: Redis, redis_url: str
) -> None:
    """A failed probe with a long message (a refused PING naming a long user) is cut."""
    user = "u" * 400
    await redis_client.acl_setuser(user, enabled=True, nopass=True, commands=["-@all"])
    client = Redis.from_url(redis_url, username=user, password="unused")
    cache = RedisCache(client, policy=ResiliencePolicy.passthrough("redis"))
    try:
        healthy, details = await cache.health_check()
    finally:
        await client.aclose()
        await redis_client.acl_deluser(user)
    assert healthy is False
    assert details["status"] == "unhealthy"
    assert len(details["message"]) == 300
    assert "u" * 200 in details["message"]


async def test_health_check_reports_the_breaker_state_and_pool(redis_url: str) -> None:
    async with RedisCache.from_settings(Settings(redis_url=redis_url)) as cache:
        healthy, details = await cache.health_check(latency_threshold_ms=10_000.0)
        assert healthy is True
        assert details["status"] == "healthy"
        assert details["circuit_breaker"] == "closed"
        assert details["pool_size"] >= details["pool_free"] >= 1  # the PING came back
        assert details["pool_max"] == Settings(redis_url=redis_url).redis.max_connections
        assert "error" not in details


@pytest.mark.parametrize(
    ("url", "address", "port"),
    [
        ("redis://127.0.0.1:6399/0", "127.0.0.1", 6399),
        ("redis://localhost/0", "localhost", None),  # no port in the URL: none reported
        ("unix:///nonexistent/semantica.sock", "/nonexistent/semantica.sock", None),
    ],
)
async def test_spans_name_the_server_the_client_points_at(
    url: str, address: str, port: int | None
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from infra.exceptions import CacheError
    from infra.observability import reset_tracing, setup_tracing

    exporter = InMemorySpanExporter()
    setup_tracing(exporter=exporter)
    client = Redis.from_url(url)
    try:
        cache = RedisCache(client, policy=ResiliencePolicy.passthrough("redis"))
        with pytest.raises(CacheError):  # nothing listens there; the span is still made
            await cache.get("k")
    finally:
        await client.aclose()
        reset_tracing()
    [span] = [s for s in exporter.get_finished_spans() if s.name == "get"]
    assert span.attributes is not None
    assert span.attributes["server.address"] == address
    if port is None:
        assert "server.port" not in span.attributes
    else:
        assert span.attributes["server.port"] == port


async def test_health_latency_is_in_milliseconds_and_covers_the_ping(
    redis_client: Redis, collector: MetricsCollector
) -> None:
    """The reported latency spans the PING, whose own latency the histogram recorded."""
    cache = RedisCache(redis_client, policy=ResiliencePolicy.passthrough("redis"))
    recorded = 0.0
    for _ in range(3):
        healthy, details = await cache.health_check(latency_threshold_ms=60_000.0)
        assert healthy is True
        total = collector.get_histogram_stats("redis_command_latency_ms", operation="ping").sum
        this_ping, recorded = total - recorded, total
        assert this_ping > 0
        assert details["latency_ms"] + 0.001 >= this_ping  # rounded to the microsecond

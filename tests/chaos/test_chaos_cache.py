"""ThreeTierCache over a RedisCache whose network fails (ChaosProxy before the embedded
Redis): a Redis outage is invisible to callers -- reads fall through to the loader --
and once the network heals the cache reads L2 again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from config import Settings
from infra.cache import RedisCache, ThreeTierCache, build_redis_client
from infra.resilience import ResiliencePolicy, RetryConfig
from infra.testing.chaos import ChaosProxy

pytestmark = pytest.mark.redis

PROBE_INTERVAL = 0.3


class CountingLoader:
    """A loader that returns ``value`` and counts its calls."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        return self.value


def is_degraded(cache: ThreeTierCache) -> bool:
    """``cache.degraded``, read through a call (it changes between the test's steps)."""
    return cache.degraded


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[ChaosProxy]:
    """A ChaosProxy in front of the embedded Redis, closed after the test."""
    async with ChaosProxy.for_url(redis_url) as chaos:
        yield chaos


async def test_redis_outage_falls_through_to_loader_then_l2_is_used_again(
    proxy: ChaosProxy, redis_url: str
) -> None:
    """Outage: loader answers, no error, no network attempt between probes; healed: L2 hit."""
    namespace = f"chaos-{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=proxy.url_for(redis_url), redis_socket_timeout=0.2)
    policy = ResiliencePolicy.build(
        "redis", retry=RetryConfig(max_attempts=2, base_delay=0.01, jitter=False)
    )
    l2 = RedisCache(build_redis_client(settings), policy=policy, owns_client=True)
    direct = Redis.from_url(redis_url)  # a second writer that bypasses the proxy
    cache = ThreeTierCache(l2, namespace=namespace, probe_interval=PROBE_INTERVAL)
    other = ThreeTierCache(RedisCache(direct), namespace=namespace)
    try:
        first = CountingLoader("a")
        assert await cache.get("a", first) == "a"
        assert first.calls == 1
        assert not is_degraded(cache)

        proxy.refuse()
        proxy.reset_all()
        during = CountingLoader("b")
        assert await cache.get("b", during) == "b"  # no error reaches the caller
        assert during.calls == 1
        assert is_degraded(cache)
        attempts = proxy.stats.accepted
        for i in range(10):  # within one probe interval: skipped, no connection attempt
            assert await cache.get(f"c{i}", CountingLoader("c")) == "c"
        assert proxy.stats.accepted == attempts

        await other.set("z", "from-l2")  # written to L2 while our network is down
        proxy.heal()
        await asyncio.sleep(PROBE_INTERVAL)
        after = CountingLoader("from-loader")
        assert await cache.get("z", after) == "from-l2"  # served by L2: the probe read
        assert after.calls == 0
        assert not is_degraded(cache)
    finally:
        await cache.close()
        await other.close()
        await l2.aclose()
        await direct.aclose()

"""RedisCache under injected network faults (ChaosProxy in front of the embedded Redis).

Checks the design's retry + breaker claims on a real socket: a sustained outage is reported as
``CacheConnectionError``, opens the breaker, and then fails fast with no connection
attempt; after the network heals the cache recovers on its own; a peer that stops
answering ends in a timeout error, never a hang.
"""

from __future__ import annotations

import ast
import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from infra.cache import RedisCache, build_redis_client
from infra.exceptions import CacheConnectionError, CircuitBreakerOpenError, InfraTimeoutError
from infra.resilience import BreakerState, CircuitBreakerConfig, ResiliencePolicy, RetryConfig
from infra.testing.chaos import ChaosProxy

pytestmark = pytest.mark.redis

BREAKER_TIMEOUT = 1.0  # long enough that a loaded CI machine cannot reach half-open mid-loop
ATTEMPT_TIMEOUT = 0.25
SOCKET_TIMEOUT = 0.15
#: Generous behavioural bound of the design's "fail-fast on sustained failure < 100 ms".
FAIL_FAST_P99 = 0.1


def _policy(attempt_timeout: float) -> ResiliencePolicy:
    return ResiliencePolicy.build(
        "redis",
        breaker=CircuitBreakerConfig(failure_threshold=3, timeout=BREAKER_TIMEOUT),
        retry=RetryConfig(max_attempts=2, base_delay=0.01, jitter=False),
        attempt_timeout=attempt_timeout,
    )


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[ChaosProxy]:
    """A ChaosProxy in front of the embedded Redis, closed after the test."""
    async with ChaosProxy.for_url(redis_url) as chaos:
        yield chaos


@asynccontextmanager
async def _cache(
    proxy: ChaosProxy, redis_url: str, socket_timeout: float, attempt_timeout: float
) -> AsyncIterator[RedisCache]:
    settings = Settings(
        redis_url=proxy.url_for(redis_url),
        redis_socket_timeout=socket_timeout,
        redis_max_connections=4,
    )
    client = build_redis_client(settings)
    async with RedisCache(
        client,
        policy=_policy(attempt_timeout),
        namespace=f"chaos-{uuid.uuid4().hex[:8]}",
        owns_client=True,
    ) as redis_cache:
        yield redis_cache


@pytest.fixture
async def cache(proxy: ChaosProxy, redis_url: str) -> AsyncIterator[RedisCache]:
    """A RedisCache whose client connects through ``proxy``, with small timeouts (for
    the tests about timeouts)."""
    async with _cache(proxy, redis_url, SOCKET_TIMEOUT, ATTEMPT_TIMEOUT) as redis_cache:
        yield redis_cache


@pytest.fixture
async def patient_cache(proxy: ChaosProxy, redis_url: str) -> AsyncIterator[RedisCache]:
    """The same through ``proxy``, with timeouts far above any scheduling delay: for the
    tests about refused connections and tolerated latency, where a slow reply on a
    loaded machine must not count as a failure."""
    async with _cache(proxy, redis_url, 10.0, 20.0) as redis_cache:
        yield redis_cache


def _breaker_state(cache: RedisCache) -> BreakerState:
    breaker = cache.policy.breaker
    assert breaker is not None
    return breaker.state


async def test_outage_opens_breaker_fails_fast_and_recovers(
    proxy: ChaosProxy, patient_cache: RedisCache
) -> None:
    """Outage → CacheConnectionError → breaker open → fail-fast, no attempts → heal → recovery."""
    cache = patient_cache
    await cache.set("k", "v")
    assert await cache.get("k") == "v"
    assert proxy.stats.bytes_to_client > 0

    proxy.refuse()
    proxy.reset_all()
    for _ in range(3):
        with pytest.raises(CacheConnectionError) as caught:
            await cache.get("k")
        assert caught.value.retryable
    assert _breaker_state(cache) is BreakerState.OPEN

    attempts_before = proxy.stats.accepted
    latencies = []
    for _ in range(100):
        started = time.perf_counter()
        with pytest.raises(CircuitBreakerOpenError):
            await cache.get("k")
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    assert latencies[98] < FAIL_FAST_P99, f"p99 {latencies[98] * 1000:.1f} ms"
    assert proxy.stats.accepted == attempts_before, "an open breaker must not connect"

    proxy.heal()
    await asyncio.sleep(BREAKER_TIMEOUT)
    assert await cache.get("k") == "v"
    assert _breaker_state(cache) is BreakerState.CLOSED
    assert proxy.stats.accepted > attempts_before


async def test_blackhole_ends_in_timeout_error_not_a_hang(
    proxy: ChaosProxy, cache: RedisCache
) -> None:
    """A peer that stops answering raises a retryable timeout error within the limits."""
    await cache.set("k", "v")
    proxy.blackhole()
    started = time.perf_counter()
    async with asyncio.timeout(60.0):  # a bug must fail the test, not hang it
        with pytest.raises(InfraTimeoutError) as caught:
            await cache.get("k")
    elapsed = time.perf_counter() - started
    assert caught.value.retryable
    # Two attempts, each bounded by the socket timeout (0.3 s in all); the bound only
    # tells "bounded" from "hung" -- timing is the benchmarks' business.
    assert elapsed < 10.0
    breaker = cache.policy.breaker
    assert breaker is not None
    assert breaker.failure_count == 1

    proxy.heal()
    assert await cache.get("k") == "v"


async def test_latency_below_the_timeouts_is_tolerated(
    proxy: ChaosProxy, patient_cache: RedisCache
) -> None:
    """Latency under the socket timeout slows calls down but fails none."""
    cache = patient_cache
    await cache.set("k", "v")
    proxy.add_latency(0.02)
    started = time.perf_counter()
    assert await cache.get("k") == "v"
    assert time.perf_counter() - started >= 0.04  # one round trip = latency both ways
    breaker = cache.policy.breaker
    assert breaker is not None
    assert breaker.failure_count == 0


DOC = Path(__file__).resolve().parents[2] / "docs" / "chaos.md"


async def test_docs_example_runs(redis_url: str) -> None:
    """The ```python example of docs/chaos.md runs against the embedded Redis."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "docs/chaos.md must keep its example"
    for index, source in enumerate(blocks):
        code = compile(
            source, f"docs/chaos.md#{index}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        namespace: dict[str, Any] = {"__name__": "doc_example", "redis_url": redis_url}
        result = eval(code, namespace)  # noqa: S307 - our own documentation, under test
        if asyncio.iscoroutine(result):
            await result

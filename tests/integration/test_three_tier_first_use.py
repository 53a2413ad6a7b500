"""A 3-tier cache nobody started explicitly serves L1 from its first use on.

Before, the fills that raced the coherence subscription were voided by its confirmation,
so L1 stayed empty until ``await cache.start()``: every read went to Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from infra.cache import RedisCache, ThreeTierCache
from infra.observability import MetricsCollector

pytestmark = pytest.mark.redis


def new_cache(client: Redis) -> ThreeTierCache:
    # A generous first-use wait: the property is about ordering, not about how fast a
    # loaded machine confirms a subscription.
    return ThreeTierCache(
        RedisCache(client),
        redis=client,
        namespace=f"first-{uuid.uuid4().hex[:10]}",
        fallback_timeout=10.0,
        metrics=MetricsCollector(),
    )


@settings(max_examples=20)
@given(operations=st.lists(st.sampled_from(["get", "set", "get_none"]), min_size=1, max_size=6))
async def test_any_first_operations_fill_l1(redis_url: str, operations: Sequence[str]) -> None:
    """Property: whatever mix of reads (with a loader, some finding nothing) and writes a
    never-started cache gets as its first, concurrent operations, every value they produced
    is in L1 afterwards, and reading it again asks neither Redis nor the loader."""
    client = Redis.from_url(redis_url)
    cache = new_cache(client)
    loads: list[str] = []

    async def run(index: int, operation: str) -> None:
        key = f"k{index}"

        async def load() -> str | None:
            loads.append(key)
            return None if operation == "get_none" else f"v{index}"

        if operation == "set":
            await cache.set(key, f"v{index}")
        else:
            await cache.get(key, load)

    try:
        await asyncio.gather(*(run(i, op) for i, op in enumerate(operations)))
        assert cache.coherent
        assert cache.l1_size == len(operations)  # absences are cached too
        loads.clear()
        await client.aclose()  # Redis out of reach: only L1 can answer now

        async def unreachable() -> str:
            raise AssertionError("the loader ran: L1 did not answer")

        for index, operation in enumerate(operations):
            expected = None if operation == "get_none" else f"v{index}"
            assert await cache.get(f"k{index}", unreachable) == expected
    finally:
        await cache.close()
        await client.aclose()


async def test_a_cancelled_first_caller_does_not_stop_the_others(redis_url: str) -> None:
    """Two first callers share one wait for the subscription; cancelling one leaves the
    other's read (and L1) intact."""
    client = Redis.from_url(redis_url)
    cache = new_cache(client)
    try:
        first = asyncio.create_task(cache.get("a", lambda: _value("A")))
        second = asyncio.create_task(cache.get("b", lambda: _value("B")))
        await asyncio.sleep(0)  # both are waiting for the subscription now
        first.cancel()
        assert await second == "B"
        with pytest.raises(asyncio.CancelledError):
            await first
        assert cache.l1_size == 1
    finally:
        await cache.close()
        await client.aclose()


async def test_close_during_the_first_wait_lets_the_caller_go_on() -> None:
    """The cache is closed while its first caller waits for a subscription that cannot
    come (nothing listens): the caller is answered by the loader, not cancelled."""
    client = Redis.from_url("redis://127.0.0.1:9/0")  # discard port: refused
    cache = new_cache(client)
    try:
        reader = asyncio.create_task(cache.get("a", lambda: _value("A")))
        await asyncio.sleep(0.05)
        await cache.close()
        assert await asyncio.wait_for(reader, 5.0) == "A"
    finally:
        await client.aclose()


async def _value(value: str) -> str:
    return value

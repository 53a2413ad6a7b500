"""CachedGraphStore on the real graph and the real 3-tier cache (Redis L2 with pub/sub
coherence): a write followed by a read never returns the pre-write result -- in one
process, and across processes (this module is also the worker: ``python
test_graph_cached_store.py URL BOLT USER NAMESPACE ACTION``)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from infra.cache import RedisCache
from infra.cache.three_tier_cache import ThreeTierCache
from infra.graph.cached_store import CachedGraphStore
from infra.graph.driver import open_driver
from infra.graph.memgraph import MemgraphGraphStore
from infra.observability import get_metrics_collector
from infra.resilience import ResiliencePolicy, redis_no_retry

ROOT = Path(__file__).resolve().parents[2]


async def open_cached(
    redis_url: str, bolt_uri: str, user: str, namespace: str
) -> tuple[CachedGraphStore, ThreeTierCache, Redis]:
    """A cached store with its own Redis client and driver (as a process has)."""
    client = Redis.from_url(redis_url, retry=redis_no_retry())
    cache = ThreeTierCache(RedisCache(client), redis=client, namespace=namespace, l1_ttl=60)
    if not await cache.start(timeout=5.0):
        raise RuntimeError("coherence subscription not confirmed within 5 s")
    store = MemgraphGraphStore(
        open_driver(bolt_uri, user=user),
        policy=ResiliencePolicy.instant("graph"),
        owns_driver=True,
    )
    return CachedGraphStore(store, cache, ttl=120), cache, client


async def close_cached(cached: CachedGraphStore, cache: ThreeTierCache, client: Redis) -> None:
    await cache.close()
    await client.aclose()
    store = cached.store
    assert isinstance(store, MemgraphGraphStore)
    await store.close()


def version(node: Any) -> int:
    assert node is not None
    value: int = node.properties["v"]
    return value


# ----------------------------------------------------------------------- the worker
async def worker(redis_url: str, bolt_uri: str, user: str, namespace: str, action: str) -> None:
    cached, cache, client = await open_cached(redis_url, bolt_uri, user, namespace)
    metrics = get_metrics_collector()
    report: dict[str, Any] = {}
    try:
        report["before"] = version(await cached.get_node("n"))
        report["hits"] = metrics.get_counter(
            "graph_cache_requests_total", operation="get_node", result="hit"
        )
        if action == "write-then-read":
            await cached.upsert_nodes("P", [{"id": "n", "v": report["before"] + 1}])
            report["after"] = version(await cached.get_node("n"))
    finally:
        await close_cached(cached, cache, client)
    print(json.dumps(report))


async def run_worker(*args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        *args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------ the tests
@pytest.fixture
async def cached(
    redis_url: str, redis_client: Redis, bolt_uri: str, bolt_auth: tuple[str, str]
) -> AsyncIterator[CachedGraphStore]:
    """This process's cached store, namespace 'g', on an emptied graph and Redis."""
    del redis_client  # requested for its FLUSHDB
    built = await open_cached(redis_url, bolt_uri, bolt_auth[0], "g")
    await built[0].write("MATCH (n) DETACH DELETE n")
    yield built[0]
    await close_cached(*built)


@pytest.mark.graph
@pytest.mark.redis
async def test_in_one_process_a_write_then_a_read_never_sees_the_old_value(
    cached: CachedGraphStore,
) -> None:
    """Random writes to three nodes, each followed by reads of all three (L1 and L2 hot):
    every read answers what the graph holds."""
    rng = random.Random(7)
    truth = dict.fromkeys("abc", 0)
    await cached.upsert_nodes("P", [{"id": i, "v": 0} for i in truth])
    for step in range(40):
        node_id = rng.choice("abc")
        truth[node_id] = step + 1
        await cached.upsert_nodes("P", [{"id": node_id, "v": step + 1}])
        for other, expected in truth.items():
            assert version(await cached.get_node(other)) == expected
            assert [n.node.id for n in await cached.neighbours(other)] == []


@pytest.mark.graph
@pytest.mark.redis
async def test_across_processes_a_write_then_a_read_never_sees_the_old_value(
    cached: CachedGraphStore, redis_url: str, bolt_uri: str, bolt_auth: tuple[str, str]
) -> None:
    """This process caches v=0 (L1 and L2). Another process reads it from L2 (a hit),
    writes v=1 and reads 1. After it returns, this process reads 1 (its L1 entry was
    invalidated), and a third process reads 1 (L2 was)."""
    await cached.upsert_nodes("P", [{"id": "n", "v": 0}])
    assert version(await cached.get_node("n")) == 0
    assert version(await cached.get_node("n")) == 0  # now in L1 and L2
    user = bolt_auth[0]
    second = await run_worker(redis_url, bolt_uri, user, "g", "write-then-read")
    assert second == {"before": 0, "hits": 1.0, "after": 1}
    assert version(await cached.get_node("n")) == 1
    third = await run_worker(redis_url, bolt_uri, user, "g", "read")
    assert third["before"] == 1


if __name__ == "__main__":  # the worker process of the cross-process test
    asyncio.run(worker(*sys.argv[1:6]))

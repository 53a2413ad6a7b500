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
from collections.abc import AsyncIterator, Callable
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


def hold_loads(cached: CachedGraphStore, loaded: Callable[[], Any], go: Callable[[], Any]) -> None:
    """Make ``cached``'s next graph read of a node pause after reading the graph: call
    ``loaded()``, then wait for ``go()`` before answering (later reads are not held)."""
    store = cached.store
    real = store.get_node

    async def held(node_id: Any) -> Any:
        node = await real(node_id)
        store.get_node = real  # type: ignore[method-assign]
        await loaded()
        await go()
        return node

    store.get_node = held  # type: ignore[method-assign]


async def l2_entries(client: Redis, namespace: str, operation: str) -> list[bytes]:
    """The L2 keys holding cached ``operation`` results (cache ``namespace``)."""
    return [k async for k in client.scan_iter(match=f"*{namespace}:v:*:{operation}:*")]


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
        if action != "held-read":
            report["before"] = version(await cached.get_node("n"))
        report["hits"] = metrics.get_counter(
            "graph_cache_requests_total", operation="get_node", result="hit"
        )
        if action == "held-read":
            # Read "n" with the graph read held until the parent says go (one line on
            # stdin) after it has written; then read again.
            async def loaded() -> None:
                print("loaded", flush=True)

            async def go() -> None:
                await asyncio.to_thread(sys.stdin.readline)

            hold_loads(cached, loaded, go)
            report["held"] = version(await cached.get_node("n"))
            report["again"] = version(await cached.get_node("n"))
        elif action == "write-then-read":
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


@pytest.mark.graph
@pytest.mark.redis
async def test_a_fill_that_loaded_before_another_instances_write_is_not_stored(
    cached: CachedGraphStore, redis_url: str, bolt_uri: str, bolt_auth: tuple[str, str]
) -> None:
    """Two cached stores with their own caches (own L1, own client) on one Redis: B reads
    the graph (v=0), and is held while A writes v=1 and invalidates; then B stores. B's
    write-back is refused, so A's and B's next reads -- and L2 -- answer v=1."""
    other = await open_cached(redis_url, bolt_uri, bolt_auth[0], "g")
    b_cached = other[0]
    loaded, go = asyncio.Event(), asyncio.Event()

    async def on_loaded() -> None:
        loaded.set()

    async def wait_go() -> None:
        await go.wait()

    try:
        await cached.upsert_nodes("P", [{"id": "n", "v": 0}])
        assert version(await cached.get_node("n")) == 0  # A caches v=0 (L1 and L2)
        assert len(await l2_entries(other[2], "g", "get_node")) == 1
        await cached.upsert_nodes("P", [{"id": "n", "v": 0}])  # invalidated again
        assert await l2_entries(other[2], "g", "get_node") == []
        hold_loads(b_cached, on_loaded, wait_go)
        b_read = asyncio.create_task(b_cached.get_node("n"))
        await loaded.wait()  # B has read v=0 from the graph
        await cached.upsert_nodes("P", [{"id": "n", "v": 1}])  # A's write + invalidation
        go.set()
        assert version(await b_read) == 0  # B's caller asked before the write
        assert await l2_entries(other[2], "g", "get_node") == []  # refused: not in L2
        assert version(await cached.get_node("n")) == 1  # A: L1 miss, L2 miss, graph
        assert version(await cached.get_node("n")) == 1  # A: L1 hit
        assert version(await b_cached.get_node("n")) == 1  # B: its L1 did not keep v=0
        assert version(await b_cached.get_node("n")) == 1
    finally:
        go.set()
        await close_cached(*other)


@pytest.mark.graph
@pytest.mark.redis
async def test_a_fill_in_another_process_that_loaded_before_a_write_is_not_stored(
    cached: CachedGraphStore, redis_url: str, bolt_uri: str, bolt_auth: tuple[str, str]
) -> None:
    """The same race with a real second process: it reads v=0 from the graph and is held
    (on its stdin) while this process writes v=1; its write-back is refused, and this
    process, that process and a third one all read v=1 afterwards."""
    await cached.upsert_nodes("P", [{"id": "n", "v": 0}])
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        redis_url,
        bolt_uri,
        bolt_auth[0],
        "g",
        "held-read",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line.strip() == b"loaded"  # it has read v=0 from the graph
        await cached.upsert_nodes("P", [{"id": "n", "v": 1}])
        process.stdin.write(b"go\n")
        await process.stdin.drain()
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["held"] == 0  # its caller asked before the write
    assert report["again"] == 1  # its own L1 did not keep v=0
    assert version(await cached.get_node("n")) == 1
    third = await run_worker(redis_url, bolt_uri, bolt_auth[0], "g", "read")
    assert third["before"] == 1


@pytest.mark.graph
@pytest.mark.redis
async def test_a_cached_read_miss_costs_three_redis_round_trips(
    cached: CachedGraphStore, redis_url: str, bolt_uri: str, bolt_auth: tuple[str, str]
) -> None:
    """A miss: the L2 GET, the tag snapshot (one GET), the fenced write-back (one
    script). Another instance's read of it is then one GET (an L2 hit)."""
    await cached.upsert_nodes("P", [{"id": "n", "v": 0}, {"id": "warm", "v": 0}])
    await cached.get_node("warm")  # loads the write script into Redis
    first = await open_cached(redis_url, bolt_uri, bolt_auth[0], "g")
    second = await open_cached(redis_url, bolt_uri, bolt_auth[0], "g")
    sent: list[str] = []
    for client in (first[2], second[2]):
        command = client.execute_command

        async def counted(*args: Any, _command: Any = command, **options: Any) -> Any:
            sent.append(str(args[0]).upper())
            return await _command(*args, **options)

        client.execute_command = counted  # type: ignore[method-assign]
    try:
        assert version(await first[0].get_node("n")) == 0
        assert sent == ["GET", "GET", "EVALSHA"]
        sent.clear()
        assert version(await second[0].get_node("n")) == 0
        assert sent == ["GET"]
    finally:
        await close_cached(*first)
        await close_cached(*second)


if __name__ == "__main__":  # the worker process of the cross-process test
    asyncio.run(worker(*sys.argv[1:6]))

"""Graph benchmark: MemgraphGraphStore and CachedGraphStore against the raw neo4j driver.

Run ``python benchmarks/bench_graph.py`` (``--quick`` for a short run). One embedded Redis
with FalkorDB's Bolt server is started; every figure is measured in this run against the
raw driver on that same server:

* **read** -- ``store.get_node(id)`` (policy from default settings, telemetry on, typed
  result) against a raw ``session.execute_read`` of the same statement (the issue's
  baseline; goal <= 1.10x), and against a raw explicit read transaction (what the store
  itself sends). Rounds of the variants are interleaved in a shuffled order and the
  median of the per-round ratios is reported (a shared machine drifts).
* **bulk upsert** -- 10,000 nodes + 20,000 edges through the batched ``UNWIND ... MERGE``
  upserts against one ``MERGE`` statement per item through the raw driver (the per-item
  rate is measured on a 1/5 slice and both are given as items per second).
* **cached read** -- ``CachedGraphStore.get_node`` answered from L1 (in-process) and from
  L2 (Redis; an L1 of one entry, two keys alternating) against the uncached Bolt read.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import neo4j
from redis.asyncio import Redis

from config import Settings
from infra.cache import RedisCache
from infra.cache.three_tier_cache import ThreeTierCache
from infra.graph import cypher
from infra.graph.cached_store import CachedGraphStore
from infra.graph.driver import open_driver
from infra.graph.memgraph import MemgraphGraphStore
from infra.resilience import ResiliencePolicy
from infra.testing.embedded import FALKORDB_AUTH, EmbeddedRedis

Call = Callable[[], Awaitable[Any]]
READ_GOAL = 1.10


@dataclass
class Samples:
    """Per-round seconds per call of one variant: wall time and this process's CPU."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


async def per_call(call: Call, n: int) -> tuple[float, float]:
    """Wall and CPU seconds per call over ``n`` sequential calls."""
    gc.collect(1)  # the previous batch's young garbage is not this one's cost (as harness.py)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await call()
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


async def interleaved(variants: dict[str, Call], rounds: int, n: int) -> dict[str, Samples]:
    """One measurement per variant per round, in a shuffled order each round (many short
    rounds: a shared machine's load changes less within one)."""
    order = list(variants)
    shuffler = random.Random(0)
    for call in variants.values():
        await per_call(call, max(10, n // 10))  # warm-up
    results = {name: Samples() for name in variants}
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            wall, cpu = await per_call(variants[name], n)
            results[name].wall.append(wall)
            results[name].cpu.append(cpu)
    return results


def report(title: str, results: dict[str, Samples], baseline: str) -> dict[str, float]:
    """Print median wall µs per call, the median per-round wall ratio to ``baseline``, and
    the client CPU per call (what our layers add shows there, without the server)."""
    print(f"\n{title}")
    print("    variant                                   µs/call    ratio   client CPU µs/call")
    ratios: dict[str, float] = {}
    base = results[baseline]
    for name, samples in results.items():
        pairs = zip(samples.wall, base.wall, strict=True)
        ratios[name] = statistics.median(s / b for s, b in pairs)
        wall = statistics.median(samples.wall) * 1e6
        cpu = statistics.median(samples.cpu) * 1e6
        added = statistics.median(s - b for s, b in zip(samples.cpu, base.cpu, strict=True))
        print(f"    {name:40s} {wall:9.1f}  {ratios[name]:6.3f}x  {cpu:8.1f} ({added * 1e6:+.1f})")
    return ratios


async def reads(store: MemgraphGraphStore, driver: Any, rounds: int, n: int) -> float:
    async def work(tx: Any) -> list[Any]:
        result = await tx.run(cypher.GET_NODE, {"id": "n42"})
        return [record async for record in result]

    async def raw_execute_read() -> list[Any]:
        async with driver.session() as session:
            records: list[Any] = await session.execute_read(work)
            return records

    async def raw_explicit() -> list[Any]:
        async with driver.session(default_access_mode=neo4j.READ_ACCESS) as session:
            tx = await session.begin_transaction()
            async with tx:
                records = await work(tx)
                await tx.commit()
                return records

    variants: dict[str, Call] = {
        "raw execute_read": raw_execute_read,
        "raw explicit read transaction": raw_explicit,
        "store.get_node (policy, telemetry)": lambda: store.get_node("n42"),
    }
    results = await interleaved(variants, rounds, n)
    ratios = report("Read one node by id (sequential)", results, "raw execute_read")
    return ratios["store.get_node (policy, telemetry)"]


async def bulk(store: MemgraphGraphStore, driver: Any, nodes: int, quick: bool) -> float:
    await store.write("MATCH (n) DETACH DELETE n")
    node_rows = [{"id": f"b{i}", "i": i} for i in range(nodes)]
    edge_rows = [
        (f"b{i}", f"b{(i * 7 + k) % nodes}", {"k": k}) for i in range(nodes) for k in (1, 2)
    ]
    start = time.perf_counter()
    await store.upsert_nodes("Bulk", node_rows)
    await store.upsert_edges("LINK", edge_rows)
    batched = time.perf_counter() - start
    items = len(node_rows) + len(edge_rows)
    await store.write("MATCH (n) DETACH DELETE n")
    await store.ensure_index()
    share = nodes // (20 if quick else 5)
    one_node = "MERGE (n:`_Node` {id: $id}) SET n:Bulk, n.i = $i"
    one_edge = (
        "MATCH (a:`_Node` {id: $s}) MATCH (b:`_Node` {id: $e}) MERGE (a)-[r:LINK]->(b) SET r.k = $k"
    )
    start = time.perf_counter()
    async with driver.session() as session:
        for i in range(share):
            await (await session.run(one_node, {"id": f"b{i}", "i": i})).consume()
        for s, e, props in edge_rows[: 2 * share]:
            await (await session.run(one_edge, {"s": s, "e": e, "k": props["k"]})).consume()
    single = time.perf_counter() - start
    batched_rate, single_rate = items / batched, 3 * share / single
    print(f"\nBulk upsert of {len(node_rows):,} nodes + {len(edge_rows):,} edges")
    label = "batched UNWIND ... MERGE (store)"
    print(f"    {label:40s} {batched:8.2f} s   {batched_rate:9,.0f} items/s")
    label = f"one statement per item (raw, {3 * share:,} items)"
    print(f"    {label:40s} {single:8.2f} s   {single_rate:9,.0f} items/s")
    print(f"    speed-up {batched_rate / single_rate:.1f}x")
    return batched_rate / single_rate


async def cached_reads(
    store: MemgraphGraphStore, url: str, rounds: int, n: int
) -> tuple[float, float]:
    await store.upsert_nodes("P", [{"id": "c1", "v": 1}, {"id": "c2", "v": 2}])
    client = Redis.from_url(url)
    hot = ThreeTierCache(RedisCache(client), redis=client, namespace="bench_l1")
    l2_only = ThreeTierCache(RedisCache(client), redis=client, namespace="bench_l2", l1_max_size=1)
    l1 = CachedGraphStore(store, hot)
    l2 = CachedGraphStore(store, l2_only)
    flip = [0]

    async def l2_read() -> Any:
        flip[0] ^= 1
        return await l2.get_node("c1" if flip[0] else "c2")

    await l1.get_node("c1")
    await l2.get_node("c1")
    await l2.get_node("c2")
    try:
        variants: dict[str, Call] = {
            "Bolt read (store.get_node)": lambda: store.get_node("c1"),
            "cached, L1 hit": lambda: l1.get_node("c1"),
            "cached, L2 hit (Redis)": l2_read,
        }
        results = await interleaved(variants, rounds, n)
        ratios = report("Cached read vs Bolt read", results, "Bolt read (store.get_node)")
    finally:
        await hot.close()
        await l2_only.close()
        await client.aclose()
    return ratios["cached, L1 hit"], ratios["cached, L2 hit (Redis)"]


def summary(read_ratio: float, speedup: float, l1_ratio: float, l2_ratio: float) -> None:
    """Every figure the benchmark exists for, with its goal and verdict where one is set."""
    verdict = "met" if read_ratio <= READ_GOAL else "NOT met"
    print("\nSummary (medians of same-round ratios)")
    print(
        f"    store read vs raw execute_read: {read_ratio:.3f}x "
        f"(goal <= {READ_GOAL:.2f}x: {verdict})"
    )
    print(
        f"    batched upsert vs one statement per item: {speedup:.1f}x the per-item rate "
        "(no goal set; reported)"
    )
    print(
        f"    cached read vs Bolt read: L1 hit {l1_ratio:.3f}x, L2 hit {l2_ratio:.3f}x "
        "(no goal set; reported)"
    )


async def main(args: argparse.Namespace) -> None:
    rounds, n, nodes = (6, 60, 2_000) if args.quick else (40, 120, 10_000)
    began = time.perf_counter()
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with EmbeddedRedis() as server:
        settings = Settings(graph_uri=server.bolt_uri, graph_user=FALKORDB_AUTH[0])
        policy = ResiliencePolicy.from_settings(settings, component="graph")
        store = MemgraphGraphStore.from_settings(settings, policy=policy, name="bench")
        driver = open_driver(server.bolt_uri, user=FALKORDB_AUTH[0])
        try:
            await store.ensure_index()
            speedup = await bulk(store, driver, nodes, args.quick)
            await store.upsert_nodes("P", [{"id": "n42", "name": "Ada", "born": 1815}])
            read_ratio = await reads(store, driver, rounds, n)
            l1_ratio, l2_ratio = await cached_reads(store, server.url, rounds, n)
        finally:
            await driver.close()
            await store.close()
    summary(read_ratio, speedup, l1_ratio, l2_ratio)
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"wall time: {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    asyncio.run(main(parser.parse_args()))

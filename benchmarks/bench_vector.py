"""Vector upsert throughput and search latency: our stores vs the raw clients, same run.

Run ``python benchmarks/bench_vector.py`` (``--quick`` for a short run; ``--points``,
``--dim``, ``--rounds``, ``--searches``). Every variant writes the same ``points`` x
``dim`` random vectors (with a small payload) into a fresh collection, starting from the
caller's raw ``(id, vector, payload)`` tuples: building each API's input type
(``VectorPoint`` for ours, ``PointStruct`` for qdrant-client) is part of the measured
time. Variants run in rotating order, one per round; each figure is the median over
rounds.

Qdrant, local mode (``location=":memory:"``; no server can be installed here):

* ``ours``                -- ``QdrantVectorStore.upsert`` with the settings' policy,
  batches of 256, 4 concurrent (the defaults);
* ``ours, concurrency 1`` -- the same, one batch at a time;
* ``upload_points``       -- qdrant-client's own bulk helper (``batch_size=256``), from
  the same raw tuples (building its ``PointStruct`` inputs is part of using it);
* ``upload_points, prebuilt`` -- the same with the ``PointStruct`` list built before the
  clock starts (shown for transparency; not the goal's baseline);
* ``one at a time``       -- ``await client.upsert(...)`` per point, sequentially.

Goals: ``ours`` >= 10,000 vectors/s and >= 0.9x ``upload_points``.

pgvector, in the embedded PostgreSQL 18 (or ``SEMANTICA_TEST_POSTGRES_DSN``), a real
server over a socket, every variant writing all ``points`` into a fresh collection (HNSW
insertion gets dearer as the graph grows, so a shorter run would flatter the slow
variant):

* ``batched``                -- ``PgVectorStore.upsert``: ``executemany`` batches of
  256, 4 concurrent (median over rounds);
* ``batched, concurrency 1`` -- the same, one batch at a time (median over rounds);
* ``row at a time``          -- the same store with ``batch_size=1, concurrency=1``: one
  ``INSERT ... ON CONFLICT`` round trip per point (slow: measured once).

Goal: ``batched`` >= 4x ``row at a time``. Then both again on the collection's table
with its HNSW index dropped (once each, for the explanation: what batching saves when the
index's per-row insertion cost is gone).

Search: ``searches`` queries of k=10 one after another on each filled collection; p50 and
p99 latency for our store and for the raw client (``query_points`` / asyncpg ``fetch``
of the same SQL), interleaved query by query. Goals (ours vs the raw client in the same
run, the project's overhead budget for one call): p50 <= 1.10x, p99 <= 1.25x.

Every goal is printed with ``met`` / ``NOT met`` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
from qdrant_client import AsyncQdrantClient, models

from config import Settings
from infra.ports import VectorPoint
from infra.resilience import ResiliencePolicy
from infra.storage import EnhancedPostgresStore
from infra.vector.pgvector import PgVectorStore
from infra.vector.qdrant import QdrantVectorStore

Data = list[tuple[int, list[float], dict[str, Any]]]


def dataset(points: int, dim: int, seed: int = 7) -> Data:
    rng = random.Random(seed)
    return [
        (i, [rng.uniform(-1.0, 1.0) for _ in range(dim)], {"i": i, "group": i % 10})
        for i in range(points)
    ]


def policy(component: str) -> ResiliencePolicy:
    """What a deployment runs: the settings' default policy."""
    return ResiliencePolicy.from_settings(Settings(), component=component)


@contextlib.contextmanager
def postgres_dsn() -> Iterator[str]:
    external = os.environ.get("SEMANTICA_TEST_POSTGRES_DSN")
    if external:
        yield external
        return
    from infra.testing.embedded import EmbeddedPostgres  # noqa: PLC0415 - optional extra

    with EmbeddedPostgres() as server:
        yield server.dsn


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ----------------------------------------------------------------------------- Qdrant
async def qdrant_upserts(data: Data, dim: int) -> dict[str, Callable[[], Awaitable[float]]]:
    """Each variant: a fresh local-mode engine; the clock runs from the caller's raw
    ``(id, vector, payload)`` tuples to the last point stored, so each API's own input
    type is built inside the measurement (``VectorPoint`` / ``PointStruct``)."""
    params = models.VectorParams(size=dim, distance=models.Distance.COSINE)
    prebuilt = [models.PointStruct(id=i, vector=v, payload=p) for i, v, p in data]

    async def fresh() -> AsyncQdrantClient:
        client = AsyncQdrantClient(location=":memory:")
        await client.create_collection("bench", vectors_config=params)
        return client

    async def finish(client: AsyncQdrantClient, start: float) -> float:
        elapsed = time.perf_counter() - start
        assert (await client.count("bench")).count == len(data)
        await client.close()
        return len(data) / elapsed

    async def ours(concurrency: int) -> float:
        client = await fresh()
        store = QdrantVectorStore(client, policy=policy("qdrant"), concurrency=concurrency)
        start = time.perf_counter()
        await store.upsert("bench", [VectorPoint(i, v, p) for i, v, p in data])
        return await finish(client, start)

    async def upload_points(structs: list[models.PointStruct] | None) -> float:
        client = await fresh()
        start = time.perf_counter()
        if structs is None:
            structs = [models.PointStruct(id=i, vector=v, payload=p) for i, v, p in data]
        client.upload_points("bench", structs, batch_size=256, wait=True)  # blocking helper
        return await finish(client, start)

    async def one_at_a_time() -> float:
        client = await fresh()
        start = time.perf_counter()
        for i, v, p in data:
            await client.upsert("bench", [models.PointStruct(id=i, vector=v, payload=p)])
        return await finish(client, start)

    return {
        "ours": lambda: ours(4),
        "ours, concurrency 1": lambda: ours(1),
        "upload_points": lambda: upload_points(None),
        "upload_points, prebuilt": lambda: upload_points(prebuilt),
        "one at a time": one_at_a_time,
    }


async def qdrant_search(data: Data, dim: int, searches: int) -> dict[str, list[float]]:
    client = AsyncQdrantClient(location=":memory:")
    store = QdrantVectorStore(client, policy=policy("qdrant"))
    await store.ensure_collection("bench", vector_size=dim)
    await store.upsert("bench", [VectorPoint(i, v, p) for i, v, p in data])
    queries = [vector for _, vector, _ in dataset(searches, dim, seed=11)]
    timings: dict[str, list[float]] = {"ours": [], "raw query_points": []}
    for query in queries:
        start = time.perf_counter()
        hits = await store.search("bench", query, limit=10)
        timings["ours"].append(time.perf_counter() - start)
        start = time.perf_counter()
        raw = await client.query_points("bench", query=query, limit=10, with_payload=True)
        timings["raw query_points"].append(time.perf_counter() - start)
        assert [h.id for h in hits] == [p.id for p in raw.points]
    await client.close()
    return timings


# --------------------------------------------------------------------------- pgvector
async def pg_upserts(
    dsn: str, data: Data, dim: int
) -> tuple[dict[str, Callable[[], Awaitable[float]]], dict[str, Callable[[], Awaitable[float]]]]:
    """The variants on the real schema, and the same two without the HNSW index."""
    counter = iter(range(10**6))

    async def run(batch_size: int, concurrency: int, *, index: bool = True) -> float:
        relational = EnhancedPostgresStore(dsn, 1, 8, policy=policy("postgres"), name="bench")
        store = PgVectorStore(relational, batch_size=batch_size, concurrency=concurrency)
        name = f"bench_{next(counter)}"
        await store.ensure_collection(name, vector_size=dim)
        if not index:
            await relational.execute(f'DROP INDEX "semantica_vidx_{name}"')
        start = time.perf_counter()
        written = await store.upsert(name, [VectorPoint(i, v, p) for i, v, p in data])
        elapsed = time.perf_counter() - start
        assert written == len(data) == await store.count(name)
        await store.delete_collection(name)
        await relational.close()
        return len(data) / elapsed

    indexed: dict[str, Callable[[], Awaitable[float]]] = {
        "batched": lambda: run(256, 4),
        "batched, concurrency 1": lambda: run(256, 1),
        "row at a time": lambda: run(1, 1),
    }
    no_index: dict[str, Callable[[], Awaitable[float]]] = {
        "batched": lambda: run(256, 4, index=False),
        "row at a time": lambda: run(1, 1, index=False),
    }
    return indexed, no_index


async def pg_search(dsn: str, data: Data, dim: int, searches: int) -> dict[str, list[float]]:
    relational = EnhancedPostgresStore(dsn, 1, 4, policy=policy("postgres"), name="bench")
    store = PgVectorStore(relational)
    await store.ensure_collection("bench_search", vector_size=dim)
    await store.upsert("bench_search", [VectorPoint(i, v, p) for i, v, p in data])
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    sql = (
        "SELECT id, payload, (1 - (embedding <=> $1::real[]::vector)) AS score FROM "
        '"semantica_vec_bench_search" WHERE TRUE '
        "ORDER BY (embedding <=> $1::real[]::vector) LIMIT $2"
    )
    queries = [vector for _, vector, _ in dataset(searches, dim, seed=11)]
    timings: dict[str, list[float]] = {"ours": [], "raw asyncpg fetch": []}
    for query in queries:
        start = time.perf_counter()
        await store.search("bench_search", query, limit=10)
        timings["ours"].append(time.perf_counter() - start)
        start = time.perf_counter()
        await pool.fetch(sql, query, 10)
        timings["raw asyncpg fetch"].append(time.perf_counter() - start)
    await pool.close()
    await store.delete_collection("bench_search")
    await relational.close()
    return timings


# ------------------------------------------------------------------------------ report
async def rounds_of(
    variants: dict[str, Callable[[], Awaitable[float]]], rounds: int
) -> dict[str, float]:
    results: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(await variants[name]())
    return {name: statistics.median(values) for name, values in results.items()}


def show_rates(title: str, rates: dict[str, float], base: str) -> None:
    print(f"\n{title}")
    for name, rate in rates.items():
        print(f"  {name:<22} {rate:>10,.0f} vectors/s   {rate / rates[base]:>5.2f}x {base}")


def show_latency(title: str, timings: dict[str, list[float]]) -> tuple[float, float]:
    """Print p50/p99 of each; return ours / raw at p50 and at p99."""
    print(f"\n{title}")
    raw = next(name for name in timings if name != "ours")
    for name, values in timings.items():
        print(
            f"  {name:<22} p50 {percentile(values, 0.5) * 1000:7.3f} ms   "
            f"p99 {percentile(values, 0.99) * 1000:7.3f} ms"
        )
    ratios = tuple(
        percentile(timings["ours"], q) / percentile(timings[raw], q) for q in (0.5, 0.99)
    )
    print(f"  ours / raw             p50 {ratios[0]:.2f}x   p99 {ratios[1]:.2f}x")
    return ratios[0], ratios[1]


def verdict(label: str, met: bool) -> str:
    return f"  [{'met' if met else 'NOT met'}] {label}"


async def run(args: argparse.Namespace) -> None:
    data = dataset(args.points, args.dim)
    print(f"{args.points:,} x {args.dim} vectors, {args.rounds} rounds (median), cosine")
    qdrant = await rounds_of(await qdrant_upserts(data, args.dim), args.rounds)
    show_rates("Qdrant local mode, upsert", qdrant, "upload_points")
    with postgres_dsn() as dsn:
        indexed, no_index = await pg_upserts(dsn, data, args.dim)
        slow = {"row at a time": indexed.pop("row at a time")}
        pg = await rounds_of(indexed, args.rounds) | await rounds_of(slow, 1)
        show_rates("pgvector, upsert (HNSW index maintained, as deployed)", pg, "row at a time")
        bare = await rounds_of(no_index, 1)
        show_rates(
            "pgvector, upsert into the same table without its HNSW index", bare, "row at a time"
        )
        pg_latency = await pg_search(dsn, data, args.dim, args.searches)
    qdrant_search_ratios = show_latency(
        f"Qdrant local mode, search k=10 ({args.searches} queries)",
        await qdrant_search(data, args.dim, args.searches),
    )
    pg_search_ratios = show_latency(
        f"pgvector (HNSW), search k=10 ({args.searches} queries)", pg_latency
    )
    print("\nGoals")
    print(
        verdict(
            f"Qdrant local >= 10,000 vectors/s: {qdrant['ours']:,.0f}", qdrant["ours"] >= 10_000
        )
    )
    ratio = qdrant["ours"] / qdrant["upload_points"]
    print(verdict(f"Qdrant local >= 0.9x upload_points: {ratio:.2f}x", ratio >= 0.9))
    pg_ratio = pg["batched"] / pg["row at a time"]
    print(verdict(f"pgvector batched >= 4x row at a time: {pg_ratio:.2f}x", pg_ratio >= 4))
    for engine, (p50, p99) in (
        ("Qdrant local", qdrant_search_ratios),
        ("pgvector", pg_search_ratios),
    ):
        print(verdict(f"{engine} search p50 <= 1.10x raw client: {p50:.2f}x", p50 <= 1.10))
        print(verdict(f"{engine} search p99 <= 1.25x raw client: {p99:.2f}x", p99 <= 1.25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 points, 2 rounds")
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--searches", type=int, default=300)
    args = parser.parse_args()
    if args.quick:
        args.points, args.rounds, args.searches = 2_000, 2, 100
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

"""CachedGraphStore on the fake graph and a single-process 3-tier cache: hits, precise
invalidation by node-id tags, single flight, and no pre-write result after a write --
including a read whose load overlaps the write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.cache import ThreeTierCache
from infra.graph.cached_store import CachedGraphStore
from infra.graph.identifiers import NodeId
from infra.graph.results import Node
from infra.observability import get_metrics_collector
from infra.resilience import ResiliencePolicy
from infra.testing.fakes.cache import FakeCache
from infra.testing.fakes.graph import FakeGraphStore


def build() -> tuple[FakeGraphStore, CachedGraphStore]:
    graph = FakeGraphStore(policy=ResiliencePolicy.instant("graph"))
    return graph, CachedGraphStore(graph, ThreeTierCache(FakeCache()), ttl=60)


def loads(graph: FakeGraphStore, operation: str) -> int:
    return sum(1 for call in graph.calls if call.operation == operation)


async def test_a_read_is_loaded_once_then_served_from_the_cache() -> None:
    """The second get_node is a hit: the graph is not asked again; metrics say so."""
    graph, cached = build()
    metrics = get_metrics_collector()
    hits = metrics.get_counter("graph_cache_requests_total", operation="get_node", result="hit")
    await graph.upsert_nodes("P", [{"id": "a", "v": 1}])
    assert await cached.get_node("a") == Node("a", frozenset({"P"}), {"v": 1})
    assert await cached.get_node("a") == Node("a", frozenset({"P"}), {"v": 1})
    assert loads(graph, "get_node") == 1
    after = metrics.get_counter("graph_cache_requests_total", operation="get_node", result="hit")
    assert after == hits + 1
    assert await cached.get_node("missing") is None
    assert await cached.get_node("missing") is None
    assert loads(graph, "get_node") == 2  # absence is cached too


async def test_writes_invalidate_exactly_the_reads_that_depend_on_them() -> None:
    """A neighbour's property change invalidates the neighbourhood, not unrelated nodes;
    a new edge anywhere invalidates paths; node writes invalidate counts."""
    graph, cached = build()
    await cached.upsert_nodes("P", [{"id": i} for i in "abcdz"])
    await cached.upsert_edges("R", [("a", "b"), ("b", "c")])
    assert [n.node.id for n in await cached.neighbours("a")] == ["b"]
    assert [p.length for p in await cached.paths("a", "c")] == [2]
    assert await cached.get_node("z") == Node("z", frozenset({"P"}), {})
    assert await cached.count_nodes() == 5
    before = loads(graph, "get_node")
    await cached.upsert_nodes("P", [{"id": "b", "v": 2}])
    [b] = await cached.neighbours("a")
    assert b.node.properties == {"v": 2}
    await cached.get_node("z")
    assert loads(graph, "get_node") == before  # z was not touched: still a hit
    await cached.upsert_edges("R", [("a", "d"), ("d", "c")])  # a, c touched; d new
    await cached.upsert_edges("R", [("a", "c")])
    assert [p.length for p in await cached.paths("a", "c")] == [1, 2, 2]
    await cached.delete_nodes(["d"])
    assert [p.length for p in await cached.paths("a", "c")] == [1, 2]
    assert await cached.count_nodes() == 4
    await cached.delete_edges("R", [("a", "b")])
    assert [n.node.id for n in await cached.neighbours("a")] == ["c"]


async def test_a_raw_write_clears_every_cached_read() -> None:
    """What a raw Cypher write touched is unknown: the namespace is cleared."""
    graph, cached = build()
    graph.respond("MATCH (n) SET n.x = 1", [])
    await cached.upsert_nodes("P", [{"id": 1}])
    await cached.get_node(1)
    await cached.write("MATCH (n) SET n.x = 1")
    await cached.get_node(1)
    assert loads(graph, "get_node") == 2


async def test_concurrent_misses_run_one_graph_read() -> None:
    """Single flight: 20 concurrent reads of one key, one load."""
    graph, cached = build()
    await graph.upsert_nodes("P", [{"id": 1}])
    results = await asyncio.gather(*(cached.get_node(1) for _ in range(20)))
    assert results[0] is not None
    assert all(r == results[0] for r in results)
    assert loads(graph, "get_node") == 1


async def test_a_cancelled_first_reader_does_not_cancel_the_others() -> None:
    """Cancellation stays with the caller that was cancelled: readers waiting on its
    load start the load again and get the node (they got CancelledError before)."""
    graph = GatedGraph()
    cached = CachedGraphStore(graph, ThreeTierCache(FakeCache()), ttl=60)
    await graph.upsert_nodes("P", [{"id": 1}])
    first = asyncio.create_task(cached.get_node(1))
    await graph.read_done.wait()
    followers = [asyncio.create_task(cached.get_node(1)) for _ in range(3)]
    await asyncio.sleep(0)  # the followers join the first reader's load
    first.cancel()
    graph.gate.set()
    results = await asyncio.gather(*followers)
    assert all(node is not None and node.id == 1 for node in results)
    with pytest.raises(asyncio.CancelledError):
        await first


class GatedGraph(FakeGraphStore):
    """A fake whose get_node reads the graph, then waits at a gate before answering: a
    load that read the pre-write graph and finishes after the write."""

    def __init__(self) -> None:
        super().__init__(policy=ResiliencePolicy.instant("graph"))
        self.gate = asyncio.Event()
        self.read_done = asyncio.Event()

    async def get_node(self, node_id: NodeId) -> Node | None:
        node = await super().get_node(node_id)
        self.read_done.set()
        await self.gate.wait()
        return node


Write = Callable[[CachedGraphStore], Coroutine[Any, Any, Any]]


@pytest.mark.parametrize(
    "write",
    [
        lambda c: c.upsert_nodes("P", [{"id": "a", "v": 2}]),
        lambda c: c.delete_nodes(["a"]),
    ],
    ids=["upsert", "delete"],
)
async def test_a_load_overlapping_a_write_never_leaves_the_old_value(write: Write) -> None:
    """The load read v=1, the write lands and returns, then the load finishes: the write
    waited for it, and neither the load nor any later read stores or serves v=1."""
    graph = GatedGraph()
    cached = CachedGraphStore(graph, ThreeTierCache(FakeCache()))
    await graph.upsert_nodes("P", [{"id": "a", "v": 1}])
    reader = asyncio.create_task(cached.get_node("a"))
    await graph.read_done.wait()
    writer = asyncio.create_task(write(cached))
    await asyncio.sleep(0)
    assert not writer.done()  # waits for the overlapping load
    graph.gate.set()
    await writer
    await reader
    node = await FakeGraphStore.get_node(graph, "a")
    assert await cached.get_node("a") == node


_ops = st.lists(
    st.tuples(st.sampled_from(["read", "write"]), st.sampled_from(["a", "b"]), st.integers(0, 9)),
    max_size=12,
)


@settings(max_examples=60)
@given(ops=_ops)
def test_any_interleaving_reads_never_return_a_value_older_than_the_last_write(
    ops: list[tuple[str, str, int]],
) -> None:
    """Reads and writes run concurrently (each write starts while earlier reads may be
    loading); after everything settles, and after every write as it returns, a read
    returns what the graph holds."""

    async def scenario() -> None:
        graph, cached = build()
        await graph.upsert_nodes("P", [{"id": "a", "v": -1}, {"id": "b", "v": -1}])
        pending: list[asyncio.Task[Any]] = []
        for kind, node_id, value in ops:
            if kind == "read":
                pending.append(asyncio.create_task(cached.get_node(node_id)))
                await asyncio.sleep(0)
            else:
                await cached.upsert_nodes("P", [{"id": node_id, "v": value}])
                truth = await graph.get_node(node_id)
                assert await cached.get_node(node_id) == truth
        await asyncio.gather(*pending)
        for node_id in ("a", "b"):
            assert await cached.get_node(node_id) == await graph.get_node(node_id)

    asyncio.run(scenario())

"""CachedGraphStore against its source, as an outside checker would drive it.

* A Hypothesis state machine runs every write kind (node and edge upserts and deletes, a
  raw write after a change made behind the cache's back) and every cached read, and
  mutates what the reads return the way a careless caller would; every read must equal
  the fake graph's own answer. It found that a caller appending to a returned node's
  list property changed what later cache hits returned.
* Hostile arguments to the cached reads raise the store's ``InvalidArgumentError``,
  naming the same argument (a ``TypeError`` from the cache key before).
* A write cancelled while it invalidates still invalidates every tag it touched (the
  graph changed; the cache must not keep the old answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from infra.cache import ThreeTierCache
from infra.exceptions import InvalidArgumentError
from infra.graph.cached_store import CachedGraphStore
from infra.graph.results import Neighbour, Node, Path
from infra.resilience import ResiliencePolicy
from infra.testing.fakes.cache import FakeCache
from infra.testing.fakes.graph import FakeGraphStore

IDS: list[str | int] = ["a", "b", "c", 1]
_ids = st.sampled_from(IDS)
_labels = st.sampled_from(["A", "B"])
_types = st.sampled_from(["R", "S"])
_props = st.dictionaries(
    st.sampled_from(["p", "tags"]),
    st.one_of(st.integers(0, 3), st.lists(st.sampled_from(["x", "y"]), max_size=2)),
    max_size=2,
)
_directions = st.sampled_from(["out", "in", "both"])


def _mutate_properties(properties: Any) -> None:
    """What a careless caller does to a result it was given."""
    for value in properties.values():
        if isinstance(value, list):
            value.append("mutated")
    properties["mutated"] = True


def mutate(result: Any) -> None:
    """Mutate every property map (and list inside) of a read's result."""
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, Node):
            _mutate_properties(item.properties)
        elif isinstance(item, Neighbour):
            _mutate_properties(item.node.properties)
            _mutate_properties(item.relationship.properties)
        elif isinstance(item, Path):
            for node in item.nodes:
                _mutate_properties(node.properties)
            for rel in item.relationships:
                _mutate_properties(rel.properties)


class CachedAgainstSource(RuleBasedStateMachine):
    """The cached store and the graph under it answer alike, whatever happened."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.source = FakeGraphStore(policy=ResiliencePolicy.instant("graph"))
        self.cached = CachedGraphStore(self.source, ThreeTierCache(FakeCache()), ttl=60)
        self.source.respond("MATCH (n) SET n.raw = true", [])
        self.mutating = False

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.loop.close()

    def read(self, call: Callable[[Any], Coroutine[Any, Any, Any]]) -> None:
        cached = self.run(call(self.cached))
        assert cached == self.run(call(self.source))
        if self.mutating:
            mutate(cached)

    # ----------------------------------------------------------------------- writes
    @rule(label=_labels, nodes=st.lists(st.tuples(_ids, _props), max_size=3))
    def upsert_nodes(self, label: str, nodes: list[tuple[Any, dict[str, Any]]]) -> None:
        self.run(self.cached.upsert_nodes(label, [{"id": i, **p} for i, p in nodes]))

    @rule(rel_type=_types, edges=st.lists(st.tuples(_ids, _ids, _props), max_size=3))
    def upsert_edges(self, rel_type: str, edges: list[tuple[Any, Any, dict[str, Any]]]) -> None:
        self.run(self.cached.upsert_edges(rel_type, edges))

    @rule(ids=st.lists(_ids, max_size=2))
    def delete_nodes(self, ids: list[Any]) -> None:
        self.run(self.cached.delete_nodes(ids))

    @rule(rel_type=_types, edges=st.lists(st.tuples(_ids, _ids), max_size=2))
    def delete_edges(self, rel_type: str, edges: list[tuple[Any, Any]]) -> None:
        self.run(self.cached.delete_edges(rel_type, edges))

    @rule(node_id=_ids, props=_props, edge_to=_ids)
    def raw_write(self, node_id: Any, props: dict[str, Any], edge_to: Any) -> None:
        """The graph changes behind the cache's back (as a raw statement changes it),
        then the raw write goes through the cached store."""
        self.run(self.source.upsert_nodes("A", [{"id": node_id, **props}]))
        self.run(self.source.upsert_edges("R", [(node_id, edge_to)]))
        self.run(self.cached.write("MATCH (n) SET n.raw = true"))

    @rule()
    def start_mutating_results(self) -> None:
        self.mutating = True

    # ------------------------------------------------------------------------ reads
    @rule(node_id=_ids)
    def get_node(self, node_id: Any) -> None:
        self.read(lambda s: s.get_node(node_id))

    @rule(
        node_id=_ids,
        rel_type=st.one_of(st.none(), _types),
        direction=_directions,
        limit=st.sampled_from([1, 2, 100]),
    )
    def neighbours(self, node_id: Any, rel_type: str | None, direction: str, limit: int) -> None:
        self.read(
            lambda s: s.neighbours(node_id, rel_type=rel_type, direction=direction, limit=limit)
        )

    @rule(
        start=_ids,
        end=_ids,
        max_hops=st.integers(1, 3),
        rel_type=st.one_of(st.none(), _types),
        direction=_directions,
    )
    def paths(
        self, start: Any, end: Any, max_hops: int, rel_type: str | None, direction: str
    ) -> None:
        # No limit cut: which of equally long paths a limit keeps is the engine's choice.
        self.read(
            lambda s: s.paths(
                start, end, max_hops=max_hops, rel_type=rel_type, direction=direction, limit=500
            )
        )

    @rule(label=st.one_of(st.none(), _labels))
    def count_nodes(self, label: str | None) -> None:
        self.read(lambda s: s.count_nodes(label))

    @precondition(lambda self: self.mutating)
    @invariant()
    def every_node_reads_as_the_graph_holds_it(self) -> None:
        for node_id in IDS:
            assert self.run(self.cached.get_node(node_id)) == self.run(
                self.source.get_node(node_id)
            )


CachedAgainstSource.TestCase.settings = settings(max_examples=60, stateful_step_count=25)
TestCachedAgainstSource = CachedAgainstSource.TestCase


async def test_mutating_a_returned_list_property_does_not_change_the_next_hit() -> None:
    """The concrete example the state machine found: a miss returned a node sharing its
    list with the L1 entry; appending to it changed every later hit."""
    graph = FakeGraphStore(policy=ResiliencePolicy.instant("graph"))
    cached = CachedGraphStore(graph, ThreeTierCache(FakeCache()), ttl=60)
    await graph.upsert_nodes("P", [{"id": "a", "tags": ["x"]}])
    first = await cached.get_node("a")
    assert first is not None
    first.properties["tags"].append("poison")
    hit = await cached.get_node("a")
    assert hit is not None
    assert hit.properties["tags"] == ["x"]
    hit.properties["tags"].append("poison")
    assert await cached.get_node("a") == await graph.get_node("a")


# ------------------------------------------------------------------ hostile arguments
_hostile = st.one_of(
    st.sampled_from([None, True, 1.5, b"R", [], {}, ("R",), {"R"}, object(), "a b", "", "`x`"]),
    st.integers(-(2**70), 2**70),
    st.text(max_size=5),
)
_read_calls: st.SearchStrategy[tuple[str, tuple[Any, ...], dict[str, Any]]] = st.one_of(
    st.tuples(
        st.just("neighbours"),
        st.tuples(st.one_of(_ids, _hostile)),
        st.fixed_dictionaries(
            {},
            optional={
                "rel_type": st.one_of(_types, _hostile),
                "direction": st.one_of(_directions, _hostile),
                "limit": st.one_of(st.integers(1, 5), _hostile),
            },
        ),
    ),
    st.tuples(
        st.just("paths"),
        st.tuples(st.one_of(_ids, _hostile), st.one_of(_ids, _hostile)),
        st.fixed_dictionaries(
            {},
            optional={
                "max_hops": st.one_of(st.integers(1, 3), _hostile),
                "rel_type": st.one_of(_types, _hostile),
                "direction": st.one_of(_directions, _hostile),
                "limit": st.one_of(st.integers(1, 5), _hostile),
            },
        ),
    ),
    st.tuples(st.just("count_nodes"), st.tuples(st.one_of(_labels, _hostile)), st.just({})),
    st.tuples(st.just("get_node"), st.tuples(st.one_of(_ids, _hostile)), st.just({})),
)


async def _outcome(store: Any, method: str, args: tuple[Any, ...], kwargs: Any) -> Any:
    try:
        await getattr(store, method)(*args, **kwargs)
    except InvalidArgumentError as exc:
        return (type(exc), exc.argument)
    return "ok"


@settings(max_examples=200)
@given(call=_read_calls)
@example(call=("neighbours", ("a",), {"rel_type": b"R"}))
@example(call=("count_nodes", ({"A"},), {}))
def test_a_bad_argument_to_a_cached_read_is_the_stores_typed_error(
    call: tuple[str, tuple[Any, ...], dict[str, Any]],
) -> None:
    """Whatever the fake store answers -- a result, or InvalidArgumentError naming an
    argument -- the cached store answers the same (never a TypeError from its key)."""
    method, args, kwargs = call

    async def scenario() -> None:
        graph = FakeGraphStore(policy=ResiliencePolicy.instant("graph"))
        cached = CachedGraphStore(graph, ThreeTierCache(FakeCache()), ttl=60)
        await graph.upsert_nodes("A", [{"id": "a"}])
        expected = await _outcome(graph, method, args, kwargs)
        assert await _outcome(cached, method, args, kwargs) == expected

    asyncio.run(scenario())


# ------------------------------------------------------------------------ cancellation
class GatedCache(ThreeTierCache):
    """A 3-tier cache whose invalidations wait at a gate: a writer can be cancelled
    while it invalidates."""

    def __init__(self) -> None:
        super().__init__(FakeCache())
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()
        self.running = 0

    async def invalidate(self, *, prefix: str | None = None, tag: str | None = None) -> int:
        self.running += 1
        try:
            self.waiting.set()
            await self.gate.wait()
            return await super().invalidate(prefix=prefix, tag=tag)
        finally:
            self.running -= 1


Write = Callable[[CachedGraphStore], Coroutine[Any, Any, Any]]
WRITES: dict[str, Write] = {
    "upsert_nodes": lambda c: c.upsert_nodes("A", [{"id": "a", "p": 2}, {"id": "n"}]),
    "upsert_edges": lambda c: c.upsert_edges("R", [("b", "a"), ("a", "c")]),
    "delete_nodes": lambda c: c.delete_nodes(["b"]),
    "delete_edges": lambda c: c.delete_edges("R", [("a", "b")]),
    "write": lambda c: c.write("MATCH (n) DETACH DELETE n"),
}


@settings(max_examples=40)
@given(kind=st.sampled_from(sorted(WRITES)), cancels=st.integers(1, 3))
@example(kind="upsert_nodes", cancels=1)
def test_a_write_cancelled_while_it_invalidates_still_invalidates_everything(
    kind: str, cancels: int
) -> None:
    """The write reached the graph; the caller is cancelled (once or repeatedly) while
    the tags are being invalidated. The caller sees CancelledError, and once the
    invalidation has run no read returns a pre-write answer."""

    async def scenario() -> None:
        graph = FakeGraphStore(policy=ResiliencePolicy.instant("graph"))
        cache = GatedCache()
        cached = CachedGraphStore(graph, cache, ttl=60)
        graph.respond("MATCH (n) DETACH DELETE n", lambda _: [])
        await graph.upsert_nodes("A", [{"id": i, "p": 1} for i in ("a", "b", "c")])
        await graph.upsert_edges("R", [("a", "b")])
        reads: list[Callable[[Any], Coroutine[Any, Any, Any]]] = [
            lambda s: s.get_node("a"),
            lambda s: s.get_node("b"),
            lambda s: s.neighbours("a"),
            lambda s: s.paths("a", "c", max_hops=2),
            lambda s: s.count_nodes(),
        ]
        cache.gate.set()
        for read in reads:  # every answer cached
            await read(cached)
        cache.gate.clear()
        if kind == "write":  # a raw write changes what the fake was not told about
            await graph.delete_nodes(["a", "b", "c"])
        writer = asyncio.create_task(WRITES[kind](cached))
        await cache.waiting.wait()
        for _ in range(cancels):
            writer.cancel()
            await asyncio.sleep(0)
        cache.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await writer
        for _ in range(1000):  # let what is still running finish (no clock involved)
            if cache.running == 0:
                break
            await asyncio.sleep(0)
        for read in reads:
            assert await read(cached) == await read(graph)

    asyncio.run(scenario())

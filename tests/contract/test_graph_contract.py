"""PropertyGraphStore contract: FakeGraphStore and MemgraphGraphStore (on the embedded
FalkorDB Bolt engine, or the server ``SEMANTICA_TEST_GRAPH_URI`` names -- a real Memgraph
or Neo4j) behave the same.

Both run under ``ResiliencePolicy.instant("graph")`` (the design's breaker and retry on a
virtual clock). The real store starts on an emptied graph (the ``graph_driver`` fixture).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.exceptions import CallerError, GraphConnectionError, InvalidArgumentError
from infra.graph.port import PropertyGraphStore
from infra.graph.results import Neighbour, Node, Path, Relationship, UpsertProgress
from infra.ports import GraphStore
from infra.resilience import ResiliencePolicy
from infra.testing.fakes.graph import FakeGraphStore

Store = Any  # MemgraphGraphStore | FakeGraphStore (the real one needs neo4j)


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.graph)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A fresh fake, or the real store on an emptied graph with the id index."""
    policy = ResiliencePolicy.instant("graph")
    if request.param == "fake":
        fake = FakeGraphStore(policy=policy)
        yield fake
        await fake.close()
        return
    from infra.graph.driver import open_driver
    from infra.graph.memgraph import MemgraphGraphStore

    user, password = request.getfixturevalue("bolt_auth")
    driver = open_driver(request.getfixturevalue("bolt_uri"), user=user, password=password)
    real = MemgraphGraphStore(driver, policy=policy, name="contract", owns_driver=True)
    try:
        await real.write("MATCH (n) DETACH DELETE n")
        await real.ensure_index()
        yield real
    finally:
        await real.close()  # closes the driver even when the setup failed


async def people(store: Store) -> None:
    """a -KNOWS-> b -KNOWS-> c, a -LIKES-> c, d alone."""
    await store.upsert_nodes(
        "Person", [{"id": "a", "age": 1}, {"id": "b"}, {"id": "c"}, {"id": "d"}]
    )
    await store.upsert_edges("KNOWS", [("a", "b", {"w": 1}), ("b", "c")])
    await store.upsert_edges("LIKES", [("a", "c")])


async def test_satisfies_the_ports(store: Store) -> None:
    """Both are GraphStores and PropertyGraphStores."""
    assert isinstance(store, GraphStore)
    assert isinstance(store, PropertyGraphStore)


async def test_nodes_read_back_typed(store: Store) -> None:
    """get_node returns our Node (labels without the base label, id not a property)."""
    assert await store.upsert_nodes("Person", [{"id": "ada", "name": "Ada", "born": 1815}]) == 1
    node = await store.get_node("ada")
    assert node == Node("ada", frozenset({"Person"}), {"name": "Ada", "born": 1815})
    assert type(node) is Node
    assert await store.get_node("nobody") is None


async def test_upsert_merges_properties_and_labels(store: Store) -> None:
    """A second upsert keeps unnamed properties, overwrites named ones, adds the label."""
    await store.upsert_nodes("Person", [{"id": 7, "name": "x", "n": 1}])
    await store.upsert_nodes("Admin", [{"id": 7, "n": 2, "tags": ["a", "b"]}])
    node = await store.get_node(7)
    assert node == Node(
        7, frozenset({"Person", "Admin"}), {"name": "x", "n": 2, "tags": ["a", "b"]}
    )
    assert await store.count_nodes() == 1
    assert await store.count_nodes("Admin") == 1
    assert await store.count_nodes("Robot") == 0


async def test_edges_need_both_endpoints_and_are_merged(store: Store) -> None:
    """A missing endpoint skips the edge; one edge per (start, type, end), props merged."""
    await people(store)
    edges = [("a", "b", {"x": 2}), ("a", "zz"), ("zz", "a"), ("a", "b", {"x": 3})]
    assert await store.upsert_edges("KNOWS", edges) == 1
    [link] = await store.neighbours("a", rel_type="KNOWS")
    assert link == Neighbour(
        Node("b", frozenset({"Person"}), {}), Relationship("KNOWS", "a", "b", {"w": 1, "x": 3})
    )


async def test_neighbours_follow_direction_type_and_order(store: Store) -> None:
    """out/in/both, an optional type, ordered by neighbour id, then type; limit cuts."""
    await people(store)
    out = await store.neighbours("a", direction="out")
    assert [(n.node.id, n.relationship.type) for n in out] == [("b", "KNOWS"), ("c", "LIKES")]
    into = await store.neighbours("c", direction="in")
    assert [(n.node.id, n.relationship.type) for n in into] == [("a", "LIKES"), ("b", "KNOWS")]
    both = await store.neighbours("b")
    assert [(n.relationship.start_id, n.relationship.end_id) for n in both] == [
        ("a", "b"),
        ("b", "c"),
    ]
    assert [n.node.id for n in await store.neighbours("c", rel_type="KNOWS")] == ["b"]
    assert len(await store.neighbours("a", limit=1)) == 1
    assert await store.neighbours("d") == []
    assert await store.neighbours("missing") == []


async def test_paths_are_bounded_and_shortest_first(store: Store) -> None:
    """a->c directly (LIKES) and via b (KNOWS); max_hops, type and direction filter."""
    await people(store)
    found = await store.paths("a", "c")
    assert [p.node_ids for p in found] == [("a", "c"), ("a", "b", "c")]
    assert all(type(p) is Path for p in found)
    assert [r.type for r in found[1].relationships] == ["KNOWS", "KNOWS"]
    assert found[1].nodes[0] == Node("a", frozenset({"Person"}), {"age": 1})
    assert [p.node_ids for p in await store.paths("a", "c", max_hops=1)] == [("a", "c")]
    assert [p.length for p in await store.paths("a", "c", rel_type="KNOWS")] == [2]
    assert await store.paths("c", "a") == []
    assert [p.length for p in await store.paths("c", "a", direction="in")] == [1, 2]
    assert [p.length for p in await store.paths("c", "a", direction="both", limit=1)] == [1]
    assert await store.paths("a", "d", direction="both") == []


async def test_paths_never_visit_a_node_twice(store: Store) -> None:
    """Simple paths only, on every engine: FalkorDB leaves out a->b->a->c and paths
    through a self-loop, misorders a cycle's relationships and walks an undirected
    self-loop twice; the fake listed them all. Now neither lists any of them."""
    await store.upsert_nodes("P", [{"id": i} for i in ("a", "b", "c", "l")])
    await store.upsert_edges("R", [("a", "b"), ("b", "a"), ("a", "c"), ("l", "l")])
    await store.upsert_edges("S", [("l", "a")])
    assert [p.node_ids for p in await store.paths("a", "c", max_hops=4)] == [("a", "c")]
    assert [p.node_ids for p in await store.paths("l", "c", max_hops=4)] == [("l", "a", "c")]
    both = await store.paths("l", "a", max_hops=4, direction="both")
    assert [p.node_ids for p in both] == [("l", "a")]
    for node_id in ("a", "l"):
        for direction in ("out", "both"):
            assert await store.paths(node_id, node_id, max_hops=4, direction=direction) == []


async def test_deletes_detach_and_count_what_existed(store: Store) -> None:
    """delete_nodes removes the node and its edges; deleting again finds nothing."""
    await people(store)
    assert await store.delete_nodes(["b", "nobody", "b"]) == 1
    assert await store.get_node("b") is None
    assert [n.node.id for n in await store.neighbours("a")] == ["c"]
    assert await store.delete_nodes(["b"]) == 0
    assert await store.delete_edges("LIKES", [("a", "c"), ("a", "c"), ("c", "a")]) == 1
    assert await store.neighbours("a") == []
    assert await store.delete_nodes([]) == 0


async def test_batched_upsert_reports_progress(store: Store) -> None:
    """25 nodes in batches of 10: three statements, progress after each."""
    seen: list[UpsertProgress] = []
    nodes = [{"id": i, "n": i} for i in range(25)]
    assert await store.upsert_nodes("N", nodes, batch_size=10, on_progress=seen.append) == 25
    assert [(p.done, p.total, p.written, p.batches) for p in seen] == [
        (10, 25, 10, 1),
        (20, 25, 20, 2),
        (25, 25, 25, 3),
    ]
    edges = [(i, i + 1) for i in range(30)]  # 24 of them have both endpoints
    assert await store.upsert_edges("NEXT", edges, batch_size=7) == 24
    assert await store.count_nodes("N") == 25
    assert await store.upsert_nodes("N", []) == 0


async def test_ids_may_be_strings_or_integers_strings_ordered_first(store: Store) -> None:
    """Mixed id types are distinct nodes; neighbours order strings before numbers."""
    await store.upsert_nodes("T", [{"id": "1"}, {"id": 1}, {"id": "hub"}, {"id": 0}])
    await store.upsert_edges("L", [("hub", 1), ("hub", "1"), ("hub", 0)])
    assert [n.node.id for n in await store.neighbours("hub")] == ["1", 0, 1]
    assert await store.get_node("1") != await store.get_node(1)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda s: s.upsert_nodes("Person`) DETACH DELETE (n", [{"id": 1}]), "label"),
        (lambda s: s.upsert_nodes("Person:Admin", [{"id": 1}]), "label"),
        (lambda s: s.upsert_nodes("_Node", [{"id": 1}]), "label"),
        (lambda s: s.upsert_nodes("Pérson", [{"id": 1}]), "label"),
        (lambda s: s.upsert_edges("KNOWS]->() MATCH (x", [(1, 2)]), "rel_type"),
        (lambda s: s.neighbours(1, rel_type="A|B"), "rel_type"),
        (lambda s: s.count_nodes("Person // x"), "label"),
        (lambda s: s.upsert_nodes("P", [{"id": 1, "m": {"nested": 1}}]), "nodes[0]['m']"),
        (lambda s: s.upsert_nodes("P", [{"id": 1, "m": None}]), "nodes[0]['m']"),
        (lambda s: s.upsert_nodes("P", [{"id": 1, "m": [1, "x"]}]), "nodes[0]['m']"),
        (lambda s: s.upsert_nodes("P", [{"id": 1, "m": "a\x00b"}]), "nodes[0]['m']"),
        (lambda s: s.upsert_nodes("P", [{"name": "no id"}]), "nodes[0]"),
        (lambda s: s.upsert_nodes("P", [{"id": True}]), "nodes[0]['id']"),
        (lambda s: s.upsert_nodes("P", [{"id": 2**63}]), "nodes[0]['id']"),
        (lambda s: s.upsert_edges("E", [(1, 2, {"id": 3})]), "edges[0][2]"),
        (lambda s: s.upsert_edges("E", ["ab"]), "edges[0]"),
        (lambda s: s.neighbours(1, direction="up"), "direction"),
        (lambda s: s.neighbours(1, limit=0), "limit"),
        (lambda s: s.paths(1, 2, max_hops=11), "max_hops"),
        (lambda s: s.get_node(""), "node_id"),
        (lambda s: s.delete_nodes("abc"), "node_ids"),
        (lambda s: s.upsert_nodes("P", [{"id": 1}], batch_size=0), "batch_size"),
    ],
)
async def test_bad_input_is_a_caller_error_before_any_io(
    store: Store, call: Any, argument: str
) -> None:
    """Injection attempts and unstorable values raise InvalidArgumentError naming the
    argument; nothing reaches the graph."""
    await store.upsert_nodes("Person", [{"id": 1}])
    with pytest.raises(InvalidArgumentError) as caught:
        await call(store)
    assert isinstance(caught.value, CallerError)
    assert caught.value.argument == argument
    assert caught.value.retryable is False
    assert await store.count_nodes() == 1


async def test_health_check_reports_healthy_with_pool_fields(store: Store) -> None:
    """The shared health shape: status, latency, breaker, pool fields."""
    ok, details = await store.health_check(latency_threshold_ms=60_000)
    assert ok
    assert details["status"] == "healthy"
    assert details["latency_ms"] >= 0
    assert {"pool_size", "pool_in_use", "pool_idle", "circuit_breaker"} <= details.keys()


async def test_a_closed_store_refuses_calls(store: Store) -> None:
    """After close() a call raises GraphConnectionError, not retryable; health says so."""
    await store.close()
    with pytest.raises(GraphConnectionError) as caught:
        await store.get_node(1)
    assert caught.value.retryable is False
    ok, details = await store.health_check()
    assert not ok
    assert details["error"] == "the adapter is closed"


_ids = st.one_of(st.sampled_from(["a", "b", "c"]), st.integers(0, 2))
_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
        max_size=8,
    ),
    st.lists(st.integers(-5, 5), max_size=3),
)
_props = st.dictionaries(st.sampled_from(["p", "q", "r"]), _values, max_size=3)
_upserts = st.lists(
    st.tuples(
        st.sampled_from(["A", "B"]),
        st.lists(st.builds(lambda i, p: {"id": i, **p}, _ids, _props), max_size=6),
    ),
    max_size=4,
)


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(upserts=_upserts, batch_size=st.integers(1, 4))
async def test_any_sequence_of_batched_upserts_matches_a_dict_model(
    store: Store, upserts: list[tuple[str, list[dict[str, Any]]]], batch_size: int
) -> None:
    """Whatever the batch size and repeated ids, the graph ends as the model says: per
    id, the union of labels and the last value written for each property; the count is
    of distinct nodes."""
    every: list[str | int] = ["a", "b", "c", 0, 1, 2]
    await store.delete_nodes(every)
    model: dict[Any, tuple[set[str], dict[str, Any]]] = {}
    for label, nodes in upserts:
        distinct = len({item["id"] for item in nodes})
        assert await store.upsert_nodes(label, nodes, batch_size=batch_size) == distinct
        for item in nodes:
            labels, props = model.setdefault(item["id"], (set(), {}))
            labels.add(label)
            props.update({k: v for k, v in item.items() if k != "id"})
    for node_id in every:
        expected = model.get(node_id)
        got = await store.get_node(node_id)
        if expected is None:
            assert got is None
        else:
            assert got == Node(node_id, frozenset(expected[0]), expected[1])

"""The fake and the real store stay the same graph under any sequence of writes.

One random sequence of node and edge upserts and deletes goes to FakeGraphStore and to
MemgraphGraphStore (the embedded FalkorDB, or the server ``SEMANTICA_TEST_GRAPH_URI``
names); after every step each one's answers -- every node, every neighbourhood in every
direction (all, of one type, the first by order), the paths between every pair (of any
type, and of one type in both directions), the counts -- are compared. Ids, property
values (floats, lists, quotes, extreme ints) and self-loops are chosen to reach where
engines differ; it found that FalkorDB's variable-length paths differ from Cypher's
(see docs/graph.md, "simple paths only"). The contract suite
pins examples; this finds where the in-memory model and the Cypher statements part.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.graph.driver import open_driver
from infra.graph.memgraph import MemgraphGraphStore
from infra.graph.results import Path, UpsertProgress
from infra.resilience import ResiliencePolicy
from infra.testing.fakes.graph import FakeGraphStore

pytestmark = pytest.mark.graph

IDS: list[str | int] = ["a", "B", "é'\\", "1", 1, -2, 2**62]
"""Ids the engines must order and tell apart alike: case, non-ASCII with a quote and a
backslash, "1" beside 1, negative and large ints."""

_ids = st.sampled_from(IDS)
_values = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([2**63 - 1, -(2**63), 0.5, -1.25, 1e15, True, "", "x'y", "\\n", "日本"]),
    st.lists(st.sampled_from(["s", "t'"]), max_size=2),
    st.lists(st.sampled_from([1.5, -0.25]), min_size=1, max_size=2),
)
_props = st.dictionaries(st.sampled_from(["p", "q", "_r"]), _values, max_size=2)
_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("nodes"),
            st.sampled_from(["A", "B"]),
            st.lists(st.builds(lambda i, p: {"id": i, **p}, _ids, _props), max_size=3),
        ),
        st.tuples(
            st.just("edges"),
            st.sampled_from(["R", "S"]),
            st.lists(st.tuples(_ids, _ids, _props), max_size=3),  # self-loops too
        ),
        st.tuples(st.just("delete_nodes"), st.just(""), st.lists(_ids, max_size=2)),
        st.tuples(
            st.just("delete_edges"),
            st.sampled_from(["R", "S"]),
            st.lists(st.tuples(_ids, _ids), max_size=2),
        ),
    ),
    min_size=1,
    max_size=6,
)


@pytest.fixture
async def real(bolt_uri: str, bolt_auth: tuple[str, str]) -> AsyncIterator[MemgraphGraphStore]:
    user, password = bolt_auth
    store = MemgraphGraphStore(
        open_driver(bolt_uri, user=user, password=password),
        policy=ResiliencePolicy.instant("graph"),
        owns_driver=True,
        name="differential",
    )
    await store.write("MATCH (n) DETACH DELETE n")
    await store.ensure_index()
    yield store
    await store.close()


async def apply(
    store: Any, step: tuple[str, str, list[Any]], batch_size: int
) -> tuple[int, list[UpsertProgress]]:
    """The step's count, and the progress reports of an upsert (batch by batch)."""
    kind, name, items = step
    seen: list[UpsertProgress] = []
    if kind == "nodes":
        written = await store.upsert_nodes(
            name, items, batch_size=batch_size, on_progress=seen.append
        )
    elif kind == "edges":
        written = await store.upsert_edges(
            name, items, batch_size=batch_size, on_progress=seen.append
        )
    elif kind == "delete_nodes":
        written = await store.delete_nodes(items)
    else:
        written = await store.delete_edges(name, items)
    return int(written), seen


def _walk(path: Path) -> str:
    """A canonical key of a path: its ids and relationship types in walking order (a
    ``repr`` would not do: a frozenset of labels prints in insertion order)."""
    return repr((path.node_ids, [(r.start_id, r.type, r.end_id) for r in path.relationships]))


def by_length(paths: list[Path]) -> list[tuple[int, list[Path]]]:
    """Paths grouped by length; within a length the order is the engine's."""
    lengths = sorted({p.length for p in paths})
    return [(n, sorted((p for p in paths if p.length == n), key=_walk)) for n in lengths]


async def view(store: Any) -> dict[str, Any]:
    """Everything the store answers about the small graph: nodes, neighbourhoods in every
    direction (all, of one type, the first by order), bounded paths of any and of one
    type in each direction, counts."""
    seen: dict[str, Any] = {"count": await store.count_nodes()}
    for label in ("A", "B"):
        seen[f"count {label}"] = await store.count_nodes(label)
    for node_id in IDS:
        seen[f"node {node_id!r}"] = await store.get_node(node_id)
        for direction in ("out", "in", "both"):
            seen[f"{direction} {node_id!r}"] = await store.neighbours(node_id, direction=direction)
        seen[f"out R {node_id!r}"] = await store.neighbours(node_id, rel_type="R", direction="out")
        seen[f"first {node_id!r}"] = await store.neighbours(node_id, limit=1)
        for end in IDS:
            seen[f"paths {node_id!r}->{end!r}"] = by_length(
                await store.paths(node_id, end, max_hops=3, limit=50)
            )
            seen[f"paths S both {node_id!r}-{end!r}"] = by_length(
                await store.paths(node_id, end, max_hops=2, rel_type="S", direction="both")
            )
    return seen


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_steps, batch_size=st.sampled_from([1, 2, 1000]))
async def test_any_sequence_of_writes_leaves_the_fake_and_the_real_graph_alike(
    real: MemgraphGraphStore, steps: list[tuple[str, str, list[Any]]], batch_size: int
) -> None:
    """Same writes, same counts written and progress reported (in batches of one, two or
    all), same answers to every read, after each step."""
    await real.delete_nodes(IDS)
    fake = FakeGraphStore(policy=ResiliencePolicy.instant("graph"))
    for step in steps:
        assert await apply(fake, step, batch_size) == await apply(real, step, batch_size), step
        assert await view(fake) == await view(real), step

"""``FakeGraphStore``: an in-memory property graph that runs the graph store's operations.

Not a Cypher interpreter: it implements :class:`~infra.graph.port.PropertyGraphStore`'s
typed operations directly on dicts, with the semantics of the Cypher statements the real
:class:`~infra.graph.memgraph.MemgraphGraphStore` sends (``tests/contract/
test_graph_contract.py`` runs the same suite on both). Raw :meth:`FakeGraphStore.query` /
:meth:`~FakeGraphStore.write` answer only what a test scripted with :meth:`respond`.

::

    graph = FakeGraphStore(policy=ResiliencePolicy.instant("graph"))
    await graph.upsert_nodes("Person", [{"id": "ada"}, {"id": "alan"}])
    await graph.upsert_edges("KNOWS", [("ada", "alan")])
    graph.fail_next(ConnectionResetError(), times=1, operations={"neighbours"})
    [n] = await graph.neighbours("ada")          # the reset was retried, as on Bolt

What behaves like the real store:

* The same public methods: both subclass :class:`~infra.graph.base.GraphStoreBase`, which
  checks every argument before any call (:mod:`infra.graph.identifiers`), so a bad label,
  id, property or limit raises the same ``InvalidArgumentError``. This module supplies
  only the in-memory primitives.
* Upserts merge on the graph-wide ``id``, add the label, merge properties; an edge
  whose endpoints do not exist is skipped; one relationship per (start, type, end).
  Batches of ``batch_size`` items, each applied at once, with the same progress reports.
* Neighbours ordered by neighbour id (strings before numbers, as FalkorDB and Neo4j
  order), relationship type, start id; simple paths (no node twice), shortest first.
* Every call runs through :class:`~infra.calls.BackendCalls` with component ``graph`` --
  the same telemetry series and the same policy as the real store (pass the container's
  graph policy): reads retried, writes only when idempotent (upserts, deletes),
  scripted faults translated by the real translation seam.

Test controls: :meth:`fail_next` (faults per operation), :attr:`calls` (every attempt)
and :meth:`respond` (raw Cypher answers).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from infra.calls import BackendCalls
from infra.exceptions import GraphQueryError, InfraError
from infra.graph import base
from infra.graph.identifiers import COMPONENT, Direction, NodeId, check_cypher
from infra.graph.results import Neighbour, Node, Path, Relationship
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.resilience import ResiliencePolicy
from infra.testing.fakes._backend import fake_calls

__all__ = ["FakeGraphCall", "FakeGraphStore"]

T = TypeVar("T")
Fault = InfraError | Exception | type[Exception]
Answer = list[dict[str, Any]] | Callable[[Mapping[str, Any]], list[dict[str, Any]]]
_EdgeKey = tuple[NodeId, str, NodeId]


class FakeGraphCall(NamedTuple):
    """One attempt the fake saw: the operation and its main arguments."""

    operation: str
    arguments: tuple[Any, ...]


@dataclass(slots=True)
class _ScriptedFault:
    error: Fault
    remaining: int
    operations: frozenset[str] | None


@dataclass(slots=True)
class _NodeData:
    labels: set[str] = field(default_factory=set)
    props: dict[str, Any] = field(default_factory=dict)


def _id_order(value: NodeId) -> tuple[int, Any]:
    """Ordering of ids as the engines order mixed values: strings before numbers."""
    return (0, value) if isinstance(value, str) else (1, value)


class FakeGraphStore(base.GraphStoreBase):
    """In-memory property graph; see the module docstring.

    Args:
        policy: The resilience policy every call runs under (the container's graph
            policy; tests usually pass ``ResiliencePolicy.instant("graph")``).
        batch_size: Items per batch in upserts (as the real store's).
        name: Shown in ``repr``.
    """

    def __init__(
        self,
        *,
        policy: ResiliencePolicy | None = None,
        batch_size: int = 1000,
        name: str = "fake",
    ) -> None:
        calls = BackendCalls(
            COMPONENT, family="graph", system="fake", policy=base.check_policy(policy)
        )
        super().__init__(calls=calls, batch_size=batch_size, health_timeout=5.0, name=name)
        self._nodes: dict[NodeId, _NodeData] = {}
        self._edges: dict[_EdgeKey, dict[str, Any]] = {}
        self._answers: dict[str, Answer] = {}
        self._faults: list[_ScriptedFault] = []
        #: Every attempt, in order (a retried call appears once per attempt).
        self.calls: list[FakeGraphCall] = []

    def attach(
        self,
        *,
        policy: ResiliencePolicy | None,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        """Run later operations under ``policy`` and record them into ``collector`` (what
        ``containers.testing.use_fakes`` does with the container's own providers); the
        graph and scripted faults are kept."""
        self._use_calls(
            fake_calls(
                COMPONENT,
                family="graph",
                system="memgraph",
                policy=policy,
                collector=collector,
                tracing=tracing,
            )
        )

    # ---------------------------------------------------------------- test controls
    def fail_next(
        self, error: Fault, *, times: int = 1, operations: Collection[str] | None = None
    ) -> None:
        """Make the next ``times`` attempts of ``operations`` (default: any) raise
        ``error`` before touching the graph. An ``InfraError`` is raised as is; another
        exception is translated by the real seam (``ConnectionResetError`` ->
        ``GraphConnectionError``). Operations are the method names, plus ``health_check``.
        """
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise ValueError(f"times must be an int >= 1, got {times!r}")
        is_class = isinstance(error, type) and issubclass(error, Exception)
        if not (isinstance(error, Exception) or is_class):
            raise TypeError(f"error must be an Exception instance or class, got {error!r}")
        ops = None if operations is None else frozenset(operations)
        self._faults.append(_ScriptedFault(error, times, ops))

    def clear_faults(self) -> None:
        """Forget every scripted failure not yet used."""
        self._faults.clear()

    def respond(self, cypher: str, answer: Answer) -> None:
        """Script the rows raw ``query``/``write`` of exactly ``cypher`` return: a list of
        dicts, or a function of the parameters returning one."""
        self._answers[check_cypher(cypher)] = answer

    # ----------------------------------------------------------------- introspection
    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"FakeGraphStore(name={self._name!r}, nodes={len(self._nodes)}, "
            f"edges={len(self._edges)}, state={state}, policy={self.policy.describe()!r})"
        )

    async def ensure_index(self) -> None:
        """Nothing to index; honours faults scripted for ``ensure_index``."""
        await self._call("ensure_index", (), lambda: None, idempotent=True)

    # ------------------------------------------------------------------- primitives
    async def _raw(
        self, operation: str, text: str, params: dict[str, Any], *, idempotent: bool
    ) -> list[dict[str, Any]]:
        """The scripted answer for the statement (see :meth:`respond`)."""
        return await self._call(
            operation,
            (text, params),
            lambda: self._answer(text, params),
            idempotent=idempotent,
        )

    def _answer(self, text: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        answer = self._answers.get(text)
        if answer is None:
            raise GraphQueryError(
                "FakeGraphStore does not interpret Cypher; script this statement's rows "
                "with fake.respond(cypher, rows), or use the typed operations",
                component=COMPONENT,
            )
        rows = answer(params) if callable(answer) else answer
        return copy.deepcopy(rows)

    async def _write_nodes(self, label: str, batch: Sequence[base.NodeRow]) -> int:
        def apply() -> int:
            for node_id, props in batch:
                data = self._nodes.setdefault(node_id, _NodeData())
                data.labels.add(label)
                data.props.update(copy.deepcopy(props))
            return len(batch)

        return await self._call("upsert_nodes", (label, len(batch)), apply)

    async def _write_edges(self, rel_type: str, batch: Sequence[base.EdgeRow]) -> int:
        def apply() -> int:
            written = 0
            for start, end, props in batch:
                if start in self._nodes and end in self._nodes:
                    self._edges.setdefault((start, rel_type, end), {}).update(copy.deepcopy(props))
                    written += 1
            return written

        return await self._call("upsert_edges", (rel_type, len(batch)), apply)

    async def _delete_nodes(self, ids: list[NodeId]) -> int:
        def apply() -> int:
            existed = [i for i in ids if i in self._nodes]
            for node_id in existed:
                del self._nodes[node_id]
            gone = set(existed)
            for key in [k for k in self._edges if k[0] in gone or k[2] in gone]:
                del self._edges[key]
            return len(existed)

        return await self._call("delete_nodes", (tuple(ids),), apply)

    async def _delete_edges(self, rel_type: str, pairs: list[tuple[NodeId, NodeId]]) -> int:
        keys = [(s, rel_type, e) for s, e in pairs]

        def apply() -> int:
            existed = [k for k in keys if k in self._edges]
            for key in existed:
                del self._edges[key]
            return len(existed)

        return await self._call("delete_edges", (rel_type, len(keys)), apply)

    async def _get_node(self, node_id: NodeId) -> Node | None:
        return await self._call("get_node", (node_id,), lambda: self._node(node_id))

    async def _neighbours(self, query: base.NeighbourQuery) -> list[Neighbour]:
        node_id = query.node_id

        def run() -> list[Neighbour]:
            if node_id not in self._nodes:
                return []
            found = [
                Neighbour(self._node_now(other), rel)
                for rel, other in self._steps(node_id, query.rel_type, query.direction)
            ]
            found.sort(
                key=lambda n: (
                    _id_order(n.node.id),
                    n.relationship.type,
                    _id_order(n.relationship.start_id),
                )
            )
            return found[: query.limit]

        return await self._call("neighbours", (node_id, query.rel_type, query.direction), run)

    async def _paths(self, query: base.PathQuery) -> list[Path]:
        start, end = query.start, query.end

        def run() -> list[Path]:
            if start not in self._nodes or end not in self._nodes:
                return []
            found = [
                Path(tuple(self._node_now(i) for i in ids), rels)
                for ids, rels in self._walks(
                    start, end, query.rel_type, query.direction, query.max_hops
                )
            ]
            found.sort(key=lambda p: (p.length, [_id_order(i) for i in p.node_ids]))
            return found[: query.limit]

        return await self._call("paths", (start, end, query.max_hops), run)

    async def _count_nodes(self, label: str | None) -> int:
        return await self._call(
            "count_nodes",
            (label,),
            lambda: sum(1 for d in self._nodes.values() if label is None or label in d.labels),
        )

    async def _probe(self) -> None:
        """A probe that honours faults scripted for ``health_check``."""

        async def probe() -> None:
            self._attempted("health_check", ())

        await self._health_calls.run("health_check", probe)

    def _pool_details(self) -> dict[str, int]:
        return {"pool_size": 1, "pool_in_use": 0, "pool_idle": 1}

    # -------------------------------------------------------------------- internals
    def _node_now(self, node_id: NodeId) -> Node:
        data = self._nodes[node_id]
        return Node(node_id, frozenset(data.labels), copy.deepcopy(data.props))

    def _node(self, node_id: NodeId) -> Node | None:
        return self._node_now(node_id) if node_id in self._nodes else None

    def _steps(
        self, node_id: NodeId, rel_type: str | None, direction: Direction
    ) -> Iterator[tuple[Relationship, NodeId]]:
        """Each relationship at ``node_id`` the direction allows, with the far node."""
        for (start, kind, end), props in self._edges.items():
            if rel_type is not None and kind != rel_type:
                continue
            rel = Relationship(kind, start, end, copy.deepcopy(props))
            if start == node_id and direction in ("out", "both"):
                yield rel, end
            elif end == node_id and direction in ("in", "both"):
                yield rel, start

    def _walks(
        self,
        start: NodeId,
        end: NodeId,
        rel_type: str | None,
        direction: Direction,
        hops: int,
    ) -> Iterator[tuple[list[NodeId], tuple[Relationship, ...]]]:
        """Depth-first simple walks to ``end``: no node twice (the store's statement
        keeps only those; see :data:`infra.graph.cypher.SIMPLE_PATH`), so none when
        ``start == end``."""
        stack: list[tuple[NodeId, list[NodeId], tuple[Relationship, ...]]] = [(start, [start], ())]
        while stack:
            here, ids, rels = stack.pop()
            if len(rels) == hops or here == end:
                continue
            for rel, there in self._steps(here, rel_type, direction):
                if there in ids:
                    continue
                walk = (*rels, rel)
                if there == end:
                    yield [*ids, there], walk
                stack.append((there, [*ids, there], walk))

    async def _call(
        self,
        operation: str,
        arguments: tuple[Any, ...],
        run: Callable[[], T],
        *,
        idempotent: bool = True,
    ) -> T:
        """One call through the shared call path (telemetry -> policy -> translation)."""
        self._check_open()

        async def attempt() -> T:
            self._check_open()
            self._attempted(operation, arguments)
            return run()

        return await self._calls.run(operation, attempt, idempotent=idempotent)

    def _attempted(self, operation: str, arguments: tuple[Any, ...]) -> None:
        """Record the attempt and raise a scripted fault that applies to it (a non-infra
        exception is translated by BackendCalls, as a driver's would be)."""
        self.calls.append(FakeGraphCall(operation, arguments))
        for fault in self._faults:
            if fault.operations is None or operation in fault.operations:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                error = fault.error
                raise error() if isinstance(error, type) else error

"""What every graph store does the same way; each engine supplies a few primitives.

:class:`GraphStoreBase` implements the public methods of
:class:`~infra.graph.port.PropertyGraphStore` once -- every argument check before any
I/O (:mod:`infra.graph.identifiers`), batching with progress, de-duplication of ids,
the closed state, the health check -- and calls the engine's primitives (``_raw``,
``_write_nodes``, ``_neighbours`` ...) with checked arguments only. The Bolt store
(:class:`~infra.graph.memgraph.MemgraphGraphStore`) and the in-memory fake
(:class:`~infra.testing.fakes.graph.FakeGraphStore`) differ only in those primitives, so
the same bad input raises the same typed error from both: there is one validation path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self

from infra.calls import BackendCalls
from infra.exceptions import GraphConnectionError
from infra.graph.batching import ProgressCallback, run_batches
from infra.graph.identifiers import (
    COMPONENT,
    Direction,
    NodeId,
    check_batch_size,
    check_cypher,
    check_direction,
    check_edges,
    check_hops,
    check_identifier,
    check_limit,
    check_node_id,
    check_node_ids,
    check_nodes,
    check_parameters,
)
from infra.graph.port import EdgeInput
from infra.graph.results import Neighbour, Node, Path
from infra.health_check import HealthCheckResult, HealthProbe, probe_calls
from infra.resilience import ResiliencePolicy
from infra.validation import check_timeout

__all__ = [
    "EdgeRow",
    "GraphStoreBase",
    "NeighbourQuery",
    "NodeRow",
    "PathQuery",
    "check_policy",
]

NodeRow = tuple[NodeId, dict[str, Any]]
"""A checked node: ``(id, properties)``."""
EdgeRow = tuple[NodeId, NodeId, dict[str, Any]]
"""A checked relationship: ``(start_id, end_id, properties)``."""


@dataclass(frozen=True, slots=True)
class NeighbourQuery:
    """A checked :meth:`GraphStoreBase.neighbours` request."""

    node_id: NodeId
    rel_type: str | None
    direction: Direction
    limit: int


@dataclass(frozen=True, slots=True)
class PathQuery:
    """A checked :meth:`GraphStoreBase.paths` request."""

    start: NodeId
    end: NodeId
    rel_type: str | None
    direction: Direction
    max_hops: int
    limit: int


def check_policy(policy: object) -> ResiliencePolicy | None:
    """``policy`` when it is a :class:`ResiliencePolicy` or ``None``; else a ``TypeError``."""
    if policy is not None and not isinstance(policy, ResiliencePolicy):
        raise TypeError(f"policy must be a ResiliencePolicy or None, got {policy!r}")
    return policy


class GraphStoreBase(ABC):
    """The shared behaviour; see the module docstring.

    Args:
        calls: The engine's call path (its policy is the store's policy).
        batch_size: Default items per upsert batch.
        health_timeout: Deadline of one health probe, seconds.
        name: Shown in ``repr``, errors and pool metrics.
    """

    component: ClassVar[str] = COMPONENT

    def __init__(
        self, *, calls: BackendCalls, batch_size: int, health_timeout: float, name: str
    ) -> None:
        self._batch_size = check_batch_size(batch_size)
        health = check_timeout(health_timeout, argument="health_timeout", component=COMPONENT)
        self._health_timeout = 5.0 if health is None else health
        self._name = name
        self._closed = False
        self._use_calls(calls)
        self._health = HealthProbe(
            send=self._probe,
            name="'RETURN 1'",
            backend="the graph database",
            component=COMPONENT,
            timeout=self._health_timeout,
            pool=self._pool_details,
        )

    def _use_calls(self, calls: BackendCalls) -> None:
        """Run later calls on ``calls`` (the fake's ``attach`` swaps them)."""
        self._calls = calls
        self._health_calls = probe_calls(calls)

    # ------------------------------------------------------------ engine primitives
    @abstractmethod
    async def _raw(
        self, operation: str, text: str, params: dict[str, Any], *, idempotent: bool
    ) -> list[dict[str, Any]]:
        """Rows of one raw Cypher statement; ``operation`` is ``query`` (a read) or
        ``write``."""

    @abstractmethod
    async def _write_nodes(self, label: str, batch: Sequence[NodeRow]) -> int:
        """Merge one batch of nodes with ``label``; how many were written."""

    @abstractmethod
    async def _write_edges(self, rel_type: str, batch: Sequence[EdgeRow]) -> int:
        """Merge one batch of ``rel_type`` relationships; how many were written."""

    @abstractmethod
    async def _delete_nodes(self, ids: list[NodeId]) -> int:
        """Delete the (distinct, non-empty) nodes; how many existed."""

    @abstractmethod
    async def _delete_edges(self, rel_type: str, pairs: list[tuple[NodeId, NodeId]]) -> int:
        """Delete the (distinct, non-empty) relationships; how many existed."""

    @abstractmethod
    async def _get_node(self, node_id: NodeId) -> Node | None:
        """The node, or ``None``."""

    @abstractmethod
    async def _neighbours(self, query: NeighbourQuery) -> list[Neighbour]:
        """Adjacent nodes, ordered by neighbour id, relationship type, start id."""

    @abstractmethod
    async def _paths(self, query: PathQuery) -> list[Path]:
        """Paths of 1..``max_hops`` relationships, shortest first."""

    @abstractmethod
    async def _count_nodes(self, label: str | None) -> int:
        """How many nodes (with ``label``)."""

    @abstractmethod
    async def _probe(self) -> None:
        """One cheap round trip for the health check (through ``self._health_calls``)."""

    @abstractmethod
    def _pool_details(self) -> dict[str, int]:
        """``pool_size``, ``pool_in_use``, ``pool_idle`` for the health details."""

    async def _release(self) -> None:
        """Close what the store owns (called once by :meth:`close`); nothing by default."""
        return

    # ----------------------------------------------------------------- introspection
    @property
    def policy(self) -> ResiliencePolicy:
        """The resilience policy calls run under."""
        return self._calls.policy

    @property
    def batch_size(self) -> int:
        """Default items per upsert batch."""
        return self._batch_size

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # --------------------------------------------------------------------- lifecycle
    async def close(self) -> None:
        """Release what the store owns; later calls raise ``GraphConnectionError`` (not
        retryable). Idempotent."""
        if not self._closed:
            self._closed = True
            await self._release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise GraphConnectionError(
                f"{type(self).__name__} {self._name!r} is closed; use a new store",
                component=COMPONENT,
                retryable=False,
            )

    # ------------------------------------------------------------------- raw Cypher
    async def query(
        self, cypher: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run a read statement; rows as dicts by RETURN alias (retried: a read)."""
        text, params = check_cypher(cypher), check_parameters(parameters)
        return await self._raw("query", text, params, idempotent=True)

    async def write(
        self,
        cypher: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        idempotent: bool = False,
    ) -> list[dict[str, Any]]:
        """Run a write statement. Retried only with ``idempotent=True`` (e.g. a
        ``MERGE``); a ``CREATE`` must not be."""
        text, params = check_cypher(cypher), check_parameters(parameters)
        return await self._raw("write", text, params, idempotent=idempotent)

    # ------------------------------------------------------------------------ writes
    def _size(self, batch_size: int | None) -> int:
        return self._batch_size if batch_size is None else check_batch_size(batch_size)

    async def upsert_nodes(
        self,
        label: str,
        nodes: Sequence[Mapping[str, Any]],
        *,
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> int:
        """Create or update nodes (``{"id": ..., **properties}``) with ``label``;
        properties not given are kept. Batched; returns how many were written."""
        label = check_identifier(label, argument="label")
        rows, size = check_nodes(nodes), self._size(batch_size)

        async def send(batch: Sequence[NodeRow]) -> int:
            return await self._write_nodes(label, batch)

        return await run_batches(rows, size, send, on_progress)

    async def upsert_edges(
        self,
        rel_type: str,
        edges: Sequence[EdgeInput],
        *,
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> int:
        """Create or update ``rel_type`` relationships; an edge whose endpoints do not
        exist is skipped (not counted). Batched; returns how many were written."""
        rel_type = check_identifier(rel_type, argument="rel_type")
        rows, size = check_edges(edges), self._size(batch_size)

        async def send(batch: Sequence[EdgeRow]) -> int:
            return await self._write_edges(rel_type, batch)

        return await run_batches(rows, size, send, on_progress)

    async def delete_nodes(self, node_ids: Sequence[NodeId]) -> int:
        """Delete nodes and their relationships; how many existed (idempotent)."""
        ids = list(dict.fromkeys(check_node_ids(node_ids)))
        return await self._delete_nodes(ids) if ids else 0

    async def delete_edges(self, rel_type: str, edges: Sequence[tuple[NodeId, NodeId]]) -> int:
        """Delete ``rel_type`` relationships between ``(start_id, end_id)`` pairs."""
        rel_type = check_identifier(rel_type, argument="rel_type")
        pairs = list(dict.fromkeys((s, e) for s, e, _ in check_edges(edges)))
        return await self._delete_edges(rel_type, pairs) if pairs else 0

    # ------------------------------------------------------------------------- reads
    async def get_node(self, node_id: NodeId) -> Node | None:
        """The node with ``node_id``, or ``None``."""
        return await self._get_node(check_node_id(node_id))

    async def neighbours(
        self,
        node_id: NodeId,
        *,
        rel_type: str | None = None,
        direction: Direction = "both",
        limit: int = 100,
    ) -> list[Neighbour]:
        """Nodes adjacent to ``node_id`` with the relationship to each, ordered by
        neighbour id, relationship type and start id."""
        node_id = check_node_id(node_id)
        typed = None if rel_type is None else check_identifier(rel_type, argument="rel_type")
        query = NeighbourQuery(node_id, typed, check_direction(direction), check_limit(limit))
        return await self._neighbours(query)

    async def paths(
        self,
        start_id: NodeId,
        end_id: NodeId,
        *,
        max_hops: int = 3,
        rel_type: str | None = None,
        direction: Direction = "out",
        limit: int = 10,
    ) -> list[Path]:
        """Simple paths (no node twice, so none from a node to itself) from ``start_id``
        to ``end_id`` of 1..``max_hops`` relationships, shortest first; at most
        ``limit``."""
        start = check_node_id(start_id, argument="start_id")
        end = check_node_id(end_id, argument="end_id")
        typed = None if rel_type is None else check_identifier(rel_type, argument="rel_type")
        way, hops, most = check_direction(direction), check_hops(max_hops), check_limit(limit)
        return await self._paths(PathQuery(start, end, typed, way, hops, most))

    async def count_nodes(self, label: str | None = None) -> int:
        """How many nodes the store holds (with ``label``)."""
        return await self._count_nodes(
            None if label is None else check_identifier(label, argument="label")
        )

    # ------------------------------------------------------------------------ health
    async def health_check(
        self, latency_threshold_ms: float = 100.0, *, timeout: float | None = None
    ) -> HealthCheckResult:
        """``(is_healthy, details)`` from a ``RETURN 1`` round trip outside the policy
        (the shared check of :mod:`infra.health_check`); ``details`` adds ``pool_size``,
        ``pool_in_use``, ``pool_idle``."""
        breaker = self._calls.policy.breaker
        return await self._health.check(
            latency_threshold_ms, timeout=timeout, breaker=breaker, closed=self._closed
        )

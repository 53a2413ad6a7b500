"""``PropertyGraphStore``: the graph port of :mod:`infra.ports` plus the typed operations.

:class:`~infra.ports.GraphStore` is raw Cypher (``query`` / ``write``). The operations
here are what the store, its fake and the cached store implement the same way, so code
written against them runs on all three -- and on FalkorDB, Memgraph and Neo4j. The fake
does not interpret Cypher; raw ``query``/``write`` answer there only what a test scripted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from infra.graph.batching import ProgressCallback
from infra.graph.identifiers import Direction, NodeId
from infra.graph.results import Neighbour, Node, Path
from infra.health_check import HealthCheckResult
from infra.ports import GraphStore

__all__ = ["EdgeInput", "PropertyGraphStore"]

EdgeInput = tuple[NodeId, NodeId] | tuple[NodeId, NodeId, Mapping[str, Any]]
"""``(start_id, end_id)`` or ``(start_id, end_id, properties)``."""


@runtime_checkable
class PropertyGraphStore(GraphStore, Protocol):
    """A property graph: nodes with a graph-wide unique ``id``, labels and properties;
    directed, typed relationships (one per start, type and end)."""

    async def write(
        self,
        cypher: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        idempotent: bool = False,
    ) -> list[dict[str, Any]]:
        """Run a write statement; retried only when ``idempotent``."""
        ...

    async def health_check(
        self, latency_threshold_ms: float = 100.0, *, timeout: float | None = None
    ) -> HealthCheckResult:
        """The shared latency-aware health check."""
        ...

    async def upsert_nodes(
        self,
        label: str,
        nodes: Sequence[Mapping[str, Any]],
        *,
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> int:
        """Create or update nodes (``{"id": ..., **properties}``); returns how many."""
        ...

    async def upsert_edges(
        self,
        rel_type: str,
        edges: Sequence[EdgeInput],
        *,
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> int:
        """Create or update relationships; returns how many (missing endpoints: skipped)."""
        ...

    async def get_node(self, node_id: NodeId) -> Node | None:
        """The node, or ``None``."""
        ...

    async def neighbours(
        self,
        node_id: NodeId,
        *,
        rel_type: str | None = None,
        direction: Direction = "both",
        limit: int = 100,
    ) -> list[Neighbour]:
        """Adjacent nodes with the relationship to each, by id, type, start id."""
        ...

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
        """Simple paths (no node twice) of 1..``max_hops`` relationships, shortest first."""
        ...

    async def delete_nodes(self, node_ids: Sequence[NodeId]) -> int:
        """Delete nodes and their relationships; returns how many nodes existed."""
        ...

    async def delete_edges(self, rel_type: str, edges: Sequence[tuple[NodeId, NodeId]]) -> int:
        """Delete ``rel_type`` relationships between the pairs; returns how many."""
        ...

    async def count_nodes(self, label: str | None = None) -> int:
        """Nodes in the store (of ``label``)."""
        ...

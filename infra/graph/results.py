"""Typed results of the graph store: nodes, relationships, neighbours and paths.

Driver objects (``neo4j.graph.Node`` ...) never cross the port: every read returns these
frozen dataclasses, built from plain values the statements return (``n.id``,
``labels(n)``, ``properties(n)``, ``type(r)``, ``startNode(r).id`` ...). So the fake,
the cache and any engine produce equal results, and a result can be cached as JSON
(:func:`to_plain` / :func:`from_plain`, which share no mutable value with their input:
a caller mutating a returned node cannot change a cached one).

A node's ``labels`` leave out the store's base label; its ``properties`` leave out ``id``
(it is :attr:`Node.id`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.graph.identifiers import BASE_LABEL, NodeId

__all__ = [
    "Neighbour",
    "Node",
    "Path",
    "Relationship",
    "UpsertProgress",
    "from_plain",
    "node_from_values",
    "to_plain",
]


@dataclass(frozen=True, slots=True)
class Node:
    """A node: its id, labels (base label left out) and properties (``id`` left out)."""

    id: NodeId
    labels: frozenset[str] = frozenset()
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Relationship:
    """A directed relationship ``start_id -[type]-> end_id`` with its properties."""

    type: str
    start_id: NodeId
    end_id: NodeId
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A node next to the one asked about, and the relationship that links them."""

    node: Node
    relationship: Relationship


@dataclass(frozen=True, slots=True)
class Path:
    """Nodes and the relationships between them, in walking order."""

    nodes: tuple[Node, ...]
    relationships: tuple[Relationship, ...]

    @property
    def length(self) -> int:
        """Number of relationships (hops)."""
        return len(self.relationships)

    @property
    def node_ids(self) -> tuple[NodeId, ...]:
        """The ids along the path."""
        return tuple(node.id for node in self.nodes)


@dataclass(frozen=True, slots=True)
class UpsertProgress:
    """Reported after each batch of a batched upsert."""

    done: int
    """Items sent so far."""
    total: int
    """Items in the whole call."""
    written: int
    """Nodes or relationships the statements reported so far (missing endpoints skip)."""
    batches: int
    """Batches sent so far."""


def node_from_values(node_id: NodeId, labels: Any, properties: Mapping[str, Any]) -> Node:
    """A :class:`Node` from ``n.id``, ``labels(n)`` and ``properties(n)``."""
    return Node(
        id=node_id,
        labels=frozenset(label for label in labels if label != BASE_LABEL),
        properties={k: v for k, v in properties.items() if k != "id"},
    )


# ----------------------------------------------------------------- JSON round trip
# Both directions copy property values down to the last list: the cache keeps the plain
# form in L1 as is, so a result sharing a list with it would let a caller who mutates a
# returned node (``node.properties["tags"].append(...)``) change what later hits return.
def _copied(value: Any) -> Any:
    """``value`` with every list and map inside copied (scalars are immutable)."""
    if isinstance(value, list | tuple):
        return [_copied(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _copied(item) for key, item in value.items()}
    return value


def _props(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: _copied(value) if isinstance(value, list | tuple | Mapping) else value
        for key, value in properties.items()
    }


def _node_plain(node: Node) -> dict[str, Any]:
    return {"id": node.id, "labels": sorted(node.labels), "properties": _props(node.properties)}


def _rel_plain(rel: Relationship) -> dict[str, Any]:
    return {
        "type": rel.type,
        "start_id": rel.start_id,
        "end_id": rel.end_id,
        "properties": _props(rel.properties),
    }


def _node(data: Mapping[str, Any]) -> Node:
    return Node(data["id"], frozenset(data["labels"]), _props(data["properties"]))


def _rel(data: Mapping[str, Any]) -> Relationship:
    return Relationship(data["type"], data["start_id"], data["end_id"], _props(data["properties"]))


def to_plain(value: Any) -> Any:
    """A result (a node, ``None``, a count, or a list of neighbours or paths) as JSON-able
    data."""
    if value is None:
        return {"kind": "none"}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"kind": "count", "value": value}
    if isinstance(value, Node):
        return {"kind": "node", "node": _node_plain(value)}
    items = list(value)
    if all(isinstance(item, Neighbour) for item in items) and items:
        return {
            "kind": "neighbours",
            "items": [
                {"node": _node_plain(n.node), "relationship": _rel_plain(n.relationship)}
                for n in items
            ],
        }
    if all(isinstance(item, Path) for item in items) and items:
        return {
            "kind": "paths",
            "items": [
                {
                    "nodes": [_node_plain(n) for n in p.nodes],
                    "relationships": [_rel_plain(r) for r in p.relationships],
                }
                for p in items
            ],
        }
    if not items:
        return {"kind": "empty"}
    raise TypeError(f"cannot cache {type(items[0]).__name__} results")


def from_plain(data: Mapping[str, Any]) -> Any:
    """The inverse of :func:`to_plain`."""
    kind = data["kind"]
    if kind == "none":
        return None
    if kind == "count":
        return int(data["value"])
    if kind == "node":
        return _node(data["node"])
    if kind == "empty":
        return []
    if kind == "neighbours":
        return [Neighbour(_node(i["node"]), _rel(i["relationship"])) for i in data["items"]]
    if kind == "paths":
        return [
            Path(
                tuple(_node(n) for n in i["nodes"]),
                tuple(_rel(r) for r in i["relationships"]),
            )
            for i in data["items"]
        ]
    raise ValueError(f"unknown cached graph result kind {kind!r}")

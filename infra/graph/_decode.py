"""Rows from the driver into our types: the store's own statements and raw queries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from infra.graph.results import Neighbour, Node, Path, Relationship, node_from_values

__all__ = ["decode_neighbours", "decode_node", "decode_paths", "plain_row"]


def decode_node(values: Mapping[str, Any]) -> Node:
    """A row of ``id``, ``labels``, ``props``."""
    return node_from_values(values["id"], values["labels"], values["props"])


def decode_neighbours(rows: Iterable[Mapping[str, Any]]) -> list[Neighbour]:
    """Rows of :func:`infra.graph.cypher.neighbours`."""
    return [
        Neighbour(
            decode_node(row),
            Relationship(row["type"], row["start"], row["end"], dict(row["rprops"])),
        )
        for row in rows
    ]


def decode_paths(rows: Iterable[Mapping[str, Any]]) -> list[Path]:
    """Rows of :func:`infra.graph.cypher.paths`."""
    return [
        Path(
            tuple(decode_node(n) for n in row["nodes"]),
            tuple(
                Relationship(r["type"], r["start"], r["end"], dict(r["props"])) for r in row["rels"]
            ),
        )
        for row in rows
    ]


def _plain(value: Any) -> Any:
    """A driver value with graph objects replaced by ours (raw queries)."""
    from neo4j import graph  # noqa: PLC0415 - loaded already: the value came from it

    if isinstance(value, graph.Node):
        return node_from_values(value.get("id", value.element_id), value.labels, dict(value))
    if isinstance(value, graph.Relationship):
        start, end = value.start_node, value.end_node
        start_id: Any = start.get("id", start.element_id) if start is not None else None
        end_id: Any = end.get("id", end.element_id) if end is not None else None
        return Relationship(value.type, start_id, end_id, dict(value))
    if isinstance(value, graph.Path):
        return Path(tuple(_plain(n) for n in value.nodes), tuple(_plain(r) for r in value))
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def plain_row(record: Any) -> dict[str, Any]:
    """A raw query's record as a dict keyed by the RETURN aliases, no driver objects."""
    return {key: _plain(value) for key, value in record.items()}

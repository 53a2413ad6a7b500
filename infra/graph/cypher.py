"""The Cypher statements of the store, in the subset FalkorDB, Memgraph and Neo4j share.

Every logical write is ONE statement (``UNWIND $rows ... MERGE``): a single statement is
atomic on all three engines, while multi-statement transactions are not atomic on the
embedded FalkorDB (see docs/graph.md). Values are always parameters (``$rows``, ``$id``);
only validated identifiers (labels, relationship types, :data:`BASE_LABEL`) and validated
integers (path bounds) are spliced into the text, and identifiers are backquoted too.

Reads return plain values (``n.id``, ``labels(n)``, ``properties(n)``, ``type(r)``,
``startNode(r).id``) rather than graph objects: engines differ in how they encode nodes
inside relationships (FalkorDB sends a relationship's end nodes without properties), and
plain values decode the same everywhere.
"""

from __future__ import annotations

from typing import Any, Final

from infra.graph.identifiers import BASE_LABEL, Direction

__all__ = [
    "COUNT_NODES",
    "GET_NODE",
    "INDEX_STATEMENTS",
    "LIST_INDEXES",
    "PING",
    "SIMPLE_PATH",
    "count_nodes",
    "delete_edges",
    "delete_nodes",
    "is_base_index",
    "neighbours",
    "paths",
    "upsert_edges",
    "upsert_nodes",
]

_N: Final = f"`{BASE_LABEL}`"
PING: Final = "RETURN 1 AS ok"
GET_NODE: Final = (
    f"MATCH (n:{_N} {{id: $id}}) RETURN n.id AS id, labels(n) AS labels, properties(n) AS props"
)
COUNT_NODES: Final = f"MATCH (n:{_N}) RETURN count(n) AS n"
#: The index on the base label's ``id``, in each engine's syntax: Neo4j 5 (idempotent),
#: FalkorDB (Neo4j's form without IF NOT EXISTS), Memgraph. Tried in this order.
INDEX_STATEMENTS: Final = (
    f"CREATE INDEX IF NOT EXISTS FOR (n:{_N}) ON (n.id)",
    f"CREATE INDEX FOR (n:{_N}) ON (n.id)",
    f"CREATE INDEX ON :{_N}(id)",
)

#: FalkorDB's index listing (Neo4j 4 has it too), to tell "exists" from "failed".
LIST_INDEXES: Final = "CALL db.indexes() YIELD label, properties RETURN label, properties"


def is_base_index(row: Any) -> bool:
    """Whether a :data:`LIST_INDEXES` row is the base label's ``id`` index."""
    return bool(row["label"] == BASE_LABEL and "id" in list(row["properties"] or ()))


def upsert_nodes(label: str) -> str:
    """``$rows``: ``[{id, props}]``; merges on the base label's id, adds ``label``, merges
    properties (``SET +=``: keys not given are kept)."""
    return (
        f"UNWIND $rows AS row MERGE (n:{_N} {{id: row.id}}) "
        f"SET n:`{label}`, n += row.props RETURN count(n) AS written"
    )


def upsert_edges(rel_type: str) -> str:
    """``$rows``: ``[{start, end, props}]``; one ``rel_type`` edge per (start, end),
    rows whose endpoints do not exist write nothing."""
    return (
        f"UNWIND $rows AS row MATCH (a:{_N} {{id: row.start}}) MATCH (b:{_N} {{id: row.end}}) "
        f"MERGE (a)-[r:`{rel_type}`]->(b) SET r += row.props RETURN count(r) AS written"
    )


def delete_nodes() -> str:
    """``$ids``; detaches and deletes, returns how many existed."""
    return f"UNWIND $ids AS i MATCH (n:{_N} {{id: i}}) DETACH DELETE n RETURN count(*) AS deleted"


def delete_edges(rel_type: str) -> str:
    """``$rows``: ``[{start, end}]``; deletes those ``rel_type`` edges."""
    return (
        f"UNWIND $rows AS row MATCH (a:{_N} {{id: row.start}})-[r:`{rel_type}`]->"
        f"(b:{_N} {{id: row.end}}) DELETE r RETURN count(*) AS deleted"
    )


def count_nodes(label: str | None) -> str:
    """Nodes of the store, or of one label."""
    return COUNT_NODES if label is None else f"MATCH (n:{_N}:`{label}`) RETURN count(n) AS n"


def _arrow(direction: Direction, inner: str) -> str:
    if direction == "out":
        return f"-[{inner}]->"
    if direction == "in":
        return f"<-[{inner}]-"
    return f"-[{inner}]-"


def neighbours(direction: Direction, rel_type: str | None) -> str:
    """``$id``, ``$limit``; ordered by neighbour id, relationship type, start id."""
    typed = f":`{rel_type}`" if rel_type else ""
    return (
        f"MATCH (a:{_N} {{id: $id}}){_arrow(direction, 'r' + typed)}(b:{_N}) "
        "RETURN b.id AS id, labels(b) AS labels, properties(b) AS props, type(r) AS type, "
        "startNode(r).id AS start, endNode(r).id AS end, properties(r) AS rprops "
        "ORDER BY id, type, start LIMIT $limit"
    )


#: Keeps simple paths only (no node twice): engines agree on no other kind (see
#: docs/graph.md, "paths"). Quadratic in a path's length, which is at most MAX_HOPS.
SIMPLE_PATH: Final = "all(n IN nodes(p) WHERE size([m IN nodes(p) WHERE m.id = n.id]) = 1)"


def paths(direction: Direction, rel_type: str | None, max_hops: int) -> str:
    """``$start``, ``$end``, ``$limit``; simple paths, shortest first (order among equals:
    the engine's)."""
    typed = f":`{rel_type}`" if rel_type else ""
    hops = int(max_hops)  # validated 1..MAX_HOPS; a bound cannot be a parameter
    return (
        f"MATCH p = (a:{_N} {{id: $start}}){_arrow(direction, f'{typed}*1..{hops}')}"
        f"(b:{_N} {{id: $end}}) WHERE {SIMPLE_PATH} "
        "WITH p, length(p) AS hops ORDER BY hops LIMIT $limit "
        "RETURN [n IN nodes(p) | {id: n.id, labels: labels(n), props: properties(n)}] AS nodes, "
        "[r IN relationships(p) | {type: type(r), start: startNode(r).id, "
        "end: endNode(r).id, props: properties(r)}] AS rels"
    )

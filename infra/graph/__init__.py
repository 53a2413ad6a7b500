"""Graph storage over Bolt: :class:`MemgraphGraphStore` and :class:`CachedGraphStore`.

* :mod:`infra.graph.memgraph` -- the store on the neo4j async driver (Memgraph, Neo4j,
  FalkorDB's Bolt server): batched ``UNWIND ... MERGE`` upserts, neighbourhood and
  bounded path reads, typed results, our retry policy only.
* :mod:`infra.graph.cached_store` -- the store's reads through the 3-tier cache,
  invalidated by the ids of the nodes each write touches.
* :mod:`infra.graph.results` -- ``Node``, ``Relationship``, ``Neighbour``, ``Path``.
* :mod:`infra.graph.port` -- ``PropertyGraphStore``, what the store, the cached store and
  the fake (:class:`infra.testing.fakes.graph.FakeGraphStore`) share.

Importing this package imports no driver: the names below load their module on first
access, and neo4j is imported when a driver is built. See docs/graph.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.graph.cached_store import CachedGraphStore
    from infra.graph.driver import build_graph_driver, open_driver
    from infra.graph.memgraph import MemgraphGraphStore
    from infra.graph.port import EdgeInput, PropertyGraphStore
    from infra.graph.results import Neighbour, Node, Path, Relationship, UpsertProgress

__all__ = [
    "CachedGraphStore",
    "EdgeInput",
    "MemgraphGraphStore",
    "Neighbour",
    "Node",
    "Path",
    "PropertyGraphStore",
    "Relationship",
    "UpsertProgress",
    "build_graph_driver",
    "open_driver",
]

_HOMES = {
    "CachedGraphStore": "infra.graph.cached_store",
    "build_graph_driver": "infra.graph.driver",
    "open_driver": "infra.graph.driver",
    "MemgraphGraphStore": "infra.graph.memgraph",
    "EdgeInput": "infra.graph.port",
    "PropertyGraphStore": "infra.graph.port",
    "Neighbour": "infra.graph.results",
    "Node": "infra.graph.results",
    "Path": "infra.graph.results",
    "Relationship": "infra.graph.results",
    "UpsertProgress": "infra.graph.results",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'infra.graph' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

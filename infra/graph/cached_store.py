"""``CachedGraphStore``: the graph store's reads through the 3-tier cache.

::

    cached = CachedGraphStore(store, cache, ttl=300)
    node = await cached.get_node("ada")             # L1, then L2 (Redis), then the graph
    await cached.upsert_nodes("Person", [{"id": "ada", "age": 37}])   # invalidates "ada"
    assert (await cached.get_node("ada")).properties["age"] == 37

What is cached, and how it is invalidated:

* **Reads** ``get_node``, ``neighbours``, ``paths`` and ``count_nodes`` are cached under a
  key derived canonically from the operation and its arguments (sorted JSON, hashed), so
  equal calls share one entry. Each entry is tagged with the ids of the nodes it depends
  on: the ids asked about and every node in the result. ``paths`` also depend on
  relationships elsewhere in the graph (a new edge can make a shorter path), so they
  carry the ``edges`` tag; ``count_nodes`` carries the ``nodes`` tag. Raw ``query`` is
  not cached: what it depends on cannot be known.
* **Writes** go to the store first; then every tag they touch is invalidated in every tier
  (``ThreeTierCache.invalidate(tag=...)``: L2 entries deleted, every process's L1 told):
  upserts and deletes of nodes touch their ids (and ``nodes``), edge writes their
  endpoints (and ``edges``), deleting nodes both. A raw :meth:`write` may touch anything,
  so it clears the whole namespace. The invalidation runs even when the write failed or
  was cancelled (earlier batches, or the statement itself, may have landed), in a task
  the caller's cancellation does not stop.
* **Results are the caller's**: a hit is rebuilt from the cached plain data and a miss
  stores a copy, so mutating a returned node's properties changes no cached entry.
* **Arguments** are checked as the store checks them, before a cache key is made from
  them: a bad one is the store's ``InvalidArgumentError``, never a ``TypeError``.
* **A read that overlaps a write** (its load read the graph before the write, and it
  would store the result after the write's invalidation), in this process or another,
  must not leave the pre-write result behind. A fill takes the cache's tag snapshot
  before it loads and stores with ``set_if_unchanged(..., since=snapshot)``: Redis
  stores it only if none of the result's tags (and no prefix) was invalidated since,
  checked and written in one script, and a refused result goes into no tier (its
  callers, who asked before the write returned, still get it). A write invalidates after
  the graph changed, so once it returns: every entry stored before its invalidation is
  gone from L2 and from this process's L1, no fill that loaded before it can store, and
  other processes' L1 entries go when the invalidation message reaches them (the 3-tier
  cache's coherence, about a millisecond). Without Redis the cache keeps the same
  fence in memory.
* **Single flight** (the cache's :class:`~infra.cache.singleflight.SingleFlight`):
  concurrent misses of one key in a process run one graph read; a cancelled reader
  cancels only itself (the others start the read again).
* **Metrics**: ``graph_cache_requests_total{operation, result="hit"|"miss"}``, beside the
  cache's own tier metrics (``cache_hits_total{tier}``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from infra.cache import ThreeTierCache
from infra.cache.singleflight import SingleFlight
from infra.graph.batching import ProgressCallback
from infra.graph.identifiers import (
    Direction,
    NodeId,
    check_direction,
    check_edges,
    check_hops,
    check_identifier,
    check_limit,
    check_node_id,
    check_node_ids,
    check_nodes,
)
from infra.graph.port import EdgeInput, PropertyGraphStore
from infra.graph.results import Neighbour, Node, Path, from_plain, to_plain
from infra.health_check import HealthCheckResult
from infra.observability import get_metrics_collector
from infra.observability.metrics import MetricsCollector
from infra.validation import check_timeout

__all__ = ["CachedGraphStore"]

T = TypeVar("T")
_REQUESTS = "graph_cache_requests_total"
#: Ids longer than this are hashed in tags (a tag is a cache key: at most 1024 chars).
_SHORT_ID = 200
#: Tag invalidations in flight at once after a large write.
_CONCURRENT_INVALIDATIONS = 64


def _optional_identifier(value: object, argument: str) -> str | None:
    """``None``, or a label / relationship type checked as the store checks it (before
    it is part of a cache key: a value JSON cannot encode must not be a ``TypeError``)."""
    return None if value is None else check_identifier(value, argument=argument)


class CachedGraphStore:
    """A :class:`~infra.graph.port.PropertyGraphStore` whose reads go through ``cache``.

    Args:
        store: The graph store (real or fake).
        cache: The 3-tier cache (its L2 shared by the processes that must agree).
        ttl: Lifetime of a cached read in L2, seconds (``None``: the cache's ``l2_ttl``).
        namespace: Prefix of every key and tag; :meth:`write` clears it.
        metrics: Collector for the hit/miss counter (default: the process collector).
    """

    def __init__(
        self,
        store: PropertyGraphStore,
        cache: ThreeTierCache,
        *,
        ttl: float | None = None,
        namespace: str = "graph",
        metrics: MetricsCollector | None = None,
    ) -> None:
        if not isinstance(cache, ThreeTierCache):
            raise TypeError(f"cache must be a ThreeTierCache, got {type(cache).__name__}")
        if not isinstance(namespace, str) or not namespace.isidentifier():
            raise ValueError(f"namespace must be an identifier like 'graph', got {namespace!r}")
        self._store = store
        self._cache = cache
        self._ttl = check_timeout(ttl, argument="ttl", component="graph")
        self._ns = namespace
        self._metrics = metrics or get_metrics_collector()
        self._flights: SingleFlight[Any] = SingleFlight()
        #: Invalidations still running after their writer was cancelled.
        self._invalidations: set[asyncio.Future[Any]] = set()

    @property
    def store(self) -> PropertyGraphStore:
        """The store underneath."""
        return self._store

    @property
    def ttl(self) -> float | None:
        """Lifetime of a cached read in L2, seconds (``None``: the cache's ``l2_ttl``)."""
        return self._ttl

    def __repr__(self) -> str:
        return f"CachedGraphStore(store={self._store!r}, namespace={self._ns!r})"

    # ------------------------------------------------------------------- tags, keys
    def _node_tag(self, node_id: NodeId) -> str:
        text = json.dumps(node_id)
        if len(text) > _SHORT_ID:
            text = hashlib.sha256(text.encode()).hexdigest()
        return f"{self._ns}:n:{text}"

    def _key(self, operation: str, arguments: Mapping[str, Any]) -> str:
        canonical = json.dumps([operation, arguments], sort_keys=True, separators=(",", ":"))
        return f"{self._ns}:{operation}:{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"

    def _tags(self, ids: Iterable[NodeId], *extra: str) -> list[str]:
        tags = dict.fromkeys(self._node_tag(i) for i in ids)
        tags.update(dict.fromkeys(f"{self._ns}:{name}" for name in extra))
        return list(tags)

    # ------------------------------------------------------------------------ reads
    async def _read(
        self,
        operation: str,
        arguments: Mapping[str, Any],
        load: Callable[[], Awaitable[T]],
        depends: Callable[[T], list[str]],
    ) -> T:
        key = self._key(operation, arguments)
        cached = await self._cache.get(key)
        if cached is not None:
            self._metrics.increment(_REQUESTS, operation=operation, result="hit")
            value: T = from_plain(cached)
            return value
        self._metrics.increment(_REQUESTS, operation=operation, result="miss")
        result: T = await self._flights.run(key, partial(self._fill, key, load, depends))
        return result

    async def _fill(
        self, key: str, load: Callable[[], Awaitable[T]], depends: Callable[[T], list[str]]
    ) -> T:
        """Load, and store unless a write to one of the result's tags overlapped (the
        cache's fence: see the module docstring)."""
        snapshot = await self._cache.tag_snapshot()
        value = await load()
        await self._cache.set_if_unchanged(
            key, to_plain(value), since=snapshot, ttl=self._ttl, tags=depends(value)
        )
        return value

    async def _invalidate(self, tags: Sequence[str]) -> None:
        """After a write: invalidate its tags in every tier (and fence older fills).

        The graph may have changed even when the write was cancelled, so the invalidation
        runs in a task of its own that the caller's cancellation does not reach: the
        caller waits for it, and a second cancellation while it runs leaves it finishing
        in the background (referenced, so it is not garbage-collected)."""
        job = asyncio.ensure_future(self._invalidate_now(tags))
        self._invalidations.add(job)
        job.add_done_callback(self._invalidations.discard)
        await asyncio.shield(job)

    async def _invalidate_now(self, tags: Sequence[str]) -> None:
        for start in range(0, len(tags), _CONCURRENT_INVALIDATIONS):
            chunk = tags[start : start + _CONCURRENT_INVALIDATIONS]
            await asyncio.gather(*(self._cache.invalidate(tag=tag) for tag in chunk))

    async def get_node(self, node_id: NodeId) -> Node | None:
        """The node (cached; tagged with its id)."""
        node_id = check_node_id(node_id)
        return await self._read(
            "get_node",
            {"id": node_id},
            lambda: self._store.get_node(node_id),
            lambda _: self._tags([node_id]),
        )

    async def neighbours(
        self,
        node_id: NodeId,
        *,
        rel_type: str | None = None,
        direction: Direction = "both",
        limit: int = 100,
    ) -> list[Neighbour]:
        """The store's neighbours (cached; tagged with the node and every neighbour)."""
        node_id = check_node_id(node_id)
        rel_type = _optional_identifier(rel_type, "rel_type")
        direction, limit = check_direction(direction), check_limit(limit)
        return await self._read(
            "neighbours",
            {"id": node_id, "rel_type": rel_type, "direction": direction, "limit": limit},
            lambda: self._store.neighbours(
                node_id, rel_type=rel_type, direction=direction, limit=limit
            ),
            lambda found: self._tags([node_id, *(n.node.id for n in found)]),
        )

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
        """The store's paths (cached; tagged with their nodes and ``edges``)."""
        start = check_node_id(start_id, argument="start_id")
        end = check_node_id(end_id, argument="end_id")
        rel_type = _optional_identifier(rel_type, "rel_type")  # in the store's order
        direction, max_hops = check_direction(direction), check_hops(max_hops)
        limit = check_limit(limit)
        arguments = {
            "start": start,
            "end": end,
            "max_hops": max_hops,
            "rel_type": rel_type,
            "direction": direction,
            "limit": limit,
        }
        return await self._read(
            "paths",
            arguments,
            lambda: self._store.paths(
                start,
                end,
                max_hops=max_hops,
                rel_type=rel_type,
                direction=direction,
                limit=limit,
            ),
            lambda found: self._tags(
                [start, end, *(i for p in found for i in p.node_ids)], "edges"
            ),
        )

    async def count_nodes(self, label: str | None = None) -> int:
        """The store's count (cached; tagged ``nodes``)."""
        label = _optional_identifier(label, "label")
        return await self._read(
            "count_nodes",
            {"label": label},
            lambda: self._store.count_nodes(label),
            lambda _: self._tags([], "nodes"),
        )

    async def query(
        self, cypher: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Raw Cypher, not cached (its dependencies are unknown)."""
        return await self._store.query(cypher, parameters)

    # ----------------------------------------------------------------------- writes
    async def upsert_nodes(
        self,
        label: str,
        nodes: Sequence[Mapping[str, Any]],
        *,
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> int:
        """The store's upsert, then the nodes' tags (and ``nodes``) invalidated."""
        ids = [node_id for node_id, _ in check_nodes(nodes)]
        try:
            return await self._store.upsert_nodes(
                label, nodes, batch_size=batch_size, on_progress=on_progress
            )
        finally:  # a failed batch may follow written ones
            await self._invalidate(self._tags(ids, "nodes"))

    async def upsert_edges(
        self,
        rel_type: str,
        edges: Sequence[EdgeInput],
        *,
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> int:
        """The store's upsert, then the endpoints' tags (and ``edges``) invalidated."""
        ends = [i for start, end, _ in check_edges(edges) for i in (start, end)]
        try:
            return await self._store.upsert_edges(
                rel_type, edges, batch_size=batch_size, on_progress=on_progress
            )
        finally:
            await self._invalidate(self._tags(ends, "edges"))

    async def delete_nodes(self, node_ids: Sequence[NodeId]) -> int:
        """The store's delete, then the nodes' tags, ``nodes`` and ``edges`` invalidated.

        Neighbours of a deleted node are tagged with it (it was in their result), so
        their entries go too."""
        ids = check_node_ids(node_ids)
        try:
            return await self._store.delete_nodes(ids)
        finally:
            await self._invalidate(self._tags(ids, "nodes", "edges"))

    async def delete_edges(self, rel_type: str, edges: Sequence[tuple[NodeId, NodeId]]) -> int:
        """The store's delete, then the endpoints' tags (and ``edges``) invalidated."""
        ends = [i for start, end, _ in check_edges(edges) for i in (start, end)]
        try:
            return await self._store.delete_edges(rel_type, edges)
        finally:
            await self._invalidate(self._tags(ends, "edges"))

    async def write(
        self,
        cypher: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        idempotent: bool = False,
    ) -> list[dict[str, Any]]:
        """Raw Cypher through the store, then the whole namespace invalidated."""
        try:
            return await self._store.write(cypher, parameters, idempotent=idempotent)
        finally:
            await self._invalidate_all()

    async def _invalidate_all(self) -> None:
        # A prefix invalidation also refuses every fill that loaded before it. Shielded
        # like _invalidate: a cancelled write may still have changed the graph.
        job = asyncio.ensure_future(self._cache.invalidate(prefix=f"{self._ns}:"))
        self._invalidations.add(job)
        job.add_done_callback(self._invalidations.discard)
        await asyncio.shield(job)

    async def health_check(
        self, latency_threshold_ms: float = 100.0, *, timeout: float | None = None
    ) -> HealthCheckResult:
        """The store's health check (the cache reports its own)."""
        return await self._store.health_check(latency_threshold_ms, timeout=timeout)

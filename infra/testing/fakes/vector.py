"""``FakeVectorStore``: an in-memory vector store with the real stores' behaviour.

Exact brute-force search in pure Python (no numpy, no client), the same argument checks,
collection bookkeeping, batching, filters and errors as
:class:`~infra.vector.qdrant.QdrantVectorStore` and :class:`~infra.vector.pgvector.PgVectorStore`
-- all three share :class:`~infra.vector.base.VectorStoreBase` and pass the contract suite
``tests/contract/test_vector_contract.py``::

    store = FakeVectorStore(policy=ResiliencePolicy.instant("qdrant"))
    await store.ensure_collection("docs", vector_size=3)
    await store.upsert("docs", [VectorPoint(1, [0.1, 0.2, 0.3], {"lang": "en"})])
    store.fail_next(VectorStoreConnectionError(), times=2, operations={"upsert"})

Every engine request runs through :class:`~infra.calls.BackendCalls` under the injected
policy, so scripted failures are retried and counted by its breaker exactly as the real
store's are, and metrics (``qdrant_request_latency_ms{operation}`` ...) are recorded.
Scores follow Qdrant: cosine similarity of the normalised vectors (stored normalised, as
Qdrant stores them), dot product, or Euclidean distance (smaller is better). Vectors are
stored as 32-bit floats, like the engines store them: what ``scroll(with_vectors=True)``
returns is what the real stores return.
"""

from __future__ import annotations

import array
import dataclasses
import json
import math
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from infra.calls import BackendCalls
from infra.exceptions import CollectionNotFoundError, InfraError
from infra.health_check import probe_calls
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.ports import VectorHit, VectorPoint
from infra.resilience import ResiliencePolicy
from infra.testing.fakes._backend import fake_calls
from infra.translation import translate_exception
from infra.vector.base import CollectionSpec, HnswOptions, ScrollPage, VectorStoreBase
from infra.vector.filters import Condition, matches
from infra.vector.points import PreparedPoints

__all__ = ["FakeVectorStore"]

T = TypeVar("T")
Fault = InfraError | Exception | type[Exception]


@dataclass(slots=True)
class _Collection:
    spec: CollectionSpec
    points: dict[str | int, tuple[list[float], dict[str, Any]]] = field(default_factory=dict)


@dataclass(slots=True)
class _ScriptedFault:
    error: Fault
    remaining: int
    operations: frozenset[str] | None


def _norm(vector: list[float]) -> list[float]:
    length = math.sqrt(sum(x * x for x in vector))
    return [x / length for x in vector] if length else list(vector)


def _float32(vector: Iterable[Any]) -> list[float]:
    """``vector`` as the engines store it: each element rounded to a 32-bit float (0.1
    comes back as 0.10000000149011612 from Qdrant and pgvector, so from here too)."""
    return array.array("f", vector).tolist()


def _score(distance: str, stored: list[float], query: list[float]) -> float:
    if distance == "euclid":
        return math.sqrt(sum((a - b) ** 2 for a, b in zip(stored, query, strict=True)))
    return math.fsum(a * b for a, b in zip(stored, query, strict=True))


def id_order(point_id: str | int) -> tuple[int, int, str]:
    """Scroll order: integer ids first (numerically), then UUIDs."""
    return (0, point_id, "") if isinstance(point_id, int) else (1, 0, point_id)


class FakeVectorStore(VectorStoreBase):
    """In-memory vector store; see the module docstring.

    Args:
        policy: The resilience policy every request runs under (the container passes the
            real store's policy provider, so overriding it changes both).
        component: ``component`` of errors and metrics (the Qdrant store's is ``"qdrant"``).
        batch_size / concurrency / max_request_bytes / threaded_above: As for the real
            stores.
    """

    def __init__(
        self,
        *,
        policy: ResiliencePolicy | None = None,
        component: str = "qdrant",
        batch_size: int = 256,
        concurrency: int = 4,
        max_request_bytes: int = 4_000_000,
        threaded_above: int = 2_048,
        log_every: int = 100,
    ) -> None:
        if policy is not None and not isinstance(policy, ResiliencePolicy):
            raise TypeError(f"policy must be a ResiliencePolicy or None, got {policy!r}")
        super().__init__(
            calls=BackendCalls(component, family="vector", system="qdrant", policy=policy),
            batch_size=batch_size,
            concurrency=concurrency,
            max_request_bytes=max_request_bytes,
            threaded_above=threaded_above,
            log_every=log_every,
        )
        self._collections: dict[str, _Collection] = {}
        self._faults: list[_ScriptedFault] = []
        #: Every engine request attempted, as ``(operation, collection)``.
        self.calls: list[tuple[str, str | None]] = []

    def attach(
        self,
        *,
        policy: ResiliencePolicy | None,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        """Run later operations under ``policy`` and record them into ``collector`` (what
        ``containers.testing.use_fakes`` does with the container's own providers); the
        collections and scripted faults are kept."""
        self._calls = fake_calls(
            self._calls.component,
            family="vector",
            system="qdrant",
            policy=policy,
            collector=collector,
            tracing=tracing,
        )
        self._health_calls = probe_calls(self._calls)

    def __repr__(self) -> str:
        return (
            f"FakeVectorStore(collections={len(self._collections)}, "
            f"policy={self.policy.describe()!r})"
        )

    # ---------------------------------------------------------------------- test controls
    def fail_next(
        self,
        error: Fault,
        *,
        times: int = 1,
        operations: Collection[str] | None = None,
    ) -> None:
        """Make the next ``times`` requests (of ``operations``, e.g. ``{"upsert"}``) fail
        with ``error``; a driver-style exception is translated as the real store would."""
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times!r}")
        chosen = None if operations is None else frozenset(operations)
        self._faults.append(_ScriptedFault(error, times, chosen))

    def _take_fault(self, operation: str) -> Fault | None:
        for fault in self._faults:
            if fault.operations is None or operation in fault.operations:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault.error
        return None

    async def _run(self, operation: str, collection: str | None, fn: Callable[[], T]) -> T:
        async def attempt() -> T:
            self.calls.append((operation, collection))
            fault = self._take_fault(operation)
            if fault is not None:
                error = fault() if isinstance(fault, type) else fault
                if isinstance(error, InfraError):
                    raise error
                raise translate_exception(
                    error, component=self.component, family="vector", operation=operation
                ) from error
            return fn()

        run: Callable[[], Awaitable[T]] = attempt
        return await self._calls.run(operation, run)

    def _collection(self, name: str) -> _Collection:
        found = self._collections.get(name)
        if found is None:
            raise CollectionNotFoundError(
                f"collection {name!r} not found", component=self.component
            )
        return found

    # -------------------------------------------------------------------------- primitives
    async def _describe(self, name: str) -> CollectionSpec | None:
        def read() -> CollectionSpec | None:
            found = self._collections.get(name)
            return None if found is None else found.spec

        return await self._run("get_collection", name, read)

    async def _create(self, spec: CollectionSpec, options: HnswOptions) -> bool:
        del options  # no index to configure: search is always exact

        def create() -> bool:
            if spec.name in self._collections:
                return False
            self._collections[spec.name] = _Collection(spec)
            return True

        return await self._run("create_collection", spec.name, create)

    async def _record_model(self, name: str, model: str) -> None:
        def record() -> None:
            found = self._collection(name)
            if found.spec.model is None:
                found.spec = dataclasses.replace(found.spec, model=model)

        await self._run("update_collection", name, record)

    async def _drop(self, name: str) -> bool:
        return await self._run(
            "delete_collection", name, lambda: self._collections.pop(name, None) is not None
        )

    async def _write(self, spec: CollectionSpec, points: PreparedPoints, batch: range) -> None:
        cosine = spec.distance == "cosine"

        def write() -> None:
            stored = self._collection(spec.name).points
            for index in batch:
                vector = _float32(points.vectors[index])
                payload = json.loads(points.payload_json[index])
                stored[points.ids[index]] = (_float32(_norm(vector)) if cosine else vector, payload)

        await self._run("upsert", spec.name, write)

    def _matching(
        self, spec: CollectionSpec, conditions: tuple[Condition, ...]
    ) -> list[tuple[str | int, list[float], dict[str, Any]]]:
        stored = self._collection(spec.name).points
        return [
            (pid, vector, payload)
            for pid, (vector, payload) in stored.items()
            if matches(payload, conditions)
        ]

    async def _search(
        self,
        spec: CollectionSpec,
        vector: list[float],
        *,
        limit: int,
        conditions: tuple[Condition, ...],
        score_threshold: float | None,
        exact: bool,
    ) -> list[VectorHit]:
        del exact  # always exact
        query = _norm([float(x) for x in vector]) if spec.distance == "cosine" else vector
        smaller_first = spec.distance == "euclid"

        def search() -> list[VectorHit]:
            hits = [
                VectorHit(
                    pid, _score(spec.distance, stored, query), json.loads(json.dumps(payload))
                )
                for pid, stored, payload in self._matching(spec, conditions)
            ]
            if score_threshold is not None:
                hits = [
                    hit
                    for hit in hits
                    if (
                        hit.score <= score_threshold
                        if smaller_first
                        else hit.score >= score_threshold
                    )
                ]
            hits.sort(key=lambda hit: hit.score, reverse=not smaller_first)
            return hits[:limit]

        return await self._run("query", spec.name, search)

    async def _delete_ids(self, spec: CollectionSpec, ids: list[str | int]) -> None:
        def delete() -> None:
            stored = self._collection(spec.name).points
            for pid in ids:
                stored.pop(pid, None)

        await self._run("delete", spec.name, delete)

    async def _delete_where(self, spec: CollectionSpec, conditions: tuple[Condition, ...]) -> None:
        def delete() -> None:
            stored = self._collection(spec.name).points
            for pid, _vector, _payload in self._matching(spec, conditions):
                del stored[pid]

        await self._run("delete", spec.name, delete)

    async def _count(self, spec: CollectionSpec, conditions: tuple[Condition, ...]) -> int:
        return await self._run("count", spec.name, lambda: len(self._matching(spec, conditions)))

    async def _scroll(
        self,
        spec: CollectionSpec,
        *,
        conditions: tuple[Condition, ...],
        limit: int,
        offset: str | int | None,
        with_vectors: bool,
    ) -> ScrollPage:
        def scroll() -> ScrollPage:
            found = sorted(self._matching(spec, conditions), key=lambda item: id_order(item[0]))
            if offset is not None:
                start = id_order(offset)
                found = [item for item in found if id_order(item[0]) >= start]
            page = [
                VectorPoint(
                    pid, list(vector) if with_vectors else [], json.loads(json.dumps(payload))
                )
                for pid, vector, payload in found[:limit]
            ]
            return ScrollPage(page, found[limit][0] if len(found) > limit else None)

        return await self._run("scroll", spec.name, scroll)

    async def _probe(self) -> None:
        async def probe() -> None:
            self.calls.append(("health_check", None))

        await self._health_calls.run("health_check", probe)

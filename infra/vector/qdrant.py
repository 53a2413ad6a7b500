"""``QdrantVectorStore``: the :class:`~infra.ports.VectorStore` on qdrant-client.

::

    store = QdrantVectorStore.from_settings(settings, policy=policy)  # no I/O yet
    await store.ensure_collection("docs", vector_size=384, model="bge-small-en")
    await store.upsert("docs", points)            # batches of 256, 4 in flight
    hits = await store.search("docs", query, limit=10, filter={"lang": "en"})
    await store.close()

Or over a client you own: ``QdrantVectorStore(AsyncQdrantClient(url=...), policy=...)``.

Decisions (the shared ones -- checks before I/O, bookkeeping, batching -- are in
:mod:`infra.vector.base` and :mod:`infra.vector.batching`):

* **One call path.** Every request goes through :class:`~infra.calls.BackendCalls`
  (``component="qdrant"``): a span and ``qdrant_request_latency_ms{operation}`` per call,
  the injected policy (retry, breaker, timeouts), and :mod:`infra.translation` inside each
  attempt (HTTP 429 with ``Retry-After`` becomes a retryable error whose ``retry_after``
  the retry waits at least; 404 -> ``CollectionNotFoundError``; local mode's
  ``ValueError`` texts are read too).
* **Upsert is ``await client.upsert(...)``**, never ``upload_points`` /
  ``upload_collection``: those are blocking (they fan out to processes) and retry on
  their own without backoff. Each batch is a list of ``PointStruct`` built without
  pydantic re-validation (``model_construct``, ~4x cheaper): every value was checked by
  :func:`~infra.vector.points.prepare_points` already; for a server, the vectors are
  made plain floats (:func:`~infra.vector.points.plain_floats`) -- numpy scalars and
  ``Decimal`` are valid input that the client's encoder cannot write as numbers. (A
  ``models.Batch`` would be one object, but local mode re-validates it point by point.)
  All upserts are idempotent
  (ids fixed), so the policy may retry a batch.
* **The client is built on first use** when the store is made ``from_settings`` (or from
  a factory): the application starts, and its health check reports, while Qdrant is
  down; qdrant-client (~1.4 s to import) is imported then, not at startup. The store
  closes a client it built; a client passed in is the caller's to close.
* **Collection metadata** records the embedding model: ``{"embedding_model": ...}``.
* **Local mode** (``SEMANTICA_QDRANT_LOCATION``) is qdrant-client's in-process engine:
  numpy brute force, CPU-bound on the event loop. Concurrency cannot speed it up -- all
  batches run one after another in this process -- and its maintainers do not recommend
  it for production; it is the embedded default for development and tests.
"""

from __future__ import annotations

import array
import functools
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from infra.calls import BackendCalls
from infra.exceptions import CollectionNotFoundError, VectorStoreError
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.ports import VectorHit, VectorPoint
from infra.resilience import ResiliencePolicy
from infra.vector.base import CollectionSpec, HnswOptions, ScrollPage, VectorStoreBase
from infra.vector.errors import CollectionConfigMismatchError
from infra.vector.filters import Condition
from infra.vector.points import PreparedPoints, plain_floats

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient
    from qdrant_client.http import models as qmodels

    from config import Settings

__all__ = ["QdrantVectorStore"]

_MODEL_KEY = "embedding_model"
_DISTANCE_NAMES = {"Cosine": "cosine", "Dot": "dot", "Euclid": "euclid"}


@functools.cache
def _models() -> Any:
    from qdrant_client.http import models  # noqa: PLC0415 - imported on first request

    return models


def _distance(name: str) -> qmodels.Distance:
    models = _models()
    distances: dict[str, qmodels.Distance] = {
        "cosine": models.Distance.COSINE,
        "dot": models.Distance.DOT,
        "euclid": models.Distance.EUCLID,
    }
    return distances[name]


_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def qdrant_key(condition: Condition) -> str:
    """The condition's field as a Qdrant key path: a part of other characters than
    ``A-Z a-z 0-9 _ -`` is double-quoted (``"$x".b``), else Qdrant reads it as path syntax
    (``[]``) or refuses it ("Invalid path"); parts never hold ``"`` (see filters)."""
    return ".".join(part if _SIMPLE_KEY.fullmatch(part) else f'"{part}"' for part in condition.path)


def qdrant_threshold(score_threshold: float | None, distance: str) -> float | None:
    """The threshold to send so that a hit exactly at ``score_threshold`` is kept.

    Local mode keeps only scores strictly better, and compares its float32 scores in
    float32 (NumPy converts the threshold). So the largest float32 strictly worse than
    the caller's threshold is sent -- every score at least as good passes, whether an
    engine compares in float32 or float64, strictly or not -- and
    :meth:`QdrantVectorStore._search` drops the hits worse than the caller's threshold.
    A threshold that keeps every hit is none (JSON has no infinity)."""
    if score_threshold is None:
        return None
    import numpy as np  # noqa: PLC0415 - qdrant-client's own dependency, loaded with it

    worse = math.inf if distance == "euclid" else -math.inf
    with np.errstate(over="ignore"):  # beyond float32: infinity, then the largest float32
        nearest = np.float32(score_threshold)
    already_worse = (
        float(nearest) > score_threshold if worse > 0 else float(nearest) < score_threshold
    )
    sent = float(nearest if already_worse else np.nextafter(nearest, np.float32(worse)))
    return None if sent == worse else sent


def qdrant_filter(conditions: tuple[Condition, ...]) -> qmodels.Filter | None:
    """Our conditions as a Qdrant ``Filter`` (``None`` for none)."""
    if not conditions:
        return None
    models = _models()
    must: list[Any] = []
    for condition in conditions:
        if condition.is_range:
            must.append(
                models.FieldCondition(
                    key=qdrant_key(condition),
                    range=models.Range(**{k: float(v) for k, v in condition.bounds().items()}),
                )
            )
        elif len(condition.values) == 1:
            must.append(
                models.FieldCondition(
                    key=qdrant_key(condition), match=models.MatchValue(value=condition.values[0])
                )
            )
        else:  # any-of; MatchAny takes only all-str or all-int lists, so one match each
            key = qdrant_key(condition)
            options = [
                models.FieldCondition(key=key, match=models.MatchValue(value=value))
                for value in condition.values
            ]
            must.append(models.Filter(should=options))
    built: qmodels.Filter = models.Filter(must=must)
    return built


def _id(value: object) -> str | int:
    """A point id as the port has it (REST and local mode give int or str already)."""
    return value if isinstance(value, int | str) else str(value)


def _vector(value: object) -> list[float]:
    """A record's (unnamed) vector as the 32-bit floats stored; ``[]`` when absent. A
    server's JSON writes a float32 in its shortest form (``0.1``), local mode and
    pgvector give its exact value (``0.10000000149011612``): rounding makes all alike."""
    return array.array("f", value).tolist() if isinstance(value, list) else []


class QdrantVectorStore(VectorStoreBase):
    """A vector store on Qdrant (server or local mode); see the module docstring.

    Args:
        client: An ``AsyncQdrantClient`` (yours to close), or a zero-argument factory
            that builds one on first use (the store closes it).
        policy: The resilience policy every request runs under (default: passthrough).
        batch_size / concurrency / max_request_bytes / threaded_above / log_every: See
            :class:`~infra.vector.base.VectorStoreBase`.
        server_address / server_port: Span attributes (never credentials).
        record: ``False`` turns telemetry off (benchmarks of the raw path).
        collector: Where calls are recorded (the application container injects its own);
            default: ``get_metrics_collector()`` at call time.
    """

    def __init__(
        self,
        client: AsyncQdrantClient | Callable[[], AsyncQdrantClient],
        *,
        policy: ResiliencePolicy | None = None,
        batch_size: int = 256,
        concurrency: int = 4,
        max_request_bytes: int = 4_000_000,
        threaded_above: int = 2_048,
        log_every: int = 100,
        health_timeout: float = 5.0,
        server_address: str | None = None,
        server_port: int | None = None,
        record: bool = True,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        super().__init__(
            calls=BackendCalls(
                "qdrant",
                family="vector",
                system="qdrant",
                policy=policy,
                server_address=server_address,
                server_port=server_port,
                record=record,
                collector=collector,
                tracing=tracing,
            ),
            batch_size=batch_size,
            concurrency=concurrency,
            max_request_bytes=max_request_bytes,
            threaded_above=threaded_above,
            log_every=log_every,
            health_timeout=health_timeout,
        )
        if callable(client):
            self._factory: Callable[[], AsyncQdrantClient] | None = client
            self._client: AsyncQdrantClient | None = None
        else:
            self._factory, self._client = None, client
        self._upsert_op = self._calls.operation("upsert")
        self._query_op = self._calls.operation("query")

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        policy: ResiliencePolicy | None = None,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> Self:
        """A store for ``settings.vector`` (local mode when ``location`` is set); the client
        is built on first use."""
        from infra.vector.client import qdrant_client_from_settings  # noqa: PLC0415

        vector = settings.vector
        address, port = "local", None
        if vector.location is None:
            parts = urlsplit(vector.url) if vector.url else None
            address = (parts.hostname if parts else vector.host) or vector.host
            port = (parts.port if parts else vector.port) or vector.port
        return cls(
            functools.partial(qdrant_client_from_settings, settings),
            policy=policy,
            batch_size=vector.upsert_batch_size,
            concurrency=vector.upsert_concurrency,
            server_address=address,
            server_port=port,
            collector=collector,
            tracing=tracing,
        )

    def __repr__(self) -> str:
        state = (
            "closed" if self._closed else "open" if self._client is not None else "not connected"
        )
        return (
            f"QdrantVectorStore(state={state}, batch_size={self._batch_size}, "
            f"concurrency={self._concurrency}, policy={self.policy.describe()!r})"
        )

    async def _prepare(self) -> None:
        """Before the client is built: import qdrant-client off the event loop."""
        if self._client is None:
            from infra.vector.client import load_qdrant_client  # noqa: PLC0415 - see above

            await load_qdrant_client()

    @property
    def client(self) -> AsyncQdrantClient:
        """The qdrant-client instance (built now if the store was given a factory)."""
        self._check_open()
        if self._client is None:
            assert self._factory is not None  # noqa: S101 -- one of the two is always set
            self._client = self._factory()
        return self._client

    @property
    def _local(self) -> bool:
        """Whether the client runs qdrant-client's local mode (``location``/``path``)."""
        options = self.client.init_options
        return options.get("location") == ":memory:" or options.get("path") is not None

    async def _release(self) -> None:
        if self._factory is not None and self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # -------------------------------------------------------------------------- primitives
    async def _describe(self, name: str) -> CollectionSpec | None:
        try:
            info = await self._calls.run("get_collection", self.client.get_collection, name)
        except CollectionNotFoundError:
            return None
        params = info.config.params.vectors
        size = getattr(params, "size", None)
        distance = _DISTANCE_NAMES.get(str(getattr(getattr(params, "distance", None), "value", "")))
        if size is None or distance is None:
            raise CollectionConfigMismatchError(
                f"collection {name!r} uses named vectors or a distance these stores do not "
                "support (one unnamed vector; cosine, dot or euclid)",
                component=self.component,
                details={"collection": name},
            )
        metadata = getattr(info.config, "metadata", None) or {}
        model = metadata.get(_MODEL_KEY)
        return CollectionSpec(name, int(size), distance, model if isinstance(model, str) else None)

    async def _create(self, spec: CollectionSpec, options: HnswOptions) -> bool:
        models = _models()
        hnsw = None
        if options.m is not None or options.ef_construct is not None:
            hnsw = models.HnswConfigDiff(m=options.m, ef_construct=options.ef_construct)
        try:
            await self._calls.run(
                "create_collection",
                functools.partial(
                    self.client.create_collection,
                    spec.name,
                    vectors_config=models.VectorParams(
                        size=spec.size, distance=_distance(spec.distance), on_disk=options.on_disk
                    ),
                    hnsw_config=hnsw,
                    metadata=None if spec.model is None else {_MODEL_KEY: spec.model},
                ),
            )
        except VectorStoreError as exc:
            # Created meanwhile by another client: 409 from a server, a ValueError text in
            # local mode. The caller compares the configurations.
            if exc.details.get("status_code") == 409 or "already exists" in exc.message:
                return False
            raise
        return True

    async def _record_model(self, name: str, model: str) -> None:
        await self._calls.run(
            "update_collection",
            functools.partial(self.client.update_collection, name, metadata={_MODEL_KEY: model}),
        )

    async def _drop(self, name: str) -> bool:
        return bool(await self._calls.run("delete_collection", self.client.delete_collection, name))

    async def _write(self, spec: CollectionSpec, points: PreparedPoints, batch: range) -> None:
        construct = _models().PointStruct.model_construct
        ids, vectors, payloads = points.ids, points.vectors, points.payloads
        # A server's JSON (or protobuf) carries plain floats only; local mode reads any
        # real number through numpy, and converting 10,000 vectors costs it ~10%.
        plain = (lambda vector: vector) if self._local else plain_floats
        structs = [
            construct(id=ids[i], vector=plain(vectors[i]), payload=payloads[i]) for i in batch
        ]
        await self._upsert_op.run(self.client.upsert, spec.name, structs, True)

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
        response = await self._query_op.run(
            functools.partial(
                self.client.query_points,
                spec.name,
                query=plain_floats(vector),
                limit=limit,
                query_filter=qdrant_filter(conditions),
                score_threshold=qdrant_threshold(score_threshold, spec.distance),
                with_payload=True,
                # Local mode is always exact (and warns about search_params).
                search_params=(
                    _models().SearchParams(exact=True) if exact and not self._local else None
                ),
            )
        )
        hits = [
            VectorHit(_id(hit.id), float(hit.score), hit.payload or {}) for hit in response.points
        ]
        if score_threshold is None:
            return hits
        if spec.distance == "euclid":
            return [hit for hit in hits if hit.score <= score_threshold]
        return [hit for hit in hits if hit.score >= score_threshold]

    async def _delete_ids(self, spec: CollectionSpec, ids: list[str | int]) -> None:
        selector = _models().PointIdsList(points=ids)
        await self._calls.run("delete", self.client.delete, spec.name, selector, True)

    async def _delete_where(self, spec: CollectionSpec, conditions: tuple[Condition, ...]) -> None:
        selector = _models().FilterSelector(filter=qdrant_filter(conditions))
        await self._calls.run("delete", self.client.delete, spec.name, selector, True)

    async def _count(self, spec: CollectionSpec, conditions: tuple[Condition, ...]) -> int:
        result = await self._calls.run(
            "count", self.client.count, spec.name, qdrant_filter(conditions), True
        )
        return int(result.count)

    async def _scroll(
        self,
        spec: CollectionSpec,
        *,
        conditions: tuple[Condition, ...],
        limit: int,
        offset: str | int | None,
        with_vectors: bool,
    ) -> ScrollPage:
        records, next_offset = await self._calls.run(
            "scroll",
            functools.partial(
                self.client.scroll,
                spec.name,
                scroll_filter=qdrant_filter(conditions),
                limit=limit,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            ),
        )
        page = [
            VectorPoint(
                _id(record.id),
                _vector(record.vector) if with_vectors else [],
                record.payload or {},
            )
            for record in records
        ]
        return ScrollPage(page, None if next_offset is None else _id(next_offset))

    async def _probe(self) -> None:
        await self._health_calls.run("health_check", self.client.get_collections)

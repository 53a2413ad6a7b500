"""What every vector store does the same way; each engine supplies a few primitives.

:class:`VectorStoreBase` implements the public methods once -- argument checks before
any I/O, the collection bookkeeping (size, distance, embedding model), batched upsert,
model checks, closed state, health -- and calls the engine's primitives (``_create``,
``_describe``, ``_write``, ``_search`` ...), which run their driver calls through the
engine's :class:`~infra.calls.BackendCalls` (telemetry -> policy -> translation). The
Qdrant store, the pgvector store and the fake differ only in those primitives, so the
contract suite tests one behaviour on three engines.

**Collection bookkeeping.** ``ensure_collection`` records the vector size, distance and,
when given, the embedding ``model`` with the collection (Qdrant collection metadata; a
side table on PostgreSQL), and compares them when the collection exists: any difference
is a :class:`~infra.vector.errors.CollectionConfigMismatchError`, never a silent reuse.
A collection created without a model takes the model of the first ``ensure_collection``
that names one (recorded with it, so every store and process sees it).
A store remembers the configuration of each collection it has seen (one lookup per
collection and store), which is how vectors are checked before any request is sent.
A ``model=`` passed to ``upsert`` or ``search`` must equal the recorded one
(:class:`~infra.vector.errors.EmbeddingModelMismatchError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from infra.calls import BackendCalls
from infra.exceptions import (
    CollectionNotFoundError,
    DimensionMismatchError,
    InfraError,
    InvalidArgumentError,
    VectorStoreError,
)
from infra.health_check import HealthCheckResult, HealthProbe, probe_calls
from infra.ports import VectorHit, VectorPoint
from infra.resilience import ResiliencePolicy
from infra.validation import shown
from infra.vector.batching import ProgressCallback, plan_batches, run_batches
from infra.vector.errors import CollectionConfigMismatchError, EmbeddingModelMismatchError
from infra.vector.filters import Condition, parse_filter, text_problem
from infra.vector.points import (
    PreparedPoints,
    check_collection_name,
    check_distance,
    check_limit,
    check_point_id,
    check_point_ids,
    check_vector,
    prepare_points,
)

__all__ = ["CollectionSpec", "HnswOptions", "ScrollPage", "VectorStoreBase"]

#: What a size check of :meth:`VectorStoreBase._sized` answers (prepared points, a vector).
_Checked = TypeVar("_Checked")

#: Largest vector size accepted (Qdrant's and pgvector's HNSW limits are lower for
#: indexing; storing is allowed up to this).
MAX_DIMENSION = 65_536


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    """A collection's configuration as recorded with it."""

    name: str
    size: int
    distance: str
    model: str | None = None


@dataclass(frozen=True, slots=True)
class HnswOptions:
    """Index options: ``m`` (links per node), ``ef_construct``, and ``on_disk`` (Qdrant
    keeps vectors on disk; PostgreSQL always does)."""

    m: int | None = None
    ef_construct: int | None = None
    on_disk: bool = False


@dataclass(frozen=True, slots=True)
class ScrollPage:
    """One page of :meth:`VectorStoreBase.scroll`; ``next_offset`` is ``None`` at the end."""

    points: list[VectorPoint]
    next_offset: str | int | None


def _check_size(value: object, component: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DIMENSION:
        raise InvalidArgumentError(
            f"vector_size must be an int in 1..{MAX_DIMENSION}, got {shown(value)}",
            argument="vector_size",
            component=component,
        )
    return value


def _check_model(value: object, component: str) -> str | None:
    """``None`` or a model id every engine records (PostgreSQL text holds no U+0000)."""
    if value is None or (
        isinstance(value, str) and 0 < len(value) <= 256 and text_problem(value) is None
    ):
        return value
    raise InvalidArgumentError(
        f"model must be None or the embedding model's id (1-256 characters, no U+0000 "
        f"or lone surrogate), got {shown(value)}",
        argument="model",
        component=component,
    )


def _check_positive(value: object, argument: str, component: str) -> int | None:
    if value is None:
        return None
    return check_limit(value, argument=argument, component=component, most=10_000)


class VectorStoreBase(ABC):
    """The shared behaviour; see the module docstring.

    Args:
        calls: The engine's call path (its policy is the store's policy).
        batch_size: Most points per upsert request.
        concurrency: Most upsert requests in flight.
        max_request_bytes: Most estimated bytes per upsert request (a single larger
            point is still sent, alone).
        threaded_above: Upserts of more points are checked and built in a worker thread
            (``asyncio.to_thread``), keeping the event loop free for other requests.
        log_every: Log upsert progress every this many batches (``0``: never).
        health_timeout: Deadline of one health probe, seconds.
    """

    component: str

    def __init__(
        self,
        *,
        calls: BackendCalls,
        batch_size: int = 256,
        concurrency: int = 4,
        max_request_bytes: int = 4_000_000,
        threaded_above: int = 2_048,
        log_every: int = 100,
        health_timeout: float = 5.0,
    ) -> None:
        self.component = calls.component
        self._calls = calls
        self._batch_size = check_limit(
            batch_size, argument="batch_size", component=self.component, most=100_000
        )
        self._concurrency = check_limit(
            concurrency, argument="concurrency", component=self.component, most=1_024
        )
        self._max_request_bytes = check_limit(
            max_request_bytes,
            argument="max_request_bytes",
            component=self.component,
            most=1 << 31,
        )
        if isinstance(threaded_above, bool) or not isinstance(threaded_above, int):
            raise InvalidArgumentError(
                f"threaded_above must be an int, got {shown(threaded_above)}",
                argument="threaded_above",
                component=self.component,
            )
        self._threaded_above = threaded_above
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 0:
            raise InvalidArgumentError(
                f"log_every must be an int >= 0 (0: no progress log), got {shown(log_every)}",
                argument="log_every",
                component=self.component,
            )
        self._log_every = log_every
        self._health_calls = probe_calls(calls)
        self._health = HealthProbe(
            send=self._probe,
            name="a collection listing",
            backend="the vector store",
            component=self.component,
            timeout=health_timeout,
        )
        self._specs: dict[str, CollectionSpec] = {}
        self._closed = False

    # ------------------------------------------------------------------ engine primitives
    @abstractmethod
    async def _describe(self, name: str) -> CollectionSpec | None:
        """The recorded configuration, or ``None`` when the collection does not exist."""

    @abstractmethod
    async def _create(self, spec: CollectionSpec, options: HnswOptions) -> bool:
        """Create the collection; ``False`` when it turned out to exist already."""

    @abstractmethod
    async def _record_model(self, name: str, model: str) -> None:
        """Record ``model`` with a collection that has none recorded."""

    @abstractmethod
    async def _drop(self, name: str) -> bool:
        """Delete the collection; whether it existed."""

    @abstractmethod
    async def _write(self, spec: CollectionSpec, points: PreparedPoints, batch: range) -> None:
        """Upsert ``points[batch]`` (one request; retried by the policy)."""

    @abstractmethod
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
        """The nearest points, best first."""

    @abstractmethod
    async def _delete_ids(self, spec: CollectionSpec, ids: list[str | int]) -> None: ...

    @abstractmethod
    async def _delete_where(
        self, spec: CollectionSpec, conditions: tuple[Condition, ...]
    ) -> None: ...

    @abstractmethod
    async def _count(self, spec: CollectionSpec, conditions: tuple[Condition, ...]) -> int: ...

    @abstractmethod
    async def _scroll(
        self,
        spec: CollectionSpec,
        *,
        conditions: tuple[Condition, ...],
        limit: int,
        offset: str | int | None,
        with_vectors: bool,
    ) -> ScrollPage: ...

    @abstractmethod
    async def _probe(self) -> None:
        """One cheap round trip for the health check (through ``self._health_calls``)."""

    async def _release(self) -> None:  # noqa: B027 -- optional hook, nothing by default
        """Close what the store owns (called once by :meth:`close`)."""

    # ------------------------------------------------------------------------ properties
    @property
    def policy(self) -> ResiliencePolicy:
        """The resilience policy calls run under."""
        return self._calls.policy

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def concurrency(self) -> int:
        return self._concurrency

    @property
    def is_closed(self) -> bool:
        return self._closed

    def _closed_error(self) -> VectorStoreError:
        return VectorStoreError(
            f"{type(self).__name__} is closed; create a new store (or use the "
            "container's) instead of reusing a closed one",
            component=self.component,
            retryable=False,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    async def _ready(self) -> None:
        """Open, and what the client needs loaded (see :meth:`_prepare`)."""
        self._check_open()
        await self._prepare()

    async def _prepare(self) -> None:
        """Load what the client needs without blocking the event loop, before its first
        call (the Qdrant store imports qdrant-client in a worker thread). Nothing here."""
        return

    async def close(self) -> None:
        """Close the store (and the client it owns); idempotent."""
        if not self._closed:
            self._closed = True
            await self._release()

    # ------------------------------------------------------------------------ collections
    async def ensure_collection(
        self,
        name: str,
        *,
        vector_size: int,
        distance: str = "cosine",
        model: str | None = None,
        hnsw_m: int | None = None,
        hnsw_ef_construct: int | None = None,
        on_disk: bool = False,
    ) -> None:
        """Create ``name`` if missing; if it exists, its size, distance and (when both are
        known) model must equal these, else ``CollectionConfigMismatchError``."""
        await self._ready()
        spec = CollectionSpec(
            check_collection_name(name, component=self.component),
            _check_size(vector_size, self.component),
            check_distance(distance, component=self.component),
            _check_model(model, self.component),
        )
        options = HnswOptions(
            _check_positive(hnsw_m, "hnsw_m", self.component),
            _check_positive(hnsw_ef_construct, "hnsw_ef_construct", self.component),
            bool(on_disk),
        )
        existing = await self._describe(spec.name)
        if existing is None and await self._create(spec, options):
            self._specs[spec.name] = spec
            return
        if existing is None:  # created meanwhile by someone else
            existing = await self._present(spec.name)
        self._compare(spec, existing)
        if existing.model is None and spec.model is not None:
            # Recorded with the collection, not only in this store: another store (or
            # process) naming another model must meet the mismatch too. Read back,
            # since another writer may have recorded its model meanwhile.
            await self._record_model(spec.name, spec.model)
            existing = await self._present(spec.name)
        self._specs[spec.name] = self._compare(spec, existing)

    async def _present(self, name: str) -> CollectionSpec:
        found = await self._describe(name)
        if found is None:
            raise VectorStoreError(
                f"collection {name!r} was reported existing, then missing",
                component=self.component,
                retryable=True,
            )
        return found

    def _compare(self, wanted: CollectionSpec, existing: CollectionSpec) -> CollectionSpec:
        differences = {
            field: {"existing": have, "requested": want}
            for field, have, want in (
                ("vector_size", existing.size, wanted.size),
                ("distance", existing.distance, wanted.distance),
                ("model", existing.model, wanted.model),
            )
            if have != want and not (field == "model" and (have is None or want is None))
        }
        if differences:
            said = "; ".join(
                f"{field} is {pair['existing']!r}, not {pair['requested']!r}"
                for field, pair in differences.items()
            )
            raise CollectionConfigMismatchError(
                f"collection {wanted.name!r} exists with another configuration: {said}; use "
                "another collection name, or delete and recreate it",
                component=self.component,
                details={"collection": wanted.name, "differences": differences},
            )
        return existing if existing.model is not None else wanted

    async def delete_collection(self, name: str) -> bool:
        """Delete the collection and its points; whether it existed."""
        await self._ready()
        check_collection_name(name, component=self.component)
        self._specs.pop(name, None)
        return await self._drop(name)

    async def collection_info(self, name: str) -> CollectionSpec:
        """The collection's recorded size, distance and model, as the engine has them now
        (another store or process may have recreated it)."""
        await self._ready()
        check_collection_name(name, component=self.component)
        self._specs.pop(name, None)
        return await self._spec(name)

    async def _spec(self, name: str, model: str | None = None) -> CollectionSpec:
        check_collection_name(name, component=self.component)
        _check_model(model, self.component)
        spec = self._specs.get(name)
        if spec is None:
            spec = await self._describe(name)
            if spec is None:
                raise CollectionNotFoundError(
                    f"collection {name!r} does not exist; create it with "
                    "ensure_collection(name, vector_size=...)",
                    component=self.component,
                    details={"collection": name},
                )
            self._specs[name] = spec
        if model is not None and spec.model is not None and model != spec.model:
            raise EmbeddingModelMismatchError(
                f"collection {name!r} holds vectors of model {spec.model!r}, not {model!r}; "
                "embed with the collection's model",
                component=self.component,
                details={"collection": name, "expected_model": spec.model, "got_model": model},
            )
        return spec

    async def _sized(
        self,
        cached: CollectionSpec,
        model: str | None,
        check: Callable[[int], Awaitable[_Checked]],
    ) -> tuple[CollectionSpec, _Checked]:
        """``check(size)`` against ``cached``'s size; if it finds a vector of another size,
        once more against the collection as the engine has it now. Another store or
        process may have recreated it with another size; the cached size would refuse
        the right vectors until a restart. Unchanged size: the vector is wrong (raised)."""
        try:
            return cached, await check(cached.size)
        except DimensionMismatchError:
            self._specs.pop(cached.name, None)
            fresh = await self._spec(cached.name, model)
            if fresh.size == cached.size:
                raise
        return fresh, await check(fresh.size)

    @contextlib.contextmanager
    def _forgotten_if_missing(self, name: str) -> Iterator[None]:
        """Forget the cached configuration of a collection the engine says is gone
        (deleted by another store or process): a later ``ensure_collection`` or call
        reads it again instead of trusting the stale one."""
        try:
            yield
        except InfraError as exc:
            if isinstance(exc, CollectionNotFoundError) or isinstance(
                exc.__cause__, CollectionNotFoundError
            ):
                self._specs.pop(name, None)
            raise

    # ---------------------------------------------------------------------------- points
    async def upsert(
        self,
        collection: str,
        points: Sequence[VectorPoint],
        *,
        model: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> int:
        """Insert or replace ``points`` in batches, ``concurrency`` at a time; returns how
        many were written. A batch failing after retries raises
        :class:`~infra.vector.errors.VectorUpsertError` (what was and was not written)."""
        await self._ready()
        spec = await self._spec(collection, model)

        async def prepare(size: int) -> PreparedPoints:
            if len(points) > self._threaded_above:
                return await asyncio.to_thread(
                    prepare_points, points, size, component=self.component
                )
            return prepare_points(points, size, component=self.component)

        spec, prepared = await self._sized(spec, model, prepare)
        if not prepared.ids:
            return 0
        batches = plan_batches(
            prepared.sizes, max_points=self._batch_size, max_bytes=self._max_request_bytes
        )

        async def write(batch: range) -> None:
            await self._write(spec, prepared, batch)

        with self._forgotten_if_missing(collection):
            return await run_batches(
                batches,
                write,
                ids=prepared.ids,
                concurrency=self._concurrency,
                on_progress=on_progress,
                log_every=self._log_every,
                component=self.component,
            )

    async def search(
        self,
        collection: str,
        vector: Sequence[float],
        *,
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,  # noqa: A002 - the port's word
        score_threshold: float | None = None,
        model: str | None = None,
        exact: bool = False,
    ) -> list[VectorHit]:
        """The ``limit`` nearest points, best first (highest similarity for cosine and dot;
        smallest distance for euclid, whose ``score`` is the distance). ``score_threshold``
        drops worse hits; ``exact=True`` scans instead of using the index."""
        await self._ready()
        check_limit(limit, component=self.component)
        conditions = parse_filter(filter)
        threshold = self._check_threshold(score_threshold)

        async def checked(size: int) -> list[float]:
            return check_vector(vector, size, component=self.component)

        spec, query = await self._sized(await self._spec(collection, model), model, checked)
        with self._forgotten_if_missing(collection):
            return await self._search(
                spec,
                query,
                limit=limit,
                conditions=conditions,
                score_threshold=threshold,
                exact=bool(exact),
            )

    def _check_threshold(self, value: object) -> float | None:
        if value is None:
            return None
        number = math.nan
        # Any real number, as for vector elements: numpy scalars, Fraction, int, float.
        if not isinstance(value, bool) and isinstance(value, numbers.Real):
            with contextlib.suppress(OverflowError):  # an int beyond any float stays NaN
                number = float(value)
        if math.isnan(number):
            raise InvalidArgumentError(
                f"score_threshold must be None or a real number (not NaN; an int within "
                f"the float range), got {shown(value)}",
                argument="score_threshold",
                component=self.component,
            )
        return number

    async def delete(self, collection: str, ids: Sequence[str | int]) -> None:
        """Remove the points with these ids (absent ids are ignored)."""
        await self._ready()
        checked = check_point_ids(ids, component=self.component)
        spec = await self._spec(collection)
        if checked:
            with self._forgotten_if_missing(collection):
                await self._delete_ids(spec, checked)

    async def delete_by_filter(
        self,
        collection: str,
        filter: Mapping[str, Any],  # noqa: A002 - the port's word
    ) -> None:
        """Remove the points whose payload matches ``filter`` (which must not be empty)."""
        await self._ready()
        conditions = parse_filter(filter)
        if not conditions:
            raise InvalidArgumentError(
                "filter must hold at least one condition; to remove every point, "
                "delete_collection and create it again",
                argument="filter",
                component=self.component,
            )
        spec = await self._spec(collection)
        with self._forgotten_if_missing(collection):
            await self._delete_where(spec, conditions)

    async def count(
        self,
        collection: str,
        *,
        filter: Mapping[str, Any] | None = None,  # noqa: A002 - the port's word
    ) -> int:
        """How many points (matching ``filter``) the collection holds (exact)."""
        await self._ready()
        conditions = parse_filter(filter)
        spec = await self._spec(collection)
        with self._forgotten_if_missing(collection):
            return await self._count(spec, conditions)

    async def scroll(
        self,
        collection: str,
        *,
        filter: Mapping[str, Any] | None = None,  # noqa: A002 - the port's word
        limit: int = 100,
        offset: str | int | None = None,
        with_vectors: bool = False,
    ) -> ScrollPage:
        """A page of points in id order (integer ids first), starting at id ``offset``;
        pass the page's ``next_offset`` to get the next one."""
        await self._ready()
        check_limit(limit, component=self.component)
        conditions = parse_filter(filter)
        start = (
            None
            if offset is None
            else check_point_id(offset, argument="offset", component=self.component)
        )
        spec = await self._spec(collection)
        with self._forgotten_if_missing(collection):
            return await self._scroll(
                spec,
                conditions=conditions,
                limit=limit,
                offset=start,
                with_vectors=bool(with_vectors),
            )

    # ---------------------------------------------------------------------------- health
    async def health_check(
        self, latency_threshold_ms: float = 100.0, *, timeout: float | None = None
    ) -> HealthCheckResult:
        """``(is_healthy, details)`` from one cheap request, outside the policy; never
        raises for a backend failure (see :mod:`infra.health_check`)."""
        if not self._closed:
            await self._prepare()
        breaker = self._calls.policy.breaker
        return await self._health.check(
            latency_threshold_ms, timeout=timeout, breaker=breaker, closed=self._closed
        )

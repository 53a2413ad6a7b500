"""``PgVectorStore``: the :class:`~infra.ports.VectorStore` on PostgreSQL with pgvector.

::

    pg = EnhancedPostgresStore.from_settings(settings, policy=policy)
    store = PgVectorStore(pg)                     # or PgVectorStore.from_settings(settings)
    await store.ensure_collection("docs", vector_size=384, model="bge-small-en")
    await store.upsert("docs", points)            # batches of 256, 4 in flight
    hits = await store.search("docs", query, filter={"lang": "en"})

For users who already run PostgreSQL: vectors next to their data, no new server. It runs
over a :class:`~infra.storage.PostgresStore` -- its pool, its policy and its telemetry
(``postgres_query_latency_ms{operation}``); errors the database reports are the
relational store's (``DatabaseConnectionError`` ...), caller errors are the shared vector
ones. Decisions (SQL details in :mod:`infra.vector._pg_sql`):

* **A table per collection** ``semantica_vec_<name>`` (``id text``, ``embedding
  vector(n)``, ``payload jsonb``) with an HNSW index for the collection's distance
  (``semantica_vidx_<name>``; the primary key is ``semantica_vpk_<name>``: prefixes no
  table has, so collections ``x`` and ``x_hnsw`` cannot take each other's names), and a
  side table ``semantica_vector_collections`` recording size, distance and embedding
  model. ``ensure_collection`` creates the extension, both tables and the index in one
  transaction. Above 2,000 dimensions pgvector cannot index a ``vector`` column: such a
  collection is stored and searched exactly, without an index.
* **Batched upsert**: each batch is one ``executemany`` of ``INSERT ... ON CONFLICT (id)
  DO UPDATE`` (asyncpg pipelines it: one round trip, one transaction), idempotent, so
  the policy may retry it; batches run ``concurrency`` at a time on the pool's
  connections. Rows go in id order: concurrent upserts of overlapping ids (two requests,
  or batches of two calls) then lock rows in one order and cannot deadlock.
* **Search** uses the HNSW index (approximate, like Qdrant's default). A filtered or
  thresholded search, or one of more than 40 hits, runs with pgvector 0.8's
  ``hnsw.iterative_scan`` for that statement (one scan yields only ``hnsw.ef_search``
  = 40 candidates, before the filter); a filtered search still short of ``limit`` is
  run again as a scan, so a filter never hides matching points. ``exact=True`` scans.
* **Health** is the relational store's (``select 1`` outside the policy).
"""

# S608: table names are built only from checked collection names (see _pg_sql), never
# from values; values always travel as $n parameters.
# ruff: noqa: S608

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Self, TypeVar

from infra.calls import BackendCalls
from infra.exceptions import CollectionNotFoundError, DatabaseError
from infra.health_check import HealthCheckResult
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.ports import VectorHit, VectorPoint
from infra.vector import _pg_sql as sql
from infra.vector.base import CollectionSpec, HnswOptions, ScrollPage, VectorStoreBase
from infra.vector.filters import Condition
from infra.vector.points import PreparedPoints

if TYPE_CHECKING:
    from config import Settings
    from infra.resilience import ResiliencePolicy
    from infra.storage import PostgresStore

__all__ = ["PgVectorStore"]

_UNDEFINED_TABLE = "42P01"
#: The first PostgreSQL with jsonpath ``.string()`` (exact integer equality, _pg_sql).
_JSONPATH_STRING_VERSION = 170_000
#: The first pgvector with ``hnsw.iterative_scan``.
_ITERATIVE_SCAN_VERSION = (0, 8)
#: pgvector's default ``hnsw.ef_search``: how many candidates one index scan yields.
_EF_SEARCH = 40


P = ParamSpec("P")
T = TypeVar("T")


def _on_collection_table(
    method: Callable[Concatenate[PgVectorStore, CollectionSpec, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[PgVectorStore, CollectionSpec, P], Coroutine[Any, Any, T]]:
    """A primitive on a collection's table: the table missing (the collection deleted by
    another store or process since this one looked) is ``CollectionNotFoundError``, as
    on Qdrant, not the relational store's ``QuerySyntaxError``."""

    async def run(
        self: PgVectorStore, spec: CollectionSpec, /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        try:
            return await method(self, spec, *args, **kwargs)
        except DatabaseError as exc:
            if exc.details.get("sqlstate") != _UNDEFINED_TABLE:
                raise
            raise CollectionNotFoundError(
                f"collection {spec.name!r} does not exist (deleted by another store or "
                "process?); create it with ensure_collection(name, vector_size=...) -- if "
                "only its table was dropped, delete_collection(name) first",
                component=self.component,
                details={"collection": spec.name},
            ) from exc

    return run


@dataclass(frozen=True, slots=True)
class _Server:
    exact_ints: bool
    """jsonpath ``.string()`` (PostgreSQL 17+): an int never equals a float (_pg_sql)."""
    iterative_scan: bool
    """pgvector 0.8+: an HNSW scan can go on until ``limit`` rows pass the filter."""


class PgVectorStore(VectorStoreBase):
    """A vector store in PostgreSQL tables; see the module docstring.

    Args:
        store: The relational store to run on (its pool, policy and telemetry).
        owns_store: Close ``store`` on :meth:`close` (``from_settings`` does).
        batch_size / concurrency / max_request_bytes / threaded_above / log_every: See
            :class:`~infra.vector.base.VectorStoreBase`.
    """

    def __init__(
        self,
        store: PostgresStore,
        *,
        owns_store: bool = False,
        batch_size: int = 256,
        concurrency: int = 4,
        max_request_bytes: int = 4_000_000,
        threaded_above: int = 2_048,
        log_every: int = 100,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        super().__init__(
            calls=BackendCalls(
                "pgvector",
                family="vector",
                system="postgresql",
                policy=store.policy,
                collector=collector,
                tracing=tracing,
            ),
            batch_size=batch_size,
            concurrency=concurrency,
            max_request_bytes=max_request_bytes,
            threaded_above=threaded_above,
            log_every=log_every,
        )
        self._store = store
        self._owns_store = owns_store
        self._server_info: _Server | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, policy: ResiliencePolicy | None = None) -> Self:
        """A store on its own ``EnhancedPostgresStore`` for ``settings.db`` (closed with it);
        batch size and concurrency from ``settings.vector``."""
        from infra.storage import EnhancedPostgresStore  # noqa: PLC0415 - asyncpg on first use

        vector = settings.vector
        return cls(
            EnhancedPostgresStore.from_settings(settings, policy=policy, name="pgvector"),
            owns_store=True,
            batch_size=vector.upsert_batch_size,
            concurrency=vector.upsert_concurrency,
        )

    @property
    def relational(self) -> PostgresStore:
        """The relational store underneath."""
        return self._store

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"PgVectorStore(store={self._store!r}, state={state})"

    async def _release(self) -> None:
        if self._owns_store:
            await self._store.close()

    async def _server(self) -> _Server:
        """What the server offers, asked once (on the first search or filter)."""
        if self._server_info is None:
            row = await self._store.fetchrow(
                "SELECT current_setting('server_version_num')::int AS version, "
                "(SELECT extversion FROM pg_extension WHERE extname = 'vector') AS vector"
            )
            version = int(row["version"]) if row is not None else 0
            extension = str(row["vector"]) if row is not None and row["vector"] else "0"
            numbers = tuple(int(part) for part in re.findall(r"\d+", extension)[:2])
            self._server_info = _Server(
                exact_ints=version >= _JSONPATH_STRING_VERSION,
                iterative_scan=numbers >= _ITERATIVE_SCAN_VERSION,
            )
        return self._server_info

    async def _filter(
        self, conditions: tuple[Condition, ...], first_parameter: int
    ) -> tuple[str, list[Any]]:
        """The filter's SQL (exact integer equality where the server can, _pg_sql)."""
        exact_ints = bool(conditions) and (await self._server()).exact_ints
        return sql.filter_sql(conditions, first_parameter, exact_ints=exact_ints)

    # -------------------------------------------------------------------------- primitives
    async def _describe(self, name: str) -> CollectionSpec | None:
        try:
            row = await self._store.fetchrow(
                f"SELECT dimension, distance, model FROM {sql.COLLECTIONS_TABLE} WHERE name = $1",
                name,
            )
        except DatabaseError as exc:
            if exc.details.get("sqlstate") == _UNDEFINED_TABLE:
                return None  # no collection was ever created in this database
            raise
        if row is None:
            return None
        return CollectionSpec(name, int(row["dimension"]), str(row["distance"]), row["model"])

    async def _create(self, spec: CollectionSpec, options: HnswOptions) -> bool:
        async with self._store.transaction() as tx:
            await tx.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await tx.execute(sql.CREATE_COLLECTIONS_TABLE)
            # Serialises concurrent creators of one name (the row lock is held to commit).
            added = await tx.fetchval(
                f"INSERT INTO {sql.COLLECTIONS_TABLE} (name, dimension, distance, model) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING true",
                spec.name,
                spec.size,
                spec.distance,
                spec.model,
            )
            if not added:
                return False
            for statement in sql.create_table_sql(
                spec.name, spec.size, spec.distance, options.m, options.ef_construct
            ):
                await tx.execute(statement)
        return True

    async def _record_model(self, name: str, model: str) -> None:
        await self._store.execute(
            f"UPDATE {sql.COLLECTIONS_TABLE} SET model = $2 WHERE name = $1 AND model IS NULL",
            name,
            model,
            idempotent=True,
        )

    async def _drop(self, name: str) -> bool:
        if await self._describe(name) is None:
            return False
        async with self._store.transaction() as tx:
            await tx.execute(f"DROP TABLE IF EXISTS {sql.table_name(name)}")
            status = await tx.execute(f"DELETE FROM {sql.COLLECTIONS_TABLE} WHERE name = $1", name)
        return status != "DELETE 0"

    @_on_collection_table
    async def _write(self, spec: CollectionSpec, points: PreparedPoints, batch: range) -> None:
        # In id order: each batch is one transaction locking its rows one by one, so two
        # upserts of overlapping ids in other orders would deadlock (40P01); one order
        # for every statement makes a cycle impossible.
        rows = sorted(
            (sql.id_text(points.ids[i]), points.vectors[i], points.payload_json[i]) for i in batch
        )
        await self._store.executemany(
            f"INSERT INTO {sql.table_name(spec.name)} (id, embedding, payload) "
            "VALUES ($1, $2::real[]::vector, $3::jsonb) ON CONFLICT (id) DO UPDATE "
            "SET embedding = EXCLUDED.embedding, payload = EXCLUDED.payload",
            rows,
            idempotent=True,
        )

    @_on_collection_table
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
        where, params = await self._filter(conditions, 3)
        score = sql.score_sql(spec.distance, 1)
        # No index orders by a zero vector's cosine distance (NaN for every point).
        exact = exact or (spec.distance == "cosine" and not any(vector))
        if score_threshold is not None:
            compare = "<=" if spec.distance == "euclid" else ">="
            where += f" AND {score} {compare} ${3 + len(params)}"
            params.append(score_threshold)
        table = sql.table_name(spec.name)
        select = f"SELECT id, payload, {score} AS score FROM {table} WHERE {where}"
        order = f"ORDER BY {sql.order_sql(spec.distance, 1, exact=exact)} LIMIT $2"
        narrowed = bool(conditions) or score_threshold is not None or limit > _EF_SEARCH
        if exact or not narrowed or not (await self._server()).iterative_scan:
            query = f"{select} {order}"
        else:
            # One HNSW scan yields ef_search (40) candidates, and the filter, the threshold
            # and LIMIT apply to those: a filtered search returned 0-2 of 10 hits that
            # existed, a limit of 100 at most 40. pgvector 0.8's iterative scan goes on
            # until enough rows pass. It is set for this statement only (set_config(...,
            # true), the statement's own transaction) by a one-row subquery that the
            # search is joined to laterally: it runs before the index scan starts.
            query = (
                "SELECT hits.* FROM (SELECT set_config('hnsw.iterative_scan', "
                "'strict_order', true) AS mode) AS scan CROSS JOIN LATERAL "
                f"({select} AND scan.mode IS NOT NULL {order}) AS hits"
            )
        rows = await self._store.fetch(query, vector, limit, *params)
        if conditions and not exact and len(rows) < limit:
            # Still short: the iterative scan stops after hnsw.max_scan_tuples (20,000)
            # rows, and a selective filter may match fewer. Scan them all: the filter
            # passes few rows, whose distances only are computed.
            rows = await self._store.fetch(
                f"{select} ORDER BY {sql.order_sql(spec.distance, 1, exact=True)} LIMIT $2",
                vector,
                limit,
                *params,
            )
        hits = [
            VectorHit(sql.id_from_text(row["id"]), float(row["score"]), _payload(row["payload"]))
            for row in rows
        ]
        # A join's output order is not promised; the scan's is (ties keep it).
        hits.sort(key=lambda hit: hit.score, reverse=spec.distance != "euclid")
        return hits

    @_on_collection_table
    async def _delete_ids(self, spec: CollectionSpec, ids: list[str | int]) -> None:
        await self._store.execute(
            f"DELETE FROM {sql.table_name(spec.name)} WHERE id = ANY($1::text[])",
            [sql.id_text(pid) for pid in ids],
            idempotent=True,
        )

    @_on_collection_table
    async def _delete_where(self, spec: CollectionSpec, conditions: tuple[Condition, ...]) -> None:
        where, params = await self._filter(conditions, 1)
        await self._store.execute(
            f"DELETE FROM {sql.table_name(spec.name)} WHERE {where}", *params, idempotent=True
        )

    @_on_collection_table
    async def _count(self, spec: CollectionSpec, conditions: tuple[Condition, ...]) -> int:
        where, params = await self._filter(conditions, 1)
        value = await self._store.fetchval(
            f"SELECT count(*) FROM {sql.table_name(spec.name)} WHERE {where}", *params
        )
        return int(value)

    @_on_collection_table
    async def _scroll(
        self,
        spec: CollectionSpec,
        *,
        conditions: tuple[Condition, ...],
        limit: int,
        offset: str | int | None,
        with_vectors: bool,
    ) -> ScrollPage:
        where, params = await self._filter(conditions, 2)
        if offset is not None:
            first = len(params) + 2
            key = sql.id_text(offset)
            where += (
                f" AND ROW({sql.ORDER_KEY}) >= "
                f"ROW(${first}::int, ${first + 1}::int, ${first + 2}::text)"
            )
            params += [0 if isinstance(offset, int) else 1, len(key), key]
        stored = "l2_normalize(embedding)" if spec.distance == "cosine" else "embedding"
        vectors = f", {stored}::real[] AS vector" if with_vectors else ""
        rows = await self._store.fetch(
            f"SELECT id, payload{vectors} FROM {sql.table_name(spec.name)} WHERE {where} "
            f"ORDER BY {sql.ORDER_KEY} LIMIT $1",
            limit + 1,
            *params,
        )
        page = [
            VectorPoint(
                sql.id_from_text(row["id"]),
                [float(x) for x in row["vector"]] if with_vectors else [],
                _payload(row["payload"]),
            )
            for row in rows[:limit]
        ]
        return ScrollPage(page, sql.id_from_text(rows[limit]["id"]) if len(rows) > limit else None)

    async def _probe(self) -> None:  # pragma: no cover - health_check delegates instead
        await self._store.fetchval("select 1")

    async def health_check(
        self, latency_threshold_ms: float = 100.0, *, timeout: float | None = None
    ) -> HealthCheckResult:
        """The relational store's health check (``select 1`` outside the policy)."""
        if self._closed:
            return await super().health_check(latency_threshold_ms, timeout=timeout)
        return await self._store.health_check(latency_threshold_ms, timeout=timeout)


def _payload(raw: Any) -> dict[str, Any]:
    value = json.loads(raw) if isinstance(raw, str) else raw
    return dict(value) if isinstance(value, dict) else {}

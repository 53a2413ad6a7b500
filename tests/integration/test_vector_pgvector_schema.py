"""What PgVectorStore builds in PostgreSQL, read back from the catalog of the embedded
server: a table per collection with a ``vector(n)`` column, an HNSW index with the
distance's operator class (used by searches, bypassed by ``exact=True``), the side table
of sizes, distances and models; and the store built ``from_settings``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from config import Settings
from infra.ports import VectorPoint
from infra.resilience import ResiliencePolicy
from infra.storage import EnhancedPostgresStore
from infra.vector.pgvector import PgVectorStore

pytestmark = pytest.mark.postgres


@pytest.fixture
async def catalog(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own, to read what the store created."""
    connection = await asyncpg.connect(postgres_dsn)
    yield connection
    await connection.close()


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PgVectorStore]:
    """One pooled connection: the statistics flush below runs where the searches ran."""
    relational = EnhancedPostgresStore(
        postgres_dsn, 1, 1, policy=ResiliencePolicy.instant("postgres")
    )
    built = PgVectorStore(relational, owns_store=True)
    yield built
    await built.close()


def unique() -> str:
    return f"c_{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize(
    ("distance", "opclass"),
    [("cosine", "vector_cosine_ops"), ("dot", "vector_ip_ops"), ("euclid", "vector_l2_ops")],
)
async def test_a_collection_is_a_table_with_a_vector_column_and_an_hnsw_index(
    store: PgVectorStore, catalog: asyncpg.Connection, distance: str, opclass: str
) -> None:
    name = unique()
    await store.ensure_collection(
        name, vector_size=5, distance=distance, model="m-1", hnsw_m=8, hnsw_ef_construct=40
    )
    table = f"semantica_vec_{name}"
    columns = await catalog.fetch(
        "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute "
        "WHERE attrelid = $1::regclass AND attnum > 0 ORDER BY attnum",
        f'"{table}"',
    )
    assert [(c["attname"], c["type"]) for c in columns] == [
        ("id", "text"),
        ("embedding", "vector(5)"),
        ("payload", "jsonb"),
    ]
    indexes = [
        row["indexdef"]
        for row in await catalog.fetch(
            "SELECT indexdef FROM pg_indexes WHERE tablename = $1", table
        )
    ]
    (hnsw,) = [definition for definition in indexes if "hnsw" in definition]
    assert f"USING hnsw (embedding {opclass}) WITH (m='8', ef_construction='40')" in hnsw
    recorded = await catalog.fetchrow(
        "SELECT dimension, distance, model FROM semantica_vector_collections WHERE name = $1",
        name,
    )
    assert dict(recorded or {}) == {"dimension": 5, "distance": distance, "model": "m-1"}
    assert await store.delete_collection(name)
    assert await catalog.fetchval("SELECT to_regclass($1)", f'"{table}"') is None


async def index_scans(store: PgVectorStore, catalog: asyncpg.Connection, name: str) -> int:
    await store.relational.fetchval("SELECT pg_stat_force_next_flush()")  # the search's backend
    scans = await catalog.fetchval(
        "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = $1",
        f"semantica_vidx_{name}",
    )
    return int(scans)


async def test_searches_use_the_hnsw_index_and_exact_searches_scan(
    store: PgVectorStore, catalog: asyncpg.Connection
) -> None:
    """Read from the index's scan counter: a search is an index scan (2,000 rows: enough
    for the planner to prefer the index), an ``exact=True`` search is not."""
    name = unique()
    await store.ensure_collection(name, vector_size=3, distance="euclid")
    await store.upsert(name, [VectorPoint(i, [1.0, float(i), 0.5]) for i in range(2_000)])
    await catalog.execute(f'ANALYZE "semantica_vec_{name}"')
    before = await index_scans(store, catalog, name)
    approximate = await store.search(name, [1.0, 5.2, 0.5], limit=3)
    after_approximate = await index_scans(store, catalog, name)
    exact = await store.search(name, [1.0, 5.2, 0.5], limit=3, exact=True)
    after_exact = await index_scans(store, catalog, name)
    assert after_approximate > before
    assert after_exact == after_approximate
    assert [hit.id for hit in exact] == [5, 6, 4]
    assert len(approximate) == 3
    await store.delete_collection(name)


async def test_above_2000_dimensions_the_collection_has_no_index_and_works(
    store: PgVectorStore, catalog: asyncpg.Connection
) -> None:
    """pgvector cannot index a ``vector`` of more than 2,000 dimensions: such a
    collection is stored and searched exactly."""
    name = unique()
    await store.ensure_collection(name, vector_size=2_001, distance="euclid")
    indexes = await catalog.fetch(
        "SELECT indexname FROM pg_indexes WHERE tablename = $1", f"semantica_vec_{name}"
    )
    assert [row["indexname"] for row in indexes] == [f"semantica_vpk_{name}"]
    await store.upsert(name, [VectorPoint(i, [float(i)] * 2_001) for i in range(3)], model=None)
    hits = await store.search(name, [2.0] * 2_001, limit=2)
    assert [hit.id for hit in hits] == [2, 1]
    await store.delete_collection(name)


async def test_from_settings_builds_its_own_postgres_store_and_closes_it(
    postgres_dsn: str,
) -> None:
    settings = Settings(
        database_url=postgres_dsn, qdrant_upsert_batch_size=3, qdrant_upsert_concurrency=2
    )
    store = PgVectorStore.from_settings(settings)
    assert (store.batch_size, store.concurrency) == (3, 2)
    name = unique()
    try:
        await store.ensure_collection(name, vector_size=2)
        assert await store.upsert(name, [VectorPoint(i, [1.0, float(i)]) for i in range(7)]) == 7
        assert await store.count(name) == 7
        await store.delete_collection(name)
    finally:
        await store.close()
    assert store.relational.is_closed


SUFFIXES = ["_hnsw", "_pkey", "_hnsw_pkey", "_key", "_idx", "x", "-1", ""]


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stem_length=st.integers(1, 38),
    suffixes=st.lists(st.sampled_from(SUFFIXES), min_size=2, max_size=3, unique=True),
    upper=st.booleans(),
)
@example(stem_length=10, suffixes=["", "_hnsw"], upper=False)
@example(stem_length=10, suffixes=["_hnsw", ""], upper=False)
@example(stem_length=10, suffixes=["", "_pkey"], upper=False)
def test_collections_whose_names_extend_each_other_are_independent(
    postgres_dsn: str, stem_length: int, suffixes: list[str], upper: bool
) -> None:
    """Collection ``x`` and ``x_hnsw`` (or ``x_pkey``, ``X``...), created in any order:
    each is its own table with its own HNSW index, and holds its own points. Tables,
    indexes and constraints share one namespace: ``x``'s index was named
    ``semantica_vec_x_hnsw``, the table of ``x_hnsw`` -- creating the second failed, or
    (other order) left ``x`` without an index, searched by full scans."""
    stem = uuid.uuid4().hex[:stem_length]
    names = [stem + suffix for suffix in suffixes]
    if upper:
        names.append(stem.upper() + "Z")

    async def scenario() -> None:
        relational = EnhancedPostgresStore(
            postgres_dsn, 1, 1, policy=ResiliencePolicy.passthrough("postgres")
        )
        store = PgVectorStore(relational, owns_store=True)
        catalog = await asyncpg.connect(postgres_dsn)
        try:
            for size, name in enumerate(names, start=2):
                await store.ensure_collection(name, vector_size=size)
                await store.upsert(name, [VectorPoint(size, [1.0] * size)])
            for size, name in enumerate(names, start=2):
                assert (await store.collection_info(name)).size == size
                assert [p.id for p in (await store.scroll(name)).points] == [size]
                methods = await catalog.fetch(
                    "SELECT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = $1::regclass",
                    f'"semantica_vec_{name}"',
                )
                assert sorted(row["amname"] for row in methods) == ["btree", "hnsw"]
        finally:
            for name in names:
                await store.delete_collection(name)
            await catalog.close()
            await store.close()

    asyncio.run(scenario())

"""pgvector fault paths: connection resets and an outage in the middle of an upsert, on
the embedded PostgreSQL behind the chaos proxy (the relational store's real asyncpg
pool, our policy on a virtual clock)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infra.exceptions import DatabaseConnectionError, InfraError
from infra.ports import VectorPoint
from infra.resilience import ResiliencePolicy, RetryConfig
from infra.storage import EnhancedPostgresStore
from infra.testing.chaos import ChaosProxy
from infra.vector import UpsertProgress, VectorUpsertError
from infra.vector.pgvector import PgVectorStore


@pytest.fixture
async def proxy(postgres_dsn: str) -> AsyncIterator[ChaosProxy]:
    async with ChaosProxy.for_url(postgres_dsn) as running:
        yield running


@pytest.fixture
async def store(postgres_dsn: str, proxy: ChaosProxy) -> AsyncIterator[PgVectorStore]:
    relational = EnhancedPostgresStore(
        proxy.url_for(postgres_dsn),
        1,
        2,
        policy=ResiliencePolicy.instant("postgres", retry=RetryConfig(max_attempts=3)),
    )
    built = PgVectorStore(relational, owns_store=True, batch_size=5, concurrency=1)
    yield built
    await built.close()


async def stored_ids(postgres_dsn: str, collection: str) -> set[int]:
    """The ids the database holds, read past the proxy."""
    connection = await asyncpg.connect(postgres_dsn)
    try:
        rows = await connection.fetch(f'SELECT id FROM "semantica_vec_{collection}"')  # noqa: S608
    finally:
        await connection.close()
    return {int(row["id"]) for row in rows}


def points(count: int) -> list[VectorPoint]:
    return [VectorPoint(i, [1.0, float(i), 0.5], {"i": i}) for i in range(count)]


async def test_connections_reset_mid_upsert_are_retried_and_nothing_is_lost(
    postgres_dsn: str, proxy: ChaosProxy, store: PgVectorStore
) -> None:
    name = f"c_{uuid.uuid4().hex[:12]}"
    await store.ensure_collection(name, vector_size=3)

    def reset_after_batch_two(progress: UpsertProgress) -> None:
        if progress.batches_done == 2:
            assert proxy.reset_all() >= 1

    assert await store.upsert(name, points(23), on_progress=reset_after_batch_two) == 23
    assert proxy.stats.resets >= 1
    assert await stored_ids(postgres_dsn, name) == set(range(23))
    await store.delete_collection(name)


async def test_an_outage_mid_upsert_reports_exactly_what_the_database_holds(
    postgres_dsn: str, proxy: ChaosProxy, store: PgVectorStore
) -> None:
    """After batch 3 the database becomes unreachable: the error says 15 points written
    and 15 not, and the database holds exactly the 15; upserting the failed ids again once
    it is back completes the collection (idempotent ids)."""
    name = f"c_{uuid.uuid4().hex[:12]}"
    await store.ensure_collection(name, vector_size=3)

    def outage_after_batch_three(progress: UpsertProgress) -> None:
        if progress.batches_done == 3:
            proxy.refuse()
            proxy.reset_all()

    with pytest.raises(VectorUpsertError) as caught:
        await store.upsert(name, points(30), on_progress=outage_after_batch_three)
    error = caught.value
    assert (error.written, error.failed) == (15, 15)
    assert error.failed_ids == list(range(15, 30))
    assert isinstance(error.__cause__, DatabaseConnectionError)
    assert error.retryable
    assert await stored_ids(postgres_dsn, name) == set(range(15))

    proxy.heal()
    retry = [p for p in points(30) if p.id in set(error.failed_ids)]
    assert await store.upsert(name, retry) == 15
    assert await stored_ids(postgres_dsn, name) == set(range(30))
    await store.delete_collection(name)


async def test_searching_while_the_database_is_away_is_a_connection_error(
    proxy: ChaosProxy, store: PgVectorStore
) -> None:
    name = f"c_{uuid.uuid4().hex[:12]}"
    await store.ensure_collection(name, vector_size=3)
    await store.upsert(name, points(3))
    proxy.refuse()
    proxy.reset_all()
    with pytest.raises(InfraError) as caught:
        await store.search(name, [1.0, 0.0, 0.0])
    assert isinstance(caught.value, DatabaseConnectionError)
    ok, details = await store.health_check()
    assert not ok
    assert details["status"] == "unhealthy"
    proxy.heal()
    assert [hit.id for hit in await store.search(name, [1.0, 2.0, 0.5], limit=1, exact=True)] == [2]
    await store.delete_collection(name)


@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    orders=st.lists(st.permutations(list(range(600))), min_size=2, max_size=3),
    batch_size=st.sampled_from([150, 300, 600]),
)
@example(orders=[list(range(600)), list(reversed(range(600)))], batch_size=600)
def test_concurrent_upserts_of_the_same_ids_never_deadlock(
    postgres_dsn: str, orders: list[list[int]], batch_size: int
) -> None:
    """Upserts of overlapping ids in any orders, at once, with no retry to hide a failure:
    every one succeeds and each point holds one writer's whole point. Each batch is a
    transaction locking its rows one by one; in the caller's order two of them deadlocked
    (40P01, a VectorUpsertError or SerializationFailureError) -- rows now go in id order."""

    async def scenario() -> None:
        relational = EnhancedPostgresStore(
            postgres_dsn, 2, 6, policy=ResiliencePolicy.passthrough("postgres")
        )
        store = PgVectorStore(relational, owns_store=True, batch_size=batch_size, concurrency=2)
        name = f"c_{uuid.uuid4().hex[:12]}"
        try:
            await store.ensure_collection(name, vector_size=3, distance="euclid")
            writes = [
                [VectorPoint(i, [float(w), float(i), 1.0], {"w": w}) for i in order]
                for w, order in enumerate(orders)
            ]
            results = await asyncio.gather(*(store.upsert(name, points) for points in writes))
            assert results == [600] * len(orders)
            page = await store.scroll(name, limit=1000, with_vectors=True)
            assert len(page.points) == 600
            for point in page.points:
                writer = point.payload["w"]
                assert point.vector == [float(writer), float(point.id), 1.0]
            await store.delete_collection(name)
        finally:
            await store.close()

    asyncio.run(scenario())

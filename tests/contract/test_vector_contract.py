"""VectorStore contract: FakeVectorStore, QdrantVectorStore (local mode, or the server in
``SEMANTICA_TEST_QDRANT_URL``) and PgVectorStore (embedded PostgreSQL + pgvector) behave
the same.

Every test works in a collection of its own (``c_<uuid>``), dropped afterwards, so tests
never see each other's points on a shared server. Stores run under
``ResiliencePolicy.instant`` (the design's breaker and retry on a virtual clock).
Searches pass ``exact=True`` where the test counts hits: HNSW (pgvector, a Qdrant server)
is approximate by design.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import math
import random
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infra.exceptions import (
    CallerError,
    CollectionNotFoundError,
    DimensionMismatchError,
    InvalidArgumentError,
)
from infra.ports import VectorPoint, VectorStore
from infra.resilience import ResiliencePolicy
from infra.testing.fakes.vector import FakeVectorStore
from infra.vector import (
    CollectionConfigMismatchError,
    EmbeddingModelMismatchError,
    UpsertProgress,
    VectorStoreBase,
    point_id,
)

ENGINES = [
    "fake",
    pytest.param("qdrant", marks=pytest.mark.qdrant),
    pytest.param("pgvector", marks=pytest.mark.postgres),
]
Factory = Callable[..., VectorStoreBase]


@pytest.fixture(params=ENGINES)
def make_store(request: pytest.FixtureRequest) -> Factory:
    """Builds a store of the engine under test (call it inside the test's event loop)."""
    engine: str = request.param
    if engine == "fake":
        return lambda **options: FakeVectorStore(
            policy=ResiliencePolicy.instant("qdrant"), **options
        )
    if engine == "qdrant":
        from infra.testing.embedded import open_qdrant_client
        from infra.vector.qdrant import QdrantVectorStore

        location: str = request.getfixturevalue("qdrant_location")
        return lambda **options: QdrantVectorStore(
            lambda: open_qdrant_client(location),
            policy=ResiliencePolicy.instant("qdrant"),
            **options,
        )
    from infra.storage import EnhancedPostgresStore
    from infra.vector.pgvector import PgVectorStore

    dsn: str = request.getfixturevalue("postgres_dsn")
    return lambda **options: PgVectorStore(
        EnhancedPostgresStore(dsn, 1, 4, policy=ResiliencePolicy.instant("postgres")),
        owns_store=True,
        **options,
    )


@pytest.fixture
async def store(make_store: Factory) -> AsyncIterator[VectorStoreBase]:
    built = make_store()
    yield built
    await built.close()


@pytest.fixture
async def collection(store: VectorStoreBase) -> AsyncIterator[str]:
    """A fresh 3-dimensional cosine collection."""
    name = f"c_{uuid.uuid4().hex[:16]}"
    await store.ensure_collection(name, vector_size=3)
    yield name
    if not store.is_closed:
        await store.delete_collection(name)


def unique() -> str:
    return f"c_{uuid.uuid4().hex[:16]}"


# ------------------------------------------------------------------------ collections
async def test_satisfies_the_port(store: VectorStoreBase) -> None:
    assert isinstance(store, VectorStore)


async def test_ensure_collection_is_idempotent_and_records_its_configuration(
    store: VectorStoreBase,
) -> None:
    name = unique()
    await store.ensure_collection(name, vector_size=4, distance="dot", model="m-1")
    await store.ensure_collection(name, vector_size=4, distance="dot", model="m-1")
    await store.ensure_collection(name, vector_size=4, distance="dot")  # model unstated: fine
    info = await store.collection_info(name)
    assert (info.size, info.distance, info.model) == (4, "dot", "m-1")
    assert await store.delete_collection(name) is True
    assert await store.delete_collection(name) is False


async def test_index_options_are_accepted_and_the_collection_works(
    store: VectorStoreBase,
) -> None:
    """HNSW ``m``/``ef_construct`` and ``on_disk`` are passed to the engine (Qdrant's
    collection config, pgvector's index ``WITH``); the collection behaves the same."""
    name = unique()
    await store.ensure_collection(
        name, vector_size=3, distance="dot", hnsw_m=8, hnsw_ef_construct=32, on_disk=True
    )
    try:
        await store.upsert(name, [VectorPoint(1, [1, 0, 0]), VectorPoint(2, [2, 0, 0])])
        assert [hit.id for hit in await store.search(name, [1, 0, 0], exact=True)] == [2, 1]
    finally:
        await store.delete_collection(name)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vector_size": 5}, "vector_size"),
        ({"distance": "euclid"}, "distance"),
        ({"model": "other-model"}, "model"),
    ],
)
async def test_ensure_collection_refuses_another_configuration(
    store: VectorStoreBase, change: dict[str, Any], field: str
) -> None:
    """Size, distance or model differing from an existing collection: a typed error,
    never a silent reuse -- also for a store that has not seen the collection before."""
    name = unique()
    await store.ensure_collection(name, vector_size=4, distance="cosine", model="m-1")
    options: dict[str, Any] = {"vector_size": 4, "distance": "cosine", "model": "m-1"} | change
    try:
        with pytest.raises(CollectionConfigMismatchError) as caught:
            await store.ensure_collection(name, **options)
        assert set(caught.value.details["differences"]) == {field}
        assert isinstance(caught.value, CallerError)
    finally:
        await store.delete_collection(name)


async def test_a_model_named_later_is_recorded_with_the_collection(
    store: VectorStoreBase,
) -> None:
    """A collection made without a model takes the first model named for it -- recorded
    in the engine, so a later ``ensure_collection`` with another model (read fresh from
    the engine, as any other store would) is a mismatch."""
    name = unique()
    await store.ensure_collection(name, vector_size=3)
    try:
        await store.ensure_collection(name, vector_size=3, model="m-1")
        with pytest.raises(CollectionConfigMismatchError) as caught:
            await store.ensure_collection(name, vector_size=3, model="m-2")
        assert caught.value.details["differences"]["model"] == {
            "existing": "m-1",
            "requested": "m-2",
        }
        assert (await store.collection_info(name)).model == "m-1"
    finally:
        await store.delete_collection(name)


async def test_a_missing_collection_is_collection_not_found(store: VectorStoreBase) -> None:
    name = unique()
    with pytest.raises(CollectionNotFoundError):
        await store.search(name, [1.0, 0.0, 0.0])
    with pytest.raises(CollectionNotFoundError):
        await store.upsert(name, [VectorPoint(1, [1.0, 0.0, 0.0])])
    with pytest.raises(CollectionNotFoundError):
        await store.count(name)


# ----------------------------------------------------------------------------- points
async def test_upsert_is_idempotent_and_replaces_by_id(
    store: VectorStoreBase, collection: str
) -> None:
    points = [VectorPoint(i, [1.0, float(i), 0.5], {"v": 1}) for i in range(5)]
    assert await store.upsert(collection, points) == 5
    assert await store.upsert(collection, points) == 5
    await store.upsert(collection, [VectorPoint(2, [1.0, 2.0, 0.5], {"v": 2})])
    assert await store.count(collection) == 5
    page = await store.scroll(collection, filter={"v": 2})
    assert [(p.id, p.payload) for p in page.points] == [(2, {"v": 2})]


async def test_uuid_ids_come_back_canonical_and_point_id_is_stable(
    store: VectorStoreBase, collection: str
) -> None:
    upper = str(uuid.uuid4()).upper()
    keyed = point_id("doc-42")
    assert keyed == point_id("doc-42") != point_id("doc-43")
    await store.upsert(collection, [VectorPoint(upper, [1, 0, 0]), VectorPoint(keyed, [0, 1, 0])])
    hits = await store.search(collection, [1.0, 0.0, 0.0], limit=2, exact=True)
    assert [hit.id for hit in hits] == [upper.lower(), keyed]


@pytest.mark.parametrize(
    ("distance", "expected"),
    [
        # query (1, 0, 0) against a=(1,0,0) b=(3,4,0) c=(0,0,2)
        ("cosine", [("a", 1.0), ("b", 0.6), ("c", 0.0)]),
        ("dot", [("b", 3.0), ("a", 1.0), ("c", 0.0)]),
        ("euclid", [("a", 0.0), ("c", math.sqrt(5)), ("b", math.sqrt(20))]),
    ],
)
async def test_search_orders_best_first_with_the_distance_s_score(
    store: VectorStoreBase, distance: str, expected: list[tuple[str, float]]
) -> None:
    name = unique()
    ids = {"a": 1, "b": 2, "c": 3}
    await store.ensure_collection(name, vector_size=3, distance=distance)
    try:
        await store.upsert(
            name,
            [
                VectorPoint(1, [1, 0, 0], {"n": "a"}),
                VectorPoint(2, [3, 4, 0], {"n": "b"}),
                VectorPoint(3, [0, 0, 2], {"n": "c"}),
            ],
        )
        hits = await store.search(name, [1, 0, 0], limit=3, exact=True)
        assert [hit.id for hit in hits] == [ids[key] for key, _ in expected]
        assert [hit.score for hit in hits] == pytest.approx(
            [score for _, score in expected], abs=1e-5
        )
        assert [hit.payload["n"] for hit in hits] == [key for key, _ in expected]
        # The threshold keeps the first two: >= for similarities, <= for a distance.
        threshold = (expected[1][1] + expected[2][1]) / 2
        kept = await store.search(name, [1, 0, 0], score_threshold=threshold, exact=True)
        assert [hit.id for hit in kept] == [ids[key] for key, _ in expected[:2]]
    finally:
        await store.delete_collection(name)


PAYLOADS: list[dict[str, Any]] = [
    {
        "lang": "en",
        "year": 2020,
        "tags": ["news", "sport"],
        "flag": True,
        "author": {"name": "ada"},
    },
    {"lang": "de", "year": 2022, "tags": ["news"], "flag": False, "n": 1},
    {"lang": "en", "year": 2024.5, "tags": [], "n": "1"},
    {"lang": "fr", "tags": ["sport"], "n": True, "years": [2001, 2030]},
]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"lang": "en"}, [0, 2]),
        ({"lang": ["de", "fr"]}, [1, 3]),
        ({"tags": "sport"}, [0, 3]),
        ({"tags": ["sport", "news"]}, [0, 1, 3]),
        ({"year": {"gte": 2021}}, [1, 2]),
        ({"year": {"gt": 2020, "lt": 2024}}, [1]),
        ({"lang": "en", "year": {"lte": 2020}}, [0]),
        ({"flag": True}, [0]),
        ({"n": 1}, [1]),
        ({"n": "1"}, [2]),
        ({"n": True}, [3]),
        ({"author.name": "ada"}, [0]),
        ({"missing": "x"}, []),
        # an array matches when one element is inside the whole range
        ({"years": {"gte": 2010, "lte": 2020}}, []),
        ({"years": {"gte": 2025}}, [3]),
    ],
)
async def test_filters_mean_the_same_on_every_engine(
    store: VectorStoreBase, collection: str, flt: dict[str, Any], expected: list[int]
) -> None:
    await store.upsert(
        collection,
        [VectorPoint(i, [1.0, float(i), 1.0], payload) for i, payload in enumerate(PAYLOADS)],
    )
    hits = await store.search(collection, [1, 1, 1], limit=10, filter=flt, exact=True)
    assert sorted(hit.id for hit in hits) == expected
    assert await store.count(collection, filter=flt) == len(expected)
    page = await store.scroll(collection, filter=flt)
    assert [p.id for p in page.points] == expected


async def test_delete_by_ids_and_by_filter(store: VectorStoreBase, collection: str) -> None:
    await store.upsert(
        collection, [VectorPoint(i, [1.0, float(i), 0.0], {"odd": i % 2 == 1}) for i in range(10)]
    )
    await store.delete(collection, [0, 2, 99])
    assert await store.count(collection) == 8
    await store.delete_by_filter(collection, {"odd": True})
    page = await store.scroll(collection)
    assert [p.id for p in page.points] == [4, 6, 8]


async def test_scroll_pages_cover_every_point_once_in_id_order(
    store: VectorStoreBase, collection: str
) -> None:
    ids = [7, 3, 1000, 12, 5, 40, 1, 999, 2**40, 64]
    await store.upsert(collection, [VectorPoint(i, [1.0, 0.5, float(i % 7)]) for i in ids])
    seen: list[str | int] = []
    offset: str | int | None = None
    while True:
        page = await store.scroll(collection, limit=3, offset=offset)
        seen += [p.id for p in page.points]
        if page.next_offset is None:
            break
        offset = page.next_offset
    assert seen == sorted(ids)


async def test_scroll_returns_vectors_as_stored(store: VectorStoreBase) -> None:
    """Euclid keeps vectors as given; cosine stores them normalised (as Qdrant does)."""
    name = unique()
    await store.ensure_collection(name, vector_size=2, distance="euclid")
    cosine = unique()
    await store.ensure_collection(cosine, vector_size=2)
    try:
        await store.upsert(name, [VectorPoint(1, [3.0, 4.0])])
        await store.upsert(cosine, [VectorPoint(1, [3.0, 4.0])])
        (point,) = (await store.scroll(name, with_vectors=True)).points
        assert point.vector == pytest.approx([3.0, 4.0])
        (point,) = (await store.scroll(cosine, with_vectors=True)).points
        assert point.vector == pytest.approx([0.6, 0.8], abs=1e-6)
        (point,) = (await store.scroll(cosine)).points
        assert list(point.vector) == []
    finally:
        await store.delete_collection(name)
        await store.delete_collection(cosine)


# ------------------------------------------------------------------ caller errors
@pytest.mark.parametrize(
    ("bad", "error", "argument"),
    [
        (VectorPoint(9, [1.0, 2.0]), DimensionMismatchError, "points[2].vector"),
        (VectorPoint(9, [1.0, math.nan, 0.0]), InvalidArgumentError, "points[2].vector"),
        (VectorPoint(9, [1.0, math.inf, 0.0]), InvalidArgumentError, "points[2].vector"),
        # finite in Python, infinity in the engines' float32
        (VectorPoint(9, [1.0, 1e39, 0.0]), InvalidArgumentError, "points[2].vector"),
        (VectorPoint("doc-9", [1.0, 2.0, 0.0]), InvalidArgumentError, "points[2].id"),
        (VectorPoint(-1, [1.0, 2.0, 0.0]), InvalidArgumentError, "points[2].id"),
        (VectorPoint(0, [1.0, 2.0, 0.0]), InvalidArgumentError, "points[2].id"),
        (
            VectorPoint(9, [1.0, 2.0, 0.0], {"x": math.nan}),
            InvalidArgumentError,
            "points[2].payload",
        ),
    ],
)
async def test_bad_points_are_refused_before_anything_is_written(
    store: VectorStoreBase,
    collection: str,
    bad: VectorPoint,
    error: type[CallerError],
    argument: str,
) -> None:
    """The whole upsert is refused, naming the point, and nothing of it is written."""
    good = [VectorPoint(0, [1.0, 0.0, 0.0]), VectorPoint(1, [0.0, 1.0, 0.0])]
    with pytest.raises(error) as caught:
        await store.upsert(collection, [*good, bad])
    assert isinstance(caught.value, CallerError)
    details = caught.value.details
    assert details.get("argument") == argument
    if error is DimensionMismatchError:
        assert (details["expected_dim"], details["got_dim"]) == (3, 2)
    assert await store.count(collection) == 0


async def test_numbers_of_any_numeric_type_are_stored_as_floats(
    store: VectorStoreBase, collection: str
) -> None:
    """numpy arrays and scalars, Decimal, Fraction and ints are numbers like floats on
    every engine (the stores send plain floats)."""
    # Typed as the port's Sequence[float]: what a caller's numpy code passes anyway.
    vectors: list[Any] = [
        np.array([1.0, 0.0, 0.0], dtype=np.float32),
        [Decimal("0.5"), Fraction(1, 2), np.float32(0.0)],
        [np.float64(0.0), np.int64(0), 1],
    ]
    await store.upsert(collection, [VectorPoint(i + 1, v) for i, v in enumerate(vectors)])
    query: Any = np.array([1.0, 1.0, 0.0])
    hits = await store.search(collection, query, limit=3, exact=True)
    assert [hit.id for hit in hits] == [2, 1, 3]
    assert [hit.score for hit in hits] == pytest.approx([1.0, math.sqrt(0.5), 0.0], abs=1e-5)


async def test_search_checks_the_query_vector_and_arguments(
    store: VectorStoreBase, collection: str
) -> None:
    with pytest.raises(DimensionMismatchError) as caught:
        await store.search(collection, [1.0, 2.0, 3.0, 4.0])
    assert (caught.value.details["expected_dim"], caught.value.details["got_dim"]) == (3, 4)
    with pytest.raises(InvalidArgumentError, match="vector"):
        await store.search(collection, [1.0, math.nan, 0.0])
    with pytest.raises(InvalidArgumentError, match="limit"):
        await store.search(collection, [1.0, 0.0, 0.0], limit=0)
    with pytest.raises(InvalidArgumentError, match="filter"):
        await store.search(collection, [1.0, 0.0, 0.0], filter={"x": 1.5})
    with pytest.raises(InvalidArgumentError, match="collection"):
        await store.search("bad name!", [1.0, 0.0, 0.0])


async def test_vectors_of_another_model_are_refused(store: VectorStoreBase) -> None:
    name = unique()
    await store.ensure_collection(name, vector_size=3, model="model-a")
    try:
        await store.upsert(name, [VectorPoint(1, [1, 0, 0])], model="model-a")
        with pytest.raises(EmbeddingModelMismatchError) as caught:
            await store.search(name, [1, 0, 0], model="model-b")
        assert caught.value.details["expected_model"] == "model-a"
        with pytest.raises(EmbeddingModelMismatchError):
            await store.upsert(name, [VectorPoint(2, [1, 0, 0])], model="model-b")
        assert [hit.id for hit in await store.search(name, [1, 0, 0], model="model-a")] == [1]
    finally:
        await store.delete_collection(name)


async def test_duplicate_ids_in_one_upsert_are_refused(
    store: VectorStoreBase, collection: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=r"points\[2\] repeats"):
        await store.upsert(
            collection,
            [VectorPoint(1, [1, 0, 0]), VectorPoint(2, [0, 1, 0]), VectorPoint(1, [0, 0, 1])],
        )


# ---------------------------------------------------------------- batches, progress
async def test_many_batches_all_written_with_progress(make_store: Factory) -> None:
    """53 points in batches of 7, 3 in flight: every point written, progress reported
    after each of the 8 batches, ending at 53 of 53."""
    store = make_store(batch_size=7, concurrency=3)
    name = unique()
    try:
        await store.ensure_collection(name, vector_size=3)
        seen: list[UpsertProgress] = []
        points = [VectorPoint(i, [1.0, float(i), 2.0], {"i": i}) for i in range(53)]
        assert await store.upsert(name, points, on_progress=seen.append) == 53
        assert await store.count(name) == 53
        assert [p.batches_done for p in seen] == list(range(1, 9))
        assert seen[-1] == UpsertProgress(53, 53, 8, 8)
        assert all(a.written < b.written for a, b in itertools.pairwise(seen))
        await store.delete_collection(name)
    finally:
        await store.close()


class ThreadNotingVector(list[float]):
    """A numpy-like vector (read through ``tolist()``) noting the thread that reads it."""

    readers: ClassVar[set[int]] = set()

    def tolist(self) -> list[float]:
        ThreadNotingVector.readers.add(threading.get_ident())
        return list(self)


async def test_a_large_upsert_is_prepared_off_the_event_loop(make_store: Factory) -> None:
    """Above ``threaded_above`` points the input is read and checked in a worker thread
    (the event loop stays free), at or below it on the loop (no thread hop for small
    upserts); same result, same refusal of a bad point."""
    store = make_store(threaded_above=10)
    name = unique()
    loop_thread = threading.get_ident()
    try:
        await store.ensure_collection(name, vector_size=3)
        small = [VectorPoint(i, ThreadNotingVector([1.0, float(i), 2.0])) for i in range(10)]
        ThreadNotingVector.readers.clear()
        assert await store.upsert(name, small) == 10
        assert ThreadNotingVector.readers == {loop_thread}
        points = [VectorPoint(i, ThreadNotingVector([1.0, float(i), 2.0])) for i in range(40)]
        ThreadNotingVector.readers.clear()
        assert await store.upsert(name, points) == 40
        assert ThreadNotingVector.readers
        assert loop_thread not in ThreadNotingVector.readers
        with pytest.raises(DimensionMismatchError):
            await store.upsert(name, [*points, VectorPoint(99, [1.0])])
        assert await store.count(name) == 40
        await store.delete_collection(name)
    finally:
        await store.close()


async def test_health_check_and_closed_store(make_store: Factory) -> None:
    store = make_store()
    ok, details = await store.health_check(latency_threshold_ms=10_000)
    assert ok
    assert details["status"] == "healthy"
    await store.close()
    ok, details = await store.health_check()
    assert not ok
    assert details["status"] == "unhealthy"
    with pytest.raises(Exception, match="closed"):
        await store.count("anything")


# --------------------------------------------------------------- property: vs oracle
def oracle_score(distance: str, stored: list[float], query: list[float]) -> float:
    if distance == "euclid":
        return math.dist(stored, query)
    if distance == "cosine":
        norm = math.hypot(*stored) * math.hypot(*query)
        return sum(a * b for a, b in zip(stored, query, strict=True)) / norm
    return sum(a * b for a, b in zip(stored, query, strict=True))


finite = st.floats(-10, 10, allow_nan=False).filter(lambda x: abs(x) > 1e-3)
vectors = st.lists(finite, min_size=4, max_size=4)


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    distance=st.sampled_from(["cosine", "dot", "euclid"]),
    stored=st.lists(st.tuples(vectors, st.sampled_from(["x", "y"])), min_size=1, max_size=25),
    query=vectors,
    limit=st.integers(1, 8),
    tag=st.sampled_from([None, "x", "y"]),
)
def test_exact_search_matches_a_brute_force_oracle(  # noqa: PLR0917 - hypothesis arguments
    make_store: Factory,
    distance: str,
    stored: list[tuple[list[float], str]],
    query: list[float],
    limit: int,
    tag: str | None,
) -> None:
    """For any points, query, limit and filter, exact search returns the oracle's top
    ``limit`` scores, each hit carrying its own point's score, best first."""

    async def scenario() -> None:
        store = make_store()
        name = unique()
        try:
            await store.ensure_collection(name, vector_size=4, distance=distance)
            await store.upsert(
                name,
                [VectorPoint(i, vector, {"tag": t}) for i, (vector, t) in enumerate(stored)],
            )
            flt = None if tag is None else {"tag": tag}
            hits = await store.search(name, query, limit=limit, filter=flt, exact=True)
            scores = {
                i: oracle_score(distance, vector, query)
                for i, (vector, t) in enumerate(stored)
                if tag is None or t == tag
            }
            best = sorted(scores.values(), reverse=distance != "euclid")[:limit]
            assert [hit.score for hit in hits] == pytest.approx(best, rel=1e-3, abs=1e-3)
            for hit in hits:
                assert hit.score == pytest.approx(scores[int(hit.id)], rel=1e-3, abs=1e-3)
            assert await store.count(name, filter=flt) == len(scores)
            await store.delete_collection(name)
        finally:
            await store.close()

    asyncio.run(scenario())


# ------------------------------------------- zero vectors, threshold at its boundary
small = st.lists(st.sampled_from([0, 0, 1, -1, 2]), min_size=3, max_size=3)


def expected_score(distance: str, stored: list[int], query: list[int]) -> float:
    """Qdrant's score, with a zero vector's cosine similarity 0 (its normalised form
    stays zero)."""
    if distance == "cosine" and not (any(stored) and any(query)):
        return 0.0
    return oracle_score(distance, [float(x) for x in stored], [float(x) for x in query])


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    distance=st.sampled_from(["cosine", "dot", "euclid"]),
    stored=st.lists(small, min_size=1, max_size=8),
    query=small,
    pick=st.integers(0, 7),
)
# a float32 score: local mode compares the threshold in float32 (found by this test)
@example(distance="cosine", stored=[[1, 1, 1]], query=[0, 0, 1], pick=0)
@example(distance="dot", stored=[[1, 1, 1], [2, -1, 0]], query=[1, 2, 0], pick=1)
def test_scores_are_defined_and_a_threshold_keeps_hits_exactly_at_it(
    make_store: Factory, distance: str, stored: list[list[int]], query: list[int], pick: int
) -> None:
    """Zero vectors (stored, or the query) score 0 with cosine, as on Qdrant -- pgvector
    reported NaN. A ``score_threshold`` equal to a hit's score keeps that hit ("at least
    that good") -- Qdrant local mode dropped it (strictly better only). Small integer
    vectors make every engine's score exact, so the boundary is really met."""

    async def scenario() -> None:
        store = make_store()
        name = unique()
        try:
            await store.ensure_collection(name, vector_size=3, distance=distance)
            await store.upsert(name, [VectorPoint(i, v) for i, v in enumerate(stored)])
            scores = {i: expected_score(distance, v, query) for i, v in enumerate(stored)}
            hits = await store.search(name, query, limit=len(stored), exact=True)
            assert all(math.isfinite(hit.score) for hit in hits)
            assert sorted(hit.id for hit in hits) == sorted(scores)
            for hit in hits:
                assert hit.score == pytest.approx(scores[int(hit.id)], abs=1e-5)
            # dot and euclid of small ints, and a cosine of 0, are exact everywhere. Other
            # cosines are float32 values that Qdrant local mode does not reproduce: it
            # renormalises stored vectors in place on every search, so a score alternates
            # between two neighbouring floats; those thresholds sit 1e-6 below the score.
            threshold = hits[pick % len(hits)].score
            if distance == "cosine" and threshold != 0.0:
                threshold -= 1e-6
            kept = await store.search(
                name, query, limit=len(stored), score_threshold=threshold, exact=True
            )
            better = [
                hit.id
                for hit in hits
                if (hit.score <= threshold if distance == "euclid" else hit.score >= threshold)
            ]
            assert sorted(hit.id for hit in kept) == sorted(better)
            await store.delete_collection(name)
        finally:
            await store.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("distance", "threshold", "expected"),
    [("dot", 0.0, [1, 3]), ("euclid", 1.0, [1, 3]), ("cosine", 0.0, [1, 3])],
)
async def test_a_hit_exactly_at_the_threshold_is_kept(
    store: VectorStoreBase, distance: str, threshold: float, expected: list[int]
) -> None:
    """Query (1, 0): point 1 = (1, 0) is best; point 3 scores exactly the threshold (dot
    0, distance 1, cosine 0 -- a zero vector); point 2 = (-1, 0) is worse."""
    name = unique()
    await store.ensure_collection(name, vector_size=2, distance=distance)
    try:
        third = [0.0, 0.0] if distance != "euclid" else [1.0, 1.0]
        await store.upsert(
            name, [VectorPoint(1, [1, 0]), VectorPoint(2, [-1, 0]), VectorPoint(3, third)]
        )
        kept = await store.search(name, [1, 0], score_threshold=threshold, exact=True)
        assert [hit.id for hit in kept] == expected
        assert all(math.isfinite(hit.score) for hit in kept)
    finally:
        await store.delete_collection(name)


model_ids = st.text(min_size=1, max_size=12)


@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=model_ids)
@example(model="bge\x00small")
@example(model="e5-\ud800")
def test_any_model_id_is_recorded_as_given_or_refused_before_io(
    make_store: Factory, model: str
) -> None:
    """A model id is recorded and read back unchanged, or -- holding U+0000 or a lone
    surrogate, which PostgreSQL cannot store -- refused on every engine before anything
    is created (pgvector failed with a QueryDataError)."""
    storable = "\x00" not in model and not any(0xD800 <= ord(c) <= 0xDFFF for c in model)

    async def scenario() -> None:
        store = make_store()
        name = unique()
        try:
            if not storable:
                with pytest.raises(InvalidArgumentError) as caught:
                    await store.ensure_collection(name, vector_size=2, model=model)
                assert caught.value.details["argument"] == "model"
                with pytest.raises(CollectionNotFoundError):
                    await store.collection_info(name)
                return
            await store.ensure_collection(name, vector_size=2, model=model)
            assert (await store.collection_info(name)).model == model
            await store.delete_collection(name)
        finally:
            await store.close()

    asyncio.run(scenario())


@settings(max_examples=4, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    every=st.sampled_from([1, 25, 100, 400]),
    limit=st.sampled_from([1, 10, 45, 100]),
    seed=st.integers(0, 2**16),
)
@example(every=100, limit=10, seed=0)  # a selective filter
@example(every=1, limit=100, seed=0)  # no filter, more hits than one HNSW scan yields
def test_an_approximate_search_returns_limit_hits_when_enough_points_match(
    make_store: Factory, every: int, limit: int, seed: int
) -> None:
    """2,000 points; a filter matching one in ``every`` (none for 1). An approximate
    search (the index) returns ``min(limit, matching)`` hits, all matching, best first.
    On pgvector one HNSW scan yields 40 candidates before the filter and LIMIT: a search
    for 10 hits among 20 matching points returned 0-2, a search for 100 returned 40."""
    rnd = random.Random(seed)
    points = [
        VectorPoint(i, [rnd.gauss(0, 1) for _ in range(4)], {"tag": i % every == 0})
        for i in range(2_000)
    ]
    flt = None if every == 1 else {"tag": True}
    matching = len(range(0, 2_000, every))

    async def scenario() -> None:
        store = make_store(batch_size=500)
        name = unique()
        try:
            await store.ensure_collection(name, vector_size=4, distance="euclid")
            await store.upsert(name, points)
            query = [rnd.gauss(0, 1) for _ in range(4)]
            hits = await store.search(name, query, limit=limit, filter=flt)
            assert len(hits) == min(limit, matching)
            assert all(int(hit.id) % every == 0 for hit in hits)
            assert [hit.score for hit in hits] == sorted(hit.score for hit in hits)
            await store.delete_collection(name)
        finally:
            await store.close()

    asyncio.run(scenario())


stored_values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.1, 1 / 3, 1e-40, -2.5e-39, 3.4028234663852886e38]),
)


@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    distance=st.sampled_from(["dot", "euclid"]),
    vectors=st.lists(st.lists(stored_values, min_size=3, max_size=3), min_size=1, max_size=6),
)
@example(distance="euclid", vectors=[[0.1, 1 / 3, 1e-40]])
def test_vectors_come_back_as_the_32_bit_floats_stored(
    make_store: Factory, distance: str, vectors: list[list[float]]
) -> None:
    """Every engine stores 32-bit floats: ``scroll(with_vectors=True)`` returns each
    element rounded to float32, exactly -- the fake returned the float64 given (0.1
    where Qdrant and pgvector return 0.10000000149011612), so a test passing on the fake
    failed on the real stores."""

    async def scenario() -> None:
        store = make_store()
        name = unique()
        try:
            await store.ensure_collection(name, vector_size=3, distance=distance)
            await store.upsert(name, [VectorPoint(i, v) for i, v in enumerate(vectors)])
            page = await store.scroll(name, with_vectors=True)
            assert [list(p.vector) for p in page.points] == [
                array.array("f", v).tolist() for v in vectors
            ]
            await store.delete_collection(name)
        finally:
            await store.close()

    asyncio.run(scenario())


@pytest.fixture(params=ENGINES)
def make_pair(request: pytest.FixtureRequest) -> Callable[[], tuple[Any, Any, Any]]:
    """Builds two stores on the same data (two processes' view of one database) and
    what closes them: ``(a, b, close)``."""
    engine: str = request.param
    if engine == "fake":

        def fake_pair() -> tuple[Any, Any, Any]:
            shared = FakeVectorStore(policy=ResiliencePolicy.instant("qdrant"))
            return shared, shared, shared.close

        return fake_pair
    if engine == "qdrant":
        from infra.testing.embedded import open_qdrant_client
        from infra.vector.qdrant import QdrantVectorStore

        location: str = request.getfixturevalue("qdrant_location")

        def qdrant_pair() -> tuple[Any, Any, Any]:
            client = open_qdrant_client(location)
            a, b = (
                QdrantVectorStore(client, policy=ResiliencePolicy.instant("qdrant"))
                for _ in range(2)
            )
            return a, b, client.close

        return qdrant_pair
    from infra.storage import EnhancedPostgresStore
    from infra.vector.pgvector import PgVectorStore

    dsn: str = request.getfixturevalue("postgres_dsn")

    def pg_pair() -> tuple[Any, Any, Any]:
        a, b = (
            PgVectorStore(
                EnhancedPostgresStore(dsn, 1, 2, policy=ResiliencePolicy.instant("postgres")),
                owns_store=True,
            )
            for _ in range(2)
        )

        async def close() -> None:
            await a.close()
            await b.close()

        return a, b, close

    return pg_pair


OPERATIONS: dict[str, Callable[[VectorStoreBase, str, int], Any]] = {
    "upsert": lambda s, name, size: s.upsert(name, [VectorPoint(7, [1.0] * size)]),
    "search": lambda s, name, size: s.search(name, [1.0] * size),
    "count": lambda s, name, _size: s.count(name),
    "scroll": lambda s, name, _size: s.scroll(name),
    "delete": lambda s, name, _size: s.delete(name, [7]),
    "delete_by_filter": lambda s, name, _size: s.delete_by_filter(name, {"x": 1}),
    "collection_info": lambda s, name, _size: s.collection_info(name),
}


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    operation=st.sampled_from(sorted(OPERATIONS)),
    old_size=st.integers(2, 4),
    new_size=st.integers(2, 4),
)
@example(operation="search", old_size=2, new_size=3)
@example(operation="upsert", old_size=2, new_size=3)
@example(operation="collection_info", old_size=2, new_size=3)
def test_a_collection_deleted_or_recreated_by_another_store_is_seen_as_it_is(
    make_pair: Callable[[], tuple[Any, Any, Any]], operation: str, old_size: int, new_size: int
) -> None:
    """Store ``a`` used a collection; store ``b`` (another process) deletes it: every
    operation of ``a`` is ``CollectionNotFoundError`` (pgvector raised the relational
    store's QuerySyntaxError). ``b`` recreates it with another size: ``a`` works with the
    new size (the cached old size refused the right vectors until a restart)."""

    async def scenario() -> None:
        a, b, close = make_pair()
        name = unique()
        try:
            await a.ensure_collection(name, vector_size=old_size)
            await a.upsert(name, [VectorPoint(1, [1.0] * old_size)])
            await b.delete_collection(name)
            with pytest.raises(CollectionNotFoundError):
                await OPERATIONS[operation](a, name, old_size)
            await b.ensure_collection(name, vector_size=new_size)
            await OPERATIONS[operation](a, name, new_size)
            assert (await a.collection_info(name)).size == new_size
            await b.delete_collection(name)
        finally:
            await close()

    asyncio.run(scenario())

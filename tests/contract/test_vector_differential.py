"""Differential: the fake, Qdrant local mode and pgvector answer the same operations the
same way, for generated payloads and filters (hostile field names, every JSON type,
arrays of arrays, objects inside arrays, int vs float, 64-bit edges, huge floats).

The fake is the reference every application's unit tests run on: where it and a real
engine disagree, code tested on the fake breaks in production. Each example writes the
same points into a fresh collection of every engine, then compares, per filter: the
``count``, the ``scroll`` ids (a defined order), the set of ``search`` hits, the payloads
read back (types included: ``1`` is not ``1.0`` nor ``True``), and what
``delete_by_filter`` leaves.

Defects this caught (each an ``@example`` below, failing on the code before the fix):
pgvector's lax ``jsonpath`` unwrapped arrays met on the way (``{"a.b": 1}`` matched
``{"a": [{"b": 1}]}``) and arrays of arrays; ``jsonb`` equality made ``1`` equal ``1.0``;
a range bound ``2**62`` was sent as ``4.611686018427388e+18`` and missed a stored
``2**62``; a float ``1e20`` came back from ``jsonb`` as the int ``10**20``; Qdrant refused
("Invalid path") a filter on a field named ``$x`` or ``a b`` that the others matched.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infra.ports import VectorPoint
from infra.resilience import ResiliencePolicy
from infra.testing.fakes.vector import FakeVectorStore
from infra.vector import VectorStoreBase

pytestmark = [pytest.mark.qdrant, pytest.mark.postgres]

KEYS = ["k", "é", "$x", "a b", "0", "a[]", "t"]
INTS = [0, 1, -1, 2, 2**53 + 1, 2**62, -(2**63), 2**63 - 1]
FLOATS = [0.0, 1.0, 0.5, -0.5, 2.0, 1e16, 1e20, 2.0**62, 1.5e-7, 1e300]
TEXTS = ["a", "é", "", "😀", "1", "true", "a b", '"', "\\", "\u0001"]
# Range bounds: ints beyond 2**53 are left out, since Qdrant compares as floats and
# pgvector exactly (documented in docs/vector.md).
BOUNDS = [0, 1, -1, 2, 0.5, 1.0, 1e16, 1e20, 2**62, 2.0**62, -0.5, 1.5e-7]

scalars = st.one_of(
    st.sampled_from(INTS),
    st.sampled_from(FLOATS),
    st.booleans(),
    st.sampled_from(TEXTS),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=2),
    ),
    max_leaves=6,
)
payloads = st.dictionaries(st.sampled_from(KEYS), values, max_size=3)
fields = st.one_of(
    st.sampled_from(KEYS),
    st.tuples(st.sampled_from(KEYS), st.sampled_from(KEYS)).map(".".join),
)
equal_to = st.one_of(st.sampled_from(INTS), st.booleans(), st.sampled_from(TEXTS))


@st.composite
def ranges(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.sets(st.sampled_from(["gt", "gte", "lt", "lte"]), min_size=1, max_size=2))
    return {name: draw(st.sampled_from(BOUNDS)) for name in sorted(names)}


conditions = st.one_of(equal_to, st.lists(equal_to, min_size=1, max_size=3), ranges())
filters = st.dictionaries(fields, conditions, min_size=1, max_size=2)


def typed(value: Any) -> Any:
    """``value`` with its JSON type made part of equality (``1 != 1.0 != True``)."""
    if isinstance(value, dict):
        return ("object", sorted((key, typed(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("array", [typed(item) for item in value])
    return (type(value).__name__, value)


def stores(location: str, dsn: str) -> dict[str, VectorStoreBase]:
    from infra.storage import EnhancedPostgresStore
    from infra.testing.embedded import open_qdrant_client
    from infra.vector.pgvector import PgVectorStore
    from infra.vector.qdrant import QdrantVectorStore

    return {
        "fake": FakeVectorStore(policy=ResiliencePolicy.instant("qdrant")),
        "qdrant": QdrantVectorStore(
            lambda: open_qdrant_client(location), policy=ResiliencePolicy.instant("qdrant")
        ),
        "pgvector": PgVectorStore(
            EnhancedPostgresStore(dsn, 1, 2, policy=ResiliencePolicy.instant("postgres")),
            owns_store=True,
        ),
    }


async def observe(
    store: VectorStoreBase, points: list[VectorPoint], flt: dict[str, Any]
) -> dict[str, Any]:
    """Everything the engine answers about ``points`` under ``flt``."""
    name = f"d_{uuid.uuid4().hex[:16]}"
    await store.ensure_collection(name, vector_size=3)
    try:
        await store.upsert(name, points)
        seen: dict[str, Any] = {"count": await store.count(name, filter=flt)}
        page = await store.scroll(name, filter=flt, limit=100)
        seen["scroll"] = [point.id for point in page.points]
        hits = await store.search(name, [1.0, 0.0, 0.0], limit=100, filter=flt, exact=True)
        seen["search"] = sorted(hit.id for hit in hits)
        everything = await store.scroll(name, limit=100)
        seen["payloads"] = [(point.id, typed(point.payload)) for point in everything.points]
        await store.delete_by_filter(name, flt)
        seen["left"] = [point.id for point in (await store.scroll(name, limit=100)).points]
        return seen
    finally:
        await store.delete_collection(name)


@pytest.fixture
def engines(qdrant_location: str, postgres_dsn: str) -> Callable[[], dict[str, VectorStoreBase]]:
    return lambda: stores(qdrant_location, postgres_dsn)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(payloads, min_size=1, max_size=8), flt=filters)
# an object inside an array is not traversed by a dotted path (pgvector's lax mode did)
@example(records=[{"k": [{"t": 1}]}], flt={"k.t": 1})
# an array of arrays is not unwrapped twice
@example(records=[{"k": [[1]]}], flt={"k": {"gte": 1}})
# a float never equals an int (jsonb compares 1.0 = 1)
@example(records=[{"k": 1.0}, {"k": 1}], flt={"k": 1})
# a bound of 2**62 compares equal to a stored 2**62 (it was sent as 4.611686018427388e+18)
@example(records=[{"k": 2**62}], flt={"k": {"gte": 2**62}})
# a huge float stays a float (jsonb turned 1e20 into the int 10**20)
@example(records=[{"k": 1e20}], flt={"k": {"gte": 1}})
# fields outside Qdrant's bare path syntax are quoted ("Invalid path" before)
@example(records=[{"$x": "a"}, {"a b": "a"}], flt={"$x": "a"})
@example(records=[{"a[]": 1}], flt={"a[]": 1})
def test_every_engine_answers_like_the_fake(
    engines: Callable[[], dict[str, VectorStoreBase]],
    records: list[dict[str, Any]],
    flt: dict[str, Any],
) -> None:
    points = [VectorPoint(i + 1, [1.0, float(i), 0.5], record) for i, record in enumerate(records)]

    async def scenario() -> dict[str, dict[str, Any]]:
        built = engines()
        try:
            return {name: await observe(store, points, flt) for name, store in built.items()}
        finally:
            for store in built.values():
                await store.close()

    answers = asyncio.run(scenario())
    assert answers["qdrant"] == answers["fake"]
    assert answers["pgvector"] == answers["fake"]

"""Hostile parameter names and values on a real Bolt engine: what is acknowledged is what
is stored, and no value changes the statement.

The embedded FalkorDB inlines parameters into the statement text (see
``infra/graph/_params.py``); a binding server (Neo4j, Memgraph through
``SEMANTICA_TEST_GRAPH_URI``) takes the same calls as plain data. Each property allows
both, and forbids what the old store did on FalkorDB: a raw read whose parameter *name*
deleted the graph, floats stored rounded to six decimals, floats whose printed form was
larger than the size budget assumed (the server process crashes past ~4 KB), and values
the server cannot take reported as a generic failure that the breaker counted.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infra.exceptions import CallerError, GraphQueryError, InvalidArgumentError
from infra.graph.driver import open_driver
from infra.graph.memgraph import MemgraphGraphStore
from infra.resilience import BreakerState, CircuitBreaker, ResiliencePolicy
from infra.testing.fakes.graph import FakeGraphStore

pytestmark = pytest.mark.graph

_FIXTURE = [HealthCheck.function_scoped_fixture]
#: A name that, inlined unquoted, ends the parameter list and deletes every node.
CRAFTED = "x=1 MATCH (n) DETACH DELETE n RETURN 1 AS v //"
CRAFTED_KEY = "a: 1} WITH 1 AS x MATCH (n) DETACH DELETE n RETURN 1 AS v //"


def breaker(store: MemgraphGraphStore) -> CircuitBreaker:
    assert store.policy.breaker is not None  # the instant policy has one
    return store.policy.breaker


@pytest.fixture
async def store(bolt_uri: str, bolt_auth: tuple[str, str]) -> AsyncIterator[MemgraphGraphStore]:
    """A store owning its driver, on an emptied graph holding one node, ``victim``."""
    user, password = bolt_auth
    real = MemgraphGraphStore(
        open_driver(bolt_uri, user=user, password=password),
        policy=ResiliencePolicy.instant("graph"),
        owns_driver=True,
        name="hostile",
    )
    await real.write("MATCH (n) DETACH DELETE n")
    await real.upsert_nodes("Victim", [{"id": "victim"}])
    yield real
    await real.close()


_names = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, suppress_health_check=_FIXTURE)
@given(name=_names, nested=st.booleans())
@example(name=CRAFTED, nested=False)
@example(name=CRAFTED_KEY, nested=True)
async def test_no_parameter_name_changes_a_raw_read(
    store: MemgraphGraphStore, name: str, nested: bool
) -> None:
    """Any parameter name, or key of a map parameter: the read answers its one row or is
    refused as a caller error -- and the graph is untouched either way."""
    parameters: dict[str, Any] = {"m": {name: 1}} if nested else {name: 1}
    refused: GraphQueryError | None = None
    try:
        rows = await store.query("RETURN 1 AS v", parameters)
    except GraphQueryError as exc:
        refused = exc
    if refused is None:
        assert rows == [{"v": 1}]
    else:
        assert isinstance(refused, CallerError)
        assert "parameters" in str(refused)
    assert await store.count_nodes("Victim") == 1
    assert breaker(store).state is BreakerState.CLOSED


@settings(max_examples=80, suppress_health_check=_FIXTURE)
@given(value=st.floats(allow_nan=False, allow_infinity=False), as_list=st.booleans())
@example(value=0.1 + 0.2, as_list=False)
@example(value=1e-7, as_list=False)
@example(value=5e-324, as_list=True)
async def test_a_float_reads_back_exactly_as_written_or_is_refused(
    store: MemgraphGraphStore, value: float, as_list: bool
) -> None:
    """An acknowledged float is the float stored (never rounded); one the server cannot
    carry is a caller error and nothing is written."""
    stored: Any = [value, 1.5] if as_list else value
    refused: GraphQueryError | None = None
    try:
        await store.upsert_nodes("F", [{"id": "f", "v": stored}])
    except GraphQueryError as exc:
        refused = exc
    node = await store.get_node("f")
    if refused is None:
        assert node is not None
        assert node.properties["v"] == stored
    else:
        assert isinstance(refused, CallerError)
        assert node is None
    await store.delete_nodes(["f"])


@settings(max_examples=10, suppress_health_check=_FIXTURE)
@given(count=st.integers(1, 40), exponent=st.integers(200, 308))
@example(count=40, exponent=300)
async def test_floats_with_long_printed_forms_are_batched_within_the_servers_room(
    store: MemgraphGraphStore, count: int, exponent: int
) -> None:
    """Large floats print as hundreds of digits when inlined: the batches are cut by that
    length, so the import is written whole and the server stays up."""
    await store.write("MATCH (n:Big) DETACH DELETE n")  # examples share the graph
    value = float(f"1e{exponent}")
    nodes = [{"id": i, "v": value} for i in range(count)]
    assert await store.upsert_nodes("Big", nodes) == count
    assert await store.count_nodes("Big") == count
    node = await store.get_node(count - 1)
    assert node is not None
    assert node.properties["v"] == value


@settings(max_examples=20, suppress_health_check=_FIXTURE)
@given(
    value=st.one_of(
        st.binary(max_size=4),
        st.just(datetime.date(2026, 12, 2)),
        st.just(datetime.datetime(2026, 12, 2, 9, 0, tzinfo=datetime.UTC)),
        st.lists(st.binary(max_size=2), min_size=1, max_size=2),
    )
)
async def test_a_value_the_server_cannot_take_is_a_caller_error_not_a_breaker_failure(
    store: MemgraphGraphStore, value: Any
) -> None:
    """bytes and temporal values: a binding server answers them; an inlining one is not
    sent them (a caller error) -- never a server failure counted by the breaker."""
    refused: GraphQueryError | None = None
    try:
        await store.query("RETURN $v AS v", {"v": value})
    except GraphQueryError as exc:
        refused = exc
    assert refused is None or isinstance(refused, CallerError)
    assert breaker(store).state is BreakerState.CLOSED
    assert breaker(store).failure_count == 0


@settings(max_examples=30, suppress_health_check=_FIXTURE)
@given(
    value=st.one_of(
        st.sampled_from([math.nan, math.inf, -math.inf]),
        st.lists(st.sampled_from([1.0, math.nan, math.inf]), min_size=1).filter(
            lambda xs: not all(math.isfinite(x) for x in xs)
        ),
    ),
    edge=st.booleans(),
)
async def test_non_finite_floats_are_refused_alike_by_the_fake_and_the_real_store(
    store: MemgraphGraphStore, value: Any, edge: bool
) -> None:
    """NaN and infinity are not storable on every engine (and NaN equals nothing): both
    stores refuse them naming the property, before anything is sent."""
    fake = FakeGraphStore(policy=ResiliencePolicy.instant("graph"))
    await fake.upsert_nodes("Victim", [{"id": "victim"}])
    for graph in (fake, store):
        write = (
            graph.upsert_edges("R", [("victim", "victim", {"w": value})])
            if edge
            else graph.upsert_nodes("F", [{"id": "f", "w": value}])
        )
        with pytest.raises(InvalidArgumentError) as caught:
            await write
        assert "'w'" in str(caught.value.argument)
        assert await graph.get_node("f") is None
        assert await graph.neighbours("victim") == []

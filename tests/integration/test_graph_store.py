"""MemgraphGraphStore on a real Bolt engine (embedded FalkorDB, or the server
``SEMANTICA_TEST_GRAPH_URI`` names): what the contract suite cannot share with the fake --
raw Cypher, driver objects turned into ours, parameters the server must not misread,
construction from settings, the index, pool gauges and engine errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import Settings
from infra.exceptions import CallerError, GraphConnectionError, GraphError, GraphQueryError
from infra.graph.driver import open_driver
from infra.graph.memgraph import MemgraphGraphStore
from infra.graph.results import Node, Path, Relationship, UpsertProgress
from infra.observability import get_metrics_collector
from infra.resilience import ResiliencePolicy

pytestmark = pytest.mark.graph


@pytest.fixture
async def store(bolt_uri: str, bolt_auth: tuple[str, str]) -> AsyncIterator[MemgraphGraphStore]:
    """A store owning its driver, on an emptied graph with the id index."""
    user, password = bolt_auth
    real = MemgraphGraphStore(
        open_driver(bolt_uri, user=user, password=password),
        policy=ResiliencePolicy.instant("graph"),
        owns_driver=True,
        name="integration",
    )
    await real.write("MATCH (n) DETACH DELETE n")
    await real.ensure_index()
    yield real
    await real.close()


async def test_raw_rows_hold_our_types_not_driver_objects(store: MemgraphGraphStore) -> None:
    """Nodes, relationships and paths returned by raw Cypher come back as our types."""
    await store.upsert_nodes("P", [{"id": "a", "n": 1}, {"id": "b"}])
    await store.upsert_edges("R", [("a", "b", {"w": 2})])
    [row] = await store.query(
        "MATCH p = (a:_Node {id: $a})-[r:R]->(b) RETURN a, r, p, b.id AS b, [1, 2] AS xs",
        {"a": "a"},
    )
    assert row["a"] == Node("a", frozenset({"P"}), {"n": 1})
    assert isinstance(row["r"], Relationship)
    assert (row["r"].type, dict(row["r"].properties)) == ("R", {"w": 2})
    assert isinstance(row["p"], Path)
    assert row["p"].node_ids == ("a", "b")
    assert (row["b"], row["xs"]) == ("b", [1, 2])


_texts = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_texts)
async def test_any_string_parameter_arrives_as_sent(store: MemgraphGraphStore, value: str) -> None:
    """Quotes and backslashes in values reach the graph unchanged, as a property and as a
    raw parameter (FalkorDB inlines parameters into the text; the store escapes them for
    such a server, found by its probe)."""
    await store.upsert_nodes("S", [{"id": "s", "v": value, "tags": [value, "x"]}])
    node = await store.get_node("s")
    assert node is not None
    assert node.properties == {"v": value, "tags": [value, "x"]}
    [row] = await store.query("RETURN $v AS v, $m AS m", {"v": value, "m": {"k": [value]}})
    assert row == {"v": value, "m": {"k": [value]}}


async def test_a_crafted_value_cannot_change_the_statement(store: MemgraphGraphStore) -> None:
    """A value written to close the literal and append Cypher stays a value."""
    crafted = "\\'}) MATCH (n) DETACH DELETE n //"
    await store.upsert_nodes("P", [{"id": "keep"}, {"id": "x", "v": crafted}])
    node = await store.get_node("x")
    assert node is not None
    assert node.properties["v"] == crafted
    assert await store.count_nodes() == 2


async def test_a_syntax_error_is_a_graph_error_that_is_not_retried(
    store: MemgraphGraphStore,
) -> None:
    """Neo4j and Memgraph answer CypherSyntaxError (GraphQueryError, a caller error);
    FalkorDB a generic DatabaseError (GraphError). Neither is retried."""
    metrics = get_metrics_collector()
    before = metrics.get_counter("backend_calls_total", operation="query", outcome="error")
    with pytest.raises(GraphError) as caught:
        await store.query("RETURN RETURN")
    assert caught.value.retryable is False
    assert caught.value.details["operation"] == "query"
    if isinstance(caught.value, CallerError):  # a real Neo4j or Memgraph
        assert "Syntax" in str(caught.value.details.get("code"))
    after = metrics.get_counter("backend_calls_total", operation="query", outcome="error")
    assert after == before + 1


async def test_a_connection_that_saw_a_failure_keeps_answering(
    bolt_uri: str, bolt_auth: tuple[str, str]
) -> None:
    """With one pooled connection, every failed statement is followed by the driver's
    RESET on that same connection, and the next statement is answered. (FalkorDB drops a
    RESET it reads behind an unprocessed message; the embedded relay keeps the driver's
    RUN + PULL together so that never happens -- see docs/graph.md.)"""
    user, password = bolt_auth
    driver = open_driver(bolt_uri, user=user, password=password, max_pool_size=1)
    async with MemgraphGraphStore(
        driver, policy=ResiliencePolicy.instant("graph"), owns_driver=True, query_timeout=10.0
    ) as store:
        for attempt in range(25):
            with pytest.raises(GraphError):
                await store.query("RETURN RETURN")
            assert await store.query("RETURN $n AS n", {"n": attempt}) == [{"n": attempt}]


async def test_from_settings_builds_an_owned_driver(
    bolt_uri: str, bolt_auth: tuple[str, str]
) -> None:
    """settings.graph gives URI, user, password and pool size; close() closes the driver."""
    user, password = bolt_auth
    options: dict[str, str] = {"graph_uri": bolt_uri, "graph_user": user}
    if password:
        options["graph_password"] = password
    store = MemgraphGraphStore.from_settings(Settings(**options), name="from-settings")
    assert (await store.query("RETURN 1 AS one")) == [{"one": 1}]
    assert "from-settings" in repr(store)
    assert password == "" or password not in repr(store)
    await store.close()
    with pytest.raises(GraphConnectionError):
        await store.query("RETURN 1 AS one")


async def test_ensure_index_is_idempotent(store: MemgraphGraphStore) -> None:
    """A second (and third) call finds the index and succeeds."""
    await store.ensure_index()
    await store.ensure_index()


async def test_pool_gauges_and_health_show_the_driver_pool(store: MemgraphGraphStore) -> None:
    """After a call the pool holds an idle connection; health reports it."""
    await store.query("RETURN 1 AS one")
    ok, details = await store.health_check(latency_threshold_ms=60_000)
    assert ok
    assert details["pool_size"] >= 1
    assert details["pool_in_use"] + details["pool_idle"] == details["pool_size"]
    metrics = get_metrics_collector()
    assert metrics.get_gauge("graph_pool_size", pool="integration") >= 1
    assert metrics.get_gauge("graph_pool_active", pool="integration") == 0


async def test_a_large_import_is_sent_in_batches_with_progress(store: MemgraphGraphStore) -> None:
    """2,500 nodes and 2,499 edges in batches of 1,000: three statements each, progress
    after every batch, all written."""
    seen: list[UpsertProgress] = []
    nodes = [{"id": i, "n": i} for i in range(2500)]
    assert await store.upsert_nodes("Big", nodes, on_progress=seen.append) == 2500
    assert [p.done for p in seen] == [1000, 2000, 2500]
    edges = [(i, i + 1) for i in range(2499)]
    assert await store.upsert_edges("NEXT", edges) == 2499
    assert await store.count_nodes("Big") == 2500
    [path] = await store.paths(0, 3, max_hops=3)
    assert path.node_ids == (0, 1, 2, 3)


async def test_a_value_too_large_for_an_inlining_server_is_refused_and_the_server_lives(
    store: MemgraphGraphStore,
) -> None:
    """A 5,000-character value: a binding server (Neo4j, Memgraph) stores it; an inlining
    one (FalkorDB, which crashes beyond ~4 KB of inlined text) gets nothing, and the store
    raises a caller error instead. Either way the server still answers."""
    big = "x" * 5000
    refused: GraphQueryError | None = None
    try:
        await store.upsert_nodes("P", [{"id": "big", "v": big}])
    except GraphQueryError as exc:
        refused = exc
    if refused is not None:
        assert isinstance(refused, CallerError)
        assert refused.details["budget"] < refused.details["inline_size"]
    else:
        node = await store.get_node("big")
        assert node is not None
        assert node.properties["v"] == big
    assert await store.query("RETURN 1 AS one") == [{"one": 1}]

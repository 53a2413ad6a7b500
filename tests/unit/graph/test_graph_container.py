"""The graph container: off without a configured graph, the real store when configured
(no I/O at build), the fake under the container's own graph policy with ``use_fakes``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dependency_injector import providers

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import resolve, start, stop
from containers.testing import use_fakes
from infra.cache import ThreeTierCache
from infra.exceptions import GraphConnectionError
from infra.graph.cached_store import CachedGraphStore
from infra.graph.memgraph import MemgraphGraphStore
from infra.observability import HealthRegistry, get_metrics_collector
from infra.resilience import ResiliencePolicy, RetryConfig
from infra.testing.fakes import FakeCache, FakeRelationalStore
from infra.testing.fakes.graph import FakeGraphStore


@pytest.fixture
async def app() -> AsyncIterator[ApplicationContainer]:
    container = ApplicationContainer()
    yield container
    await stop(container)


def graph_of(app: ApplicationContainer) -> MemgraphGraphStore:
    """The graph store a started container hands out (a fake under use_fakes)."""
    store = app.graph.store()
    assert store is not None
    return store


async def test_without_graph_settings_there_is_no_graph_and_no_health_check(
    app: ApplicationContainer,
) -> None:
    """Settings() never named a graph: the resources are None and neo4j is not needed."""
    app.core.settings.override(providers.Object(Settings()))
    assert await resolve(app.graph.store) is None
    assert await resolve(app.graph.driver) is None


async def test_a_configured_graph_builds_the_store_and_registers_an_optional_check(
    app: ApplicationContainer,
) -> None:
    """graph_uri set: the store is built on the driver (nothing connects) and the registry
    holds an optional 'graph' check, which reports the unreachable server as unhealthy
    without making readiness fail."""
    from infra.graph.memgraph import MemgraphGraphStore

    settings = Settings(graph_uri="bolt://127.0.0.1:1", graph_user="u")
    app.core.settings.override(providers.Object(settings))
    app.postgres.store.override(providers.Object(FakeRelationalStore()))
    app.redis.cache.override(providers.Object(FakeCache()))
    try:
        store = await resolve(app.graph.store)
        assert isinstance(store, MemgraphGraphStore)
        assert store.policy is await resolve(app.graph.policy)
        registry: HealthRegistry = await resolve(app.health)
        report = await registry.readiness()
        checks = report.to_dict()["checks"]
        assert checks["graph"]["critical"] is False
        assert checks["graph"]["status"] == "unhealthy"
        assert report.status == "degraded"
        await stop(app)
    finally:
        app.postgres.store.reset_override()
        app.redis.cache.reset_override()


@pytest.mark.parametrize(("batch", "timeout"), [(1, 0.5), (7, 3.5), (5000, 120.0)])
async def test_the_container_builds_the_store_with_the_graph_settings(
    app: ApplicationContainer, batch: int, timeout: float
) -> None:
    """SEMANTICA_GRAPH_BATCH_SIZE and _QUERY_TIMEOUT reach the store the container builds
    (and from_settings, where an explicit argument wins)."""
    settings = Settings(
        graph_uri="bolt://127.0.0.1:1", graph_batch_size=batch, graph_query_timeout=timeout
    )
    app.core.settings.override(providers.Object(settings))
    store = await resolve(app.graph.store)
    assert isinstance(store, MemgraphGraphStore)
    assert (store.batch_size, store.query_timeout) == (batch, timeout)
    direct = MemgraphGraphStore.from_settings(settings, batch_size=batch + 1)
    try:
        assert (direct.batch_size, direct.query_timeout) == (batch + 1, timeout)
    finally:
        await direct.close()


async def test_use_fakes_installs_the_graph_fake_under_the_container_policy(
    app: ApplicationContainer,
) -> None:
    """A policy the test put on graph.policy governs the fake: with one attempt, a reset
    fails the read; with the default instant policy it is retried."""
    one_try = ResiliencePolicy.instant("graph", retry=RetryConfig(max_attempts=1))
    app.graph.policy.override(providers.Object(one_try))
    with use_fakes(app) as fakes:
        await start(app)
        handed_out: object = app.graph.store()
        assert handed_out is fakes.graph
        assert fakes.graph.policy is one_try
        await fakes.graph.upsert_nodes("P", [{"id": 1}])
        fakes.graph.fail_next(ConnectionResetError(), operations={"get_node"})
        with pytest.raises(GraphConnectionError):
            await graph_of(app).get_node(1)
        cached = app.graph.cached_store()
        assert isinstance(cached, CachedGraphStore)
        assert cached.store is fakes.graph
        await stop(app)
    app.graph.policy.reset_override()
    with use_fakes(app) as fakes:
        await start(app)
        await fakes.graph.upsert_nodes("P", [{"id": 1}])
        fakes.graph.fail_next(ConnectionResetError(), operations={"get_node"})
        assert (await graph_of(app).get_node(1)) is not None
        assert [c.operation for c in fakes.graph.calls[-2:]] == ["get_node", "get_node"]
        await stop(app)


async def test_the_fake_records_through_the_shared_call_path() -> None:
    """Calls on the fake land in the same metrics as the real store's (component graph)."""
    metrics = get_metrics_collector()
    before = metrics.get_counter("backend_calls_total", operation="neighbours", outcome="ok")
    fake = FakeGraphStore(policy=ResiliencePolicy.instant("graph"))
    await fake.neighbours("x")
    after = metrics.get_counter("backend_calls_total", operation="neighbours", outcome="ok")
    assert after == before + 1
    stats = metrics.get_histogram_stats("graph_query_latency_ms", operation="neighbours")
    assert stats.count >= 1


async def test_shutdown_closes_the_store_then_the_driver(app: ApplicationContainer) -> None:
    """The driver is a resource: after stop() the store refuses calls and the driver
    itself is closed (no session can be opened on it)."""
    import neo4j

    app.core.settings.override(providers.Object(Settings(graph_uri="bolt://127.0.0.1:1")))
    store = await resolve(app.graph.store)
    driver = await resolve(app.graph.driver)
    assert isinstance(store, MemgraphGraphStore)
    assert store.driver is driver
    await stop(app)
    assert store.is_closed
    with pytest.raises(neo4j.exceptions.DriverError, match="closed"):
        driver.session()


@pytest.mark.parametrize("ttl", [None, 0.5, 90.0])
async def test_the_cached_store_lifetime_comes_from_the_container(
    app: ApplicationContainer, ttl: float | None
) -> None:
    """``graph.cache_ttl`` sets the cached store's TTL, with the real store and the fake."""
    app.graph.cache_ttl.override(providers.Object(ttl))
    app.core.settings.override(providers.Object(Settings(graph_uri="bolt://127.0.0.1:1")))
    app.redis.three_tier.override(providers.Object(ThreeTierCache(FakeCache())))
    try:
        cached = await resolve(app.graph.cached_store)
        assert isinstance(cached, CachedGraphStore)
        assert cached.ttl == ttl
        await stop(app)
    finally:
        app.redis.three_tier.reset_override()
    with use_fakes(app):
        await start(app)
        faked = app.graph.cached_store()
        assert isinstance(faked, CachedGraphStore)
        assert faked.ttl == ttl
        await stop(app)

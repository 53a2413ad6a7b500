"""The graph container: the Bolt driver as a lazy resource, its own policy, the stores.

::

    graph = GraphContainer(settings=core.settings, three_tier=redis.three_tier)
    store = await graph.store()               # builds the driver; no connection yet
    await store.upsert_nodes("Person", [{"id": "ada"}])
    cached = await graph.cached_store()       # the same store, reads through the 3-tier cache
    await graph.shutdown_resources()          # closes the store, then the driver

Follows :mod:`containers.core`'s pattern; neo4j and :mod:`infra.graph` are imported when
the driver resource first starts. Decisions:

* **The driver is the resource** (:func:`graph_driver`): built by
  :func:`infra.graph.driver.build_graph_driver` from ``settings.graph`` (no I/O: the
  driver connects on the first statement), closed on shutdown. The ``store`` resource is
  a :class:`~infra.graph.memgraph.MemgraphGraphStore` on it -- its pool gauges are
  unregistered when it closes, before the driver is.
* **The graph is optional.** An application that never set ``SEMANTICA_GRAPH_URI`` (or
  ``graph_uri``) has no graph: the resources yield ``None`` without importing neo4j, and
  the application container registers no graph health check. Setting it turns both on.
* **The policy is a provider of its own** (component ``graph``), so a test or a
  deployment swaps it alone: ``graph.policy.override(providers.Object(policy))``. The fake
  :mod:`containers.testing` installs runs under this same provider, so an override
  changes the outcome on the fake and the real store alike.
* **The cached store** reads through the 3-tier cache the ``three_tier`` dependency gives
  (the application container passes the Redis container's), under the ``graph``
  namespace of its keys, for ``cache_ttl`` seconds (override that provider to change it).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from dependency_injector import containers, providers

from config import Settings
from containers.core import resilience_policy

if TYPE_CHECKING:
    from infra.cache import ThreeTierCache
    from infra.graph import CachedGraphStore, MemgraphGraphStore
    from infra.observability import MetricsCollector
    from infra.observability.tracing import TracingState
    from infra.resilience import ResiliencePolicy

__all__ = ["GraphContainer", "graph_cached_store", "graph_driver", "graph_enabled", "graph_store"]

_log = logging.getLogger("containers.graph")


def graph_enabled(settings: Settings) -> bool:
    """Whether ``settings`` configure a graph database (``graph_uri`` given explicitly,
    e.g. by ``SEMANTICA_GRAPH_URI``)."""
    return "uri" in settings.graph.model_fields_set


async def graph_driver(settings: Settings) -> AsyncIterator[Any]:
    """The neo4j ``AsyncDriver`` ``settings.graph`` describes (``None`` without a graph),
    closed on shutdown."""
    if not graph_enabled(settings):
        yield None
        return
    from infra._imports import require_off_loop  # noqa: PLC0415 - on first start
    from infra.graph.driver import build_graph_driver  # noqa: PLC0415 - on first start

    # neo4j takes a third of a second to import: off the event loop, which may be serving.
    await require_off_loop("neo4j", extra="graph")
    driver = build_graph_driver(settings)
    try:
        yield driver
    finally:
        try:
            await driver.close()
        # Shutdown logs a failing cleanup and carries on with the other resources.
        except Exception:  # noqa: BLE001
            _log.warning("closing the graph driver failed", exc_info=True)


async def graph_store(
    driver: Any,
    policy: ResiliencePolicy,
    settings: Settings,
    collector: MetricsCollector | None = None,
    tracing: TracingState | None = None,
) -> AsyncIterator[MemgraphGraphStore | None]:
    """The store on ``driver`` under ``policy`` (``None`` without a graph); closed (pool
    gauges unregistered) on shutdown, before the driver."""
    if driver is None:
        yield None
        return
    from infra.graph.memgraph import MemgraphGraphStore  # noqa: PLC0415 - on first start

    view = settings.graph
    store = MemgraphGraphStore(
        driver,
        database=view.database,
        policy=policy,
        max_pool_size=view.max_pool_size,
        batch_size=view.batch_size,
        query_timeout=view.query_timeout,
        collector=collector,
        tracing=tracing,
    )
    try:
        yield store
    finally:
        await store.close()


async def graph_cached_store(
    store: Any, cache: ThreeTierCache, ttl: float | None = None
) -> AsyncIterator[CachedGraphStore | None]:
    """The store's reads through ``cache`` for ``ttl`` seconds (``None``: the cache's
    ``l2_ttl``), or ``None`` without a graph. A resource rather than a singleton because
    it may be ``None``, which a singleton cannot hold."""
    if store is None:
        yield None
        return
    from infra.graph.cached_store import CachedGraphStore  # noqa: PLC0415 - on first start

    yield CachedGraphStore(store, cache, ttl=ttl)


class GraphContainer(containers.DeclarativeContainer):
    """The graph database for the application; see the module docstring."""

    settings: providers.Dependency[Settings] = providers.Dependency(instance_of=Settings)
    three_tier: providers.Dependency[Any] = providers.Dependency()
    resilience_hooks = providers.List()
    #: The metrics collector the store records into (``None``: the current one).
    collector: providers.Provider[MetricsCollector | None] = providers.Object(None)
    #: The tracing state the adapters' spans start from (``None``: the current one).
    tracing: providers.Provider[TracingState | None] = providers.Object(None)
    policy: providers.Singleton[ResiliencePolicy] = providers.Singleton(
        resilience_policy, settings, component="graph", hooks=resilience_hooks
    )
    #: Lifetime of a cached graph read, seconds (``None``: the 3-tier cache's ``l2_ttl``).
    cache_ttl: providers.Provider[float | None] = providers.Object(None)
    driver: providers.Resource[Any] = providers.Resource(graph_driver, settings)
    store: providers.Resource[MemgraphGraphStore | None] = providers.Resource(
        graph_store, driver, policy, settings, collector, tracing
    )
    cached_store: providers.Resource[CachedGraphStore | None] = providers.Resource(
        graph_cached_store, store, three_tier, cache_ttl
    )

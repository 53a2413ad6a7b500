"""The application container: composes core, observability and every backend container.

::

    app = ApplicationContainer()
    app.wire(modules=[handlers])          # once, at startup; handlers use @inject
    await lifecycle.start(app)            # collector, logging, tracing, clients, health
    ...                                   # @inject hands out the started adapters
    await lifecycle.stop(app)             # everything closed, in reverse order

How the pieces meet:

* ``core.settings`` is the one ``Settings``; every backend container declares it as a
  ``Dependency`` and receives it here.
* Each backend policy's observers are the observability container's
  ``resilience_observer`` (breaker state, retries, bulkhead gauges), and each backend
  container's ``collector`` is the observability container's ``metrics``: adapters,
  policies and pool gauges record into this application's own collector, passed in,
  never looked up in a global -- two applications in one process stay independent.
  Likewise each backend container's ``tracing`` is the observability container's
  ``tracing_state``: adapters' spans go to this application's own exporter.
* ``health`` registers each backend's own latency-aware ``health_check`` with the
  observability container's registry; ``/health`` and ``/ready`` read it. The graph
  (:mod:`containers.graph`) is there only when ``SEMANTICA_GRAPH_URI`` is set.
* ``vector`` is the vector store (:mod:`containers.vector`): Qdrant, or pgvector on
  ``postgres.store`` when ``SEMANTICA_VECTOR_BACKEND=pgvector``.

Importing this module imports no driver or telemetry SDK: each is imported when the
resource that needs it first starts (see :mod:`containers.core`).

For tests, :mod:`containers.testing` overrides every backend with its verified fake and
every policy with an instant one, in one call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar

from dependency_injector import containers, providers

from containers import _handout
from containers.core import CoreContainer
from containers.graph import GraphContainer, graph_enabled
from containers.llm import LLMContainer
from containers.observability import ObservabilityContainer
from containers.postgres import PostgresContainer
from containers.redis import RedisContainer
from containers.typed import nested
from containers.vector import VectorContainer, vector_configured

if TYPE_CHECKING:
    from config import Settings
    from infra.observability import HealthRegistry
    from infra.ports import CacheStore, GraphStore, HealthCheckable, RelationalStore

__all__ = ["ApplicationContainer", "register_health_checks"]

_log = logging.getLogger("containers.application")


async def register_health_checks(
    registry: HealthRegistry,
    postgres: RelationalStore,
    redis: CacheStore,
    *,
    graph: GraphStore | None = None,
    vector: object = None,
    settings: Settings | None = None,
    llm: HealthCheckable | None = None,
) -> AsyncIterator[HealthRegistry]:
    """The registry with each backend's check; PostgreSQL and Redis are critical. The
    graph (when the application has one) and the vector store (when settings configure
    one -- under ``use_fakes`` too: the fake stands in for what the settings describe)
    and the LLM adapter are optional: they degrade, never fail, ``/ready`` (an application
    without a chat provider still serves). The checks are unregistered on
    shutdown, so a restart registers the new adapters."""
    from infra.ports import HealthCheckable  # noqa: PLC0415 - loaded on first start

    registered = ["postgres", "redis"]
    registry.register("postgres", postgres, critical=True)
    registry.register("redis", redis, critical=True)
    if graph is not None:
        registry.register("graph", graph, critical=False)
        registered.append("graph")
    if settings is not None and vector_configured(settings) and isinstance(vector, HealthCheckable):
        registry.register("vector", vector, critical=False)
        registered.append("vector")
    if llm is not None:
        registry.register("llm", llm, critical=False)
        registered.append("llm")
    try:
        yield registry
    finally:
        for name in registered:
            registry.unregister(name)


def _graph_check(settings: Settings) -> str:
    return "on" if graph_enabled(settings) else "off"


_C = TypeVar("_C", bound=containers.DeclarativeContainer)


def _backend(
    container_cls: type[_C], observability: type[ObservabilityContainer], **dependencies: Any
) -> type[_C]:
    """A backend container nested with what every backend takes from observability: the
    resilience observer as its hooks, the application's collector and tracing state."""
    return nested(
        container_cls,
        resilience_hooks=providers.List(observability.resilience_observer),
        collector=observability.metrics,
        tracing=observability.tracing_state,
        **dependencies,
    )


class ApplicationContainer(containers.DeclarativeContainer):
    """Everything an application needs, built lazily; see the module docstring."""

    def __new__(cls, **overriding_providers: Any) -> ApplicationContainer:
        # dependency-injector's constructor, then every provider on an asynchronous
        # resource is put in async mode up front: a provider first called while
        # overridden by a plain value must not pass Futures on once the override ends
        # (see containers._handout.declare_async).
        container: ApplicationContainer = super().__new__(cls, **overriding_providers)
        _handout.declare_async(container)
        return container

    if TYPE_CHECKING:
        # dependency-injector's stub gives every container a ``__getattr__`` returning
        # ``Provider[Any]``, so mypy accepted any name on an instance (``app.helth``,
        # ``MyContainer().rpo``) and any use of its value. A non-method ``__getattr__``
        # hides that fallback from mypy: an unknown name is an ``attr-defined`` error,
        # on this class and on every application subclass. (Run time is unchanged.)
        __getattr__: None  # type: ignore[assignment, misc]

    # ``nested`` is ``providers.Container`` typed as the container class, so mypy checks
    # ``app.postgres.store`` and its value (see :mod:`containers.typed`).
    core = nested(CoreContainer)
    observability = nested(ObservabilityContainer, settings=core.settings)
    postgres = _backend(PostgresContainer, observability, settings=core.settings)
    redis = _backend(RedisContainer, observability, settings=core.settings)
    graph = _backend(
        GraphContainer, observability, settings=core.settings, three_tier=redis.three_tier
    )
    vector = _backend(
        VectorContainer, observability, settings=core.settings, relational=postgres.store
    )
    llm = _backend(
        LLMContainer,
        observability,
        settings=core.settings,
        redis_client=redis.client,
        three_tier=redis.three_tier,
    )
    health: providers.Resource[HealthRegistry] = providers.Resource(
        register_health_checks,
        observability.health,
        postgres.store,
        redis.cache,
        # The graph store is built (and checked) only when the application has a graph.
        graph=providers.Selector(
            providers.Callable(_graph_check, core.settings),
            on=graph.store,
            off=providers.Object(None),
        ),
        vector=vector.store,
        settings=core.settings,
        llm=llm.adapter,
    )

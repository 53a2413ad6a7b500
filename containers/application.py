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
  ``resilience_observer`` (breaker state, retries, bulkhead gauges), so resilience
  decisions reach the same metrics as the calls they guard.
* ``health`` registers each backend's own latency-aware ``health_check`` with the
  observability container's registry; ``/health`` and ``/ready`` read it.

Importing this module imports no driver or telemetry SDK: each is imported when the
resource that needs it first starts (see :mod:`containers.core`).

For tests, :mod:`containers.testing` overrides every backend with its verified fake and
every policy with an instant one, in one call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from containers.core import CoreContainer
from containers.llm import LLMContainer
from containers.observability import ObservabilityContainer
from containers.postgres import PostgresContainer
from containers.redis import RedisContainer

if TYPE_CHECKING:
    from infra.observability import HealthRegistry
    from infra.ports import CacheStore, HealthCheckable, RelationalStore

__all__ = ["ApplicationContainer", "register_health_checks"]

_log = logging.getLogger("containers.application")


async def register_health_checks(
    registry: HealthRegistry,
    postgres: RelationalStore,
    redis: CacheStore,
    llm: HealthCheckable | None = None,
) -> AsyncIterator[HealthRegistry]:
    """The registry with each backend's check; PostgreSQL and Redis are critical, the LLM
    adapter is not (an application without a chat provider still serves)."""
    registry.register("postgres", postgres, critical=True)
    registry.register("redis", redis, critical=True)
    if llm is not None:
        registry.register("llm", llm, critical=False)
    yield registry


class ApplicationContainer(containers.DeclarativeContainer):
    """Everything an application needs, built lazily; see the module docstring."""

    core = providers.Container(CoreContainer)
    observability = providers.Container(ObservabilityContainer, settings=core.settings)
    postgres = providers.Container(
        PostgresContainer,
        settings=core.settings,
        resilience_hooks=providers.List(observability.resilience_observer),
    )
    redis = providers.Container(
        RedisContainer,
        settings=core.settings,
        resilience_hooks=providers.List(observability.resilience_observer),
    )
    llm = providers.Container(
        LLMContainer,
        settings=core.settings,
        redis_client=redis.client,
        three_tier=redis.three_tier,
        resilience_hooks=providers.List(observability.resilience_observer),
    )
    health = providers.Resource(
        register_health_checks, observability.health, postgres.store, redis.cache, llm.adapter
    )

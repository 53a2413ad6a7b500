"""The PostgreSQL container: the store as a lazy resource, its policy as its own provider.

::

    postgres = PostgresContainer(settings=core.settings)
    store = await postgres.store()          # builds the store; no connection yet
    await store.fetchval("select 1")        # the first call opens the pool
    await postgres.shutdown_resources()     # closes the pool

Follows :mod:`containers.core`'s pattern (asyncpg and the store are imported when the
resource first starts). Decisions:

* **The resource is the store, and the pool opens on first use.** The ``store``
  resource builds an :class:`~infra.storage.EnhancedPostgresStore` from ``settings.db``
  without connecting; its first query (or ``await store.initialize()``) creates the
  asyncpg pool, inside the policy -- so an application starts while the database is
  down, reports it through the health check, and connects once it is back, retried and
  counted by the breaker. An application that prefers to fail fast at startup awaits
  ``store.initialize()`` after ``start()``. Shutdown closes the pool (bounded: borrowed
  connections are terminated after 10 s).
* **The policy is a provider of its own** (``ResiliencePolicy.from_settings`` with
  ``component="postgres"`` and ``QueryTimeoutError`` for its timeouts), so a deployment
  or a test swaps it alone, before the store is first built::

      postgres.policy.override(providers.Object(ResiliencePolicy.instant("postgres")))

  ``resilience_hooks`` (empty by default) feeds the policy's observers; the application
  container overrides it with the observability container's ``resilience_observer``.
* **Telemetry is injected**: ``collector`` (``None`` by default: the store then records
  into ``get_metrics_collector()``) is the metrics collector the store records every call
  and its pool gauges into; the application container passes its observability
  container's ``metrics``, so two applications in one process never share series.
* **Health**: the store's ``health_check`` is the check; the application container
  registers it with the observability container's ``HealthRegistry``
  (``registry.register("postgres", store)``), so this container needs no registry.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from config import Settings
from containers.core import resilience_policy
from infra.exceptions import QueryTimeoutError

if TYPE_CHECKING:
    from infra.observability import MetricsCollector
    from infra.observability.tracing import TracingState
    from infra.resilience import ResiliencePolicy
    from infra.storage import EnhancedPostgresStore

__all__ = ["PostgresContainer", "postgres_store"]

_log = logging.getLogger("containers.postgres")


async def postgres_store(
    settings: Settings,
    policy: ResiliencePolicy,
    collector: MetricsCollector | None = None,
    tracing: TracingState | None = None,
) -> AsyncIterator[EnhancedPostgresStore]:
    """The store ``settings.db`` describes, under ``policy``, recording into
    ``collector``; its pool closed on exit."""
    from infra.storage import EnhancedPostgresStore  # noqa: PLC0415 - loaded on first start

    store = EnhancedPostgresStore.from_settings(
        settings, policy=policy, collector=collector, tracing=tracing
    )
    try:
        yield store
    finally:
        try:
            await store.close()
        # Shutdown logs a failing cleanup and carries on with the other resources.
        except Exception:  # noqa: BLE001
            _log.warning("closing the PostgreSQL store failed", exc_info=True)


class PostgresContainer(containers.DeclarativeContainer):
    """PostgreSQL for the application; see the module docstring."""

    settings: providers.Dependency[Settings] = providers.Dependency(instance_of=Settings)
    resilience_hooks = providers.List()
    #: The metrics collector the store records into (``None``: the current one).
    collector: providers.Provider[MetricsCollector | None] = providers.Object(None)
    #: The tracing state the adapters' spans start from (``None``: the current one).
    tracing: providers.Provider[TracingState | None] = providers.Object(None)
    policy: providers.Singleton[ResiliencePolicy] = providers.Singleton(
        resilience_policy,
        settings,
        component="postgres",
        timeout_error=QueryTimeoutError,
        hooks=resilience_hooks,
        pool_size=settings.provided.db.max_pool_size,
    )
    store: providers.Resource[EnhancedPostgresStore] = providers.Resource(
        postgres_store, settings, policy, collector, tracing
    )

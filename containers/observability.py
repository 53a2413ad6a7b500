"""The observability container: metrics collector, logging, tracing, health, cost, hooks.

Everything here is a provider of the container, never a module-level global
(CONVENTIONS #5). The one accessor SPEC asks for, ``get_metrics_collector()``, returns the
collector this container built: the ``metrics`` resource installs it with
``set_metrics_collector`` when it starts and removes it on shutdown.

Start order matters only in one way: ``metrics`` must start before the first backend call
so adapters record into the container's collector, not a default one.
``ApplicationContainer.init_resources()`` starts every resource, this one included; a
first use of ``metrics`` starts it lazily too.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from dependency_injector import containers, providers
from opentelemetry.sdk.trace import TracerProvider

from config import Settings
from infra.observability import (
    CostTracker,
    HealthRegistry,
    MetricsCollector,
    MetricsResilienceObserver,
    configure_logging_from_settings,
    flush_log_sampling,
    reset_metrics_collector,
    set_metrics_collector,
    setup_tracing_from_settings,
    shutdown_tracing,
)

__all__ = ["ObservabilityContainer"]

_log = logging.getLogger("containers.observability")


async def metrics_collector() -> AsyncIterator[MetricsCollector]:
    """The application's collector, installed as the one ``get_metrics_collector()``."""
    collector = MetricsCollector()
    set_metrics_collector(collector)
    try:
        yield collector
    finally:
        reset_metrics_collector()


async def structured_logging(settings: Settings) -> AsyncIterator[logging.Handler]:
    """JSON (or console) logging per ``settings.observability``; handler removed on exit."""
    handler = configure_logging_from_settings(settings)
    try:
        yield handler
    finally:
        flush_log_sampling()  # "suppressed N similar" lines still pending, before it goes
        logging.getLogger().removeHandler(handler)


async def tracer_provider(settings: Settings, set_global: bool) -> AsyncIterator[TracerProvider]:
    """The OpenTelemetry provider per ``settings.observability``; flushed on exit."""
    provider = setup_tracing_from_settings(settings, set_global=set_global)
    try:
        yield provider
    finally:
        shutdown_tracing()


class ObservabilityContainer(containers.DeclarativeContainer):
    """Telemetry for the whole application.

    ``tracing_global`` (default ``True``) installs the provider as OpenTelemetry's global
    one, so other instrumentation joins the same traces; OpenTelemetry allows that once
    per process, so test suites building many containers set it ``False``.
    """

    settings = providers.Dependency(instance_of=Settings)
    tracing_global = providers.Object(True)

    metrics = providers.Resource(metrics_collector)
    logging = providers.Resource(structured_logging, settings)
    tracing = providers.Resource(tracer_provider, settings, tracing_global)

    health = providers.Singleton(HealthRegistry.from_settings, settings, collector=metrics)
    cost = providers.Singleton(CostTracker.from_settings, settings, metrics)
    resilience_observer = providers.Singleton(MetricsResilienceObserver, metrics)

"""The observability container: metrics collector, logging, tracing, health, cost, hooks.

Everything here is a provider of the container, never a module-level global, and flows
into the rest of the application as constructor arguments: the application container
passes ``metrics`` to every backend container (adapters, pool gauges, the 3-tier cache)
and ``resilience_observer`` (built on ``metrics``) to every policy, so each application
records into its own collector; likewise ``tracing_state`` (this container's own tracer
provider, as call sites use it) goes to every backend container, so each application's
spans reach its own exporter, whichever application started last. Two applications in
one process are independent: stopping one leaves the other recording.

The one accessor for code that is not wired, ``get_metrics_collector()``, returns the
*active* application's collector: the ``metrics`` resource activates its collector when
it starts (:func:`~infra.observability.activate_metrics_collector`) and deactivates it on
shutdown; with several applications running, the most recently started one is active,
in whatever order they stop.

Tracing: each container builds its own provider and shuts exactly that one down;
``tracing_global`` asks for OpenTelemetry's global provider, which is set only if no SDK
provider is installed yet (OpenTelemetry allows it once per process), so a second
application logs no "Overriding of current TracerProvider" warning. Logging is
process-wide by nature (one root logger): each container installs its handler and
removes it on shutdown.

Start order matters only in one way: ``metrics`` must start before the first backend call
so adapters record into the container's collector, not a default one.
``containers.lifecycle.start(app)`` starts every resource, this one included; a first use
of ``metrics`` starts it lazily too.

As in every container (see :mod:`containers.core`), ``infra.observability`` -- with
prometheus-client, structlog and the OpenTelemetry SDK -- is imported when a resource
first starts, not when this module is imported.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from config import Settings

if TYPE_CHECKING:
    from logging import Handler

    from opentelemetry.sdk.trace import TracerProvider

    from infra.observability import (
        CostTracker,
        HealthRegistry,
        MetricsCollector,
        MetricsResilienceObserver,
        TracingState,
    )

__all__ = ["ObservabilityContainer"]

_log = logging.getLogger("containers.observability")


async def metrics_collector() -> AsyncIterator[MetricsCollector]:
    """The application's own collector, passed to everything the application container
    wires, and active for ``get_metrics_collector()`` while this resource runs."""
    from infra.observability import (  # noqa: PLC0415 - loaded on first start
        MetricsCollector,
        activate_metrics_collector,
    )

    collector = MetricsCollector()
    deactivate = activate_metrics_collector(collector)
    try:
        yield collector
    finally:
        deactivate()


@dataclass(eq=False, slots=True)
class _Logging:
    """One running application's logging: its settings and the handler installed for it."""

    settings: Settings
    handler: logging.Handler


# The running applications' logging, oldest first. Logging is process-wide (one root
# logger): the newest application's configuration is the one in effect, and when it
# stops, the previous still-running application's configuration is installed again.
_running_logging: list[_Logging] = []


async def structured_logging(settings: Settings) -> AsyncIterator[logging.Handler]:
    """JSON (or console) logging per ``settings.observability``; on exit its handler is
    removed and, if another application is still running, that one's logging returns."""
    from infra.observability import (  # noqa: PLC0415 - loaded on first start
        configure_logging_from_settings,
        flush_log_sampling,
    )

    entry = _Logging(settings, configure_logging_from_settings(settings))
    _running_logging.append(entry)
    try:
        yield entry.handler
    finally:
        flush_log_sampling()  # "suppressed N similar" lines still pending, before it goes
        logging.getLogger().removeHandler(entry.handler)
        newest = _running_logging[-1] is entry
        _running_logging.remove(entry)
        if newest and _running_logging:
            previous = _running_logging[-1]
            previous.handler = configure_logging_from_settings(previous.settings)


async def tracer_provider(settings: Settings, set_global: bool) -> AsyncIterator[TracerProvider]:
    """The OpenTelemetry provider per ``settings.observability``; flushed on exit."""
    from infra.observability import (  # noqa: PLC0415 - loaded on first start
        setup_tracing_from_settings,
        shutdown_tracing,
    )

    provider = setup_tracing_from_settings(settings, set_global=set_global)
    try:
        yield provider
    finally:
        shutdown_tracing(provider)


def _tracing_state(provider: TracerProvider) -> TracingState | None:
    from infra.observability import tracing_state_of  # noqa: PLC0415 - loaded on first start

    return tracing_state_of(provider)


def _health_registry(settings: Settings, collector: MetricsCollector) -> HealthRegistry:
    from infra.observability import HealthRegistry  # noqa: PLC0415 - loaded on first start

    return HealthRegistry.from_settings(settings, collector=collector)


def _cost_tracker(settings: Settings, collector: MetricsCollector) -> CostTracker:
    from infra.observability import CostTracker  # noqa: PLC0415 - loaded on first start

    return CostTracker.from_settings(settings, collector)


def _resilience_observer(collector: MetricsCollector) -> MetricsResilienceObserver:
    from infra.observability import MetricsResilienceObserver  # noqa: PLC0415

    return MetricsResilienceObserver(collector)


class ObservabilityContainer(containers.DeclarativeContainer):
    """Telemetry for the whole application.

    ``tracing_global`` (default ``True``) installs the provider as OpenTelemetry's global
    one, so other instrumentation joins the same traces; OpenTelemetry allows that once
    per process, so test suites building many containers set it ``False``.
    """

    settings: providers.Dependency[Settings] = providers.Dependency(instance_of=Settings)
    tracing_global: providers.Object[bool] = providers.Object(True)

    metrics: providers.Resource[MetricsCollector] = providers.Resource(metrics_collector)
    logging: providers.Resource[Handler] = providers.Resource(structured_logging, settings)
    tracing: providers.Resource[TracerProvider] = providers.Resource(
        tracer_provider, settings, tracing_global
    )
    #: What the adapters' spans start from: this container's own provider (``None`` when
    #: it exports nowhere: call sites then fall back to ``current_tracing()``).
    tracing_state: providers.Callable[TracingState | None] = providers.Callable(
        _tracing_state, tracing
    )

    health: providers.Singleton[HealthRegistry] = providers.Singleton(
        _health_registry, settings, collector=metrics
    )
    cost: providers.Singleton[CostTracker] = providers.Singleton(_cost_tracker, settings, metrics)
    resilience_observer: providers.Singleton[MetricsResilienceObserver] = providers.Singleton(
        _resilience_observer, metrics
    )

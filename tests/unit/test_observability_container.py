"""Observability container: installs its collector, lifecycles logging and tracing."""

from __future__ import annotations

import logging

from dependency_injector import providers

from config import Settings
from containers.observability import ObservabilityContainer
from infra.observability import (
    HealthRegistry,
    MetricsCollector,
    MetricsResilienceObserver,
    get_metrics_collector,
)


def make() -> ObservabilityContainer:
    return ObservabilityContainer(
        settings=providers.Object(Settings(log_format="console")),
        tracing_global=providers.Object(False),
    )


async def test_metrics_resource_is_the_collector_get_metrics_collector_returns() -> None:
    """After start, the design's accessor returns the container's collector; after stop, not."""
    container = make()
    container.check_dependencies()
    await container.init_resources()
    try:
        collector = await container.metrics()
        assert isinstance(collector, MetricsCollector)
        assert get_metrics_collector() is collector
        assert isinstance(await container.health(), HealthRegistry)
        assert isinstance(await container.resilience_observer(), MetricsResilienceObserver)
    finally:
        await container.shutdown_resources()
    assert get_metrics_collector() is not collector


async def test_logging_handler_is_installed_and_removed() -> None:
    """The logging resource adds one root handler and removes it on shutdown."""
    container = make()
    handler = await container.logging()
    assert handler in logging.getLogger().handlers
    await container.shutdown_resources()
    assert handler not in logging.getLogger().handlers


def test_construction_starts_nothing() -> None:
    """Building the container neither configures logging nor installs a collector."""
    before = list(logging.getLogger().handlers)
    collector = get_metrics_collector()
    make()
    assert logging.getLogger().handlers == before
    assert get_metrics_collector() is collector

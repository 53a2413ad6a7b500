"""Observability container: installs its collector, lifecycles logging and tracing."""

from __future__ import annotations

import logging

from dependency_injector import providers

from config import Settings
from containers.lifecycle import resolve
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
    started = container.init_resources()
    assert started is not None  # async resources: an awaitable
    await started
    try:
        collector = await resolve(container.metrics)
        assert isinstance(collector, MetricsCollector)
        assert get_metrics_collector() is collector
        registry = await resolve(container.health)
        assert isinstance(registry, HealthRegistry)
        observer = await resolve(container.resilience_observer)
        assert isinstance(observer, MetricsResilienceObserver)
    finally:
        stopping = container.shutdown_resources()
        assert stopping is not None  # async resources: an awaitable
        await stopping
    assert get_metrics_collector() is not collector


async def test_logging_handler_is_installed_and_removed() -> None:
    """The logging resource adds one root handler and removes it on shutdown."""
    container = make()
    handler = await resolve(container.logging)
    assert handler in logging.getLogger().handlers
    stopping = container.shutdown_resources()
    assert stopping is not None  # async resources: an awaitable
    await stopping
    assert handler not in logging.getLogger().handlers


def test_construction_starts_nothing() -> None:
    """Building the container neither configures logging nor installs a collector."""
    before = list(logging.getLogger().handlers)
    collector = get_metrics_collector()
    make()
    assert logging.getLogger().handlers == before
    assert get_metrics_collector() is collector

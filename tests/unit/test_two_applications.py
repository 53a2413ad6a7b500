"""Two application containers in one process are independent: telemetry is injected.

Each application's adapters, policies and 3-tier cache record into the collector its own
observability container built -- passed in, not looked up in a global -- so two
applications never share a series, and stopping one leaves the other recording.
``get_metrics_collector()`` returns the active application's collector (the most recently
started one still running). Tracing: one provider per application; the global
OpenTelemetry provider is set once, without the SDK's "Overriding" warning.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest
import structlog
from dependency_injector import providers

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import start, stop
from containers.testing import use_fakes
from infra.exceptions import CacheConnectionError
from infra.observability import MetricsCollector, get_metrics_collector

#: Real adapters, nothing listening: every call fails at once, and is recorded.
UNREACHABLE = Settings(
    log_level="WARNING",
    redis_url="redis://127.0.0.1:9/0",
    retry_enabled=False,
    circuit_breaker_enabled=False,
)


def make_app(settings: Settings) -> ApplicationContainer:
    """An application container on ``settings``."""
    app = ApplicationContainer()
    app.core.settings.override(providers.Object(settings))
    app.observability.tracing_global.override(providers.Object(False))
    return app


def collector_of(app: ApplicationContainer) -> MetricsCollector:
    """The started application's own collector."""
    value = app.observability.metrics()
    assert isinstance(value, MetricsCollector)
    return value


def redis_calls(collector: MetricsCollector, outcome: str) -> float:
    """``backend_calls_total`` of the Redis cache with ``outcome``."""
    return collector.get_counter("backend_calls_total", component="redis", outcome=outcome)


@pytest.fixture
async def two_apps() -> AsyncIterator[tuple[ApplicationContainer, ApplicationContainer]]:
    """Two started applications on fakes; both stopped at the end."""
    first, second = make_app(Settings(log_level="WARNING")), make_app(Settings(log_level="WARNING"))
    with use_fakes(first), use_fakes(second):
        await start(first)
        await start(second)
        try:
            yield first, second
        finally:
            await stop(second)
            await stop(first)


async def test_each_application_records_into_its_own_collector(
    two_apps: tuple[ApplicationContainer, ApplicationContainer],
) -> None:
    """Calls of one application appear in its collector only."""
    first, second = two_apps
    await first.redis.cache().set("k", 1)
    await first.redis.cache().get("k")
    await second.redis.cache().get("k")
    assert redis_calls(collector_of(first), "ok") == 2
    assert redis_calls(collector_of(second), "ok") == 1
    assert collector_of(first) is not collector_of(second)


async def test_stopping_one_application_leaves_the_other_recording(
    two_apps: tuple[ApplicationContainer, ApplicationContainer],
) -> None:
    """The first application stops; the second keeps recording into its collector, and
    ``get_metrics_collector()`` is the second's throughout."""
    first, second = two_apps
    assert get_metrics_collector() is collector_of(second)
    await stop(first)
    assert get_metrics_collector() is collector_of(second)
    await second.redis.cache().set("k", 1)
    await second.postgres.store().fetchval("select 1")
    assert redis_calls(collector_of(second), "ok") == 1
    assert collector_of(second).get_counter("backend_calls_total", component="postgres") == 1


async def test_the_active_collector_follows_the_applications_in_any_stop_order() -> None:
    """Started A then B: B is active; B stops: A is active again; A stops: the default."""
    default = get_metrics_collector()
    first, second = make_app(Settings(log_level="WARNING")), make_app(Settings(log_level="WARNING"))
    with use_fakes(first), use_fakes(second):
        await start(first)
        assert get_metrics_collector() is collector_of(first)
        await start(second)
        assert get_metrics_collector() is collector_of(second)
        await stop(second)
        assert get_metrics_collector() is collector_of(first)
        await stop(first)
    assert get_metrics_collector() is default


async def test_real_adapters_record_into_their_applications_collector() -> None:
    """The real Redis cache (nothing listening) records its failed call in its own
    application's collector, not the other's nor the default one."""
    first, second = make_app(UNREACHABLE), make_app(UNREACHABLE)
    default = get_metrics_collector()
    before = redis_calls(default, "error")
    await start(first)
    await start(second)
    try:
        with pytest.raises(CacheConnectionError):
            await first.redis.cache().get("k")
        assert redis_calls(collector_of(first), "error") == 1
        assert redis_calls(collector_of(second), "error") == 0
        await stop(second)
        with pytest.raises(CacheConnectionError):
            await first.redis.cache().get("k")
        assert redis_calls(collector_of(first), "error") == 2
        assert redis_calls(default, "error") == before
    finally:
        await stop(second)
        await stop(first)


def test_two_applications_tracing_globally_log_no_override_warning() -> None:
    """In a fresh process (the global provider can be set once): two providers asking to
    be global log nothing about overriding; stopping the first leaves the second's
    tracer in use, and stopping both turns tracing off."""
    script = textwrap.dedent(
        """
        import logging, sys
        from opentelemetry import trace
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        from infra.observability.tracing import current_tracing, setup_tracing, shutdown_tracing

        logging.basicConfig(stream=sys.stdout, level=logging.WARNING)
        first = setup_tracing(exporter=InMemorySpanExporter(), set_global=True)
        second = setup_tracing(exporter=InMemorySpanExporter(), set_global=True)
        assert trace.get_tracer_provider() is first
        shutdown_tracing(first)
        assert current_tracing().tracer is not None
        span = current_tracing().tracer.start_span("x")
        assert span.is_recording()
        span.end()
        shutdown_tracing(second)
        assert current_tracing().tracer is None
        print("done")
        """
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Overriding" not in result.stdout + result.stderr
    assert result.stdout.strip().endswith("done")


def structured_handlers() -> list[logging.Handler]:
    """Root handlers rendering through our structlog formatter."""
    return [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter)
    ]


async def test_stopping_the_newest_application_brings_back_the_others_logging() -> None:
    """Logging is process-wide: the newest application's is in effect; when it stops,
    the application still running logs again (it used to be left with no handler)."""
    first, second = make_app(Settings(log_level="WARNING")), make_app(Settings(log_level="ERROR"))
    with use_fakes(first), use_fakes(second):
        await start(first)
        await start(second)
        assert logging.getLogger().level == logging.ERROR
        await stop(second)
        assert len(structured_handlers()) == 1
        assert logging.getLogger().level == logging.WARNING
        await stop(first)
    assert structured_handlers() == []

"""Two application containers in one process are independent: telemetry is injected.

Each application's adapters, policies and 3-tier cache record into the collector its own
observability container built -- passed in, not looked up in a global -- so two
applications never share a series, and stopping one leaves the other recording.
``get_metrics_collector()`` returns the active application's collector (the most recently
started one still running). Tracing: one provider per application; the global
OpenTelemetry provider is set once, without the SDK's "Overriding" warning, and each
application's adapters trace into its own provider (passed in like the collector), not
into whichever application started last.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import types
from collections.abc import AsyncIterator

import pytest
import structlog
from dependency_injector import containers, providers
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from config import Settings
from containers.application import ApplicationContainer
from containers.integrations.serving import serving
from containers.lifecycle import resolve, start, stop
from containers.testing import use_fakes
from infra.exceptions import CacheConnectionError, StartupError
from infra.observability import (
    MetricsCollector,
    get_metrics_collector,
    setup_tracing,
    shutdown_tracing,
)

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


async def exporting_tracing(exporter: InMemorySpanExporter) -> AsyncIterator[TracerProvider]:
    """An application's tracing resource exporting into ``exporter`` (not global)."""
    provider = setup_tracing(exporter=exporter)
    try:
        yield provider
    finally:
        shutdown_tracing(provider)


def traced_app(exporter: InMemorySpanExporter) -> ApplicationContainer:
    """An application (on default settings) whose spans go to ``exporter``."""
    app = make_app(Settings(log_level="WARNING"))
    app.observability.tracing.override(providers.Resource(exporting_tracing, exporter))
    return app


def span_names(exporter: InMemorySpanExporter) -> list[str]:
    """Names of the spans ``exporter`` received, in order."""
    return [span.name for span in exporter.get_finished_spans()]


async def call(app: ApplicationContainer, backend: str) -> None:
    """One adapter call of ``app`` (under fakes: the real call path) on ``backend``."""
    if backend == "redis":
        await app.redis.cache().get("k")
    else:
        await app.postgres.store().fetchval("select 1")


@pytest.mark.parametrize("stopped_first", [0, 1])
async def test_each_application_traces_into_its_own_exporter(
    stopped_first: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Both running: each application's calls reach its own exporter only (the first's
    used to reach the second's, the newest provider); after either stops, the other's
    calls still reach its own exporter; no "Overriding" warning."""
    exporters = (InMemorySpanExporter(), InMemorySpanExporter())
    apps = (traced_app(exporters[0]), traced_app(exporters[1]))
    with caplog.at_level(logging.WARNING), use_fakes(apps[0]), use_fakes(apps[1]):
        await start(apps[0])
        await start(apps[1])
        try:
            await call(apps[0], "redis")
            await call(apps[0], "postgres")
            await call(apps[1], "redis")
            assert len(exporters[0].get_finished_spans()) == 2
            assert len(exporters[1].get_finished_spans()) == 1
            await stop(apps[stopped_first])
            running = 1 - stopped_first
            before = span_names(exporters[stopped_first])
            await call(apps[running], "postgres")
            assert span_names(exporters[stopped_first]) == before
            assert len(exporters[running].get_finished_spans()) == 3 - running
        finally:
            await stop(apps[1])
            await stop(apps[0])
    assert "Overriding" not in caplog.text


@hypothesis_settings(max_examples=15)
@given(
    calls=st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from(["redis", "postgres"])), max_size=8
    ),
    stop_at=st.integers(0, 8),
    stopped=st.integers(0, 1),
)
def test_any_call_sequence_traces_into_the_callers_exporter(
    calls: list[tuple[int, str]], stop_at: int, stopped: int
) -> None:
    """For any interleaving of two applications' calls, with one of them stopped at any
    point (its later calls dropped), each exporter holds exactly its own application's
    calls, in order."""

    async def scenario() -> None:
        exporters = (InMemorySpanExporter(), InMemorySpanExporter())
        apps = (traced_app(exporters[0]), traced_app(exporters[1]))
        expected: tuple[list[str], list[str]] = ([], [])
        with use_fakes(apps[0]), use_fakes(apps[1]):
            await start(apps[0])
            await start(apps[1])
            try:
                for index, (which, backend) in enumerate(calls):
                    if index == stop_at:
                        await stop(apps[stopped])
                    if index >= stop_at and which == stopped:
                        continue
                    await call(apps[which], backend)
                    expected[which].append(backend)
            finally:
                await stop(apps[1])
                await stop(apps[0])
        for which in (0, 1):
            components = [
                str((span.attributes or {}).get("db.system.name", ""))
                for span in exporters[which].get_finished_spans()
            ]
            assert components == [
                "redis" if backend == "redis" else "postgresql" for backend in expected[which]
            ]

    asyncio.run(scenario())


@pytest.mark.redis
async def test_the_three_tier_caches_l2_records_and_traces_into_its_application(
    redis_url: str,
) -> None:
    """The 3-tier cache's own Redis commands (an L1 miss read from L2) are recorded in
    its application's collector and traced into its application's exporter -- not the
    other application's, nor the process default (they used to go to the current ones)."""
    exporters = (InMemorySpanExporter(), InMemorySpanExporter())
    apps = []
    for exporter in exporters:
        app = make_app(Settings(log_level="WARNING", redis_url=redis_url))
        app.observability.tracing.override(providers.Resource(exporting_tracing, exporter))
        apps.append(app)
    default = get_metrics_collector()
    before = redis_calls(default, "ok")
    await start(apps[0])
    await start(apps[1])
    try:
        cache = apps[0].redis.three_tier()
        assert await cache.get("three-tier:absent") is None  # L1 miss: one L2 GET
        assert redis_calls(collector_of(apps[0]), "ok") >= 1
        assert redis_calls(collector_of(apps[1]), "ok") == 0
        assert redis_calls(default, "ok") == before
        assert span_names(exporters[0])
        assert span_names(exporters[1]) == []
    finally:
        await stop(apps[1])
        await stop(apps[0])


@pytest.mark.redis
async def test_the_shared_llm_rate_limiter_records_into_its_application(redis_url: str) -> None:
    """The shared (Redis) LLM rate limiter's calls are recorded in its application's
    collector, not in the newest application's (the current one, where they used to go)
    nor the process default."""
    app = make_app(
        Settings(
            log_level="WARNING",
            redis_url=redis_url,
            llm_rpm_limit=6000,
            llm_rate_limit_shared=True,
        )
    )
    newest = make_app(Settings(log_level="WARNING"))
    default = get_metrics_collector()

    def limiter_calls(collector: MetricsCollector) -> float:
        return collector.get_counter(
            "backend_calls_total", component="redis_rate_limit", outcome="ok"
        )

    before = limiter_calls(default)
    await start(app)
    await start(newest)
    try:
        limiter = await resolve(app.llm.limiter)
        await limiter.acquire()
        assert limiter_calls(collector_of(app)) >= 1
        assert limiter_calls(collector_of(newest)) == 0
        assert limiter_calls(default) == before
    finally:
        await stop(newest)
        await stop(app)


# ------------------------------------------------------------- one module, one container
# ``@inject`` markers belong to a module: a second container wiring a module a running
# container has would take its handlers (they read the second app's adapters) and, on its
# unwire, leave them with bare ``Provide`` markers. Refused, before the wiring happens
# where we wire (``serving``), at ``start`` otherwise.
def handler_module(name: str) -> types.ModuleType:
    """A module with one ``@inject`` handler, as an application's ``handlers.py``."""
    module = types.ModuleType(name)
    exec(  # noqa: S102 - a fixed source: a module of handlers built per test
        textwrap.dedent(
            """
            from dependency_injector.wiring import Provide, inject

            @inject
            async def handler(value: str = Provide["value"]) -> str:
                return value
            """
        ),
        module.__dict__,
    )
    return module


class Valued(containers.DeclarativeContainer):
    value = providers.Object("first")


async def call_handler(module: types.ModuleType) -> object:
    result: object = await module.handler()
    return result


@pytest.mark.parametrize("how", ["serving", "wire_then_start"])
async def test_a_second_container_cannot_take_a_running_containers_handlers(how: str) -> None:
    """Concrete: app A runs with ``handlers`` wired; app B wiring ``handlers`` too is a
    StartupError naming the module, and A's handler still gets A's value."""
    handlers = handler_module("adopter_handlers")
    first, second = Valued(), Valued()
    second.value.override(providers.Object("second"))
    first.wire(modules=[handlers])

    async def start_second() -> None:
        if how == "serving":
            async with serving(second, wire=[handlers]):
                pass
        else:
            second.wire(modules=[handlers])
            await start(second)

    await start(first)
    try:
        with pytest.raises(StartupError, match="adopter_handlers") as caught:
            await start_second()
        assert caught.value.details["modules"] == ["adopter_handlers"]
        assert "wired to another running container (Valued" in str(caught.value)
        if how == "serving":  # refused before wiring: A keeps its handler
            assert await call_handler(handlers) == "first"
    finally:
        second.unwire()
        await stop(first)
        first.unwire()
    # Stopped, A no longer holds the module: B may have it.
    second.wire(modules=[handlers])
    await start(second)
    assert await call_handler(handlers) == "second"
    await stop(second)
    second.unwire()


@hypothesis_settings(max_examples=30, deadline=None)
@given(
    first_wires=st.sets(st.integers(0, 3)),
    second_wires=st.sets(st.integers(0, 3)),
    first_running=st.booleans(),
)
def test_a_start_is_refused_exactly_when_a_running_container_shares_a_module(
    first_wires: set[int], second_wires: set[int], first_running: bool
) -> None:
    """Property: B's start fails iff A is running and they share a wired module; a
    refused start names exactly the shared modules."""
    modules = [handler_module(f"adopter_mod_{i}") for i in range(4)]
    first, second = Valued(), Valued()

    async def scenario() -> None:
        first.wire(modules=[modules[i] for i in sorted(first_wires)])
        if first_running:
            await start(first)
        second.wire(modules=[modules[i] for i in sorted(second_wires)])
        shared = sorted(f"adopter_mod_{i}" for i in first_wires & second_wires)
        try:
            if first_running and shared:
                with pytest.raises(StartupError) as caught:
                    await start(second)
                assert caught.value.details["modules"] == shared
            else:
                await start(second)
        finally:
            await stop(second)
            await stop(first)
            second.unwire()
            first.unwire()

    asyncio.run(scenario())


def test_a_container_whose_loop_closed_does_not_hold_its_modules() -> None:
    """Started in one ``asyncio.run`` and never stopped, a container serves nothing once
    that loop closed: another container may wire and start with its modules."""
    handlers = handler_module("adopter_abandoned")
    first, second = Valued(), Valued()
    second.value.override(providers.Object("second"))
    first.wire(modules=[handlers])
    asyncio.run(start(first))  # the loop closes without stop()
    second.wire(modules=[handlers])

    async def use_second() -> object:
        await start(second)
        try:
            return await call_handler(handlers)
        finally:
            await stop(second)

    assert asyncio.run(use_second()) == "second"
    asyncio.run(stop(first))
    first.unwire()
    second.unwire()

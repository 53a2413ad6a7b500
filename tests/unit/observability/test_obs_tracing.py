"""Tracing setup: resource, sampling, exporters, the tracing slot."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from config import Settings
from infra.exceptions import ConfigurationError
from infra.observability import (
    reset_tracing,
    setup_tracing_from_settings,
    shutdown_tracing,
    use_tracer_provider,
    use_tracing_state,
)
from infra.observability.tracing import TracingState, current_tracing


def test_tracing_is_off_until_set_up() -> None:
    """With no provider installed anywhere, no tracer is handed out."""
    reset_tracing()
    assert current_tracing().tracer is None


def test_setup_builds_resource_and_exports_spans(
    tracing_factory: Callable[..., TracerProvider],
) -> None:
    """Spans carry service.name and deployment.environment.name and reach the exporter."""
    exporter = InMemorySpanExporter()
    tracing_factory(service_name="orders", environment="staging", exporter=exporter)
    state = current_tracing()
    assert state.root_sample_ratio == 1.0
    assert state.tracer is not None
    with state.tracer.start_as_current_span("op"):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.resource.attributes["service.name"] == "orders"
    assert span.resource.attributes["deployment.environment.name"] == "staging"


def test_ratio_zero_samples_no_root_span(tracing_factory: Callable[..., TracerProvider]) -> None:
    """sample_ratio=0 drops every root span."""
    exporter = InMemorySpanExporter()
    tracing_factory(sample_ratio=0.0, exporter=exporter)
    tracer = current_tracing().tracer
    assert tracer is not None
    with tracer.start_as_current_span("op") as span:
        assert not span.is_recording()
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_sample_ratio_outside_unit_interval_is_rejected(
    tracing_factory: Callable[..., TracerProvider], ratio: float
) -> None:
    """The ratio must be within [0, 1]."""
    with pytest.raises(ValueError, match="sample_ratio"):
        tracing_factory(sample_ratio=ratio)


def test_empty_service_name_is_rejected(tracing_factory: Callable[..., TracerProvider]) -> None:
    """Traces need a service name."""
    with pytest.raises(ValueError, match="service_name"):
        tracing_factory(service_name="")


def test_otlp_endpoint_without_exporter_package_is_a_configuration_error(
    tracing_factory: Callable[..., TracerProvider],
) -> None:
    """Configuring OTLP without its package names the package to install."""
    try:
        import opentelemetry.exporter.otlp.proto.http  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.fail("this test expects the OTLP exporter package to be absent")
    with pytest.raises(ConfigurationError, match="opentelemetry-exporter-otlp-proto-http"):
        tracing_factory(otlp_endpoint="http://collector:4318/v1/traces")


def test_setup_from_settings_reads_the_observability_group(
    tracing_factory: Callable[..., TracerProvider],
) -> None:
    """Service name, environment and ratio come from settings.observability."""
    settings = Settings(service_name="search", environment="prod", trace_sample_ratio=0.25)
    exporter = InMemorySpanExporter()
    provider = setup_tracing_from_settings(settings, exporter=exporter, set_global=False)
    assert provider.resource.attributes["service.name"] == "search"
    assert current_tracing().root_sample_ratio == 0.25


def test_use_tracer_provider_and_shutdown(tracing_factory: Callable[..., TracerProvider]) -> None:
    """An external provider can be installed; shutdown turns tracing off."""
    provider = TracerProvider()
    use_tracer_provider(provider)
    state = current_tracing()
    assert state.tracer is not None
    assert state.root_sample_ratio is None  # unknown sampler: the SDK decides
    with pytest.raises(ValueError, match="sample_ratio"):
        use_tracer_provider(provider, root_sample_ratio=2.0)
    shutdown_tracing()
    assert current_tracing().tracer is None
    provider.shutdown()


def test_use_tracing_state_swaps_and_restores(
    tracing_factory: Callable[..., TracerProvider],
) -> None:
    """A captured state can be put back after a phase without tracing; spans follow it."""
    exporter = InMemorySpanExporter()
    tracing_factory(exporter=exporter)
    captured = current_tracing()
    assert use_tracing_state(TracingState(None, None)) is captured
    assert current_tracing().tracer is None  # off: the helper makes no spans
    assert use_tracing_state(captured).tracer is None
    assert current_tracing() is captured
    tracer = current_tracing().tracer
    assert tracer is not None
    with tracer.start_as_current_span("after"):
        pass
    assert [span.name for span in exporter.get_finished_spans()] == ["after"]
    with pytest.raises(TypeError, match="state must be a TracingState"):
        use_tracing_state(None)  # type: ignore[arg-type]


def test_without_an_exporter_tracing_stays_off(
    tracing_factory: Callable[..., TracerProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No exporter, endpoint or console: no tracer for our calls, nothing installed
    globally (even when asked), so no span object is ever made for a call."""
    installed: list[object] = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)
    provider = tracing_factory(sample_ratio=1.0, set_global=True)
    assert isinstance(provider, TracerProvider)
    assert current_tracing().tracer is None
    assert installed == []


def test_an_exporter_turns_tracing_on_and_replaces_the_off_state(
    tracing_factory: Callable[..., TracerProvider],
) -> None:
    """Off, then with the console exporter: our calls get a tracer with the known ratio.
    A later setup without an exporter (another application's) leaves it on; shutting
    that provider down turns tracing off."""
    tracing_factory()
    assert current_tracing().tracer is None
    exporting = tracing_factory(console=True, sample_ratio=0.5)
    state = current_tracing()
    assert state.tracer is not None
    assert state.root_sample_ratio == 0.5
    tracing_factory()
    assert current_tracing() == state
    shutdown_tracing(exporting)
    assert current_tracing().tracer is None


def test_default_settings_build_no_tracer(tracing_factory: Callable[..., TracerProvider]) -> None:
    """The container's default: ratio 1.0, no OTLP endpoint -> tracing off."""
    settings = Settings()
    assert settings.observability.otlp_endpoint is None
    assert settings.observability.trace_sample_ratio == 1.0
    setup_tracing_from_settings(settings, set_global=False)
    assert current_tracing().tracer is None

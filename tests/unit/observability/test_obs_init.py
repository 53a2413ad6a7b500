"""The curated public API of infra.observability."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import infra.observability as obs


def test_public_api_is_pinned() -> None:
    """__all__ lists exactly the supported names."""
    assert sorted(obs.__all__) == [
        "Budget",
        "CallRecord",
        "CheckOutcome",
        "CostBudget",
        "CostTracker",
        "GaugeSample",
        "HealthRegistry",
        "HealthReport",
        "HistogramStats",
        "LiteLLMPricer",
        "LogSampler",
        "MetricSource",
        "MetricsCollector",
        "MetricsResilienceObserver",
        "PoolMetrics",
        "PoolStats",
        "Pricer",
        "Reservation",
        "TracingState",
        "activate_metrics_collector",
        "asyncpg_pool_stats",
        "configure_log_sampling",
        "configure_logging",
        "configure_logging_from_settings",
        "flush_log_sampling",
        "get_logger",
        "get_metrics_collector",
        "instrumented",
        "log_sampler",
        "record_call",
        "register_pool",
        "reset_metrics_collector",
        "reset_tracing",
        "set_metrics_collector",
        "setup_tracing",
        "setup_tracing_from_settings",
        "shutdown_tracing",
        "tracing_state_of",
        "use_tracer_provider",
        "use_tracing_state",
    ]
    for name in obs.__all__:
        assert getattr(obs, name) is not None


def test_type_hints_resolve_on_public_classes() -> None:
    """Class annotations evaluate at run time (wiring and pydantic read them).

    Functions of ``tracing`` annotate SDK types imported only for type checking, so the
    SDK stays unimported until tracing is set up; classes have no such annotations.
    """
    classes = [getattr(obs, n) for n in obs.__all__ if inspect.isclass(getattr(obs, n))]
    assert len(classes) > 10
    for cls in classes:
        typing.get_type_hints(cls)
        for _, member in inspect.getmembers(cls, inspect.isfunction):
            typing.get_type_hints(member)


def test_import_starts_nothing_and_imports_no_heavy_dependency() -> None:
    """Importing the package loads neither litellm nor the OpenTelemetry SDK."""
    code = (
        "import sys, threading, infra.observability;"
        "print('litellm' in sys.modules, 'opentelemetry.sdk.trace' in sys.modules,"
        " threading.active_count())"
    )
    out = subprocess.run(  # noqa: S603 - fixed interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False", "1"]

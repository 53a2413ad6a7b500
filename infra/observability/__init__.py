"""Observability: structured logs, metrics, traces, LLM cost, pool gauges and health.

One telemetry path: adapters record each backend call with
:func:`record_call`, which writes the span, the latency histograms, the call/error
counters and the failure log in one place; every name comes from
:mod:`~infra.observability.attributes`.

::

    from infra.observability import get_metrics_collector, record_call

    async with record_call("postgres", "fetch", system="postgresql"):
        rows = await pool.fetch("select 1")

    metrics = get_metrics_collector()
    metrics.get_histogram_stats("postgres_query_latency_ms").p99
    metrics.get_gauge("postgres_pool_utilization")
    metrics.get_counter("llm_cost_usd_total")

Importing this package configures nothing and starts nothing: logging
(:func:`configure_logging`), tracing (:func:`setup_tracing`) and exporters are set up
explicitly, normally by the container at startup.
"""

import infra._needs_config  # noqa: F401 - first: names a shadowing config module
from infra.observability.cost import (
    Budget,
    CostBudget,
    CostTracker,
    LiteLLMPricer,
    Pricer,
    Reservation,
)
from infra.observability.health import CheckOutcome, HealthRegistry, HealthReport
from infra.observability.instrument import CallRecord, instrumented, record_call
from infra.observability.log_sampling import (
    LogSampler,
    configure_log_sampling,
    flush_log_sampling,
    log_sampler,
)
from infra.observability.logging import (
    configure_logging,
    configure_logging_from_settings,
    get_logger,
)
from infra.observability.metrics import (
    GaugeSample,
    MetricsCollector,
    MetricSource,
    activate_metrics_collector,
    get_metrics_collector,
    reset_metrics_collector,
    set_metrics_collector,
)
from infra.observability.pools import (
    PoolMetrics,
    PoolStats,
    asyncpg_pool_stats,
    register_pool,
)
from infra.observability.quantiles import HistogramStats
from infra.observability.resilience_telemetry import MetricsResilienceObserver
from infra.observability.tracing import (
    TracingState,
    reset_tracing,
    setup_tracing,
    setup_tracing_from_settings,
    shutdown_tracing,
    tracing_state_of,
    use_tracer_provider,
    use_tracing_state,
)

__all__ = [
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

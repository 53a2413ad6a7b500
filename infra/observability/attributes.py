"""Every telemetry name in one place: span attributes, metric names, label names.

Why one module: a metric or attribute name typed in two places drifts, and then a
dashboard or an alert rule silently matches nothing. Adapters, the alert rules file and the
tests all import from here.

Two families of names live side by side:

* **OpenTelemetry semantic conventions.** Stable names (``db.system.name``,
  ``db.operation.name``, ``server.address``, ``error.type``, the metric
  ``db.client.operation.duration``) are imported from ``opentelemetry-semconv``, which
  ships with the SDK. Names still *in development* (pool metrics
  ``db.client.connection.*``, ``gen_ai.*``) are written here as literals instead of
  importing ``opentelemetry.semconv._incubating``, a private package that moves between
  releases; a unit test checks that each literal still equals the upstream constant.
* **The design's own metric names** (``postgres_pool_size``, ``postgres_query_latency_ms``,
  ``llm_cost_usd_total``, ...) and the few this library adds (``backend_calls_total``,
  breaker and bulkhead gauges). There is no standard cost metric, so ``llm_cost_usd_total``
  is ours.

Prometheus cannot carry dots, so every semantic-convention metric is exported under the
usual OpenTelemetry-to-Prometheus translation (dots to underscores, unit suffix):
``db.client.operation.duration`` (s) becomes ``db_client_operation_duration_seconds``.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv.attributes.db_attributes import (
    DB_COLLECTION_NAME,
    DB_NAMESPACE,
    DB_OPERATION_NAME,
    DB_SYSTEM_NAME,
)
from opentelemetry.semconv.attributes.deployment_attributes import DEPLOYMENT_ENVIRONMENT_NAME
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_MESSAGE,
    EXCEPTION_TYPE,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME
from opentelemetry.semconv.metrics.db_metrics import DB_CLIENT_OPERATION_DURATION

__all__ = [
    "BACKEND_CALLS_TOTAL",
    "BACKEND_ERRORS_TOTAL",
    "BULKHEAD_IN_FLIGHT",
    "BULKHEAD_QUEUED",
    "BULKHEAD_REJECTIONS_TOTAL",
    "CIRCUIT_BREAKER_CALLS_TOTAL",
    "CIRCUIT_BREAKER_STATE",
    "CIRCUIT_BREAKER_TRANSITIONS_TOTAL",
    "DB_CLIENT_CONNECTION_COUNT",
    "DB_CLIENT_CONNECTION_MAX",
    "DB_CLIENT_CONNECTION_PENDING_REQUESTS",
    "DB_CLIENT_CONNECTION_POOL_NAME",
    "DB_CLIENT_CONNECTION_STATE",
    "DB_CLIENT_OPERATION_DURATION",
    "DB_COLLECTION_NAME",
    "DB_NAMESPACE",
    "DB_OPERATION_NAME",
    "DB_SYSTEM_NAME",
    "DEPLOYMENT_ENVIRONMENT_NAME",
    "ERROR_TYPE",
    "EXCEPTION_MESSAGE",
    "EXCEPTION_TYPE",
    "FORBIDDEN_LABEL_NAMES",
    "GEN_AI_CLIENT_OPERATION_DURATION",
    "GEN_AI_CLIENT_TOKEN_USAGE",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_TOKEN_TYPE",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "HEALTH_CHECK_LATENCY_MS",
    "HEALTH_CHECK_STATUS",
    "LLM_BUDGET_REJECTIONS_TOTAL",
    "LLM_COST_SAVED_USD_TOTAL",
    "LLM_COST_USD_TOTAL",
    "LLM_UNPRICED_CALLS_TOTAL",
    "POSTGRES_POOL_ACTIVE",
    "POSTGRES_POOL_SIZE",
    "POSTGRES_POOL_UTILIZATION",
    "POSTGRES_QUERY_LATENCY_MS",
    "PROM_DB_CLIENT_CONNECTION_COUNT",
    "PROM_DB_CLIENT_CONNECTION_MAX",
    "PROM_DB_CLIENT_CONNECTION_PENDING_REQUESTS",
    "PROM_DB_CLIENT_OPERATION_DURATION",
    "PROM_GEN_AI_CLIENT_OPERATION_DURATION",
    "PROM_GEN_AI_CLIENT_TOKEN_USAGE",
    "RATE_LIMITER_WAIT_MS",
    "RETRY_ATTEMPTS_TOTAL",
    "RETRY_GIVE_UPS_TOTAL",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "SERVICE_NAME",
    "latency_metric_for",
    "pool_metric",
    "prometheus_label",
]

# --------------------------------------------------- semantic conventions in development
# Literals on purpose (see module docstring); test_attributes.py pins them to upstream.
DB_CLIENT_CONNECTION_STATE: Final = "db.client.connection.state"
DB_CLIENT_CONNECTION_POOL_NAME: Final = "db.client.connection.pool.name"
DB_CLIENT_CONNECTION_COUNT: Final = "db.client.connection.count"
DB_CLIENT_CONNECTION_MAX: Final = "db.client.connection.max"
DB_CLIENT_CONNECTION_PENDING_REQUESTS: Final = "db.client.connection.pending_requests"

GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"  # noqa: S105 - a name, not a secret
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_CLIENT_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
GEN_AI_CLIENT_TOKEN_USAGE: Final = "gen_ai.client.token.usage"  # noqa: S105 - a name, not a secret

# ------------------------------------------------ Prometheus names of semconv metrics
PROM_DB_CLIENT_OPERATION_DURATION: Final = "db_client_operation_duration_seconds"
PROM_DB_CLIENT_CONNECTION_COUNT: Final = "db_client_connection_count"
PROM_DB_CLIENT_CONNECTION_MAX: Final = "db_client_connection_max"
PROM_DB_CLIENT_CONNECTION_PENDING_REQUESTS: Final = "db_client_connection_pending_requests"
PROM_GEN_AI_CLIENT_OPERATION_DURATION: Final = "gen_ai_client_operation_duration_seconds"
PROM_GEN_AI_CLIENT_TOKEN_USAGE: Final = "gen_ai_client_token_usage"  # noqa: S105 - a name, not a secret

# ------------------------------------------------------------------- the design's metric names
POSTGRES_POOL_SIZE: Final = "postgres_pool_size"
POSTGRES_POOL_ACTIVE: Final = "postgres_pool_active"
POSTGRES_POOL_UTILIZATION: Final = "postgres_pool_utilization"
POSTGRES_QUERY_LATENCY_MS: Final = "postgres_query_latency_ms"
LLM_COST_USD_TOTAL: Final = "llm_cost_usd_total"

# ------------------------------------------------------------ this library's metrics
BACKEND_CALLS_TOTAL: Final = "backend_calls_total"
BACKEND_ERRORS_TOTAL: Final = "backend_errors_total"
LLM_UNPRICED_CALLS_TOTAL: Final = "llm_unpriced_calls_total"
LLM_COST_SAVED_USD_TOTAL: Final = "llm_cost_saved_usd_total"
LLM_BUDGET_REJECTIONS_TOTAL: Final = "llm_budget_rejections_total"
CIRCUIT_BREAKER_STATE: Final = "circuit_breaker_state"
CIRCUIT_BREAKER_TRANSITIONS_TOTAL: Final = "circuit_breaker_transitions_total"
CIRCUIT_BREAKER_CALLS_TOTAL: Final = "circuit_breaker_calls_total"
RETRY_ATTEMPTS_TOTAL: Final = "retry_attempts_total"
RETRY_GIVE_UPS_TOTAL: Final = "retry_give_ups_total"
BULKHEAD_IN_FLIGHT: Final = "bulkhead_in_flight"
BULKHEAD_QUEUED: Final = "bulkhead_queued"
BULKHEAD_REJECTIONS_TOTAL: Final = "bulkhead_rejections_total"
RATE_LIMITER_WAIT_MS: Final = "rate_limiter_wait_ms"
HEALTH_CHECK_STATUS: Final = "health_check_status"
HEALTH_CHECK_LATENCY_MS: Final = "health_check_latency_ms"

#: The millisecond name under which ``get_histogram_stats`` reads a component's calls from
#: the one duration histogram (a view, never exported; see ``metrics.HistogramView``).
#: Only ``postgres`` is named by the design; the others follow the same pattern.
_LATENCY_METRIC_BY_COMPONENT: Final[dict[str, str]] = {
    "postgres": POSTGRES_QUERY_LATENCY_MS,
    "redis": "redis_command_latency_ms",
    "qdrant": "qdrant_request_latency_ms",
    "graph": "graph_query_latency_ms",
    "llm": "llm_request_latency_ms",
    "embedding": "embedding_request_latency_ms",
}

#: Label names that would carry unbounded values (raw keys, statements, user ids).
#: :class:`~infra.observability.metrics.MetricsCollector` refuses to define a metric with
#: any of them; put such values on the span (sampled) or the log line instead.
FORBIDDEN_LABEL_NAMES: Final[frozenset[str]] = frozenset(
    {
        "key",
        "cache_key",
        "sql",
        "query",
        "statement",
        "cypher",
        "prompt",
        "text",
        "user",
        "user_id",
        "email",
        "session",
        "session_id",
        "request_id",
        "trace_id",
        "span_id",
        "url",
        "dsn",
        "vector_id",
        "point_id",
    }
)


def latency_metric_for(component: str) -> str:
    """The millisecond latency view of ``component``'s calls (the design's name for
    postgres), read with ``get_histogram_stats``."""
    return _LATENCY_METRIC_BY_COMPONENT.get(component, f"{component}_call_latency_ms")


def pool_metric(component: str, field: str) -> str:
    """Design-style pool gauge name: ``pool_metric("postgres", "size")`` is
    ``postgres_pool_size``."""
    return f"{component}_pool_{field}"


def prometheus_label(attribute: str) -> str:
    """The Prometheus label name of a semantic-convention attribute (dots to underscores)."""
    return attribute.replace(".", "_")

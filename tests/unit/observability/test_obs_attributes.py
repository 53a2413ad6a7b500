"""Telemetry names: in-development semconv literals match upstream; helpers."""

from __future__ import annotations

import importlib

import pytest

from infra.observability import attributes as attr


@pytest.mark.parametrize(
    ("ours", "module", "upstream"),
    [
        ("DB_CLIENT_CONNECTION_STATE", "attributes.db_attributes", None),
        ("DB_CLIENT_CONNECTION_POOL_NAME", "attributes.db_attributes", None),
        ("DB_CLIENT_CONNECTION_COUNT", "metrics.db_metrics", None),
        ("DB_CLIENT_CONNECTION_MAX", "metrics.db_metrics", None),
        ("DB_CLIENT_CONNECTION_PENDING_REQUESTS", "metrics.db_metrics", None),
        ("GEN_AI_OPERATION_NAME", "attributes.gen_ai_attributes", None),
        ("GEN_AI_PROVIDER_NAME", "attributes.gen_ai_attributes", None),
        ("GEN_AI_REQUEST_MODEL", "attributes.gen_ai_attributes", None),
        ("GEN_AI_RESPONSE_MODEL", "attributes.gen_ai_attributes", None),
        ("GEN_AI_TOKEN_TYPE", "attributes.gen_ai_attributes", None),
        ("GEN_AI_USAGE_INPUT_TOKENS", "attributes.gen_ai_attributes", None),
        ("GEN_AI_USAGE_OUTPUT_TOKENS", "attributes.gen_ai_attributes", None),
        ("GEN_AI_CLIENT_OPERATION_DURATION", "metrics.gen_ai_metrics", None),
        ("GEN_AI_CLIENT_TOKEN_USAGE", "metrics.gen_ai_metrics", None),
    ],
)
def test_in_development_names_equal_the_upstream_constants(
    ours: str, module: str, upstream: str | None
) -> None:
    """Our literals still match opentelemetry-semconv's incubating constants."""
    incubating = importlib.import_module(f"opentelemetry.semconv._incubating.{module}")
    assert getattr(attr, ours) == getattr(incubating, upstream or ours)


def test_prometheus_names_translate_the_semconv_names() -> None:
    """Dots become underscores, with the unit suffix for durations."""
    assert (
        attr.prometheus_label(attr.DB_CLIENT_OPERATION_DURATION) + "_seconds"
    ) == attr.PROM_DB_CLIENT_OPERATION_DURATION
    assert (
        attr.prometheus_label(attr.GEN_AI_CLIENT_TOKEN_USAGE) == attr.PROM_GEN_AI_CLIENT_TOKEN_USAGE
    )
    assert (
        attr.prometheus_label(attr.DB_CLIENT_CONNECTION_COUNT)
        == attr.PROM_DB_CLIENT_CONNECTION_COUNT
    )


def test_latency_metric_names() -> None:
    """postgres uses the design's name; unknown components get a generic one."""
    assert attr.latency_metric_for("postgres") == "postgres_query_latency_ms"
    assert attr.latency_metric_for("search") == "search_call_latency_ms"
    assert attr.pool_metric("postgres", "utilization") == attr.POSTGRES_POOL_UTILIZATION


def test_unbounded_label_names_are_listed() -> None:
    """Raw statements, keys and user ids are forbidden as label names."""
    assert {"sql", "key", "user_id", "query", "prompt"} <= attr.FORBIDDEN_LABEL_NAMES

"""The Prometheus alert rules parse and refer only to metrics we export."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import infra.observability
from infra.observability import (
    MetricsCollector,
    MetricsResilienceObserver,
    PoolStats,
    record_call,
    register_pool,
)
from infra.resilience.hooks import BreakerState

RULES = Path(infra.observability.__file__).parent / "alerts" / "semantica.rules.yml"
_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, groupings, ranges removed)."""
    stripped = re.sub(r"\{[^}]*\}", " ", expr)
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)
    stripped = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", stripped
    )
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped):
        following = stripped[match.end() :].lstrip()
        if following.startswith("(") or match.group() in _PROMQL_WORDS:
            continue  # a function call or keyword
        names.add(match.group())
    return names


def _exported(collector: MetricsCollector) -> set[str]:
    body, _ = collector.render()
    return {
        sample.name
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_rules_file_has_the_spec_alerts_with_severities() -> None:
    """Pool utilisation, error rate and p99 warn; an open breaker pages."""
    rules = {rule["alert"]: rule for rule in _rules()}
    assert {
        "PostgresPoolUtilizationHigh",
        "ConnectionPoolUtilizationHigh",
        "BackendErrorRateHigh",
        "DatabaseLatencyP99High",
        "CircuitBreakerOpen",
    } == set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] == ("page" if name == "CircuitBreakerOpen" else "warning")
        assert rule["annotations"]["summary"]
        assert rule["expr"].strip()
    assert "> 80" in rules["PostgresPoolUtilizationHigh"]["expr"]
    assert "> 0.05" in rules["BackendErrorRateHigh"]["expr"]
    assert "histogram_quantile(0.99" in rules["DatabaseLatencyP99High"]["expr"]
    assert "== 2" in rules["CircuitBreakerOpen"]["expr"]


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["alert"])
def test_each_rule_refers_only_to_exported_metrics(
    rule: dict[str, Any], collector: MetricsCollector
) -> None:
    """Every metric an expression names appears in a real scrape of our collector."""
    with pytest.raises(RuntimeError), record_call("postgres", "fetch", system="postgresql"):
        raise RuntimeError("fail once so error series exist")
    with record_call("postgres", "fetch", system="postgresql"):
        pass
    register_pool("postgres", "default", lambda: PoolStats(size=4, used=1, idle=3, max=10))
    MetricsResilienceObserver(collector).on_state_change(
        "postgres", BreakerState.CLOSED, BreakerState.OPEN
    )
    names = _metric_names(rule["expr"])
    assert names, "an alert must refer to at least one metric"
    assert names <= _exported(collector)


def test_metric_name_extraction_ignores_functions_labels_and_ranges() -> None:
    """The helper above finds metrics, not functions, label names or durations."""
    expr = 'sum by (le, job) (rate(foo_bucket{a="b"}[5m])) / on (x) bar_total > 1'
    assert _metric_names(expr) == {"foo_bucket", "bar_total"}

"""The Prometheus alert rules: they parse, refer only to metrics we export, and their
promtool-style unit tests (semantica.rules.test.yml) pass in Python."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import infra.observability
from config import Settings
from infra.observability import (
    MetricsCollector,
    MetricsResilienceObserver,
    PoolStats,
    record_call,
    register_pool,
)
from infra.observability.alerts import RULE_TESTS_FILE, RULES_FILE
from infra.observability.alerts.rule_tests import load_rules, parse_duration, run_rule_tests
from infra.resilience.hooks import BreakerState, CallOutcome

RULES = Path(infra.observability.__file__).parent / "alerts" / "semantica.rules.yml"
assert RULES == RULES_FILE
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
        "ConnectionPoolUtilizationHigh",
        "BackendErrorRateHigh",
        "DatabaseLatencyP99High",
        "CircuitBreakerOpen",
    } == set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] == ("page" if name == "CircuitBreakerOpen" else "warning")
        assert rule["annotations"]["summary"]
        assert rule["expr"].strip()
    assert "> 80" in rules["ConnectionPoolUtilizationHigh"]["expr"]
    assert "> 0.05" in rules["BackendErrorRateHigh"]["expr"]
    assert "histogram_quantile(0.99" in rules["DatabaseLatencyP99High"]["expr"]
    assert "circuit_breaker_state" in rules["CircuitBreakerOpen"]["expr"]


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


def test_the_promtool_style_rule_tests_pass() -> None:
    """Every scenario of semantica.rules.test.yml (saturated pools, error rates with
    caller errors and rejections, low traffic, latency, single/flapping/sustained
    breaker trips) gives the expected firing alerts."""
    assert run_rule_tests(RULE_TESTS_FILE) == []


def test_every_rule_has_firing_and_quiet_scenarios() -> None:
    """Each alert is tested both where it must fire and where it must stay quiet."""
    document = yaml.safe_load(RULE_TESTS_FILE.read_text())
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in document["tests"]:
        for check in test["alert_rule_test"]:
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule.name for rule in load_rules(RULES_FILE)}
    assert fires == names
    assert quiet == names


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        ("(db_client_connection_max) > 80", "(db_client_connection_max) >= 80"),
        ('outcome=~"ok|error"}[5m])) >= 100', 'outcome=~"ok|error"}[5m])) >= 0'),
        ('{outcome=~"ok|error"}[5m]))\n', "[5m]))\n"),
        ("for: 2m", "for: 1m"),
        ("> 0\n          or", "== 2\n          or"),
    ],
    ids=["pool-threshold", "traffic-guard", "rejections-counted", "breaker-for", "open-only"],
)
def test_the_rule_tests_catch_each_defect_class(tmp_path: Path, original: str, broken: str) -> None:
    """Re-introducing each fixed defect into a copy of the rules makes a rule test fail."""
    text = RULES.read_text()
    assert original in text
    (tmp_path / RULES.name).write_text(text.replace(original, broken))
    (tmp_path / RULE_TESTS_FILE.name).write_text(RULE_TESTS_FILE.read_text())
    assert run_rule_tests(tmp_path / RULE_TESTS_FILE.name) != []


def test_breaker_alert_waits_longer_than_the_default_breaker_timeout() -> None:
    """A "for" of one breaker timeout is never reached by a flapping breaker, and a
    single trip that recovers at the first probe must not page."""
    (rule,) = [r for r in load_rules(RULES_FILE) if r.name == "CircuitBreakerOpen"]
    assert rule.for_s > Settings().circuit_breaker_timeout
    assert parse_duration("2m") == rule.for_s


def test_breaker_open_transition_series_exist_from_the_first_call(
    collector: MetricsCollector,
) -> None:
    """increase() of the open transitions counts a breaker's first trip only if the
    series existed at 0 before it."""
    observer = MetricsResilienceObserver(collector)
    observer.on_call("postgres", CallOutcome.SUCCESS)
    body, _ = collector.render()
    text = body.decode()
    for source in ("closed", "half_open"):
        sample = (
            f'circuit_breaker_transitions_total{{breaker="postgres",from_state="{source}",'
            f'to_state="open"}} 0.0'
        )
        assert sample in text

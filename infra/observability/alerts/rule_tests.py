"""promtool-style unit tests of alerting rules, evaluated in Python.

A test file has the shape ``promtool test rules`` reads::

    rule_files: [semantica.rules.yml]       # relative to the test file
    evaluation_interval: 1m
    tests:
      - name: a saturated pool warns once
        interval: 15s                        # time between input samples
        input_series:
          - series: 'pool_used_percent{pool="redis"}'
            values: '100x40'                 # 41 samples of 100
        alert_rule_test:
          - eval_time: 6m
            alertname: PoolUtilizationHigh
            exp_alerts:
              - exp_labels: {severity: warning, pool: redis}

and the same meaning: input sample *i* is at ``i * interval``; the rule group is
evaluated every ``evaluation_interval`` from 0 to ``eval_time``; an alert becomes
pending when its expression first returns its label set and fires once it has been
returned at every evaluation for at least ``for``; at ``eval_time`` the *firing* alerts
of ``alertname`` (labels = the sample's labels without ``__name__``, plus the rule's
labels and ``alertname``) must equal ``exp_alerts`` as a multiset.

Series values use promtool's expanding notation: ``a+bxn`` (``n + 1`` samples from
``a``, step ``b``), ``a-bxn``, ``axn`` (``a`` repeated), ``_`` (no sample), ``stale`` (a
staleness marker) and plain numbers, separated by spaces.

Differences from promtool, on purpose: annotations are not compared (their Go templates
are not rendered here), label templates are refused, and the PromQL is what
:mod:`~infra.observability.alerts.promql` supports.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import promql_parser as pp
import yaml

from infra.observability.alerts.promql import STALE, Evaluator, Labels, Samples

__all__ = [
    "GAP",
    "AlertRule",
    "alerts_at",
    "expand_values",
    "load_rules",
    "parse_duration",
    "parse_series",
    "run_rule_tests",
]

_EXPANDING: Final = re.compile(
    r"^(?P<start>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"(?:(?P<sign>[-+])(?P<step>\d+\.?\d*(?:[eE][-+]?\d+)?))?x(?P<count>\d+)$"
)


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alerting rule of a rules file."""

    name: str
    expr: str
    for_s: float
    labels: Mapping[str, str]


def parse_duration(text: str | int | float) -> float:
    """A Prometheus duration (``"1m30s"``, ``"5m"``) in seconds; numbers are seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str) or not text:
        raise ValueError(f"expected a duration such as '5m', got {text!r}")
    return pp.parse_duration(text).total_seconds()


def load_rules(path: Path) -> list[AlertRule]:
    """The alerting rules of a Prometheus rules file (recording rules are refused)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    rules: list[AlertRule] = []
    for group in document["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                raise ValueError(f"{path.name}: only alerting rules are supported, got {rule}")
            labels = {str(k): str(v) for k, v in (rule.get("labels") or {}).items()}
            if any("{{" in v for v in labels.values()):
                raise ValueError(f"{path.name}: {rule['alert']}: label templates unsupported")
            pp.parse(rule["expr"])  # a syntax error fails here, naming nothing else
            rules.append(
                AlertRule(rule["alert"], rule["expr"], parse_duration(rule.get("for", 0)), labels)
            )
    return rules


def parse_series(text: str) -> Labels:
    """``'name{a="b"}'`` as a :data:`~infra.observability.alerts.promql.Labels` key."""
    node = pp.parse(text)
    if not isinstance(node, pp.VectorSelector) or node.offset is not None:
        raise ValueError(f'an input series is a plain selector such as up{{job="a"}}: {text}')
    pairs: dict[str, str] = {}
    if node.name is not None:
        pairs["__name__"] = node.name
    for matcher in node.matchers.matchers:
        if matcher.op != pp.MatchOp.Equal:
            raise ValueError(f"input series labels must use '=': {text}")
        pairs[matcher.name] = matcher.value
    return tuple(sorted(pairs.items()))


class _Gap:
    """No sample at this step (``_`` in the series notation)."""

    def __repr__(self) -> str:
        return "GAP"


#: What :func:`expand_values` returns for ``_``.
GAP: Final = _Gap()


def expand_values(text: str) -> list[float | _Gap | None]:
    """promtool's series notation as values: a number, ``STALE`` (``None``) for
    ``stale``, :data:`GAP` for ``_``."""
    values: list[float | _Gap | None] = []
    for word in str(text).split():
        if word == "_":
            values.append(GAP)
        elif word == "stale":
            values.append(STALE)
        elif (match := _EXPANDING.match(word)) is not None:
            start = float(match["start"])
            step = float(match["step"] or 0.0) * (-1.0 if match["sign"] == "-" else 1.0)
            values.extend(start + step * i for i in range(int(match["count"]) + 1))
        else:
            try:
                values.append(float(word))
            except ValueError:
                raise ValueError(f"cannot read series value {word!r} in {text!r}") from None
    return values


def _input(series: Iterable[Mapping[str, Any]], interval: float) -> dict[Labels, Samples]:
    store: dict[Labels, list[tuple[float, float | None]]] = {}
    for item in series:
        key = parse_series(item["series"])
        samples = store.setdefault(key, [])
        for index, value in enumerate(expand_values(item["values"])):
            if not isinstance(value, _Gap):
                samples.append((index * interval, value))
    return dict(store)


def alerts_at(
    rules: Sequence[AlertRule],
    series: Mapping[Labels, Samples],
    eval_time: float,
    evaluation_interval: float = 60.0,
) -> dict[str, list[dict[str, str]]]:
    """The firing alerts of every rule at ``eval_time``, by alert name (see the module
    docstring for the pending/firing rules)."""
    evaluator = Evaluator(series)
    active: dict[str, dict[Labels, float]] = {rule.name: {} for rule in rules}
    steps = round(eval_time / evaluation_interval)
    if abs(steps * evaluation_interval - eval_time) > 1e-9:
        raise ValueError(
            f"eval_time {eval_time:g}s is not a multiple of the evaluation interval "
            f"{evaluation_interval:g}s"
        )
    for step in range(steps + 1):
        now = step * evaluation_interval
        for rule in rules:
            value = evaluator.instant(rule.expr, now)
            if isinstance(value, float):
                raise TypeError(f"{rule.name}: an alert expression must return a vector")
            returned = {_alert_labels(rule, labels) for labels in value}
            since = active[rule.name]
            for labels in list(since):
                if labels not in returned:
                    del since[labels]  # resolved: a later return starts pending again
            for labels in returned:
                since.setdefault(labels, now)
    return {
        rule.name: [
            dict(labels)
            for labels, since in active[rule.name].items()
            if eval_time - since >= rule.for_s
        ]
        for rule in rules
    }


def _alert_labels(rule: AlertRule, labels: Labels) -> Labels:
    merged = {k: v for k, v in labels if k != "__name__"}
    merged.update(rule.labels)
    merged["alertname"] = rule.name
    return tuple(sorted(merged.items()))


def run_rule_tests(test_file: Path) -> list[str]:
    """Run every test of ``test_file``; returns the failures (an empty list: all passed)."""
    document = yaml.safe_load(test_file.read_text(encoding="utf-8"))
    rules = [
        rule for name in document["rule_files"] for rule in load_rules(test_file.parent / str(name))
    ]
    known = {rule.name for rule in rules}
    evaluation_interval = parse_duration(document.get("evaluation_interval", "1m"))
    failures: list[str] = []
    for index, test in enumerate(document["tests"]):
        title = test.get("name", f"test #{index}")
        series = _input(
            test.get("input_series", []),
            parse_duration(test.get("interval", evaluation_interval)),
        )
        for check in test.get("alert_rule_test", []):
            name = check["alertname"]
            if name not in known:
                failures.append(f"{title}: no rule named {name!r}")
                continue
            at = parse_duration(check["eval_time"])
            got = alerts_at(rules, series, at, evaluation_interval)[name]
            expected = [
                {str(k): str(v) for k, v in (alert.get("exp_labels") or {}).items()}
                | {"alertname": name}
                for alert in check.get("exp_alerts") or []
            ]
            if _multiset(got) != _multiset(expected):
                failures.append(
                    f"{title}: {name} at {check['eval_time']}: expected {expected}, got {got}"
                )
    return failures


def _multiset(alerts: Iterable[Mapping[str, str]]) -> Counter[tuple[tuple[str, str], ...]]:
    return Counter(tuple(sorted(alert.items())) for alert in alerts)

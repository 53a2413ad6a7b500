"""The PromQL evaluator the alert-rule tests run on: each construct our rules use,
checked against Prometheus's documented semantics, and refusals for the rest."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.observability.alerts.promql import (
    STALE,
    Evaluator,
    Labels,
    Samples,
    UnsupportedQueryError,
    Vector,
    labels_of,
)
from infra.observability.alerts.rule_tests import (
    GAP,
    AlertRule,
    alerts_at,
    expand_values,
    parse_duration,
    parse_series,
)

M = 60.0


def every_minute(*values: float | None) -> Samples:
    return [(i * M, v) for i, v in enumerate(values)]


def vector(value: Vector | float) -> Vector:
    assert isinstance(value, dict), f"expected a vector, got {value!r}"
    return value


def one(value: Vector | float) -> float:
    (only,) = vector(value).values()
    return only


# ------------------------------------------------------------------------ selectors
def test_selectors_match_labels_with_anchored_regexes() -> None:
    series = {
        labels_of("up", job="api", pool="postgres/default"): every_minute(1),
        labels_of("up", job="api-canary", pool="redis/default"): every_minute(2),
        labels_of("down", job="api"): every_minute(3),
    }
    ev = Evaluator(series)
    assert set(vector(ev.instant('up{job="api"}', 0))) == {next(iter(series))}
    assert len(vector(ev.instant('up{job=~"api"}', 0))) == 1  # anchored: not "api-canary"
    assert len(vector(ev.instant('up{job=~"api.*"}', 0))) == 2
    assert one(ev.instant('up{pool!~"postgres/.*"}', 0)) == 2
    assert one(ev.instant('up{job!="api"}', 0)) == 2
    assert one(ev.instant('{job="api", __name__="down"}', 0)) == 3
    assert vector(ev.instant('up{missing="x"}', 0)) == {}
    assert len(vector(ev.instant('up{missing=""}', 0))) == 2  # absent label == ""


def test_instant_selection_looks_back_five_minutes_and_stops_at_staleness() -> None:
    key = labels_of("g")
    ev = Evaluator({key: [(0.0, 1.0), (60.0, 2.0), (120.0, STALE), (400.0, 4.0)]})
    assert one(ev.instant("g", 60)) == 2
    assert one(ev.instant("g", 119)) == 2
    assert ev.instant("g", 120) == {}  # marked stale
    assert one(ev.instant("g", 400 + 299)) == 4
    assert ev.instant("g", 400 + 300) == {}  # older than the lookback
    assert ev.instant("g", -1) == {}
    assert one(ev.instant("g offset 1m", 120)) == 2


# ----------------------------------------------------------------- range functions
def test_rate_of_a_steady_counter_is_exact_and_drops_the_name() -> None:
    """0, 60, 120, ... per minute: 1/s; increase over 5 m: 300 (extrapolated to the
    window edge exactly as Prometheus does)."""
    key = labels_of("c_total", job="a")
    ev = Evaluator({key: every_minute(*(60.0 * i for i in range(11)))})
    assert vector(ev.instant("rate(c_total[5m])", 10 * M)) == {labels_of(job="a"): 1.0}
    assert one(ev.instant("increase(c_total[5m])", 10 * M)) == pytest.approx(300.0)


def test_increase_counts_across_a_counter_reset() -> None:
    ev = Evaluator({labels_of("c_total"): every_minute(0, 60, 120, 30, 90, 150)})
    # In (0, 5m]: 60 -> 120 -> reset to 30 -> 90 -> 150 = 60 + 120 + 120 ... = 210 over
    # 4 intervals; extrapolated to 5 intervals.
    assert one(ev.instant("increase(c_total[5m])", 5 * M)) == pytest.approx(210 * 300 / 240)


def test_a_new_counter_does_not_extrapolate_below_zero() -> None:
    """A series born at 1 within the window: the start is clamped where it would be 0."""
    ev = Evaluator({labels_of("c_total"): [(240.0, 1.0), (300.0, 2.0)]})
    # Sampled over 60 s, delta 1, first value 1: it would reach 0 60 s before its first
    # sample, nearer than the window start (840 s before) and within 1.1 sample
    # intervals, so 60 s are added at the start and none at the end: 1 * 120 / 60 = 2.
    assert one(ev.instant("increase(c_total[15m])", 300)) == pytest.approx(2.0)


def test_rate_needs_two_samples() -> None:
    ev = Evaluator({labels_of("c_total"): every_minute(5)})
    assert ev.instant("rate(c_total[5m])", 0) == {}


def test_over_time_functions() -> None:
    ev = Evaluator({labels_of("g", a="1"): every_minute(3, 1, 4, STALE, 1, 5)})
    at = 5 * M
    assert one(ev.instant("max_over_time(g[10m])", at)) == 5
    assert one(ev.instant("min_over_time(g[10m])", at)) == 1
    assert one(ev.instant("avg_over_time(g[10m])", at)) == pytest.approx(14 / 5)
    assert one(ev.instant("sum_over_time(g[10m])", at)) == 14
    assert one(ev.instant("count_over_time(g[10m])", at)) == 5
    assert one(ev.instant("max_over_time(g[2m])", at)) == 5  # (3m, 5m]: 1 and 5


@given(
    rate=st.floats(0.01, 1000.0),
    step=st.sampled_from([5.0, 15.0, 30.0, 60.0]),
    window=st.sampled_from(["2m", "5m", "15m"]),
)
def test_rate_recovers_any_constant_rate(rate: float, step: float, window: str) -> None:
    """A counter growing at a constant rate, sampled well past the window: rate() returns
    that rate and increase() rate * window."""
    seconds = parse_duration(window)
    samples = [(i * step, rate * i * step) for i in range(int(seconds / step) * 3 + 2)]
    at = samples[-1][0]
    ev = Evaluator({labels_of("c_total"): samples})
    assert one(ev.instant(f"rate(c_total[{window}])", at)) == pytest.approx(rate)
    assert one(ev.instant(f"increase(c_total[{window}])", at)) == pytest.approx(rate * seconds)


@given(st.lists(st.floats(0, 1e6), min_size=2, max_size=30))
def test_increase_is_never_negative_whatever_the_resets(values: list[float]) -> None:
    ev = Evaluator({labels_of("c_total"): every_minute(*values)})
    result = ev.instant("increase(c_total[1h])", (len(values) - 1) * M)
    assert one(result) >= 0


# --------------------------------------------------------------------- aggregation
SERIES: dict[Labels, Samples] = {
    labels_of("calls_total", component="pg", outcome="ok"): every_minute(90),
    labels_of("calls_total", component="pg", outcome="error"): every_minute(10),
    labels_of("calls_total", component="redis", outcome="ok"): every_minute(40),
}


def test_aggregations_by_and_without() -> None:
    ev = Evaluator(SERIES)
    assert ev.instant("sum(calls_total)", 0) == {(): 140.0}
    assert ev.instant("sum by (component) (calls_total)", 0) == {
        labels_of(component="pg"): 100.0,
        labels_of(component="redis"): 40.0,
    }
    assert ev.instant("max without (outcome) (calls_total)", 0) == {
        labels_of(component="pg"): 90.0,
        labels_of(component="redis"): 40.0,
    }
    assert ev.instant("count by (outcome) (calls_total)", 0) == {
        labels_of(outcome="ok"): 2.0,
        labels_of(outcome="error"): 1.0,
    }
    assert ev.instant("min(calls_total)", 0) == {(): 10.0}
    assert vector(ev.instant("avg(calls_total)", 0)) == {(): pytest.approx(140 / 3)}


@given(st.dictionaries(st.sampled_from("abcdef"), st.floats(-1e6, 1e6), min_size=1))
def test_sum_and_count_agree_with_python(values: dict[str, float]) -> None:
    ev = Evaluator({labels_of("g", k=k): every_minute(v) for k, v in values.items()})
    assert one(ev.instant("sum(g)", 0)) == pytest.approx(sum(values.values()))
    assert one(ev.instant("count(g)", 0)) == len(values)
    threshold = sorted(values.values())[len(values) // 2]
    above = vector(ev.instant(f"g > bool {threshold!r}", 0))
    assert sorted(above.values()) == sorted(float(v > threshold) for v in values.values())
    kept = vector(ev.instant(f"g > {threshold!r}", 0))
    assert sorted(kept.values()) == sorted(v for v in values.values() if v > threshold)


# ------------------------------------------------------------------- binary operators
def test_vector_scalar_arithmetic_drops_the_name_and_comparisons_filter() -> None:
    ev = Evaluator(SERIES)
    scaled = vector(ev.instant('100 * calls_total{component="redis"}', 0))
    assert scaled == {labels_of(component="redis", outcome="ok"): 4000.0}
    kept = vector(ev.instant("calls_total > 50", 0))
    assert kept == {labels_of("calls_total", component="pg", outcome="ok"): 90.0}
    assert vector(ev.instant("50 < calls_total", 0)) == kept
    flags = vector(ev.instant("calls_total >= bool 40", 0))
    assert sorted(flags.values()) == [0.0, 1.0, 1.0]
    assert ev.instant("2 ^ 3 - 1", 0) == 7.0
    assert ev.instant("-(1 + 1)", 0) == -2.0
    assert ev.instant("1 > bool 2", 0) == 0.0


def test_vector_matching_one_to_one() -> None:
    ev = Evaluator(SERIES)
    ratio = ev.instant(
        'sum by (component) (calls_total{outcome="error"}) / sum by (component) (calls_total)', 0
    )
    assert ratio == {labels_of(component="pg"): 0.1}
    on = ev.instant(
        'calls_total{outcome="error"} / on (component) sum by (component) (calls_total)', 0
    )
    assert on == {labels_of(component="pg"): 0.1}
    ignoring = ev.instant(
        'calls_total{outcome="error"} / ignoring (outcome) calls_total{outcome="ok"}', 0
    )
    assert vector(ignoring) == {labels_of(component="pg"): pytest.approx(10 / 90)}
    with pytest.raises(UnsupportedQueryError, match="many-to-one"):
        ev.instant("calls_total / on (component) calls_total", 0)


def test_division_by_zero_follows_ieee() -> None:
    ev = Evaluator({labels_of("a", k="1"): every_minute(1), labels_of("a", k="0"): every_minute(0)})
    result = vector(ev.instant("a / 0", 0))
    assert result[labels_of(k="1")] == math.inf
    assert math.isnan(result[labels_of(k="0")])


def test_set_operations() -> None:
    ev = Evaluator(SERIES)
    pg = labels_of("calls_total", component="pg", outcome="ok")
    assert set(vector(ev.instant('calls_total and calls_total{component="pg"}', 0))) == {
        pg,
        labels_of("calls_total", component="pg", outcome="error"),
    }
    assert set(vector(ev.instant("calls_total unless calls_total > 20", 0))) == {
        labels_of("calls_total", component="pg", outcome="error")
    }
    both = vector(
        ev.instant(
            "sum by (component) (calls_total) > 50 or sum by (component) (calls_total) < 50", 0
        )
    )
    assert both == {labels_of(component="pg"): 100.0, labels_of(component="redis"): 40.0}
    left_wins = vector(
        ev.instant("sum by (component) (calls_total) or sum by (component) (calls_total) * 2", 0)
    )
    assert left_wins[labels_of(component="pg")] == 100.0
    guarded = ev.instant(
        "sum by (component) (calls_total) > 0 and on (component) "
        "sum by (component) (calls_total) >= 100",
        0,
    )
    assert guarded == {labels_of(component="pg"): 100.0}


# --------------------------------------------------------------- histogram_quantile
def _buckets(system: str, counts: dict[str, float]) -> dict[Labels, Samples]:
    return {
        labels_of("d_bucket", db=system, le=le): every_minute(count) for le, count in counts.items()
    }


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    ev = Evaluator(_buckets("pg", {"1": 10, "2": 20, "+Inf": 20}))
    q = {
        phi: one(ev.instant(f"histogram_quantile({phi}, d_bucket)", 0)) for phi in (0.5, 0.75, 0.99)
    }
    assert q == {0.5: 1.0, 0.75: 1.5, 0.99: pytest.approx(1.98)}
    assert vector(ev.instant("histogram_quantile(0.5, d_bucket)", 0)) == {labels_of(db="pg"): 1.0}


def test_histogram_quantile_edge_cases() -> None:
    overflow = Evaluator(_buckets("pg", {"1": 0, "2": 0, "+Inf": 5}))
    assert one(overflow.instant("histogram_quantile(0.5, d_bucket)", 0)) == 2.0
    empty = Evaluator(_buckets("pg", {"1": 0, "+Inf": 0}))
    assert math.isnan(one(empty.instant("histogram_quantile(0.5, d_bucket)", 0)))
    no_inf = Evaluator(_buckets("pg", {"1": 1, "2": 2}))
    assert math.isnan(one(no_inf.instant("histogram_quantile(0.5, d_bucket)", 0)))
    assert one(overflow.instant("histogram_quantile(2, d_bucket)", 0)) == math.inf
    # Buckets that decrease (a scrape race) are made monotonic first.
    jagged = Evaluator(_buckets("pg", {"1": 10, "2": 8, "4": 20, "+Inf": 20}))
    assert one(jagged.instant("histogram_quantile(0.5, d_bucket)", 0)) == 1.0


# ---------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("expr", "named"),
    [
        ("a / on (k) group_left a", "group_left"),
        ("rate(a[5m:1m])", "range vector"),
        ("a @ 100", "@ modifier"),
        ("abs(a)", "abs()"),
        ("topk(3, a)", "topk"),
        ("quantile(0.5, a)", "quantile"),
    ],
)
def test_unsupported_promql_is_refused_by_name(expr: str, named: str) -> None:
    """Rules that outgrow the subset fail loudly, never evaluate to something wrong."""
    ev = Evaluator({labels_of("a", k="1"): every_minute(1)})
    with pytest.raises(UnsupportedQueryError) as caught:
        ev.instant(expr, 0)
    assert named in str(caught.value)


def test_invalid_promql_is_a_value_error_from_the_parser() -> None:
    with pytest.raises(ValueError, match="rate"):
        Evaluator({}).instant("rate(a)", 0)


# ------------------------------------------------------------- series and alerting
def test_series_notation_expands_like_promtool() -> None:
    assert expand_values("1+2x3") == [1.0, 3.0, 5.0, 7.0]
    assert expand_values("10-5x2 _ stale 7") == [10.0, 5.0, 0.0, GAP, STALE, 7.0]
    assert expand_values("4x2") == [4.0, 4.0, 4.0]
    assert expand_values("0+0.5x1 -1 1e3") == [0.0, 0.5, -1.0, 1000.0]
    with pytest.raises(ValueError, match="x3y"):
        expand_values("x3y")
    assert parse_series('up{job="a", le="+Inf"}') == labels_of("up", job="a", le="+Inf")
    with pytest.raises(ValueError, match="'='"):
        parse_series('up{job=~"a"}')
    assert parse_duration("1m30s") == 90.0
    assert parse_duration(15) == 15.0


def test_alerts_go_pending_then_fire_after_for_and_resolve() -> None:
    rule = AlertRule("High", "g > 1", 120.0, {"severity": "page"})
    series = {labels_of("g", a="x"): every_minute(2, 2, 2, 2, 0, 2, 2)}
    fired = {t: alerts_at([rule], series, t * M)["High"] for t in range(7)}
    expected = [{"a": "x", "alertname": "High", "severity": "page"}]
    assert fired == {0: [], 1: [], 2: expected, 3: expected, 4: [], 5: [], 6: []}
    with pytest.raises(ValueError, match="multiple of the evaluation interval"):
        alerts_at([rule], series, 90.0)

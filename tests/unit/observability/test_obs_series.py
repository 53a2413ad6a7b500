"""Metric families: label validation, cardinality folding, thread-safe series."""

from __future__ import annotations

import math
import threading

import pytest

from infra.observability import MetricsCollector
from infra.observability.series import OTHER


def test_counter_name_must_end_with_total() -> None:
    """Counters are named as Prometheus shows them."""
    with pytest.raises(ValueError, match="_total"):
        MetricsCollector().counter("requests")


@pytest.mark.parametrize("label", ["sql", "key", "user_id", "query"])
def test_unbounded_label_names_are_refused(label: str) -> None:
    """A label that would carry raw statements, keys or user ids is a ValueError."""
    with pytest.raises(ValueError, match=f"label '{label}' would carry unbounded values"):
        MetricsCollector().counter("calls_total", labels=("operation", label))


@pytest.mark.parametrize("bad", ["1abc", "a-b", "__reserved"])
def test_invalid_label_names_are_refused(bad: str) -> None:
    """Label names follow Prometheus syntax and may not start with '__'."""
    with pytest.raises(ValueError, match="invalid label name"):
        MetricsCollector().gauge("g", labels=(bad,))


def test_invalid_metric_name_is_refused() -> None:
    """Metric names follow Prometheus syntax."""
    with pytest.raises(ValueError, match="invalid metric name"):
        MetricsCollector().gauge("bad-name")


def test_redefining_a_metric_differently_is_refused() -> None:
    """Same name, other kind or labels: ValueError naming both definitions."""
    metrics = MetricsCollector()
    metrics.counter("x_total", labels=("a",))
    assert metrics.counter("x_total", labels=("a",)) is metrics.counter("x_total", labels=("a",))
    with pytest.raises(ValueError, match="already a counter"):
        metrics.counter("x_total", labels=("b",))
    with pytest.raises(ValueError, match="already a counter"):
        metrics.gauge("x_total", labels=("a",))


def test_histogram_redefined_with_other_buckets_is_refused() -> None:
    """Bucket layouts are part of a histogram's identity."""
    metrics = MetricsCollector()
    metrics.histogram("h_ms", buckets=(1.0, 2.0))
    with pytest.raises(ValueError, match="different buckets"):
        metrics.histogram("h_ms", buckets=(1.0, 3.0))


def test_wrong_number_of_label_values_is_refused() -> None:
    """labels() needs one value per declared label."""
    family = MetricsCollector().counter("c_total", labels=("a", "b"))
    with pytest.raises(ValueError, match="takes 2 label values"):
        family.labels("only-one")


def test_excess_label_values_fold_into_other_without_growing_memory() -> None:
    """Past max_label_values distinct values, new ones become 'other' and are not cached."""
    metrics = MetricsCollector(max_label_values=3)
    family = metrics.counter("c_total", labels=("tenant",))
    for i in range(1000):
        family.labels(f"t{i}").inc()
    values = sorted(v for (v,), _ in family.series())
    assert values == [OTHER, "t0", "t1", "t2"]
    assert metrics.get_counter("c_total", tenant=OTHER) == 997
    assert len(family.series()) == 4


def test_long_label_values_fold_into_other() -> None:
    """A value longer than 64 characters (e.g. a statement) is never a label value."""
    family = MetricsCollector().counter("c_total", labels=("operation",))
    family.labels("SELECT * FROM users WHERE id = 1 AND name = 'a very long literal ...'").inc()
    assert [v for (v,), _ in family.series()] == [OTHER]


def test_counter_rejects_negative_increments() -> None:
    """Counters only go up."""
    series = MetricsCollector().counter("c_total").labels()
    with pytest.raises(ValueError, match="only go up"):
        series.inc(-1)


def test_gauge_set_inc_dec() -> None:
    """Gauges move both ways."""
    series = MetricsCollector().gauge("g").labels()
    series.set(10)
    series.inc(5)
    series.dec(2)
    assert series.value == 13


def test_histogram_ignores_nan() -> None:
    """NaN would corrupt sum and bucket placement; it is dropped."""
    series = MetricsCollector().histogram("h_ms").labels()
    series.observe(math.nan)
    series.observe(3.0)
    assert (series.count, series.sum) == (1, 3.0)


def test_concurrent_increments_from_threads_are_not_lost() -> None:
    """Per-series locks make increments from worker threads exact."""
    series = MetricsCollector().counter("c_total").labels()
    hist = MetricsCollector().histogram("h_ms").labels()

    def work() -> None:
        for _ in range(20_000):
            series.inc()
            hist.observe(1.0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert series.value == 80_000
    assert hist.count == 80_000
    assert sum(hist.counts) == 80_000

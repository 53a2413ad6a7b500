"""Metric families: label validation, cardinality folding, thread-safe series."""

from __future__ import annotations

import math
import threading

import pytest

from infra.observability import MetricsCollector
from infra.observability.series import OTHER, HistogramSnapshot


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
    """Worker threads write a locked shard of their own: no increment is lost."""
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
    assert series.get() == 80_000
    assert hist.count == 80_000
    assert sum(hist.counts) == 80_000


def test_owner_and_worker_thread_writes_are_both_counted() -> None:
    """The creating thread writes lock-free, others into the foreign shard; reads merge."""
    series = MetricsCollector().counter("c_total").labels()
    hist = MetricsCollector().histogram("h_ms").labels()
    series.inc(2)
    series.value += 1.0  # owner-thread direct add, as the cache tiers do
    hist.observe(1.0)

    def work() -> None:
        for _ in range(10_000):
            series.inc()
            hist.observe(100.0)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(10_000):  # the owner keeps writing while the workers do
        series.inc()
        hist.observe(1.0)
    for t in threads:
        t.join()
    assert series.value == 10_003  # the owner's own share
    assert series.get() == 40_003
    snap = hist.snapshot()
    assert snap.count == 40_001
    assert snap.sum == 10_001 * 1.0 + 30_000 * 100.0
    assert (snap.min, snap.max) == (1.0, 100.0)


def test_snapshot_count_is_the_sum_of_the_bucket_counts() -> None:
    """count is derived from the buckets, so exported buckets, +Inf and _count agree."""
    hist = MetricsCollector().histogram("h_ms", buckets=(1.0, 10.0)).labels()
    for value in (0.5, 1.0, 5.0, 50.0):
        hist.observe(value)
    snap = hist.snapshot()
    assert snap.counts == [2, 1, 1]  # le=1 holds 0.5 and 1.0; the overflow bucket holds 50
    assert snap.count == hist.count == 4
    assert (snap.sum, snap.min, snap.max) == (56.5, 0.5, 50.0)


def test_values_the_owner_buffered_are_seen_by_a_reader_on_another_thread() -> None:
    """A scrape thread reads the owner's unfolded buffer too (without consuming it)."""
    hist = MetricsCollector().histogram("h_ms", buckets=(1.0, 10.0)).labels()
    for value in (0.5, 5.0, 50.0):  # fewer than a batch: still buffered
        hist.observe(value)
    seen: list[HistogramSnapshot] = []
    reader = threading.Thread(target=lambda: seen.append(hist.snapshot()))
    reader.start()
    reader.join()
    assert seen[0].counts == [1, 1, 1]
    assert (seen[0].sum, seen[0].min, seen[0].max) == (55.5, 0.5, 50.0)
    assert hist.snapshot() == seen[0]  # the owner's own read agrees


def test_histogram_folds_its_buffer_across_many_batches_exactly() -> None:
    """Thousands of owner observations land in the right buckets with exact sum/min/max."""
    hist = MetricsCollector().histogram("h_ms", buckets=(10.0, 100.0)).labels()
    values = [float(i % 150) for i in range(1, 1001)]
    for value in values:
        hist.observe(value)
    snap = hist.snapshot()
    assert snap.counts == [
        sum(v <= 10.0 for v in values),
        sum(10.0 < v <= 100.0 for v in values),
        sum(v > 100.0 for v in values),
    ]
    assert (snap.sum, snap.min, snap.max) == (sum(values), 0.0, 149.0)

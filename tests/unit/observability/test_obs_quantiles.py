"""Quantiles estimated from histogram buckets, against exact quantiles."""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_left

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.observability import MetricsCollector
from infra.observability.quantiles import (
    LATENCY_BUCKETS_MS,
    estimate_quantile,
    stats_from_buckets,
    validate_buckets,
)


def _bucketize(values: list[float], bounds: tuple[float, ...]) -> list[int]:
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[bisect_left(bounds, v)] += 1
    return counts


def _exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _bucket_width(bounds: tuple[float, ...], value: float) -> float:
    i = bisect_left(bounds, value)
    lower = bounds[i - 1] if i > 0 else 0.0
    return bounds[i] - lower


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99, 0.999])
def test_estimate_is_within_one_bucket_of_exact_quantile_of_lognormal_latencies(q: float) -> None:
    """p-quantiles of 50k log-normal latencies (median ~5 ms) are off by <= 1 bucket."""
    rng = random.Random(1234)
    values = [rng.lognormvariate(math.log(5.0), 1.0) for _ in range(50_000)]
    bounds = LATENCY_BUCKETS_MS
    counts = _bucketize(values, bounds)
    exact = _exact(values, q)
    estimate = estimate_quantile(q, bounds, counts, min(values), max(values))
    assert abs(estimate - exact) <= _bucket_width(bounds, exact)
    assert abs(estimate - exact) / exact <= 2**0.25 - 1  # the documented 19 % bound


def test_linear_interpolation_is_near_exact_for_uniform_data() -> None:
    """Inside a bucket the estimate interpolates: uniform 0..1000 ms gives p50/p95/p99
    within 0.1 % (a bucket edge would be off by up to 19 %)."""
    values = [i / 10 for i in range(1, 10_001)]
    counts = _bucketize(values, LATENCY_BUCKETS_MS)
    for q, exact in ((0.5, 500.0), (0.95, 950.0), (0.99, 990.0)):
        estimate = estimate_quantile(q, LATENCY_BUCKETS_MS, counts, 0.1, 1000.0)
        assert estimate == pytest.approx(exact, rel=0.001)


def test_single_value_gives_that_value_for_every_quantile() -> None:
    """min/max clamping makes a one-sample histogram exact."""
    counts = _bucketize([42.0], LATENCY_BUCKETS_MS)
    stats = stats_from_buckets(LATENCY_BUCKETS_MS, counts, 42.0, 42.0, 42.0)
    assert (stats.p50, stats.p95, stats.p99) == (42.0, 42.0, 42.0)
    assert stats.mean == 42.0


def test_overflow_bucket_interpolates_up_to_observed_max() -> None:
    """Values beyond the last bound are estimated between that bound and the max."""
    bounds = (1.0, 2.0)
    counts = _bucketize([10.0, 20.0, 30.0, 40.0], bounds)
    assert estimate_quantile(1.0, bounds, counts, 10.0, 40.0) == 40.0
    assert 10.0 <= estimate_quantile(0.5, bounds, counts, 10.0, 40.0) <= 40.0


def test_empty_histogram_stats_are_zero() -> None:
    """No samples: count 0 and every figure 0.0."""
    stats = stats_from_buckets(LATENCY_BUCKETS_MS, [0] * (len(LATENCY_BUCKETS_MS) + 1), 0, 0, 0)
    assert stats.count == 0
    assert stats.to_dict() == {
        "count": 0,
        "sum": 0.0,
        "min": 0.0,
        "max": 0.0,
        "mean": 0.0,
        "p50": 0.0,
        "p95": 0.0,
        "p99": 0.0,
    }


def test_quantile_outside_unit_interval_is_rejected() -> None:
    """q must be within [0, 1]."""
    with pytest.raises(ValueError, match="q must be within"):
        estimate_quantile(1.5, (1.0,), [1, 0], 0.5, 0.5)


@pytest.mark.parametrize(
    ("buckets", "message"),
    [((), "must not be empty"), ((1.0, 1.0), "strictly increasing"), ((1.0, math.inf), "finite")],
)
def test_invalid_buckets_are_rejected(buckets: tuple[float, ...], message: str) -> None:
    """Empty, unsorted or infinite bucket bounds raise ValueError."""
    with pytest.raises(ValueError, match=message):
        validate_buckets(buckets)


def test_latency_buckets_are_log_spaced_quarter_octaves() -> None:
    """Adjacent latency bounds differ by 2**(1/4), from 1/32 ms to 32.8 s."""
    ratios = {round(b / a, 9) for a, b in itertools.pairwise(LATENCY_BUCKETS_MS)}
    assert ratios == {round(2**0.25, 9)}
    assert LATENCY_BUCKETS_MS[0] == pytest.approx(0.03125)
    assert LATENCY_BUCKETS_MS[-1] == pytest.approx(32768.0)


@given(st.lists(st.floats(0.001, 60_000.0), max_size=200))
def test_stats_read_by_name_equal_the_attributes(values: list[float]) -> None:
    """``stats['p50']`` works as ``stats.p50`` does, for every statistic, empty or not;
    the stats also behave as a read-only mapping (keys, dict(), ``in``)."""
    collector = MetricsCollector()
    for value in values:
        collector.observe("demo_latency_ms", value, operation="get")
    stats = collector.get_histogram_stats("demo_latency_ms")
    names = ("count", "sum", "min", "max", "mean", "p50", "p95", "p99")
    assert stats.keys() == names
    for name in names:
        assert stats[name] == getattr(stats, name)
        assert name in stats
    assert dict(stats) == stats.to_dict()
    assert "p999" not in stats
    with pytest.raises(KeyError, match="p999"):
        stats["p999"]
    with pytest.raises(KeyError):
        stats["__class__"]  # attributes that are not statistics are not keys

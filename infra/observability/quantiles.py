"""Bucket layouts and quantiles estimated from histogram buckets.

prometheus-client's ``Summary`` exports no quantiles, and a client-side quantile sketch
would disagree with what Prometheus computes from the exported buckets. So p50/p95/p99 are
estimated here **from the very buckets that are exported**, the same way PromQL's
``histogram_quantile`` does (find the bucket holding the rank, interpolate linearly inside
it), with one improvement: the observed ``min`` and ``max`` are kept, so the lowest and the
overflow (``+Inf``) buckets are clamped to real data instead of to 0 and the last bound.

Error bound. The estimate and the exact (nearest-rank) quantile always fall in the same
bucket, so the absolute error is at most that bucket's width. :data:`LATENCY_BUCKETS_MS`
are log-spaced by a factor of 2**(1/4) ≈ 1.19, so inside their range (0.031 ms .. 32.8 s)
the error is at most 19 % of the true value; below it the error is at most
``0.031 ms - min`` and above it at most ``max - 32.8 s``. ``test_quantiles.py`` checks this
against exact quantiles of a known distribution.

Why not finer, and why the default is coarser: every bucket is one exported time series
per label set. 81 bounds keep p99 within a fifth of the truth but cost 84 series per label
set; the defaults (:data:`CALL_DURATION_BUCKETS_S`, :data:`DEFAULT_BUCKETS_MS`, 1-2-5 per
decade) cost 19 and keep the estimate within its bucket (a factor of at most 2.5, narrowed
by the exact min and max).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Final

__all__ = [
    "CALL_DURATION_BUCKETS_S",
    "DEFAULT_BUCKETS_MS",
    "LATENCY_BUCKETS_MS",
    "SEMCONV_DURATION_BUCKETS_S",
    "TOKEN_BUCKETS",
    "HistogramStats",
    "estimate_quantile",
    "stats_from_buckets",
    "validate_buckets",
]

#: 2**(k/4) ms for k in -20..60: 0.03125 ms .. 32768 ms, ratio 2**(1/4) between bounds.
LATENCY_BUCKETS_MS: Final[tuple[float, ...]] = tuple(2.0 ** (k / 4) for k in range(-20, 61))

#: The boundaries OpenTelemetry advises for ``db.client.operation.duration`` and
#: ``gen_ai.client.operation.duration`` (seconds).
SEMCONV_DURATION_BUCKETS_S: Final[tuple[float, ...]] = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
    10.0,
)

#: The one duration histogram every backend call records (seconds): 1-2-5 steps per decade
#: from 0.1 ms to 10 s, a superset of :data:`SEMCONV_DURATION_BUCKETS_S` (so dashboards
#: built on the advised boundaries keep working) fine enough for the millisecond
#: quantiles read from it. 16 bounds: 19 exported series per label set (buckets, ``+Inf``,
#: ``_sum``, ``_count``). The estimate error is at most the width of the bucket holding
#: the quantile: a factor 2.5 between neighbouring bounds, narrowed by the exact min/max.
CALL_DURATION_BUCKETS_S: Final[tuple[float, ...]] = (
    0.0001,
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)

#: The default of ``MetricsCollector.histogram`` (milliseconds): the same 1-2-5 steps,
#: 0.1 ms .. 10 s, so every latency histogram costs 19 series per label set.
#: :data:`LATENCY_BUCKETS_MS` (81 bounds, p99 within 19 %) is there for a histogram that
#: needs the finer estimate and can afford its series.
DEFAULT_BUCKETS_MS: Final[tuple[float, ...]] = tuple(
    round(bound * 1000.0, 6) for bound in CALL_DURATION_BUCKETS_S
)

#: Advised boundaries for ``gen_ai.client.token.usage`` (powers of 4).
TOKEN_BUCKETS: Final[tuple[float, ...]] = tuple(float(4**k) for k in range(14))


@dataclass(frozen=True, slots=True)
class HistogramStats:
    """Summary of one histogram (or the merge of several label sets).

    ``p50``/``p95``/``p99`` are bucket estimates (see the module docstring for the bound);
    ``count``, ``sum``, ``min``, ``max`` and ``mean`` are exact. All are ``0.0`` when
    ``count == 0``. Read them as attributes (``stats.p50``) or by name, as from a dict
    (``stats["p50"]``, ``stats.keys()``, ``dict(stats)``, ``"p99" in stats``).
    """

    count: int
    sum: float
    min: float
    max: float
    mean: float
    p50: float
    p95: float
    p99: float

    def to_dict(self) -> dict[str, float | int]:
        """A JSON-serialisable copy."""
        return asdict(self)

    def keys(self) -> tuple[str, ...]:
        """The statistic names, in order (``count`` ... ``p99``)."""
        return _STAT_NAMES

    def __getitem__(self, name: str) -> float | int:
        """``stats["p50"]`` is ``stats.p50``; an unknown name raises ``KeyError``."""
        if name not in _STAT_NAMES:  # also refuses non-str keys and dataclass internals
            raise KeyError(f"{name!r} is not a histogram statistic; use one of {_STAT_NAMES}")
        value: float | int = getattr(self, name)
        return value

    def __contains__(self, name: object) -> bool:
        return name in _STAT_NAMES


_STAT_NAMES: Final = tuple(f.name for f in fields(HistogramStats))


_EMPTY: Final = HistogramStats(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def validate_buckets(buckets: Sequence[float]) -> tuple[float, ...]:
    """Return ``buckets`` as a tuple after checking they are finite and strictly rising."""
    bounds = tuple(float(b) for b in buckets)
    if not bounds:
        raise ValueError("buckets must not be empty; pass e.g. LATENCY_BUCKETS_MS")
    if any(not math.isfinite(b) for b in bounds):
        raise ValueError("buckets must be finite; the +Inf bucket is added automatically")
    if any(b >= c for b, c in itertools.pairwise(bounds)):
        raise ValueError(f"buckets must be strictly increasing, got {bounds!r}")
    return bounds


def estimate_quantile(
    q: float,
    bounds: Sequence[float],
    counts: Sequence[int],
    observed_min: float,
    observed_max: float,
) -> float:
    """Estimate the ``q`` quantile (0..1) from per-bucket (non-cumulative) ``counts``.

    ``counts`` has ``len(bounds) + 1`` entries; the last is the overflow bucket. Returns
    ``0.0`` for an empty histogram.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be within [0, 1], got {q!r}")
    total = sum(counts)
    if total == 0:
        return 0.0
    rank = q * total
    below = 0
    last = len(bounds)
    for index, count in enumerate(counts):
        if count == 0:
            continue
        if below + count >= rank:
            lower = bounds[index - 1] if index > 0 else observed_min
            upper = bounds[index] if index < last else observed_max
            lower = max(lower, observed_min)
            upper = min(upper, observed_max)
            return lower + (upper - lower) * max(0.0, rank - below) / count
        below += count
    return observed_max


def stats_from_buckets(
    bounds: Sequence[float],
    counts: Sequence[int],
    total_sum: float,
    observed_min: float,
    observed_max: float,
) -> HistogramStats:
    """Build :class:`HistogramStats` from per-bucket counts and the exact side values."""
    count = sum(counts)
    if count == 0:
        return _EMPTY
    return HistogramStats(
        count=count,
        sum=total_sum,
        min=observed_min,
        max=observed_max,
        mean=total_sum / count,
        p50=estimate_quantile(0.50, bounds, counts, observed_min, observed_max),
        p95=estimate_quantile(0.95, bounds, counts, observed_min, observed_max),
        p99=estimate_quantile(0.99, bounds, counts, observed_min, observed_max),
    )

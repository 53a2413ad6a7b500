"""Metrics of the three-tier cache, resolved once per cache so hot paths touch no dicts.

Labels are bounded: ``cache`` (the cache's name), ``tier`` (``l1``/``l2``/``l3``),
``operation`` (a fixed verb) and ``reason`` (an error class name or a fixed word); never a
key.

Cost on the lookup paths. The L1 and L2 hit/miss series are resolved here once and
incremented with a plain ``series.value += 1`` instead of ``series.inc()``: ``inc``
validates and takes a lock because a series may be shared across threads, which costs
0.4-0.6 µs -- most of an L1 hit. These four series belong to one cache and are written
only on its event-loop thread (the cache is single-threaded by design), so the lock
protects nothing there. L1 has no latency histogram: a hit costs about a microsecond,
every sample would fall in the first 31 µs bucket, and observing it would add a third
to the hit's cost; the benchmark (``benchmarks/bench_cache.py``) measures it instead.

=====================================  =========  =======================================
metric                                 type       meaning
=====================================  =========  =======================================
``cache_hits_total{cache,tier}``       counter    answered by the tier (a cached absence
                                                  counts; ``l3`` = the loader found it)
``cache_misses_total{cache,tier}``     counter    the tier had nothing (``l3`` = the
                                                  loader reported absence)
``cache_tier_latency_ms{cache,tier}``  histogram  time spent in L2 / the loader
``cache_coalesced_total{cache,scope}`` counter    callers served by another caller's load:
                                                  ``process`` (single flight) or
                                                  ``cluster`` (another process's lease)
``cache_degraded_total{cache}``        counter    times L2 became unreachable
``cache_degraded{cache}``              gauge      1 while L2 is unreachable
``cache_l2_errors_total``              counter    L2/Redis operations that failed, or were
``{cache,operation,reason}``                      skipped while degraded (``skipped``)
``cache_l1_resets_total{cache,reason}`` counter   L1 cleared: ``subscribed`` (coherence
                                                  back), ``recovered`` (L2 back); or its
                                                  lifetimes capped to the staleness bound:
                                                  ``lost`` (coherence), ``degraded`` (L2)
``cache_recovery_invalidations_total``  counter   keys, tags and prefixes whose writes an
``{cache}``                                       outage skipped, invalidated on recovery
``cache_invalidations_received_total``  counter   messages from other processes applied
``{cache}``
=====================================  =========  =======================================
"""

from __future__ import annotations

from typing import Final

from infra.observability.metrics import MetricsCollector
from infra.observability.series import CounterSeries, GaugeSeries, HistogramSeries

__all__ = [
    "CACHE_COALESCED_TOTAL",
    "CACHE_DEGRADED",
    "CACHE_DEGRADED_TOTAL",
    "CACHE_HITS_TOTAL",
    "CACHE_INVALIDATIONS_RECEIVED_TOTAL",
    "CACHE_L1_RESETS_TOTAL",
    "CACHE_L2_ERRORS_TOTAL",
    "CACHE_MISSES_TOTAL",
    "CACHE_RECOVERY_INVALIDATIONS_TOTAL",
    "CACHE_TIER_LATENCY_MS",
    "TierMetrics",
]

CACHE_HITS_TOTAL: Final = "cache_hits_total"
CACHE_MISSES_TOTAL: Final = "cache_misses_total"
CACHE_TIER_LATENCY_MS: Final = "cache_tier_latency_ms"
CACHE_COALESCED_TOTAL: Final = "cache_coalesced_total"
CACHE_DEGRADED_TOTAL: Final = "cache_degraded_total"
CACHE_DEGRADED: Final = "cache_degraded"
CACHE_L2_ERRORS_TOTAL: Final = "cache_l2_errors_total"
CACHE_L1_RESETS_TOTAL: Final = "cache_l1_resets_total"
CACHE_INVALIDATIONS_RECEIVED_TOTAL: Final = "cache_invalidations_received_total"
CACHE_RECOVERY_INVALIDATIONS_TOTAL: Final = "cache_recovery_invalidations_total"


class TierMetrics:
    """The series one cache records into (all created at construction)."""

    __slots__ = (
        "_errors",
        "_resets",
        "coalesced_cluster",
        "coalesced_process",
        "degraded",
        "degraded_total",
        "invalidations_received",
        "l1_hits",
        "l1_misses",
        "l2_hits",
        "l2_latency",
        "l2_misses",
        "l3_hits",
        "l3_latency",
        "l3_misses",
        "name",
        "replayed",
    )

    def __init__(self, collector: MetricsCollector, name: str) -> None:
        self.name = name
        hits = collector.counter(CACHE_HITS_TOTAL, "Cache lookups answered", ("cache", "tier"))
        misses = collector.counter(CACHE_MISSES_TOTAL, "Cache lookups missed", ("cache", "tier"))
        latency = collector.histogram(
            CACHE_TIER_LATENCY_MS, "Time spent in a cache tier, ms", ("cache", "tier")
        )
        coalesced = collector.counter(
            CACHE_COALESCED_TOTAL, "Callers served by another caller's load", ("cache", "scope")
        )
        self.l1_hits: CounterSeries = hits.labels(name, "l1")
        self.l2_hits: CounterSeries = hits.labels(name, "l2")
        self.l3_hits: CounterSeries = hits.labels(name, "l3")
        self.l1_misses: CounterSeries = misses.labels(name, "l1")
        self.l2_misses: CounterSeries = misses.labels(name, "l2")
        self.l3_misses: CounterSeries = misses.labels(name, "l3")
        self.l2_latency: HistogramSeries = latency.labels(name, "l2")
        self.l3_latency: HistogramSeries = latency.labels(name, "l3")
        self.coalesced_process: CounterSeries = coalesced.labels(name, "process")
        self.coalesced_cluster: CounterSeries = coalesced.labels(name, "cluster")
        self.degraded_total: CounterSeries = collector.counter(
            CACHE_DEGRADED_TOTAL, "Times the cache lost its L2", ("cache",)
        ).labels(name)
        self.degraded: GaugeSeries = collector.gauge(
            CACHE_DEGRADED, "1 while the cache's L2 is unreachable", ("cache",)
        ).labels(name)
        self.invalidations_received: CounterSeries = collector.counter(
            CACHE_INVALIDATIONS_RECEIVED_TOTAL,
            "Invalidation messages from other processes applied to L1",
            ("cache",),
        ).labels(name)
        self.replayed: CounterSeries = collector.counter(
            CACHE_RECOVERY_INVALIDATIONS_TOTAL,
            "Keys, tags and prefixes whose skipped writes were invalidated on recovery",
            ("cache",),
        ).labels(name)
        self._errors = collector.counter(
            CACHE_L2_ERRORS_TOTAL,
            "L2 operations that failed or were skipped while degraded",
            ("cache", "operation", "reason"),
        )
        self._resets = collector.counter(
            CACHE_L1_RESETS_TOTAL, "Times L1 was cleared wholesale", ("cache", "reason")
        )

    def l2_error(self, operation: str, reason: str) -> None:
        """Count a failed (``reason`` = error class) or skipped L2 operation."""
        self._errors.labels(self.name, operation, reason).inc()

    def l1_reset(self, reason: str) -> None:
        """Count a wholesale L1 clear."""
        self._resets.labels(self.name, reason).inc()

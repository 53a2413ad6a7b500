"""MetricsCollector: the design's read API, Prometheus export, the container slot."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from infra.observability import (
    GaugeSample,
    MetricsCollector,
    get_metrics_collector,
    record_call,
    reset_metrics_collector,
    set_metrics_collector,
)
from infra.observability.quantiles import estimate_quantile


def _samples(metrics: MetricsCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.render()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_get_counter_sums_matching_series() -> None:
    """get_counter(name) totals every series; label filters narrow it."""
    metrics = MetricsCollector()
    metrics.increment("llm_cost_usd_total", 0.5, model="a", caller="x")
    metrics.increment("llm_cost_usd_total", 0.25, model="b", caller="x")
    metrics.increment("llm_cost_usd_total", 1.0, model="a", caller="y")
    assert metrics.get_counter("llm_cost_usd_total") == 1.75
    assert metrics.get_counter("llm_cost_usd_total", model="a") == 1.5
    assert metrics.get_counter("llm_cost_usd_total", model="a", caller="y") == 1.0


def test_reads_of_unrecorded_metrics_are_zero() -> None:
    """Nothing recorded yet reads as zero, not an error."""
    metrics = MetricsCollector()
    assert metrics.get_counter("nothing_total") == 0.0
    assert metrics.get_gauge("postgres_pool_size") == 0.0
    assert metrics.get_histogram_stats("postgres_query_latency_ms").count == 0


def test_reading_a_metric_as_the_wrong_kind_is_a_type_error() -> None:
    """get_gauge on a counter says what it is."""
    metrics = MetricsCollector()
    metrics.increment("c_total")
    with pytest.raises(TypeError, match="is a counter, not a gauge"):
        metrics.get_gauge("c_total")
    with pytest.raises(TypeError, match="not a histogram"):
        metrics.get_histogram_stats("c_total")


def test_filtering_on_an_unknown_label_is_an_error() -> None:
    """A typo in a label filter is reported, not silently zero."""
    metrics = MetricsCollector()
    metrics.increment("c_total", component="redis")
    with pytest.raises(ValueError, match="no label"):
        metrics.get_counter("c_total", compnent="redis")


def test_histogram_stats_are_exact_for_count_sum_min_max_and_merge_series() -> None:
    """count/sum/min/max/mean are exact, merged over matching label sets."""
    metrics = MetricsCollector()
    for v in (1.0, 2.0, 3.0):
        metrics.observe("postgres_query_latency_ms", v, operation="fetch")
    metrics.observe("postgres_query_latency_ms", 10.0, operation="execute")
    merged = metrics.get_histogram_stats("postgres_query_latency_ms")
    assert (merged.count, merged.sum, merged.min, merged.max) == (4, 16.0, 1.0, 10.0)
    assert merged.mean == 4.0
    fetch = metrics.get_histogram_stats("postgres_query_latency_ms", operation="fetch")
    assert (fetch.count, fetch.max) == (3, 3.0)
    assert fetch.min <= fetch.p50 <= fetch.p95 <= fetch.p99 <= fetch.max


def test_exported_buckets_are_the_ones_quantiles_are_computed_from() -> None:
    """p99 recomputed from the scraped cumulative buckets equals the in-process p99."""
    metrics = MetricsCollector()
    family = metrics.histogram("lat_ms", labels=("operation",))
    for i in range(1, 1001):
        family.labels("op").observe(i * 0.37)
    exported = _samples(metrics)
    cumulative = [
        (float(dict(labels)["le"]), value)
        for (name, labels), value in exported.items()
        if name == "lat_ms_bucket"
    ]
    cumulative.sort()
    bounds = tuple(b for b, _ in cumulative if b != float("inf"))
    counts, previous = [], 0.0
    for _, c in cumulative:
        counts.append(int(c - previous))
        previous = c
    stats = metrics.get_histogram_stats("lat_ms")
    assert exported[("lat_ms_count", (("operation", "op"),))] == 1000
    assert estimate_quantile(0.99, bounds, counts, stats.min, stats.max) == stats.p99


def test_counters_and_gauges_are_exported_under_their_names() -> None:
    """Counter names keep _total; gauges and labels appear as recorded."""
    metrics = MetricsCollector()
    metrics.increment("backend_calls_total", 3, component="redis")
    metrics.set_gauge("bulkhead_in_flight", 7, bulkhead="postgres")
    exported = _samples(metrics)
    assert exported[("backend_calls_total", (("component", "redis"),))] == 3
    assert exported[("bulkhead_in_flight", (("bulkhead", "postgres"),))] == 7


def test_collector_uses_a_private_registry() -> None:
    """Nothing is registered on prometheus-client's global default registry."""
    metrics = MetricsCollector()
    metrics.increment("private_only_total")
    assert "private_only_total" not in {m.name for m in REGISTRY.collect()}
    assert metrics.registry is not REGISTRY


def test_process_metrics_are_opt_in() -> None:
    """include_process_metrics adds prometheus-client's process collectors."""
    plain = {name for name, _ in _samples(MetricsCollector())}
    with_process = {name for name, _ in _samples(MetricsCollector(include_process_metrics=True))}
    assert not any(n.startswith("python_") for n in plain)
    assert any(n.startswith("python_") for n in with_process)


class _Source:
    def __init__(self) -> None:
        self.value = 1.0

    def collect_samples(self) -> Iterable[GaugeSample]:
        return [GaugeSample("sampled_gauge", "doc", {"pool": "p"}, self.value)]


def test_sources_are_sampled_at_read_time() -> None:
    """get_gauge and the scrape read a source now, not a stored copy."""
    metrics = MetricsCollector()
    source = _Source()
    metrics.add_source(source)
    assert metrics.get_gauge("sampled_gauge") == 1.0
    source.value = 5.0
    assert metrics.get_gauge("sampled_gauge", pool="p") == 5.0
    assert metrics.get_gauge("sampled_gauge", pool="other") == 0.0
    assert _samples(metrics)[("sampled_gauge", (("pool", "p"),))] == 5.0


def test_reset_drops_values_but_keeps_definitions() -> None:
    """reset() zeroes everything for the next test."""
    metrics = MetricsCollector()
    family = metrics.counter("c_total")
    family.labels().inc(4)
    metrics.reset()
    assert metrics.get_counter("c_total") == 0.0
    assert metrics.counter("c_total") is family


def test_calls_recorded_after_a_reset_land_in_the_reset_collector() -> None:
    """reset() invalidates series cached by call sites, so later calls still count."""
    metrics = MetricsCollector()
    set_metrics_collector(metrics)
    try:
        with record_call("redis", "get"):
            pass
        metrics.reset()
        with record_call("redis", "get"):
            pass
        assert metrics.get_counter("backend_calls_total", component="redis") == 1
        assert metrics.get_histogram_stats("redis_command_latency_ms").count == 1
    finally:
        reset_metrics_collector()


def test_scraped_histogram_buckets_inf_and_count_agree_with_a_worker_thread() -> None:
    """Observations from the owner and a worker thread are all in the scrape, +Inf included."""
    metrics = MetricsCollector()
    series = metrics.histogram("lat_ms", buckets=(1.0, 10.0)).labels()
    series.observe(0.5)

    def observe_three() -> None:
        for _ in range(3):
            series.observe(50.0)

    worker = threading.Thread(target=observe_three)
    worker.start()
    worker.join()
    exported = _samples(metrics)
    assert exported[("lat_ms_bucket", (("le", "1.0"),))] == 1
    assert exported[("lat_ms_bucket", (("le", "+Inf"),))] == 4
    assert exported[("lat_ms_count", ())] == 4
    assert exported[("lat_ms_sum", ())] == 150.5


async def test_asgi_app_serves_the_exposition() -> None:
    """asgi_app() answers an HTTP GET with the text format."""
    metrics = MetricsCollector()
    metrics.increment("served_total")
    app = metrics.asgi_app()
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        await asyncio.sleep(0)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/metrics",
        "query_string": b"",
        "headers": [],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("test", 80),
        "client": ("test", 1),
        "root_path": "",
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    body = b"".join(m.get("body", b"") for m in sent[1:])  # type: ignore[misc]
    assert b"served_total 1.0" in body


def test_get_metrics_collector_returns_the_installed_instance() -> None:
    """The container's collector is what the accessor returns; reset forgets it."""
    mine = MetricsCollector()
    set_metrics_collector(mine)
    try:
        assert get_metrics_collector() is mine
    finally:
        reset_metrics_collector()
    default = get_metrics_collector()
    assert default is not mine
    assert get_metrics_collector() is default  # created once, then kept
    reset_metrics_collector()


def test_set_metrics_collector_rejects_other_types() -> None:
    """Installing something else is a TypeError."""
    with pytest.raises(TypeError, match="MetricsCollector"):
        set_metrics_collector(object())  # type: ignore[arg-type]


def test_max_label_values_must_be_positive() -> None:
    """A zero cap would fold everything."""
    with pytest.raises(ValueError, match="max_label_values"):
        MetricsCollector(max_label_values=0)

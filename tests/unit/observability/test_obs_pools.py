"""Pool gauges sampled from registered pools at read time."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.observability import (
    MetricsCollector,
    PoolStats,
    asyncpg_pool_stats,
    register_pool,
)
from infra.observability.pools import pool_metrics_for


class FakeAsyncpgPool:
    """Exposes asyncpg.Pool's public size accessors (a third-party object, not ours)."""

    def __init__(self, size: int, idle: int, maximum: int) -> None:
        self.size, self.idle, self.maximum = size, idle, maximum

    def get_size(self) -> int:
        return self.size

    def get_idle_size(self) -> int:
        return self.idle

    def get_max_size(self) -> int:
        return self.maximum


def test_spec_gauges_are_read_from_the_pool_at_read_time(collector: MetricsCollector) -> None:
    """postgres_pool_size/active/utilization follow the live pool, with no polling."""
    pool = FakeAsyncpgPool(size=10, idle=2, maximum=20)
    register_pool("postgres", "default", asyncpg_pool_stats(pool))
    assert collector.get_gauge("postgres_pool_size") == 10
    assert collector.get_gauge("postgres_pool_active") == 8
    assert collector.get_gauge("postgres_pool_utilization") == 40.0
    pool.idle = 0
    pool.size = 20
    assert collector.get_gauge("postgres_pool_utilization") == 100.0
    assert collector.get_gauge("postgres_pool_idle", pool="default") == 0
    assert collector.get_gauge("postgres_pool_max") == 20


def test_semconv_connection_gauges_are_exported(collector: MetricsCollector) -> None:
    """db_client_connection_count{state}, _max and _pending_requests appear in a scrape;
    the design's per-component names are read in-process only (one family per concept)."""
    register_pool("redis", "cache", lambda: PoolStats(size=5, used=3, idle=2, max=50, pending=4))
    body, _ = collector.render()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    pool = ("db_client_connection_pool_name", "redis/cache")
    assert (
        samples[("db_client_connection_count", (pool, ("db_client_connection_state", "used")))] == 3
    )
    assert (
        samples[("db_client_connection_count", (pool, ("db_client_connection_state", "idle")))] == 2
    )
    assert samples[("db_client_connection_max", (pool,))] == 50
    assert samples[("db_client_connection_pending_requests", (pool,))] == 4
    assert not any(name.startswith("redis_pool_") for name, _ in samples)
    assert collector.get_gauge("redis_pool_utilization", pool="cache") == 6.0


def test_pending_waiters_come_from_the_adapter_counter(collector: MetricsCollector) -> None:
    """asyncpg has no waiter count; the adapter's own counter is reported."""
    waiting = [3]
    register_pool(
        "postgres", "p", asyncpg_pool_stats(FakeAsyncpgPool(1, 0, 1), pending=lambda: waiting[0])
    )
    assert collector.get_gauge("postgres_pool_pending") == 3


def test_failing_sampler_is_skipped_and_logged_once(
    collector: MetricsCollector, caplog: pytest.LogCaptureFixture
) -> None:
    """One broken pool neither fails the scrape nor hides the others."""

    def broken() -> PoolStats:
        raise RuntimeError("pool closed")

    register_pool("postgres", "broken", broken)
    register_pool("postgres", "ok", lambda: PoolStats(size=2, used=1, idle=1, max=4))
    with caplog.at_level(logging.WARNING, logger="infra.observability.pools"):
        assert collector.get_gauge("postgres_pool_size") == 2
        collector.render()
    assert len(caplog.records) == 1


def test_unregister_removes_the_pool(collector: MetricsCollector) -> None:
    """After unregister the pool is no longer sampled."""
    unregister = register_pool("postgres", "x", lambda: PoolStats(3, 1, 2, 5))
    assert collector.get_gauge("postgres_pool_size") == 3
    unregister()
    assert collector.get_gauge("postgres_pool_size") == 0.0


def test_one_pool_registry_per_collector(collector: MetricsCollector) -> None:
    """pool_metrics_for attaches once and returns the same registry after."""
    assert pool_metrics_for(collector) is pool_metrics_for(collector)
    other = MetricsCollector()
    assert pool_metrics_for(other) is not pool_metrics_for(collector)


def test_utilization_with_zero_max_is_zero() -> None:
    """A pool with no maximum reports 0 % rather than dividing by zero."""
    assert PoolStats(size=0, used=0, idle=0, max=0).utilization_percent == 0.0


def test_registration_arguments_are_checked(collector: MetricsCollector) -> None:
    """Empty names and non-callables are refused."""
    with pytest.raises(ValueError, match="non-empty"):
        register_pool("", "x", lambda: PoolStats(0, 0, 0, 0))
    with pytest.raises(TypeError, match="callable"):
        register_pool("postgres", "x", 42)  # type: ignore[arg-type]

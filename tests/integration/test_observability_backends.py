"""One telemetry path against real servers: an asyncpg query and a Redis command recorded
through record_call produce the span, the histogram sample and the JSON log line, all
sharing one trace id; pool gauges are sampled from the real asyncpg pool."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from infra.observability import (
    MetricsCollector,
    asyncpg_pool_stats,
    configure_logging,
    get_logger,
    record_call,
    register_pool,
    reset_metrics_collector,
    reset_tracing,
    set_metrics_collector,
    setup_tracing,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def collector() -> Iterator[MetricsCollector]:
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    yield fresh
    reset_metrics_collector()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    setup_tracing(service_name="it", exporter=exporter)
    yield exporter
    reset_tracing()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging(level="INFO", stream=stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture
async def pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pg = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=3)
    try:
        yield pg
    finally:
        await pg.close()


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_asyncpg_query_span_histogram_and_log_share_a_trace(
    postgres_dsn: str,
    pool: asyncpg.Pool,
    collector: MetricsCollector,
    spans: InMemorySpanExporter,
    log_lines: io.StringIO,
) -> None:
    """A real query: CLIENT span with semconv attributes, a latency sample, a correlated log."""
    dsn = urlsplit(postgres_dsn)
    host, port = dsn.hostname or "localhost", dsn.port or 5432
    async with record_call(
        "postgres", "fetch", system="postgresql", server_address=host, server_port=port
    ):
        rows = await pool.fetch("select 1 as one")
        get_logger("app.repo").info("rows fetched", count=len(rows))
    assert rows[0]["one"] == 1
    (span,) = spans.get_finished_spans()
    assert span.name == "fetch"
    assert span.attributes is not None
    assert span.attributes["db.system.name"] == "postgresql"
    assert span.attributes["server.port"] == port
    stats = collector.get_histogram_stats("postgres_query_latency_ms", operation="fetch")
    assert stats.count == 1
    assert 0 < stats.max < 5_000
    (line,) = [r for r in _records(log_lines) if r["event"] == "rows fetched"]
    assert line["trace_id"] == format(span.context.trace_id, "032x")
    assert line["span_id"] == format(span.context.span_id, "016x")


async def test_failing_query_logs_the_error_with_the_span_trace_id(
    pool: asyncpg.Pool,
    collector: MetricsCollector,
    spans: InMemorySpanExporter,
    log_lines: io.StringIO,
) -> None:
    """A real server error: ERROR span, error counter, and the helper's JSON warning."""
    with pytest.raises(asyncpg.UndefinedTableError):
        async with record_call("postgres", "fetch", system="postgresql"):
            await pool.fetch("select * from no_such_table_for_observability")
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "UndefinedTableError"
    assert collector.get_counter("backend_errors_total", error_type="UndefinedTableError") == 1
    (line,) = [r for r in _records(log_lines) if r["logger"] == "infra.observability.calls"]
    assert line["trace_id"] == format(span.context.trace_id, "032x")
    assert line["error_type"] == "UndefinedTableError"
    assert "no_such_table_for_observability" in line["error"]


async def test_redis_command_is_recorded(
    redis_url: str, collector: MetricsCollector, spans: InMemorySpanExporter
) -> None:
    """A real SET/GET pair: two spans in one trace under the caller's span."""
    client = Redis.from_url(redis_url)
    try:
        async with record_call("redis", "set", system="redis") as outer:
            await client.set("obs:key", "v")
            async with record_call("redis", "get", system="redis"):
                value = await client.get("obs:key")
        assert value == b"v"
    finally:
        await client.aclose()
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert set(finished) == {"set", "get"}
    assert outer.span is not None
    assert finished["get"].parent is not None
    assert finished["get"].parent.span_id == finished["set"].context.span_id
    assert collector.get_histogram_stats("redis_command_latency_ms").count == 2
    assert collector.get_counter("backend_calls_total", component="redis", outcome="ok") == 2


async def test_pool_gauges_follow_the_real_asyncpg_pool(
    pool: asyncpg.Pool, collector: MetricsCollector
) -> None:
    """postgres_pool_* gauges read the live pool: a held connection shows as active."""
    register_pool("postgres", "default", asyncpg_pool_stats(pool))
    async with pool.acquire():
        assert collector.get_gauge("postgres_pool_active") >= 1
        assert collector.get_gauge("postgres_pool_max") == 3
        utilization = collector.get_gauge("postgres_pool_utilization")
        assert utilization == pytest.approx(100.0 * collector.get_gauge("postgres_pool_active") / 3)
    assert collector.get_gauge("postgres_pool_active") == 0

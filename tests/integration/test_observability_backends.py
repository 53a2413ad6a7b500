"""One telemetry path against real servers: an asyncpg query and a Redis command recorded
through record_call produce the span, the histogram sample and the JSON log line, all
sharing one trace id; pool gauges are sampled from the real asyncpg pool."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import structlog
from dependency_injector import providers
from opentelemetry import trace
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import resolve
from infra.calls import BackendCalls
from infra.exceptions import InfraError
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
from infra.testing.chaos import ChaosProxy

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


# ------------------------------------------------- the container's defaults, end to end

OUTAGE_S = 4.0
READERS = 32


def _app(settings: Settings) -> ApplicationContainer:
    app = ApplicationContainer()
    app.core.settings.override(providers.Object(settings))
    # OpenTelemetry's global provider can be set once per process: never from tests.
    app.observability.tracing_global.override(providers.Object(False))
    return app


async def test_no_span_is_created_without_an_exporter(
    postgres_dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Container defaults (ratio 1.0, no OTLP endpoint): real PostgreSQL and Redis calls
    go through the whole call path and no span object is ever built; the same cache with
    an exporter configured does build them (so the spy below can see spans)."""
    started: list[str] = []
    original = SdkTracer.start_span

    def spy(self: SdkTracer, name: str, *args: Any, **kwargs: Any) -> Any:
        started.append(name)
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(SdkTracer, "start_span", spy)
    seen: list[bool] = []

    async def driver_side(value: str) -> str:
        seen.append(trace.get_current_span().is_recording())
        return value

    app = _app(Settings(database_url=postgres_dsn, redis_url=redis_url))
    try:
        await resolve(app.observability.metrics)
        await resolve(app.observability.tracing)
        store = await resolve(app.postgres.store)
        cache = await resolve(app.redis.cache)
        assert await store.fetchval("select 41 + 1") == 42
        await cache.set("obs:no-span", {"v": 1})
        assert await cache.get("obs:no-span") == {"v": 1}
        calls = BackendCalls("redis", family="cache", policy=cache.policy)
        assert await calls.run("get", driver_side, "x") == "x"
        assert started == []
        assert seen == [False]

        exporter = InMemorySpanExporter()
        setup_tracing(exporter=exporter)  # now an exporter is configured
        assert await cache.get("obs:no-span") == {"v": 1}
        assert started == ["get"]
        assert [s.name for s in exporter.get_finished_spans()] == ["get"]
    finally:
        reset_tracing()
        stopping = app.shutdown_resources()
        assert stopping is not None  # async resources: an awaitable
        await stopping


async def test_a_four_second_outage_under_load_writes_a_bounded_log_and_counts_add_up(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis refused for 4 s under 32 readers, through the container's cache, policy,
    metrics observer and JSON logging (default log settings: 5 lines per key and 10 s).

    Bound: every failure kind (component, operation, error type) writes at most 5 lines
    plus one "suppressed N similar" summary; each breaker transition is one line; the
    whole outage stays under 120 lines (it was one line per failed call: thousands).
    The counts add up: per failure kind, the lines written plus the suppressed counts in
    its summaries equal ``backend_errors_total`` and what the readers saw."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)  # the container logs to stderr
    async with ChaosProxy.for_url(redis_url) as proxy:
        settings = Settings(
            redis_url=proxy.url_for(redis_url),
            redis_socket_timeout=0.5,
            circuit_breaker_timeout=0.5,  # flaps open/half-open during the outage
            retry_base_delay=0.02,
        )
        app = _app(settings)
        seen: Counter[str] = Counter()
        try:
            await resolve(app.observability.logging)
            collector = await resolve(app.observability.metrics)
            cache = await resolve(app.redis.cache)
            await cache.set("obs:outage", 1)

            async def reader(until: float) -> None:
                while time.monotonic() < until:
                    try:
                        await cache.get("obs:outage")
                    except InfraError as exc:
                        seen[type(exc).__qualname__] += 1
                    await asyncio.sleep(0)

            proxy.refuse()
            proxy.reset_all()
            until = time.monotonic() + OUTAGE_S
            await asyncio.gather(*(reader(until) for _ in range(READERS)))
            proxy.heal()
            async with asyncio.timeout(10.0):
                while True:
                    try:
                        if await cache.get("obs:outage") == 1:
                            break
                    except InfraError as exc:
                        seen[type(exc).__qualname__] += 1
                    await asyncio.sleep(0.05)
            errors = {
                kind: collector.get_counter("backend_errors_total", error_type=kind)
                for kind in seen
            }
            transitions = collector.get_counter("circuit_breaker_transitions_total")
        finally:
            stopping = app.shutdown_resources()
            assert stopping is not None  # async resources: an awaitable
            await stopping  # writes the pending summaries
    lines = [json.loads(line) for line in stderr.getvalue().splitlines() if line.strip()]
    assert len(lines) <= 120, f"{len(lines)} lines for a {OUTAGE_S:g} s outage"
    assert sum(seen.values()) >= 2_000, "not enough load to flood anything"
    assert errors == seen  # metrics count every failed call, sampled logs or not

    failures = [r for r in lines if r["logger"] == "infra.observability.calls"]
    written: Counter[str] = Counter()
    summarized: Counter[str] = Counter()
    for line in failures:
        assert (line["component"], line["operation"]) == ("redis", "get")
        if "suppressed" in line:
            summarized[line["error_type"]] += line["suppressed"]
        else:
            written[line["error_type"]] += 1
    assert written + summarized == seen  # lines written + suppressed = failures, per kind
    summaries = Counter(line["error_type"] for line in failures if "suppressed" in line)
    assert all(n <= 5 for n in written.values()), written
    assert all(n <= 1 for n in summaries.values()), summaries

    breaker_lines = [r for r in lines if r["event"].startswith("circuit breaker redis:")]
    assert len(breaker_lines) == transitions >= 2  # every transition once, never sampled
    assert breaker_lines[0]["event"] == "circuit breaker redis: closed -> open"
    assert breaker_lines[-1]["event"] == "circuit breaker redis: half_open -> closed"
    others = [r for r in lines if r not in failures and r not in breaker_lines]
    kinds = Counter((r.get("component"), r.get("reason"), r.get("error_type")) for r in others)
    assert all(n <= 6 for n in kinds.values()), kinds  # sampled give-ups: burst + summary

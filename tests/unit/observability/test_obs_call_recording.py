"""One call, one duration sample: the call path's untraced fast path and ``record_call``
write the same series, and the design's millisecond names are views, not exported series."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.calls import BackendCalls
from infra.exceptions import (
    CacheConnectionError,
    CircuitBreakerOpenError,
    InvalidKeyError,
    QueryTimeoutError,
)
from infra.observability import (
    MetricsCollector,
    record_call,
    reset_metrics_collector,
    reset_tracing,
    set_metrics_collector,
)
from infra.observability.quantiles import CALL_DURATION_BUCKETS_S, SEMCONV_DURATION_BUCKETS_S
from infra.observability.series import HistogramSeries

#: What one call may do: return, raise one of these, or be cancelled.
_OUTCOMES = (
    "ok",
    "timeout",
    "connection",
    "caller",
    "rejected",
    "cancelled",
)


def _raise(outcome: str) -> None:
    if outcome == "timeout":
        raise QueryTimeoutError("statement timed out", timeout=1.0, component="postgres")
    if outcome == "connection":
        raise CacheConnectionError("connection refused", component="postgres")
    if outcome == "caller":
        raise InvalidKeyError("bad key", argument="key", component="postgres")
    if outcome == "rejected":
        raise CircuitBreakerOpenError(component="postgres")
    if outcome == "cancelled":
        raise asyncio.CancelledError


async def _driver(outcome: str) -> str:
    _raise(outcome)
    return outcome


@pytest.fixture(autouse=True)
def _no_tracing() -> Iterator[None]:
    reset_tracing()
    yield
    reset_tracing()
    reset_metrics_collector()


def _recorded(collector: MetricsCollector) -> dict[tuple[str, tuple[str, ...]], object]:
    """Every series of ``collector``: counters by value, histograms by sample count (the
    durations of two runs differ, so which bucket they fall in may too)."""
    seen: dict[tuple[str, tuple[str, ...]], object] = {}
    for family in collector.families():
        for labels, series in family.series():
            if isinstance(series, HistogramSeries):
                seen[family.name, labels] = series.count
            else:
                seen[family.name, labels] = series.get()
    return seen


async def _run_all(outcomes: list[str], run: Callable[[str], Awaitable[str]]) -> None:
    for outcome in outcomes:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await run(outcome)


@given(st.lists(st.sampled_from(_OUTCOMES), max_size=30))
def test_call_path_records_what_record_call_records(outcomes: list[str]) -> None:
    """Differential: the same sequence of outcomes through ``BackendCalls`` (untraced fast
    path) and through ``record_call`` leaves the same series with the same counts."""
    fast, plain = MetricsCollector(), MetricsCollector()

    async def through_calls(outcome: str) -> str:
        calls = BackendCalls("postgres", family="database", system="postgresql")
        return await calls.run("fetch", _driver, outcome)

    async def through_record_call(outcome: str) -> str:
        async with record_call("postgres", "fetch", system="postgresql"):
            return await _driver(outcome)

    set_metrics_collector(fast)
    asyncio.run(_run_all(outcomes, through_calls))
    set_metrics_collector(plain)
    asyncio.run(_run_all(outcomes, through_record_call))
    assert _recorded(fast) == _recorded(plain)
    assert fast.get_counter("backend_calls_total") == len(outcomes)


async def test_one_duration_family_and_ms_views_that_are_not_exported() -> None:
    """Each call is one sample of db_client_operation_duration_seconds (labelled by
    component); postgres_query_latency_ms reads it in ms and is not on the wire."""
    collector = MetricsCollector()
    set_metrics_collector(collector)
    pg = BackendCalls("postgres", family="database", system="postgresql")
    redis = BackendCalls("redis", family="cache", system="redis")
    for _ in range(3):
        await pg.run("fetch", _driver, "ok")
    await redis.run("get", _driver, "ok")
    seconds = collector.get_histogram_stats(
        "db_client_operation_duration_seconds", component="postgres"
    )
    ms = collector.get_histogram_stats("postgres_query_latency_ms", operation="fetch")
    assert seconds.count == ms.count == 3
    assert ms.sum == pytest.approx(seconds.sum * 1000.0)
    assert ms.max == pytest.approx(seconds.max * 1000.0)
    assert ms.p99 == pytest.approx(seconds.p99 * 1000.0)
    assert collector.get_histogram_stats("redis_command_latency_ms").count == 1
    assert collector.get_histogram_stats("postgres_query_latency_ms", operation="get").count == 0
    text = collector.render()[0].decode()
    assert "_latency_ms" not in text
    postgres_lines = [
        line
        for line in text.splitlines()
        if line.startswith("db_client_operation_duration_seconds")
        and 'component="postgres"' in line
    ]
    # One label set: one line per bucket, +Inf, _sum and _count.
    assert len(postgres_lines) == len(CALL_DURATION_BUCKETS_S) + 3 == 19


def test_call_buckets_keep_every_bound_opentelemetry_advises() -> None:
    """Dashboards built on the advised semconv boundaries keep working."""
    assert set(SEMCONV_DURATION_BUCKETS_S) <= set(CALL_DURATION_BUCKETS_S)
    assert list(CALL_DURATION_BUCKETS_S) == sorted(CALL_DURATION_BUCKETS_S)


def test_a_defined_family_wins_over_a_view_of_the_same_name() -> None:
    """An application that defines its own histogram under a view's name reads its own."""
    collector = MetricsCollector()
    set_metrics_collector(collector)
    asyncio.run(BackendCalls("postgres", family="database").run("fetch", _driver, "ok"))
    collector.observe("postgres_query_latency_ms", 7.0, operation="fetch")
    stats = collector.get_histogram_stats("postgres_query_latency_ms", operation="fetch")
    assert (stats.count, stats.sum) == (1, 7.0)

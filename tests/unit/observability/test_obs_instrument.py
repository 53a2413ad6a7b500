"""record_call: spans, histograms, counters and failure logs written in one place."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode

from infra.exceptions import QueryTimeoutError
from infra.observability import (
    MetricsCollector,
    instrumented,
    record_call,
    reset_tracing,
    set_metrics_collector,
    use_tracer_provider,
)
from infra.observability.instrument import CallSite
from infra.observability.tracing import current_tracing

if TYPE_CHECKING:
    from .conftest import LogCapture

SECRET = "pw-never-logged"


async def test_success_records_span_histograms_and_counter(
    collector: MetricsCollector, spans: InMemorySpanExporter
) -> None:
    """A successful call: CLIENT span with semconv attributes, ms + s histograms, ok count."""
    async with record_call(
        "postgres", "fetch", system="postgresql", server_address="db", server_port=5432
    ) as call:
        await asyncio.sleep(0)
    (span,) = spans.get_finished_spans()
    assert span.name == "fetch"
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        "db.system.name": "postgresql",
        "db.operation.name": "fetch",
        "server.address": "db",
        "server.port": 5432,
    }
    assert span.status.status_code is StatusCode.UNSET
    stats = collector.get_histogram_stats("postgres_query_latency_ms", operation="fetch")
    assert stats.count == 1
    assert call.duration_s is not None
    assert stats.max == pytest.approx(call.duration_s * 1000)
    seconds = collector.get_histogram_stats(
        "db_client_operation_duration_seconds",
        db_system_name="postgresql",
        db_operation_name="fetch",
        error_type="",
    )
    assert seconds.count == 1
    assert collector.get_counter("backend_calls_total", component="postgres", outcome="ok") == 1


async def test_failure_marks_span_counts_error_and_logs_with_trace_id(
    collector: MetricsCollector, spans: InMemorySpanExporter, logs: LogCapture
) -> None:
    """A failing call re-raises; span ERROR with error.type, error counter, one JSON warning."""
    with pytest.raises(QueryTimeoutError):
        async with record_call("postgres", "execute", system="postgresql"):
            raise QueryTimeoutError(
                f"statement timed out on postgresql://app:{SECRET}@db/x", timeout=1.5
            )
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "QueryTimeoutError"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "infra.exceptions.QueryTimeoutError"
    assert SECRET not in str(event.attributes["exception.message"])
    assert collector.get_counter("backend_calls_total", outcome="error") == 1
    errors = collector.get_counter("backend_errors_total", error_type="QueryTimeoutError")
    assert errors == 1
    assert (
        collector.get_histogram_stats(
            "db_client_operation_duration_seconds", error_type="QueryTimeoutError"
        ).count
        == 1
    )
    (record,) = [r for r in logs.records() if r["logger"] == "infra.observability.calls"]
    assert record["level"] == "warning"
    assert (record["component"], record["operation"]) == ("postgres", "execute")
    assert record["error_type"] == "QueryTimeoutError"
    assert record["retryable"] is True
    assert record["trace_id"] == format(span.context.trace_id, "032x")
    assert record["span_id"] == format(span.context.span_id, "016x")
    assert SECRET not in logs.text


async def test_cancellation_is_not_counted_as_an_error(
    collector: MetricsCollector, spans: InMemorySpanExporter, logs: LogCapture
) -> None:
    """A cancelled call is outcome=cancelled, with no error count and no warning."""

    async def slow() -> None:
        async with record_call("redis", "get"):
            await asyncio.Event().wait()

    task = asyncio.create_task(slow())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert collector.get_counter("backend_calls_total", outcome="cancelled") == 1
    assert collector.get_counter("backend_errors_total") == 0
    assert not [r for r in logs.records() if r["level"] == "warning"]
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "CancelledError"


async def test_sampled_out_calls_make_no_span_but_still_record_metrics(
    collector: MetricsCollector, tracing_factory: Callable[..., TracerProvider]
) -> None:
    """With ratio 0 no span is created; histograms and counters are unaffected."""
    exporter = InMemorySpanExporter()
    tracing_factory(sample_ratio=0.0, exporter=exporter)
    async with record_call("redis", "get") as call:
        assert call.span is None
        call.set_attribute("db.namespace", "0")  # a no-op, not an error
    assert exporter.get_finished_spans() == ()
    assert collector.get_histogram_stats("redis_command_latency_ms").count == 1
    assert collector.get_counter("backend_calls_total", component="redis") == 1


async def test_unsampled_parent_suppresses_the_child_span(
    collector: MetricsCollector, spans: InMemorySpanExporter
) -> None:
    """Under a parent whose sampled flag is off, the call makes no span (parent-based)."""
    parent = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=0x1234, span_id=0x99, is_remote=True, trace_flags=trace.TraceFlags(0)
        )
    )
    token = otel_context.attach(trace.set_span_in_context(parent))
    try:
        async with record_call("redis", "get") as call:
            assert call.span is None
            # the caller's (unsampled) trace stays current for logs inside the block
            assert trace.get_current_span() is parent
    finally:
        otel_context.detach(token)
    assert spans.get_finished_spans() == ()


async def test_sampled_parent_becomes_the_parent_span(
    collector: MetricsCollector, spans: InMemorySpanExporter
) -> None:
    """Inside an application span the backend span is its child."""
    app_tracer = current_tracing().tracer
    assert app_tracer is not None
    with app_tracer.start_as_current_span("handler") as handler:
        async with record_call("postgres", "fetch"):
            pass
    child = next(s for s in spans.get_finished_spans() if s.name == "fetch")
    assert child.parent is not None
    assert child.parent.span_id == handler.get_span_context().span_id
    assert child.context.trace_id == handler.get_span_context().trace_id


async def test_context_propagates_into_tasks_created_inside_the_call(
    collector: MetricsCollector, spans: InMemorySpanExporter
) -> None:
    """A task started inside record_call sees its span, and its own calls are children."""
    seen: list[int] = []

    async def child() -> None:
        seen.append(trace.get_current_span().get_span_context().span_id)
        async with record_call("redis", "get"):
            pass

    async with record_call("postgres", "transaction") as outer:
        assert outer.span is not None
        await asyncio.gather(asyncio.create_task(child()), asyncio.create_task(child()))
    outer_id = outer.span.get_span_context().span_id
    assert seen == [outer_id, outer_id]
    children = [s for s in spans.get_finished_spans() if s.name == "get"]
    assert len(children) == 2
    assert all(c.parent is not None and c.parent.span_id == outer_id for c in children)
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached after the block


async def test_gen_ai_call_uses_gen_ai_conventions_and_records_usage(
    collector: MetricsCollector, spans: InMemorySpanExporter
) -> None:
    """With model= the span and metrics follow gen_ai.* names; usage goes to both."""
    async with record_call("llm", "chat", system="openai", model="gpt-4o-mini") as call:
        call.record_usage(input_tokens=120, output_tokens=30)
    (span,) = spans.get_finished_spans()
    assert span.name == "chat gpt-4o-mini"
    assert span.attributes is not None
    assert span.attributes["gen_ai.provider.name"] == "openai"
    assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert span.attributes["gen_ai.usage.input_tokens"] == 120
    assert span.attributes["gen_ai.usage.output_tokens"] == 30
    usage = collector.get_histogram_stats("gen_ai_client_token_usage", gen_ai_token_type="input")
    assert (usage.count, usage.sum) == (1, 120)
    assert collector.get_histogram_stats("gen_ai_client_operation_duration_seconds").count == 1
    assert collector.get_histogram_stats("llm_request_latency_ms").count == 1


async def test_record_usage_on_a_database_call_is_a_type_error(collector: MetricsCollector) -> None:
    """Token usage needs a GenAI call."""
    with pytest.raises(TypeError, match="model="):
        async with record_call("postgres", "fetch") as call:
            call.record_usage(input_tokens=1, output_tokens=1)


async def test_decorator_records_under_the_function_name(collector: MetricsCollector) -> None:
    """@instrumented wraps a coroutine function and keeps its result."""

    @instrumented("qdrant", system="qdrant")
    async def search(x: int) -> int:
        return x * 2

    assert await search(21) == 42
    assert search.__name__ == "search"
    assert collector.get_counter("backend_calls_total", component="qdrant", operation="search") == 1


def test_sync_with_block_is_supported(collector: MetricsCollector) -> None:
    """record_call also works as a plain context manager."""
    with record_call("graph", "run"):
        pass
    assert collector.get_histogram_stats("graph_query_latency_ms").count == 1


def test_empty_component_is_rejected(collector: MetricsCollector) -> None:
    """component and operation are required."""
    with pytest.raises(ValueError, match="non-empty"):
        record_call("", "fetch")


def test_a_new_collector_gets_its_own_series(collector: MetricsCollector) -> None:
    """Installing another collector redirects recording (no stale cached series)."""
    with record_call("redis", "get"):
        pass
    other = MetricsCollector()
    set_metrics_collector(other)
    with record_call("redis", "get"):
        pass
    assert collector.get_counter("backend_calls_total") == 1
    assert other.get_counter("backend_calls_total") == 1


class _CountingSampler(Sampler):
    """An OpenTelemetry sampler that records how often the SDK consulted it."""

    def __init__(self) -> None:
        self.calls = 0

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        self.calls += 1
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "counting"


async def test_known_unsampled_calls_skip_the_sdk(collector: MetricsCollector) -> None:
    """With root ratio 0 known, or an unsampled parent, the SDK sampler is never asked;
    with an unknown ratio it decides every call."""
    sampler = _CountingSampler()
    provider = TracerProvider(sampler=sampler)
    use_tracer_provider(provider, root_sample_ratio=0.0)
    try:
        async with record_call("redis", "get"):
            pass
        assert sampler.calls == 0
        use_tracer_provider(provider)  # ratio unknown: the SDK's sampler is authoritative
        async with record_call("redis", "get") as call:
            assert call.span is None
        assert sampler.calls == 1
    finally:
        reset_tracing()
        provider.shutdown()


def test_call_site_records_what_record_call_records(collector: MetricsCollector) -> None:
    """A bound site's untraced path writes the same series as record_call."""
    site = CallSite("postgres", "fetch", system="postgresql")
    series = site.untraced()
    assert series is not None  # tracing is off in this test
    series.succeeded(0.002)
    series.failed(QueryTimeoutError("slow", timeout=1.0), 0.5)
    with record_call("postgres", "fetch", system="postgresql"):
        pass
    assert collector.get_counter("backend_calls_total", component="postgres", outcome="ok") == 2
    assert collector.get_counter("backend_errors_total", error_type="QueryTimeoutError") == 1
    stats = collector.get_histogram_stats("postgres_query_latency_ms", operation="fetch")
    assert stats.count == 3
    assert stats.max == 500.0
    seconds = collector.get_histogram_stats(
        "db_client_operation_duration_seconds", error_type="QueryTimeoutError"
    )
    assert (seconds.count, seconds.sum) == (1, 0.5)


async def test_call_site_asks_for_the_span_path_only_when_a_span_may_be_recorded(
    collector: MetricsCollector, tracing_factory: Callable[..., TracerProvider]
) -> None:
    """untraced() is None when sampled (then record() makes the span), else the series."""
    exporter = InMemorySpanExporter()
    site = CallSite("redis", "get", system="redis", server_address="cache", server_port=6379)
    tracing_factory(sample_ratio=0.0, exporter=InMemorySpanExporter())
    assert site.untraced() is not None
    tracing_factory(sample_ratio=1.0, exporter=exporter)
    assert site.untraced() is None
    async with site.record() as call:
        assert call.span is not None
        assert trace.get_current_span() is call.span
    (span,) = exporter.get_finished_spans()
    assert (span.name, span.kind) == ("get", SpanKind.CLIENT)
    assert dict(span.attributes or {}) == {
        "db.system.name": "redis",
        "db.operation.name": "get",
        "server.address": "cache",
        "server.port": 6379,
    }
    assert collector.get_counter("backend_calls_total", component="redis") == 1


async def test_call_site_under_a_sampled_parent_with_ratio_zero_is_traced(
    collector: MetricsCollector, tracing_factory: Callable[..., TracerProvider]
) -> None:
    """Parent-based sampling: a sampled parent wins over a root ratio of 0."""
    exporter = InMemorySpanExporter()
    tracing_factory(sample_ratio=0.0, exporter=exporter)
    site = CallSite("redis", "get")
    parent = trace.NonRecordingSpan(
        trace.SpanContext(0x1234, 0x99, is_remote=True, trace_flags=trace.TraceFlags(1))
    )
    token = otel_context.attach(trace.set_span_in_context(parent))
    try:
        assert site.untraced() is None
    finally:
        otel_context.detach(token)
    assert site.untraced() is not None


def test_call_site_follows_a_newly_installed_collector(collector: MetricsCollector) -> None:
    """A site resolved against one collector records into the next one installed."""
    site = CallSite("redis", "get")
    first = site.untraced()
    assert first is not None
    first.succeeded(0.001)
    other = MetricsCollector()
    set_metrics_collector(other)
    second = site.untraced()
    assert second is not None
    assert second is not first
    second.succeeded(0.001)
    assert collector.get_counter("backend_calls_total") == 1
    assert other.get_counter("backend_calls_total") == 1


def test_call_site_needs_component_and_operation() -> None:
    """Empty names are refused when the site is made, not on its first call."""
    with pytest.raises(ValueError, match="non-empty"):
        CallSite("redis", "")

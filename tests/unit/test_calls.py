"""BackendCalls: telemetry outside, policy in the middle, translation inside each attempt."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from infra.calls import BackendCalls
from infra.exceptions import CacheConnectionError, CacheError, QuerySyntaxError
from infra.observability import (
    MetricsCollector,
    reset_metrics_collector,
    reset_tracing,
    set_metrics_collector,
    setup_tracing,
)
from infra.resilience import ResiliencePolicy, RetryConfig


class Flaky:
    """Fails with the given driver errors first, then returns 'ok'."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, value: str) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return value


@pytest.fixture
def collector() -> MetricsCollector:
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    yield fresh
    reset_metrics_collector()


def policy() -> ResiliencePolicy:
    return ResiliencePolicy.instant("redis", retry=RetryConfig(max_attempts=3, jitter=False))


async def test_driver_error_is_translated_before_the_retry_decides(
    collector: MetricsCollector,
) -> None:
    """A redis ConnectionError becomes retryable CacheConnectionError, so it is retried."""
    fn = Flaky(redis.exceptions.ConnectionError("reset by peer"))
    calls = BackendCalls("redis", family="cache", policy=policy())
    assert await calls.run("get", fn, "ok") == "ok"
    assert fn.calls == 2


async def test_exhausted_retries_raise_the_translated_error_chained_to_the_driver_error(
    collector: MetricsCollector,
) -> None:
    """After the last attempt the caller sees our type with the driver error as cause."""
    errors = [redis.exceptions.ConnectionError(f"down {i}") for i in range(3)]
    fn = Flaky(*errors)
    calls = BackendCalls("redis", family="cache", policy=policy())
    with pytest.raises(CacheConnectionError) as caught:
        await calls.run("get", fn, "ok")
    assert caught.value.__cause__ is errors[-1]
    assert caught.value.details["operation"] == "get"
    assert fn.calls == 3


async def test_non_idempotent_call_is_attempted_once(collector: MetricsCollector) -> None:
    """idempotent=False disables retries even for a retryable error."""
    fn = Flaky(redis.exceptions.ConnectionError("reset"))
    calls = BackendCalls("redis", family="cache", policy=policy())
    with pytest.raises(CacheConnectionError):
        await calls.run("set", fn, "ok", idempotent=False)
    assert fn.calls == 1


async def test_non_retryable_error_is_not_retried(collector: MetricsCollector) -> None:
    """A redis ResponseError (caller error) is translated to CacheError and not retried."""
    fn = Flaky(redis.exceptions.ResponseError("WRONGTYPE"))
    calls = BackendCalls("redis", family="cache", policy=policy())
    with pytest.raises(CacheError) as caught:
        await calls.run("get", fn, "ok")
    assert not caught.value.retryable
    assert fn.calls == 1


async def test_our_own_errors_pass_through_untouched(collector: MetricsCollector) -> None:
    """An InfraError raised by the callee reaches the caller as the same object."""
    error = QuerySyntaxError(component="postgres")
    calls = BackendCalls("postgres", family="database")
    with pytest.raises(QuerySyntaxError) as caught:
        await calls.run("fetch", Flaky(error), "x")
    assert caught.value is error


async def test_cancellation_is_not_translated(collector: MetricsCollector) -> None:
    """CancelledError propagates as itself, never as an InfraError."""

    async def hang(_: str) -> str:
        await asyncio.Event().wait()
        return "never"

    calls = BackendCalls("redis", family="cache", policy=policy())
    task = asyncio.create_task(calls.run("get", hang, "x"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_each_logical_call_is_recorded_once(collector: MetricsCollector) -> None:
    """One call with a retry inside records one latency sample, not one per attempt."""
    calls = BackendCalls("postgres", family="database", system="postgresql", policy=policy())
    await calls.run("fetch", Flaky(ConnectionResetError("reset")), "ok")
    stats = collector.get_histogram_stats("postgres_query_latency_ms", operation="fetch")
    assert stats.count == 1


async def test_record_false_skips_telemetry(collector: MetricsCollector) -> None:
    """record=False runs the policy and translation without recording metrics."""
    calls = BackendCalls("postgres", family="database", record=False)
    assert await calls.run("fetch", Flaky(), "ok") == "ok"
    stats = collector.get_histogram_stats("postgres_query_latency_ms", operation="fetch")
    assert stats.count == 0


def test_component_is_required() -> None:
    """An empty component name is refused with a clear error."""
    with pytest.raises(ValueError, match="component must be a non-empty string"):
        BackendCalls("", family="cache")


def test_operation_handles_are_built_once_per_name() -> None:
    """operation(name) returns the same bound handle each time."""
    calls = BackendCalls("redis", family="cache")
    handle = calls.operation("get")
    assert handle is calls.operation("get")
    assert handle.name == "get"
    assert handle is not calls.operation("set")


def test_empty_operation_name_is_refused() -> None:
    """A handle needs a bounded operation name."""
    with pytest.raises(ValueError, match="operation must be a non-empty string"):
        BackendCalls("redis", family="cache").operation("")


@pytest.mark.parametrize("with_policy", [False, True], ids=["passthrough", "policy"])
async def test_handle_and_named_run_record_the_same_series(
    collector: MetricsCollector, with_policy: bool
) -> None:
    """handle.run(fn) and calls.run(name, fn) are one operation in every metric."""
    calls = BackendCalls(
        "postgres", family="database", system="postgresql", policy=policy() if with_policy else None
    )
    assert await calls.operation("fetch").run(Flaky(), "a") == "a"
    assert await calls.run("fetch", Flaky(), "b") == "b"
    assert collector.get_counter("backend_calls_total", operation="fetch", outcome="ok") == 2
    stats = collector.get_histogram_stats("postgres_query_latency_ms", operation="fetch")
    assert stats.count == 2
    seconds = collector.get_histogram_stats(
        "db_client_operation_duration_seconds", db_operation_name="fetch", error_type=""
    )
    assert seconds.count == 2


@pytest.mark.parametrize("with_policy", [False, True], ids=["passthrough", "policy"])
async def test_failed_call_is_translated_and_recorded_once_as_an_error(
    collector: MetricsCollector, with_policy: bool
) -> None:
    """The caller gets our error chained to the driver's; one error outcome is counted."""
    driver_error = redis.exceptions.ResponseError("WRONGTYPE")
    calls = BackendCalls("redis", family="cache", policy=policy() if with_policy else None)
    with pytest.raises(CacheError) as caught:
        await calls.operation("get").run(Flaky(driver_error), "x")
    assert caught.value.__cause__ is driver_error
    assert caught.value.details["operation"] == "get"
    assert collector.get_counter("backend_calls_total", outcome="error") == 1
    assert collector.get_counter("backend_errors_total", error_type="CacheError") == 1
    assert collector.get_histogram_stats("redis_command_latency_ms").count == 1


async def test_cancelled_call_is_recorded_as_cancelled(collector: MetricsCollector) -> None:
    """Cancellation on the direct (passthrough) path: outcome=cancelled, no error count."""

    async def hang(_: str) -> str:
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(BackendCalls("redis", family="cache").run("get", hang, "x"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert collector.get_counter("backend_calls_total", outcome="cancelled") == 1
    assert collector.get_counter("backend_errors_total") == 0


@pytest.mark.parametrize("with_policy", [False, True], ids=["passthrough", "policy"])
async def test_sampled_call_is_traced_with_its_span_current_in_the_driver_call(
    collector: MetricsCollector, with_policy: bool
) -> None:
    """A sampled call makes one CLIENT span, current while the driver runs."""
    exporter = InMemorySpanExporter()
    setup_tracing(exporter=exporter)
    seen: list[int] = []

    async def driver(value: str) -> str:
        seen.append(trace.get_current_span().get_span_context().span_id)
        return value

    calls = BackendCalls(
        "redis",
        family="cache",
        policy=policy() if with_policy else None,
        server_address="cache",
        server_port=6379,
    )
    try:
        assert await calls.operation("get").run(driver, "ok") == "ok"
    finally:
        reset_tracing()
    (span,) = exporter.get_finished_spans()
    assert seen == [span.context.span_id]
    assert (span.name, span.kind) == ("get", SpanKind.CLIENT)
    assert dict(span.attributes or {}) == {
        "db.system.name": "redis",
        "db.operation.name": "get",
        "server.address": "cache",
        "server.port": 6379,
    }
    assert collector.get_counter("backend_calls_total", outcome="ok") == 1
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_call_settings_are_read_only_once_handles_may_have_bound_them() -> None:
    """component/record/... are fixed at construction; assigning one is an error."""
    calls = BackendCalls("redis", family="cache", system="redis", record=False)
    assert (calls.component, calls.family, calls.system, calls.record) == (
        "redis",
        "cache",
        "redis",
        False,
    )
    with pytest.raises(AttributeError):
        calls.record = True  # type: ignore[misc]


async def test_handle_call_takes_the_arguments_as_a_tuple(collector: MetricsCollector) -> None:
    """call(fn, args, idempotent, timeout) is run(fn, *args, ...) without repacking."""
    fn = Flaky(redis.exceptions.ConnectionError("reset"))
    handle = BackendCalls("redis", family="cache", policy=policy()).operation("set")
    with pytest.raises(CacheConnectionError):
        await handle.call(fn, ("v",), False)  # not idempotent: no retry
    assert fn.calls == 1
    assert await handle.call(fn, ("v",)) == "v"
    assert collector.get_counter("backend_calls_total", operation="set") == 2

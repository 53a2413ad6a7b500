"""BackendCalls: telemetry outside, policy in the middle, translation inside each attempt."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis.exceptions
import structlog
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from infra.calls import BackendCalls
from infra.exceptions import (
    BackendAuthenticationError,
    BudgetExceededError,
    BulkheadFullError,
    CacheConnectionError,
    CacheError,
    CacheSerializationError,
    CircuitBreakerOpenError,
    ConfigurationError,
    ConstraintViolationError,
    DatabaseConnectionError,
    DimensionMismatchError,
    InvalidKeyError,
    LLMBadRequestError,
    LockNotOwnedError,
    PoolExhaustedError,
    QueryDataError,
    QuerySyntaxError,
    QueryTimeoutError,
    RateLimitExceededError,
    SerializationFailureError,
    UniqueViolationError,
)
from infra.observability import (
    MetricsCollector,
    MetricsResilienceObserver,
    configure_log_sampling,
    configure_logging,
    flush_log_sampling,
    reset_metrics_collector,
    reset_tracing,
    set_metrics_collector,
    setup_tracing,
)
from infra.observability.outcomes import failure_outcome, is_caller_error
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
def collector() -> Iterator[MetricsCollector]:
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


# ------------------------------------------------------------ failure log and outcomes


@pytest.fixture
def log_lines() -> Iterator[list[dict[str, Any]]]:
    """JSON lines at DEBUG (a fresh log sampler: burst 5 per 10 s); parsed on read."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging(level="DEBUG", stream=stream)
    parsed: list[dict[str, Any]] = []

    class Lines(list[dict[str, Any]]):
        def refresh(self) -> Lines:
            self[:] = [json.loads(x) for x in stream.getvalue().splitlines() if x.strip()]
            return self

    lines = Lines(parsed)
    yield lines
    root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()
    configure_log_sampling()


def _failure_lines(lines: Any) -> list[dict[str, Any]]:
    return [r for r in lines.refresh() if r["logger"] == "infra.observability.calls"]


class CountingError(CacheConnectionError):
    """A backend error that counts how often its text is rendered."""

    rendered = 0

    def __str__(self) -> str:
        type(self).rendered += 1
        return super().__str__()


async def test_a_flood_of_one_failure_writes_a_burst_and_one_summary(
    collector: MetricsCollector, log_lines: Any
) -> None:
    """1,000 failures of one kind: 5 lines, then one "suppressed 995 similar" line on
    flush; metrics count all 1,000; the error text is rendered only for written lines."""
    CountingError.rendered = 0
    calls = BackendCalls("redis", family="cache")

    async def down(_: str) -> str:
        raise CountingError("connection refused")

    for _ in range(1000):
        with pytest.raises(CountingError):
            await calls.run("get", down, "k")
    written = _failure_lines(log_lines)
    assert len(written) == 5
    assert {(r["level"], r["outcome"], r["error_type"]) for r in written} == {
        ("warning", "error", "CountingError")
    }
    assert CountingError.rendered == 5  # nothing formatted for the 995 suppressed lines
    assert flush_log_sampling() == 995
    (summary,) = _failure_lines(log_lines)[5:]
    assert (summary["component"], summary["operation"], summary["suppressed"]) == (
        "redis",
        "get",
        995,
    )
    assert collector.get_counter("backend_errors_total", error_type="CountingError") == 1000
    assert collector.get_counter("backend_calls_total", outcome="error") == 1000


async def test_no_text_is_built_when_the_level_is_off(collector: MetricsCollector) -> None:
    """Below the logger's level nothing is formatted or redacted at all."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    CountingError.rendered = 0

    async def down(_: str) -> str:
        raise CountingError("connection refused")

    try:
        for _ in range(20):
            with pytest.raises(CountingError):
                await BackendCalls("redis", family="cache").run("get", down, "k")
    finally:
        root.setLevel(level)
    assert CountingError.rendered == 0
    assert collector.get_counter("backend_errors_total") == 20


async def test_rejected_calls_of_an_open_breaker_render_nothing_once_sampled_out(
    collector: MetricsCollector, log_lines: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a real policy with the metrics observer: once the burst is spent, a
    rejected call neither renders its error (call log, give-up log) nor writes a line."""
    rendered: list[str] = []
    original = CircuitBreakerOpenError.__str__

    def counting(self: CircuitBreakerOpenError) -> str:
        rendered.append("x")
        return original(self)

    monkeypatch.setattr(CircuitBreakerOpenError, "__str__", counting)
    observer = MetricsResilienceObserver(collector)
    resilient = ResiliencePolicy.instant("redis", hooks=[observer])
    assert resilient.breaker is not None
    resilient.breaker.force_open()
    calls = BackendCalls("redis", family="cache", policy=resilient)
    for _ in range(200):
        with pytest.raises(CircuitBreakerOpenError):
            await calls.run("get", Flaky(), "k")
    written = _failure_lines(log_lines)
    assert [r["outcome"] for r in written] == ["rejected"] * 5
    give_ups = [r for r in log_lines if "gave up" in r["event"]]
    assert [r["level"] for r in give_ups] == ["debug"] * 5  # not retryable: DEBUG, sampled
    assert len(rendered) == 10  # 5 call lines + 5 give-up lines, never the other 390
    assert collector.get_counter("backend_calls_total", outcome="rejected") == 200
    assert collector.get_counter("circuit_breaker_calls_total", outcome="rejected") == 200


async def test_caller_errors_are_logged_at_debug_and_counted_apart(
    collector: MetricsCollector, log_lines: Any
) -> None:
    """A unique violation the application answers as 409 is DEBUG, outcome=caller_error."""

    async def duplicate(_: str) -> str:
        raise UniqueViolationError("duplicate key value violates unique constraint")

    calls = BackendCalls("postgres", family="database", policy=ResiliencePolicy.instant("pg"))
    with pytest.raises(UniqueViolationError):
        await calls.run("execute", duplicate, "insert")
    (line,) = _failure_lines(log_lines)
    assert (line["level"], line["outcome"], line["retryable"]) == ("debug", "caller_error", False)
    assert collector.get_counter("backend_calls_total", outcome="caller_error") == 1
    assert collector.get_counter("backend_calls_total", outcome="error") == 0
    assert collector.get_counter("backend_errors_total", error_type="UniqueViolationError") == 1


_OUTCOMES: list[tuple[BaseException, str]] = [
    (UniqueViolationError(), "caller_error"),
    (ConstraintViolationError(), "caller_error"),
    (QuerySyntaxError(), "caller_error"),
    (CacheSerializationError(), "caller_error"),
    (LockNotOwnedError(), "error"),  # contention: the lease changed hands
    (DimensionMismatchError(), "caller_error"),
    (LLMBadRequestError(), "caller_error"),
    (CircuitBreakerOpenError(), "rejected"),
    (BulkheadFullError(), "rejected"),
    (RateLimitExceededError(), "rejected"),
    (CacheConnectionError(), "error"),
    (DatabaseConnectionError(), "error"),
    (QueryTimeoutError(), "error"),
    (CacheError(), "error"),
    (PoolExhaustedError(), "error"),
    (SerializationFailureError(), "error"),
    (BackendAuthenticationError(), "error"),
    (ConfigurationError(), "error"),
    (InvalidKeyError(), "caller_error"),
    (QueryDataError(), "caller_error"),
    (BudgetExceededError(), "rejected"),
    (RuntimeError("driver bug"), "error"),
]


@given(st.lists(st.sampled_from(range(len(_OUTCOMES))), min_size=1, max_size=60))
async def test_every_failure_is_counted_once_under_the_outcome_of_its_class(
    picks: list[int],
) -> None:
    """Any stream of failures: each counted under exactly one outcome (caller errors and
    rejections apart from backend errors) and once by error type; the counts add up."""
    collector = MetricsCollector()
    set_metrics_collector(collector)
    try:
        calls = BackendCalls("redis", family="cache")
        expected: Counter[str] = Counter()
        for pick in picks:
            error, outcome = _OUTCOMES[pick]
            assert failure_outcome(error) == outcome
            assert is_caller_error(error) == (outcome == "caller_error")

            async def failing(_: str, error: BaseException = error) -> str:
                raise error

            with pytest.raises(Exception) as caught:  # noqa: PT011 - any of the 20 kinds
                await calls.run("get", failing, "k")
            assert caught.value is error or caught.value.__cause__ is error
            expected[outcome] += 1
        for outcome in ("error", "caller_error", "rejected", "ok", "cancelled"):
            counted = collector.get_counter("backend_calls_total", outcome=outcome)
            assert counted == expected[outcome], outcome
        assert collector.get_counter("backend_errors_total") == len(picks)
    finally:
        reset_metrics_collector()

"""BackendCalls: telemetry outside, policy in the middle, translation inside each attempt."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions

from infra.calls import BackendCalls
from infra.exceptions import CacheConnectionError, CacheError, QuerySyntaxError
from infra.observability import MetricsCollector, reset_metrics_collector, set_metrics_collector
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

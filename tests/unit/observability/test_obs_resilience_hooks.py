"""The metrics observer, driven by the real breaker, retry policy and bulkhead."""

from __future__ import annotations

import asyncio
import logging

import pytest

from infra.exceptions import BackendConnectionError
from infra.observability import MetricsCollector, MetricsResilienceObserver
from infra.resilience.breaker import CircuitBreaker, CircuitBreakerConfig
from infra.resilience.bulkhead import Bulkhead
from infra.resilience.clock import ManualClock
from infra.resilience.hooks import BreakerState, ResilienceObserver
from infra.resilience.retry import RetryPolicy
from infra.resilience.retry_config import RetryConfig


async def _fail() -> None:
    raise BackendConnectionError("down")


def test_observer_satisfies_the_resilience_protocols(collector: MetricsCollector) -> None:
    """It is a ResilienceObserver (breakers and retries) by structure."""
    assert isinstance(MetricsResilienceObserver(collector), ResilienceObserver)


async def test_breaker_state_gauge_and_transitions_follow_a_real_breaker(
    collector: MetricsCollector, caplog: pytest.LogCaptureFixture
) -> None:
    """closed -> open -> half-open -> closed shows in the gauge, counter and logs."""
    clock = ManualClock()
    observer = MetricsResilienceObserver(collector)
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold=2, timeout=10.0),
        name="postgres",
        clock=clock,
        hooks=[observer],
    )
    with caplog.at_level(logging.INFO, logger="infra.observability.resilience"):
        for _ in range(2):
            with pytest.raises(BackendConnectionError):
                await breaker.call(_fail)
        assert collector.get_gauge("circuit_breaker_state", breaker="postgres") == 2.0
        clock.advance(10.0)

        async def ok() -> int:
            return 1

        assert await breaker.call(ok) == 1
    assert breaker.state is BreakerState.CLOSED
    assert collector.get_gauge("circuit_breaker_state", breaker="postgres") == 0.0
    transitions = collector.get_counter
    assert transitions("circuit_breaker_transitions_total", to_state="open") == 1
    assert transitions("circuit_breaker_transitions_total", to_state="half_open") == 1
    assert transitions("circuit_breaker_transitions_total", to_state="closed") == 1
    assert collector.get_counter("circuit_breaker_calls_total", outcome="failure") == 2
    assert collector.get_counter("circuit_breaker_calls_total", outcome="success") == 1
    opened = [r for r in caplog.records if "-> open" in r.getMessage()]
    assert [r.levelno for r in opened] == [logging.WARNING]


async def test_retries_and_give_ups_are_counted(collector: MetricsCollector) -> None:
    """Each scheduled retry counts once; giving up counts by reason."""
    clock = ManualClock()
    policy = RetryPolicy(
        RetryConfig(max_attempts=3, base_delay=0.1, jitter=False),
        name="redis",
        clock=clock,
        hooks=[MetricsResilienceObserver(collector)],
    )
    with pytest.raises(BackendConnectionError):
        await policy.execute(_fail)
    assert collector.get_counter("retry_attempts_total", policy="redis") == 2
    assert (
        collector.get_counter("retry_give_ups_total", policy="redis", reason="attempts_exhausted")
        == 1
    )


async def test_bulkhead_gauges_track_in_flight_and_queued(collector: MetricsCollector) -> None:
    """A real bulkhead reports in-flight and queued calls, and rejections."""
    observer = MetricsResilienceObserver(collector)
    bulkhead = Bulkhead(1, max_queue=1, name="qdrant", hooks=observer)
    release = asyncio.Event()

    async def hold() -> None:
        await release.wait()

    first = asyncio.create_task(bulkhead.call(hold))
    second = asyncio.create_task(bulkhead.call(hold))
    await asyncio.sleep(0)
    assert collector.get_gauge("bulkhead_in_flight", bulkhead="qdrant") == 1
    assert collector.get_gauge("bulkhead_queued", bulkhead="qdrant") == 1
    with pytest.raises(Exception, match="full"):
        await bulkhead.call(hold)
    assert collector.get_counter("bulkhead_rejections_total", reason="full") == 1
    release.set()
    await asyncio.gather(first, second)
    assert collector.get_gauge("bulkhead_in_flight", bulkhead="qdrant") == 0
    assert collector.get_gauge("bulkhead_queued", bulkhead="qdrant") == 0


def test_limiter_wait_is_a_histogram_in_milliseconds(collector: MetricsCollector) -> None:
    """on_limiter_wait records seconds as milliseconds."""
    observer = MetricsResilienceObserver(collector)
    observer.on_limiter_wait("llm", 0.25)
    stats = collector.get_histogram_stats("rate_limiter_wait_ms", limiter="llm")
    assert (stats.count, stats.sum) == (1, 250.0)


async def test_breaker_call_counts_survive_a_collector_reset(collector: MetricsCollector) -> None:
    """on_call's cached series are dropped with a reset, so later calls are still counted."""
    breaker = CircuitBreaker(name="redis", hooks=[MetricsResilienceObserver(collector)])

    async def ok() -> int:
        return 1

    await breaker.call(ok)
    assert collector.get_counter("circuit_breaker_calls_total", outcome="success") == 1
    collector.reset()
    await breaker.call(ok)
    await breaker.call(ok)
    with pytest.raises(BackendConnectionError):
        await breaker.call(_fail)
    assert collector.get_counter("circuit_breaker_calls_total", outcome="success") == 2
    assert collector.get_counter("circuit_breaker_calls_total", outcome="failure") == 1

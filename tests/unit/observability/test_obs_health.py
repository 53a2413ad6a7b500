"""Health registry: concurrent checks under one deadline, latency-aware, aggregated."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from config import Settings
from infra.observability import HealthRegistry, MetricsCollector
from infra.observability.health import CheckFunction
from infra.resilience.clock import ManualClock


class Store:
    """Anything with the port's health_check(latency_threshold_ms)."""

    def __init__(self, status: str, **details: Any) -> None:
        self.status = status
        self.details = details

    async def health_check(
        self, latency_threshold_ms: float = 100.0
    ) -> tuple[bool, dict[str, Any]]:
        return self.status != "unhealthy", {"status": self.status, **self.details}


async def test_all_healthy_is_healthy_and_200() -> None:
    """Healthy checks aggregate to healthy."""
    registry = HealthRegistry()
    registry.register("postgres", Store("healthy", pool_size=5))
    registry.register("cache", _returns(True))
    report = await registry.readiness()
    assert report.status == "healthy"
    assert report.http_status == 200
    assert report.to_dict()["checks"]["postgres"]["details"]["pool_size"] == 5


async def test_slow_healthy_check_is_degraded() -> None:
    """A check slower than its latency threshold is degraded (clock injected)."""
    clock = ManualClock()

    async def slow() -> bool:
        await clock.sleep(0.25)
        return True

    registry = HealthRegistry(clock=clock)
    registry.register("redis", slow, latency_threshold_ms=100.0)
    report = await registry.readiness()
    (check,) = report.checks
    assert check.status == "degraded"
    assert check.latency_ms == pytest.approx(250.0)
    assert report.status == "degraded"
    assert report.http_status == 200


async def test_critical_failure_is_unhealthy_optional_failure_is_degraded() -> None:
    """Critical unhealthy -> 503; optional unhealthy only degrades."""
    registry = HealthRegistry()
    registry.register("llm", _returns(False), critical=False)
    registry.register("postgres", Store("healthy"))
    report = await registry.readiness()
    assert (report.status, report.http_status) == ("degraded", 200)
    registry.register("qdrant", Store("unhealthy"))
    report = await registry.readiness()
    assert (report.status, report.http_status) == ("unhealthy", 503)
    assert not report.ok


async def test_exception_makes_the_check_unhealthy_with_a_redacted_error() -> None:
    """A raising check is reported, not raised, and its message is masked."""

    async def broken() -> None:
        raise ConnectionError("refused postgresql://app:topsecret@db/x")

    registry = HealthRegistry()
    registry.register("postgres", broken)
    (check,) = (await registry.readiness()).checks
    assert check.status == "unhealthy"
    assert check.error is not None
    assert check.error.startswith("ConnectionError: refused postgresql://app:***@db/x")
    assert "topsecret" not in json.dumps((await registry.readiness()).to_dict())


async def test_checks_run_concurrently() -> None:
    """Two checks that each wait for the other finish (sequential runs would time out)."""
    a_started, b_started = asyncio.Event(), asyncio.Event()

    async def a() -> bool:
        a_started.set()
        await b_started.wait()
        return True

    async def b() -> bool:
        b_started.set()
        await a_started.wait()
        return True

    registry = HealthRegistry(timeout=0.1)
    registry.register("a", a)
    registry.register("b", b)
    assert (await registry.readiness()).status == "healthy"


async def test_one_deadline_bounds_the_whole_run() -> None:
    """A hanging check is unhealthy after the shared timeout; the others still report."""
    registry = HealthRegistry(timeout=0.05)

    async def hang() -> bool:
        await asyncio.Event().wait()
        return True

    registry.register("graph", hang)
    registry.register("redis", _returns(True))
    loop = asyncio.get_running_loop()
    start = loop.time()
    report = await registry.readiness()
    assert loop.time() - start < 10.0  # bounded, not hung (a loaded machine is slow)
    by_name = {c.name: c for c in report.checks}
    assert by_name["graph"].status == "unhealthy"
    assert by_name["graph"].error == "no answer within 0.05 s"
    assert by_name["redis"].status == "healthy"


async def test_liveness_runs_only_liveness_checks() -> None:
    """Readiness failures do not make the process 'dead'."""
    registry = HealthRegistry()
    registry.register("postgres", Store("unhealthy"))
    registry.register("event-loop", _returns(True), liveness=True)
    live = await registry.liveness()
    assert [c.name for c in live.checks] == ["event-loop"]
    assert live.status == "healthy"
    assert (await registry.readiness()).status == "unhealthy"


async def test_report_is_json_serialisable_with_secrets_masked() -> None:
    """to_dict() dumps to JSON; secret-named detail keys are masked."""
    registry = HealthRegistry()
    registry.register("redis", Store("healthy", password="s3cr3t", url="redis://:s3cr3t@h:6379"))
    body = json.dumps((await registry.readiness()).to_dict())
    assert "s3cr3t" not in body
    assert json.loads(body)["checks"]["redis"]["status"] == "healthy"


async def test_a_check_returning_the_wrong_type_is_unhealthy() -> None:
    """Returning e.g. a string is a finding naming the allowed results."""

    async def odd() -> str:
        return "ok"

    registry = HealthRegistry()
    registry.register("odd", odd)  # type: ignore[arg-type]
    (check,) = (await registry.readiness()).checks
    assert check.status == "unhealthy"
    assert check.error is not None
    assert "return None, a bool or (bool, details)" in check.error


async def test_status_gauges_are_set_when_a_collector_is_given() -> None:
    """health_check_status is 1/0.5/0 per check."""
    metrics = MetricsCollector()
    registry = HealthRegistry(collector=metrics)
    registry.register("up", _returns(True))
    registry.register("down", _returns(False))
    await registry.readiness()
    assert metrics.get_gauge("health_check_status", check="up") == 1.0
    assert metrics.get_gauge("health_check_status", check="down") == 0.0


def test_registration_errors() -> None:
    """Duplicate names, empty names, non-callables and bad thresholds are refused."""
    registry = HealthRegistry()
    registry.register("x", _returns(True))
    with pytest.raises(ValueError, match="already registered"):
        registry.register("x", _returns(True))
    with pytest.raises(ValueError, match="non-empty"):
        registry.register("", _returns(True))
    with pytest.raises(TypeError, match="health_check"):
        registry.register("y", 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency_threshold_ms"):
        registry.register("z", _returns(True), latency_threshold_ms=0)
    with pytest.raises(ValueError, match="timeout"):
        HealthRegistry(timeout=0)
    registry.unregister("x")
    assert registry.names() == []


def test_from_settings_uses_the_health_check_timeout() -> None:
    """settings.observability.health_check_timeout is the deadline."""
    registry = HealthRegistry.from_settings(Settings(health_check_timeout=0.5))
    assert registry.timeout == 0.5


def _returns(value: bool | tuple[bool, Mapping[str, Any]] | None) -> CheckFunction:
    async def check() -> bool | tuple[bool, Mapping[str, Any]] | None:
        return value

    return check

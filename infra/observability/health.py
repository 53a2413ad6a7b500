"""Health checks: a registry each resource adds its own latency-aware check to, run
concurrently under one deadline, aggregated for liveness and readiness.

Design decisions:

* **Checks sit next to their resource**. A check is either an object
  with the port's ``health_check(latency_threshold_ms)`` (every adapter has one; it
  returns ``(ok, details)`` with ``details["status"]``) or a plain coroutine function
  returning ``None``/``bool``/``(bool, details)``. An exception or a timeout makes the
  check ``unhealthy``; the report never raises.
* **One deadline.** All checks start together and share ``timeout`` seconds, so
  ``/ready`` answers within the deadline however many backends are slow. Latency is
  measured here with the injectable clock, and a healthy check slower than its
  ``latency_threshold_ms`` is reported ``degraded``.
* **Critical vs optional.** The aggregate is ``unhealthy`` if any critical check is,
  ``degraded`` if a critical check is degraded or an optional one is not healthy, else
  ``healthy``. Readiness uses every check; liveness only those registered with
  ``liveness=True`` (usually none: a process that can answer is alive, and restarting it
  because the database is down does not help). ``HealthReport.http_status`` is 503 only
  when the aggregate is unhealthy.
* Results are plain data with ``to_dict()`` (JSON-ready, secrets masked) for ``/health``
  and ``/ready``; gauges ``health_check_status{check}`` (1, 0.5, 0) and
  ``health_check_latency_ms{check}`` are set when a collector is given.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from config import Settings
from infra.observability import attributes as attr
from infra.observability.metrics import MetricsCollector
from infra.ports import HealthCheckable, HealthStatus
from infra.redaction import redact_mapping, redact_text
from infra.resilience.clock import Clock, MonotonicClock

__all__ = ["CheckFunction", "CheckOutcome", "HealthRegistry", "HealthReport"]

CheckFunction = Callable[[], Awaitable[bool | tuple[bool, Mapping[str, Any]] | None]]
_STATUSES: frozenset[str] = frozenset({"healthy", "degraded", "unhealthy"})
_GAUGE_VALUE = {"healthy": 1.0, "degraded": 0.5, "unhealthy": 0.0}


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """The result of one check."""

    name: str
    status: HealthStatus
    latency_ms: float
    critical: bool
    details: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view, secrets masked."""
        return {
            "status": self.status,
            "latency_ms": round(self.latency_ms, 3),
            "critical": self.critical,
            "details": redact_mapping(self.details),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Aggregate of one run of the checks."""

    kind: Literal["liveness", "readiness"]
    status: HealthStatus
    checks: tuple[CheckOutcome, ...]
    duration_ms: float

    @property
    def ok(self) -> bool:
        """Serving is possible (status is not ``unhealthy``)."""
        return self.status != "unhealthy"

    @property
    def http_status(self) -> int:
        """200 unless unhealthy (503)."""
        return 200 if self.ok else 503

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready body for ``/health`` or ``/ready``."""
        return {
            "status": self.status,
            "kind": self.kind,
            "duration_ms": round(self.duration_ms, 3),
            "checks": {c.name: c.to_dict() for c in self.checks},
        }


@dataclass(frozen=True, slots=True)
class _Registration:
    name: str
    check: HealthCheckable | CheckFunction
    critical: bool
    liveness: bool
    latency_threshold_ms: float


class HealthRegistry:
    """Named health checks, run concurrently under one deadline.

    Args:
        timeout: The shared deadline in seconds for one run.
        clock: Measures latency (inject ``ManualClock`` in tests).
        collector: When given, per-check status and latency gauges are set.
    """

    def __init__(
        self,
        *,
        timeout: float = 2.0,
        clock: Clock | None = None,
        collector: MetricsCollector | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self._timeout = timeout
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._checks: dict[str, _Registration] = {}
        self._lock = threading.Lock()
        self._status = self._latency = None
        if collector is not None:
            self._status = collector.gauge(
                attr.HEALTH_CHECK_STATUS, "1 healthy, 0.5 degraded, 0 unhealthy.", ("check",)
            )
            self._latency = collector.gauge(
                attr.HEALTH_CHECK_LATENCY_MS, "Latency of the last health check, ms.", ("check",)
            )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, collector: MetricsCollector | None = None
    ) -> HealthRegistry:
        """A registry whose deadline is ``settings.observability.health_check_timeout``."""
        return cls(timeout=settings.observability.health_check_timeout, collector=collector)

    @property
    def timeout(self) -> float:
        """The shared deadline of one run, seconds."""
        return self._timeout

    def register(
        self,
        name: str,
        check: HealthCheckable | CheckFunction,
        *,
        critical: bool = True,
        liveness: bool = False,
        latency_threshold_ms: float = 100.0,
    ) -> None:
        """Add ``check`` under ``name`` (unique)."""
        if not name:
            raise ValueError("name must be a non-empty string such as 'postgres'")
        if not (isinstance(check, HealthCheckable) or callable(check)):
            raise TypeError(
                f"check must have health_check() or be a coroutine function, got {check!r}"
            )
        if not latency_threshold_ms > 0:
            raise ValueError(f"latency_threshold_ms must be > 0, got {latency_threshold_ms!r}")
        with self._lock:
            if name in self._checks:
                raise ValueError(f"a health check named {name!r} is already registered")
            self._checks[name] = _Registration(
                name, check, critical, liveness, latency_threshold_ms
            )

    def replace(
        self, name: str, check: HealthCheckable | CheckFunction
    ) -> HealthCheckable | CheckFunction:
        """Swap the check registered under ``name`` for ``check``, keeping its options;
        returns the previous check (``containers.testing.use_fakes`` points a started
        registry at the fakes and back).

        Raises:
            KeyError: nothing is registered under ``name``.
        """
        with self._lock:
            previous = self._checks[name]
            self._checks[name] = replace(previous, check=check)
        return previous.check

    def unregister(self, name: str) -> None:
        """Remove the check ``name`` (no error if absent)."""
        with self._lock:
            self._checks.pop(name, None)

    def names(self) -> list[str]:
        """Registered check names."""
        with self._lock:
            return list(self._checks)

    async def readiness(self) -> HealthReport:
        """Every check: can this process serve traffic?"""
        return await self.run("readiness")

    async def liveness(self) -> HealthReport:
        """Only ``liveness=True`` checks: should this process be restarted?"""
        return await self.run("liveness")

    async def run(self, kind: Literal["liveness", "readiness"] = "readiness") -> HealthReport:
        """Run the checks of ``kind`` concurrently and aggregate them."""
        with self._lock:
            selected = [r for r in self._checks.values() if kind == "readiness" or r.liveness]
        start = self._clock.now()
        outcomes = await asyncio.gather(*(self._run_one(r) for r in selected))
        duration_ms = (self._clock.now() - start) * 1000.0
        return HealthReport(kind, _aggregate(outcomes), tuple(outcomes), duration_ms)

    async def _run_one(self, reg: _Registration) -> CheckOutcome:
        start = self._clock.now()
        details: Mapping[str, Any] = {}
        error: str | None = None
        try:
            async with asyncio.timeout(self._timeout):
                if isinstance(reg.check, HealthCheckable):
                    result: Any = await reg.check.health_check(reg.latency_threshold_ms)
                else:
                    result = await reg.check()
            status, details = _interpret(result)
        except TimeoutError:
            status, error = "unhealthy", f"no answer within {self._timeout} s"
        # A failing check is a finding, not an error of the health endpoint.
        except Exception as exc:  # noqa: BLE001
            status, error = "unhealthy", f"{type(exc).__name__}: {redact_text(str(exc))}"
        latency_ms = (self._clock.now() - start) * 1000.0
        if status == "healthy" and latency_ms > reg.latency_threshold_ms:
            status = "degraded"
        if self._status is not None and self._latency is not None:
            self._status.labels(reg.name).set(_GAUGE_VALUE[status])
            self._latency.labels(reg.name).set(latency_ms)
        return CheckOutcome(reg.name, status, latency_ms, reg.critical, details, error)


def _interpret(result: Any) -> tuple[HealthStatus, Mapping[str, Any]]:
    if result is None:
        return "healthy", {}
    if isinstance(result, bool):
        return ("healthy" if result else "unhealthy"), {}
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Mapping):
        ok, details = bool(result[0]), result[1]
        reported = details.get("status")
        if reported in _STATUSES:
            status: HealthStatus = reported
            return status, details
        return ("healthy" if ok else "unhealthy"), details
    raise TypeError(
        f"a health check returned {type(result).__name__}; return None, a bool or (bool, details)"
    )


def _aggregate(outcomes: list[CheckOutcome]) -> HealthStatus:
    if any(o.critical and o.status == "unhealthy" for o in outcomes):
        return "unhealthy"
    if any(o.status != "healthy" for o in outcomes):
        return "degraded"
    return "healthy"

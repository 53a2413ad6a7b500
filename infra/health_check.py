"""The one health check every adapter runs: a timed probe beside the breaker, never through it.

Each adapter describes its probe once, as a :class:`HealthProbe` (PostgreSQL
``select 1``, Redis ``PING``, a collection listing, Cypher ``RETURN 1``), and its
``health_check(latency_threshold_ms, timeout=...)`` is one call to
:meth:`HealthProbe.check`, which checks the arguments and runs :func:`check_health`. Every
adapter and its fake so get the same answer shape and the same rules:

* **Statuses.** ``healthy`` -- the probe answered within ``latency_threshold_ms``;
  ``degraded`` -- it answered, slower (the backend still serves, so ``ok`` is ``True``:
  a readiness probe keeps routing traffic, the status and the latency say it is slow);
  ``unhealthy`` (``ok`` is ``False``) -- the probe failed or timed out, the adapter is
  closed, or its circuit breaker is open and still waiting.
* **Never through the resilience policy.** The probe runs on a policy-free twin of the
  adapter's :class:`~infra.calls.BackendCalls` (:func:`probe_calls`): recorded (span,
  latency, outcome) and translated like any call, but it is not retried, takes no
  bulkhead slot or rate-limit token, and is invisible to the breaker -- it can neither
  take a half-open probe slot (which would leave real traffic failing fast behind a
  health probe) nor count as a failure or a success. The breaker is only *read*, and
  reading is pure (:attr:`~infra.resilience.CircuitBreaker.state`).
* **An open breaker is reported without a probe** while its timeout runs: the breaker
  already knows the backend is failing, and a health endpoint polled every few seconds
  must not hammer a backend that is down. Once the timeout has elapsed
  (``retry_after_s == 0``, the breaker waiting for a call to probe with) the health
  probe runs again: a readiness check that kept answering "unhealthy" then would keep
  traffic away, so no call would ever come to close the breaker. A half-open breaker
  does not stop the probe either. ``circuit_breaker`` reports the state as it is.
* **Latency-aware.** ``latency_ms`` is the probe's round trip, waiting for a pooled
  connection included (what a caller would wait); ``None`` when no probe was sent.
* **Never raises** for a backend failure: ``error`` says what went wrong (the error's
  type name for a failed probe, or a sentence for a closed adapter or an open breaker)
  and, for a failed probe, ``message`` its redacted text. Only a bad argument raises
  (``TypeError``/``ValueError``), before anything is sent.

The result is a :class:`HealthCheckResult`: it unpacks as ``is_healthy, details = ...``
and is truthy exactly when healthy, so ``if await store.health_check():`` reads right
too (a plain 2-tuple would always be true).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any, NamedTuple

from infra.calls import BackendCalls
from infra.exceptions import InfraError, InvalidArgumentError
from infra.ports import HealthStatus
from infra.redaction import redact_text
from infra.resilience import BreakerState, CircuitBreaker
from infra.validation import check_latency_threshold, check_timeout

__all__ = ["HealthCheckResult", "HealthProbe", "check_health", "check_threshold", "probe_calls"]

#: Longest ``message`` text kept from a failed probe.
_MAX_MESSAGE = 300


class HealthCheckResult(NamedTuple):
    """``(ok, details)``; truthy exactly when ``ok`` (healthy or degraded)."""

    ok: bool
    details: dict[str, Any]

    def __bool__(self) -> bool:
        return self.ok


def check_threshold(latency_threshold_ms: object) -> float:
    """``latency_threshold_ms`` as a float, or an ``InvalidArgumentError`` naming it."""
    return check_latency_threshold(latency_threshold_ms)


def _check_timeout(timeout: object) -> float:
    seconds = check_timeout(timeout)
    if seconds is None:
        raise InvalidArgumentError(
            "timeout must be a positive number of seconds, got None", argument="timeout"
        )
    return seconds


def probe_calls(calls: BackendCalls) -> BackendCalls:
    """A twin of ``calls`` without its resilience policy, for health probes: same
    component, error family, span attributes and telemetry switch."""
    return BackendCalls(
        calls.component,
        family=calls.family,
        system=calls.system,
        server_address=calls.server_address,
        server_port=calls.server_port,
        record=calls.record,
        collector=calls.collector,
        tracing=calls.tracing,
    )


def _error_message(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, InfraError) else redact_text(str(exc))
    return text[:_MAX_MESSAGE]


async def check_health(
    probe: Callable[[], Awaitable[object]],
    *,
    latency_threshold_ms: float,
    timeout: float,
    breaker: CircuitBreaker | None,
    probe_name: str,
    backend: str,
    closed: bool = False,
    pool: Callable[[], Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> HealthCheckResult:
    """Run ``probe`` under ``timeout`` (unless closed or the breaker is waiting) and
    classify it; see the module docstring.

    Args:
        probe: Sends the probe, outside the resilience policy (see :func:`probe_calls`).
        latency_threshold_ms: Above this round trip the status is ``degraded``.
        timeout: Seconds the probe may take before it counts as failed.
        breaker: The adapter's breaker (read, never fed), or ``None``.
        probe_name: Names the probe in messages (``"PING"``, ``"'select 1'"``).
        backend: Names the backend in messages (``"Redis"``, ``"the database"``).
        closed: The adapter was closed: unhealthy without a probe.
        pool: Adapter-specific pool fields (``pool_size``, ``pool_free``, ...).
        extra: Adapter-specific fields placed first in ``details``.
    """
    threshold = check_threshold(latency_threshold_ms)
    seconds = _check_timeout(timeout)
    snapshot = breaker.snapshot() if breaker is not None else None
    details: dict[str, Any] = dict(extra or {})
    details["status"] = "unhealthy"
    details["latency_ms"] = None
    details["circuit_breaker"] = None if snapshot is None else snapshot.state.value
    error: str | None = None
    if closed:
        error = "the adapter is closed"
    elif (
        snapshot is not None
        and snapshot.state is BreakerState.OPEN
        and (snapshot.retry_after_s or 0.0) > 0.0
    ):
        error = f"circuit breaker is open; {backend} is failing"
    else:
        start = perf_counter()
        try:
            async with asyncio.timeout(seconds):
                await probe()
        except TimeoutError:
            error = "TimeoutError"
            details["message"] = f"no answer to {probe_name} within {seconds:g} s"
        except Exception as exc:  # noqa: BLE001 -- a health check reports, it never raises
            error = type(exc).__name__
            details["message"] = _error_message(exc)
        latency_ms = (perf_counter() - start) * 1000.0
        details["latency_ms"] = round(latency_ms, 3)
        if error is None:
            status: HealthStatus = "healthy" if latency_ms <= threshold else "degraded"
            details["status"] = status
    if error is not None:
        details["error"] = error
    if pool is not None:
        details.update(pool())
    return HealthCheckResult(error is None, details)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthProbe:
    """What differs between adapters' health checks; the rest is :func:`check_health`.

    Args:
        send: Sends the probe, outside the resilience policy (see :func:`probe_calls`).
        name: Names the probe in messages (``"PING"``, ``"'select 1'"``).
        backend: Names the backend in messages (``"Redis"``, ``"the database"``).
        component: Named in the errors of bad arguments.
        timeout: Seconds the probe may take when the caller gives no ``timeout``.
        pool: Adapter-specific pool fields (``pool_size``, ``pool_free``, ...).
        threshold_in_details: Whether ``details`` repeat ``latency_threshold_ms`` first.
    """

    send: Callable[[], Awaitable[object]]
    name: str
    backend: str
    component: str | None = None
    timeout: float = 5.0
    pool: Callable[[], Mapping[str, Any]] | None = None
    threshold_in_details: bool = False

    async def check(
        self,
        latency_threshold_ms: object,
        *,
        timeout: object,
        breaker: CircuitBreaker | None,
        closed: bool = False,
    ) -> HealthCheckResult:
        """The adapter's ``health_check``: bad arguments raise ``InvalidArgumentError``
        naming them; then :func:`check_health` with this probe."""
        threshold = check_latency_threshold(latency_threshold_ms, component=self.component)
        limit = check_timeout(timeout, component=self.component)
        return await check_health(
            self.send,
            latency_threshold_ms=threshold,
            timeout=self.timeout if limit is None else limit,
            breaker=breaker,
            probe_name=self.name,
            backend=self.backend,
            closed=closed,
            pool=self.pool,
            extra=(
                {"latency_threshold_ms": latency_threshold_ms}
                if self.threshold_in_details
                else None
            ),
        )

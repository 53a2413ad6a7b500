"""The latency-aware health check of a PostgreSQL store.

``(is_healthy, details)`` with ``details`` = ``status``, ``latency_ms``, ``pool_size``,
``pool_free``, ``circuit_breaker`` (+ ``error`` when unhealthy). Decisions:

* **healthy** -- ``select 1`` came back within ``latency_threshold_ms``;
  **degraded** -- it came back, slower: the database still serves, so ``is_healthy`` is
  ``True`` (a readiness probe keeps routing traffic; the status and the latency say it is
  slow); **unhealthy** (``False``) -- the ping failed or timed out, the store is closed,
  or the circuit breaker is open.
* **An open breaker is reported without a ping**: the breaker already knows the backend
  is failing, and a health endpoint polled every few seconds must not hammer a database
  that is down. A half-open breaker does not stop the ping. The check reads the breaker;
  it never feeds it (the ping bypasses the resilience policy, so a probe from the health
  endpoint can neither trip nor close it).
* ``circuit_breaker`` is the breaker's state (``"closed"``, ``"open"``, ``"half_open"``),
  or ``None`` when the store's policy has no breaker (the basic ``PostgresStore``).
* **Never raises** for a backend failure: every error becomes ``unhealthy`` with a
  redacted ``error`` text. Only a bad argument raises (``InvalidArgumentError``).
* Latency includes waiting for a pooled connection: that is what a caller would wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from infra.exceptions import InfraError
from infra.ports import HealthStatus
from infra.redaction import redact_text
from infra.resilience import BreakerState, CircuitBreaker
from infra.validation import check_latency_threshold as check_threshold

__all__ = ["check_health", "check_threshold"]


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, InfraError):
        return f"{type(exc).__name__}: {exc.message}"
    return redact_text(f"{type(exc).__name__}: {exc}")


async def check_health(
    ping: Callable[[], Awaitable[object]],
    *,
    latency_threshold_ms: float,
    timeout: float,
    breaker: CircuitBreaker | None,
    pool_counts: Callable[[], tuple[int, int]],
    closed: bool,
) -> tuple[bool, dict[str, Any]]:
    """Run ``ping`` under ``timeout`` and classify it; see the module docstring."""
    check_threshold(latency_threshold_ms)
    state = breaker.state if breaker is not None else None
    details: dict[str, Any] = {
        "status": "unhealthy",
        "latency_ms": None,
        "pool_size": 0,
        "pool_free": 0,
        "circuit_breaker": None if state is None else state.value,
    }
    error: str | None = None
    latency_ms = 0.0
    if closed:
        error = "the store is closed"
    elif state is BreakerState.OPEN:
        error = "circuit breaker is open; the database is failing"
    else:
        start = perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await ping()
        except TimeoutError:
            error = f"no answer to 'select 1' within {timeout:g} s"
        except Exception as exc:  # noqa: BLE001 -- a health check reports, it never raises
            error = _error_text(exc)
        latency_ms = (perf_counter() - start) * 1000.0
        details["latency_ms"] = round(latency_ms, 3)
    if error is None:
        status: HealthStatus = "healthy" if latency_ms <= latency_threshold_ms else "degraded"
        details["status"] = status
    else:
        details["error"] = error
    details["pool_size"], details["pool_free"] = pool_counts()
    return error is None, details

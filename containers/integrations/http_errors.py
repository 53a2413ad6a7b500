"""Which HTTP answer each of our errors gets, for every web integration alike.

* :class:`~infra.exceptions.ConstraintViolationError` (a duplicate, a foreign key) -> 409;
* any other :class:`~infra.exceptions.CallerError` -> 422;
* the backend is down or shedding load -- a retryable error, a timeout, an exhausted
  pool, a resilience refusal (open breaker, full bulkhead, rate limit) -> 503, with
  ``Retry-After`` when the error knows when to try again;
* any other :class:`~infra.exceptions.InfraError` -> 500.

The body is JSON: ``{"error": <message>, "type", "component", "details", "retryable"}``
(the error's :meth:`~infra.exceptions.InfraError.to_dict`, secrets masked). Anything
that is not an ``InfraError`` is left to the framework (``error_answer`` returns
``None``): an unexpected bug stays a logged 500 of the framework's own.

Why a caller error is 4xx and never 5xx: the request carried something the backend
refuses (a duplicate, a value out of range, an unencodable key), so repeating it gives
the same answer; the client must change it. Why 503 and not 500 for an outage: clients
and load balancers retry a 503 (after ``Retry-After``) and page nobody for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from infra.exceptions import (
    CallerError,
    ConstraintViolationError,
    InfraError,
    InfraTimeoutError,
    PoolExhaustedError,
    ResilienceError,
)

__all__ = ["MAX_RETRY_AFTER_S", "ErrorAnswer", "error_answer", "retry_after_seconds"]

# Where our errors carry "when to try again": the breaker and the rate limiters use
# ``retry_after_s``, a provider's throttling answer ``retry_after``.
_RETRY_AFTER_KEYS = ("retry_after_s", "retry_after")
# A hint longer than a day is not a plan a client can act on (and a huge float would
# print as a 300-digit header): such a hint is ignored, as a missing one is.
MAX_RETRY_AFTER_S = 86_400.0


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """An HTTP answer: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def retry_after_seconds(exc: InfraError) -> int | None:
    """Whole seconds until a retry may succeed (at least 1), when ``exc`` says."""
    for key in _RETRY_AFTER_KEYS:
        value = exc.details.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if 0 <= value <= MAX_RETRY_AFTER_S:
            return max(1, math.ceil(value))
    return None


def _unavailable(exc: InfraError) -> bool:
    return exc.retryable or isinstance(
        exc, ResilienceError | InfraTimeoutError | PoolExhaustedError
    )


def error_answer(exc: BaseException) -> ErrorAnswer | None:
    """The answer for ``exc`` (see the table above), or ``None`` when it is not ours."""
    if not isinstance(exc, InfraError):
        return None
    body = {"error": exc.message, **exc.to_dict()}
    if isinstance(exc, CallerError):
        status = 409 if isinstance(exc, ConstraintViolationError) else 422
        return ErrorAnswer(status, body)
    if _unavailable(exc):
        seconds = retry_after_seconds(exc)
        headers = {} if seconds is None else {"Retry-After": str(seconds)}
        return ErrorAnswer(503, body, headers)
    return ErrorAnswer(500, body)

"""How a failed call is classified for telemetry: backend error, caller error or rejection.

Metrics, alert rules and the failure log must agree on one question -- did the backend
fail, or did the caller (or our own load shedding) cause the failure? -- so it is answered
here, once:

* **caller error** (:func:`is_caller_error`): the backend answered and the *request* was
  wrong (invalid SQL, a constraint or data error, an undecodable value, a lock we do not
  own, a missing collection, a bad LLM request...). Handled by the application (a unique
  violation answered as 409), so it is logged at DEBUG, counted as
  ``outcome="caller_error"`` and never in the backend's error rate.
* **rejection** (:func:`is_rejection`): the call never reached the backend because one of
  our own layers refused it (an open breaker, a full bulkhead, a local rate limit);
  counted as ``outcome="rejected"``. The breaker's own transition is what tells the story
  (logged once, paged on); each rejected call is logged at WARNING, sampled.
* anything else is a **backend error** (``outcome="error"``, WARNING, sampled).

The caller-error decision reads the breaker's exclusion set
(:data:`infra.resilience.breaker_config.DEFAULT_EXCLUDED`: errors that say nothing about
the backend's health) minus the members that are not the request's fault -- our own
resilience decisions, authentication and configuration problems, contention (an
exhausted pool, a serialization failure, a lock held elsewhere, a provider rate limit) --
and minus anything retryable. When the error hierarchy grows a caller-error concept of its
own, :func:`is_caller_error` is the one place to switch to it.
"""

from __future__ import annotations

import asyncio
from typing import Final, Literal

from infra.exceptions import (
    BackendAuthenticationError,
    BulkheadFullError,
    CircuitBreakerOpenError,
    ConfigurationError,
    InfraError,
    LockAcquireTimeoutError,
    PoolExhaustedError,
    RateLimitedError,
    RateLimitExceededError,
    ResilienceError,
    SerializationFailureError,
)
from infra.resilience.breaker_config import DEFAULT_EXCLUDED

__all__ = ["FailureOutcome", "failure_outcome", "is_caller_error", "is_rejection"]

FailureOutcome = Literal["error", "caller_error", "rejected", "cancelled"]

#: Excluded by the breaker, yet not the caller's fault (see the module docstring).
_NOT_THE_CALLERS: Final[tuple[type[BaseException], ...]] = (
    ResilienceError,
    BackendAuthenticationError,
    ConfigurationError,
    PoolExhaustedError,
    SerializationFailureError,
    LockAcquireTimeoutError,
    RateLimitedError,
)
#: Our own layers refusing a call before it reached the backend.
_REJECTIONS: Final[tuple[type[BaseException], ...]] = (
    CircuitBreakerOpenError,
    BulkheadFullError,
    RateLimitExceededError,
)


def is_caller_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the request was wrong, not that the backend failed."""
    return (
        isinstance(exc, InfraError)
        and not exc.retryable
        and isinstance(exc, DEFAULT_EXCLUDED)
        and not isinstance(exc, _NOT_THE_CALLERS)
    )


def is_rejection(exc: BaseException) -> bool:
    """Whether one of our own resilience layers refused the call (it was not attempted)."""
    return isinstance(exc, _REJECTIONS)


def failure_outcome(exc: BaseException) -> FailureOutcome:
    """The ``outcome`` label of a call that raised ``exc`` (cancellation is not a failure
    of anyone's: ``"cancelled"``)."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if is_rejection(exc):
        return "rejected"
    if is_caller_error(exc):
        return "caller_error"
    return "error"

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

The caller-error decision is the error hierarchy's own: an
:class:`~infra.exceptions.CallerError` (the same class every breaker excludes and no
retry repeats). Authentication, configuration and contention errors (an exhausted pool,
a serialization failure, a lock held or lost to another holder, a provider rate limit)
are not the request's fault, so they count as backend errors; a spent LLM budget is our
own refusal.
"""

from __future__ import annotations

import asyncio
from typing import Final, Literal

from infra.exceptions import (
    BudgetExceededError,
    BulkheadFullError,
    CallerError,
    CircuitBreakerOpenError,
    RateLimitExceededError,
)

__all__ = ["FailureOutcome", "failure_outcome", "is_caller_error", "is_rejection"]

FailureOutcome = Literal["error", "caller_error", "rejected", "cancelled"]

#: Our own layers refusing a call before it reached the backend.
_REJECTIONS: Final[tuple[type[BaseException], ...]] = (
    CircuitBreakerOpenError,
    BulkheadFullError,
    RateLimitExceededError,
    BudgetExceededError,
)


def is_caller_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the request was wrong, not that the backend failed."""
    return isinstance(exc, CallerError)


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

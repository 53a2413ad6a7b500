"""Value objects of the circuit breaker: its configuration and its snapshot.

Kept apart from the state machine (:mod:`infra.resilience.breaker_state`) and the call
styles (:mod:`infra.resilience.breaker`) so each stays short.
Validation happens at construction and names the offending field, so a bad preset or a
bad setting fails at startup, not at the first outage.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from infra.exceptions import (
    BackendAuthenticationError,
    BudgetExceededError,
    CallerError,
    ConfigurationError,
    LockAcquireTimeoutError,
    LockNotOwnedError,
    PoolExhaustedError,
    RateLimitedError,
    ResilienceError,
    SerializationFailureError,
)
from infra.resilience.hooks import BreakerState

__all__ = ["ALWAYS_EXCLUDED", "DEFAULT_EXCLUDED", "BreakerSnapshot", "CircuitBreakerConfig"]

#: Errors no breaker ever counts, whatever its ``excluded`` says: caller errors
#: (:class:`~infra.exceptions.CallerError` -- invalid arguments, SQL, data, constraints,
#: keys, bad LLM requests ...). The backend answered, or was never asked; counting them
#: would let one caller's bad input open the breaker for every caller.
ALWAYS_EXCLUDED: Final[tuple[type[BaseException], ...]] = (CallerError,)

#: Errors that say nothing about the backend's health, so they neither trip nor reset a
#: breaker. In each case the backend answered and the *request* (or our own policy) was
#: the problem:
#:
#: * caller errors (:data:`ALWAYS_EXCLUDED`) -- invalid arguments, SQL/Cypher or data,
#:   constraint violations, bad LLM requests, an over-long prompt, a missing collection,
#:   a wrong vector size, an invalid cache key, an undecodable cache value;
#: * misuse that is not a request error: releasing a lock we do not own, invalid
#:   configuration, a spent LLM budget;
#: * authentication failures -- the server is up and answering; opening the breaker would
#:   not protect it, and would hide the real error behind "breaker open" for ``timeout``
#:   seconds after the credentials are fixed;
#: * contention, not outage -- serialization failures/deadlocks, a lock held by someone
#:   else (:class:`LockAcquireTimeoutError`, the one timeout that does not count), an
#:   exhausted connection pool (our own concurrency exceeded the pool; the database is
#:   fine, and opening the breaker would turn a load spike into a full outage), and
#:   provider rate limits (the retry policy honours ``retry_after``; the token bucket
#:   paces us);
#: * our own resilience decisions (a full bulkhead, an inner breaker, a local limiter).
DEFAULT_EXCLUDED: Final[tuple[type[BaseException], ...]] = (
    *ALWAYS_EXCLUDED,
    ConfigurationError,
    BackendAuthenticationError,
    SerializationFailureError,
    LockNotOwnedError,
    LockAcquireTimeoutError,
    PoolExhaustedError,
    BudgetExceededError,
    RateLimitedError,
    ResilienceError,
)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    """When a breaker opens and how it recovers.

    Args:
        failure_threshold: Consecutive failed calls that open the breaker (>= 1); see
            ``count_retried_attempts`` for how a retried call counts.
        timeout: Seconds an open breaker waits before letting a probe through (> 0).
        half_open_max_calls: Concurrent probes allowed while half-open (>= 1).
        failure_rate_threshold: Optional fraction in (0, 1]: also open when this share of
            the last ``window_size`` counted attempts failed (checked once
            ``minimum_calls`` were recorded). ``None`` disables the rate rule.
        window_size: Length of the sliding count window for the rate rule (>= 1).
        minimum_calls: Calls the window must hold before the rate is judged
            (1..``window_size``).
        excluded: Exception types that neither count nor reset; see
            :data:`DEFAULT_EXCLUDED`. :data:`ALWAYS_EXCLUDED` (caller errors) is added
            to whatever is given, so a custom tuple cannot make caller errors count.
        count_retried_attempts: Under a retrying ``ResiliencePolicy``, whether a failed
            attempt that the policy retries counts toward ``failure_threshold`` at once.
            ``False`` (default): a call counts once, as a failure when it fails for good
            (retries spent or refused) and as a success when a retry succeeds -- so
            ``failure_threshold=5`` means "5 failed calls in a row", and transient errors
            that retries absorb do not add up to a trip (10 % independent failures and
            3 attempts: a call fails with p = 0.001, five in a row with p = 1e-15).
            ``True``: every failed attempt counts (5 failed attempts in a row open it).
            A breaker used on its own, or a call that is not retried, sees one attempt
            per call either way. The failure-rate window records every attempt.
    """

    failure_threshold: int = 5
    timeout: float = 60.0
    half_open_max_calls: int = 1
    failure_rate_threshold: float | None = None
    window_size: int = 100
    minimum_calls: int = 10
    excluded: tuple[type[BaseException], ...] = field(default=DEFAULT_EXCLUDED, repr=False)
    count_retried_attempts: bool = False

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "half_open_max_calls", "window_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not _is_int(self.minimum_calls) or not 1 <= self.minimum_calls <= self.window_size:
            raise ValueError(
                f"minimum_calls must be an integer between 1 and window_size "
                f"({self.window_size}), got {self.minimum_calls!r}"
            )
        if (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or not math.isfinite(self.timeout)
            or self.timeout <= 0
        ):
            raise ValueError(
                f"timeout must be a finite number of seconds > 0, got {self.timeout!r}"
            )
        rate = self.failure_rate_threshold
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1
        ):
            raise ValueError(
                f"failure_rate_threshold must be None or a fraction in (0, 1], got {rate!r}"
            )
        if not isinstance(self.count_retried_attempts, bool):
            raise TypeError(
                f"count_retried_attempts must be a bool, got {self.count_retried_attempts!r}"
            )
        excluded: object = self.excluded
        if isinstance(excluded, type) or not isinstance(excluded, tuple | list | frozenset | set):
            raise TypeError(
                f"excluded must be a tuple of exception types, got {excluded!r}; "
                "wrap a single type as (MyError,)"
            )
        for item in excluded:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise TypeError(f"excluded must hold exception types, got {item!r}")
        missing = tuple(t for t in ALWAYS_EXCLUDED if not any(issubclass(t, e) for e in excluded))
        object.__setattr__(self, "excluded", (*excluded, *missing))

    def new_window(self) -> deque[int] | None:
        """A fresh sliding window for the rate rule, or ``None`` when it is off."""
        if self.failure_rate_threshold is None:
            return None
        return deque(maxlen=self.window_size)

    def describe(self) -> str:
        """Short human description, e.g. ``5 failed calls / 60s, 1 probe``."""
        probes = f"{self.half_open_max_calls} probe" + ("s" if self.half_open_max_calls > 1 else "")
        unit = "attempts" if self.count_retried_attempts else "calls"
        text = f"{self.failure_threshold} failed {unit} / {self.timeout:g}s, {probes}"
        if self.failure_rate_threshold is not None:
            text += (
                f", or {self.failure_rate_threshold:.0%} of last {self.window_size}"
                f" (min {self.minimum_calls})"
            )
        return text


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A point-in-time view of a breaker (for health checks, metrics and logs)."""

    name: str
    state: BreakerState
    failure_count: int
    #: Failure share over the window, when the rate rule is on and the window is judged.
    failure_rate: float | None
    window_calls: int
    #: Seconds until a probe is let through, while OPEN.
    retry_after_s: float | None
    half_open_in_flight: int
    #: Wall-clock time (UTC) of the last opening, unless CLOSED; for humans only.
    opened_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (state as its string value, time as ISO 8601)."""
        return {
            "name": self.name,
            "state": self.state.value,
            "failure_count": self.failure_count,
            "failure_rate": self.failure_rate,
            "window_calls": self.window_calls,
            "retry_after_s": self.retry_after_s,
            "half_open_in_flight": self.half_open_in_flight,
            "opened_at": self.opened_at.isoformat() if self.opened_at else None,
        }

"""Value objects and predicates of the retry policy: its configuration and counters.

Kept apart from :mod:`infra.resilience.retry` (the loop) so each stays short. Delays are
a pure function of the configuration (:meth:`RetryConfig.backoff`,
:meth:`RetryConfig.delay_bounds`), which is what the property tests check.
"""

from __future__ import annotations

import inspect
import math
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeAlias

from infra.exceptions import InfraError

__all__ = [
    "OnRetry",
    "RetryConfig",
    "RetryStats",
    "Retryable",
    "as_predicate",
    "default_retryable",
]

#: Which errors to retry: an exception class, a tuple of exception classes, or a predicate
#: ``(error) -> bool``.
Retryable: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)
#: ``on_retry(error, attempt, delay)``: attempt ``attempt`` failed; next after ``delay`` s.
OnRetry: TypeAlias = Callable[[BaseException, int, float], Awaitable[object] | object]


def default_retryable(exc: BaseException) -> bool:
    """Retry what says it is transient: ``InfraError.retryable``, TimeoutError, ConnectionError."""
    if isinstance(exc, InfraError):
        return exc.retryable
    return isinstance(exc, TimeoutError | ConnectionError)


def as_predicate(
    retryable: Retryable | object, argument: str = "retryable"
) -> Callable[[BaseException], bool]:
    """A predicate from an exception class, a tuple of exception classes or a predicate.

    A class is checked first: an exception class is callable too, and used as a
    predicate ``SomeError(exc)`` would build an (always truthy) exception and retry
    everything. Anything else -- a list, a non-exception class, a string -- is a
    ``TypeError`` naming ``argument``, raised before any attempt is made.

    The predicate must be synchronous. tenacity's ``AsyncRetrying`` awaits an async
    ``retry=`` callback; ours used to call it and take the coroutine it returned -- always
    truthy -- as "retry", so every error was retried, even those the predicate refused. An
    ``async def`` predicate (or an object with an ``async def __call__``) is now a
    ``TypeError`` before any attempt, and a predicate that returns an awaitable anyway (a
    lambda around a coroutine function) raises a ``TypeError`` when first consulted.
    """
    if isinstance(retryable, type):
        if issubclass(retryable, BaseException):
            return _instance_of(retryable)
        raise TypeError(
            f"{argument} must be an exception class, a tuple of them or a predicate "
            f"(error) -> bool, got the class {retryable.__name__}, which is not an exception"
        )
    if isinstance(retryable, tuple):
        for item in retryable:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise TypeError(
                    f"{argument} must hold exception classes only, got {item!r} in {retryable!r}"
                )
        return _instance_of(retryable)
    if callable(retryable):
        if _is_async_callable(retryable):
            raise TypeError(
                f"{argument} must be a synchronous predicate (error) -> bool, got the async "
                f"callable {retryable!r}; decide from the error alone (no I/O), e.g. "
                "lambda error: isinstance(error, TransientError)"
            )
        return _checked(retryable, argument)
    several = isinstance(retryable, list | set | frozenset | types.UnionType)
    hint = "; use a tuple, e.g. (ErrorA, ErrorB)" if several else ""
    raise TypeError(
        f"{argument} must be an exception class, a tuple of exception classes or a predicate "
        f"(error) -> bool, got {type(retryable).__name__} {retryable!r}{hint}"
    )


def _is_async_callable(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    # An instance whose class defines ``async def __call__``.
    return not inspect.isfunction(fn) and inspect.iscoroutinefunction(type(fn).__call__)


def _checked(
    predicate: Callable[[BaseException], bool], argument: str
) -> Callable[[BaseException], bool]:
    """``predicate``, refusing an awaitable answer (consulted on failures only)."""

    def retryable(exc: BaseException) -> bool:
        answer: object = predicate(exc)
        if inspect.isawaitable(answer):
            if inspect.iscoroutine(answer):
                answer.close()  # never awaited, on purpose: no "never awaited" warning
            raise TypeError(
                f"{argument} returned an awaitable ({type(answer).__name__}); it must be a "
                "synchronous predicate (error) -> bool"
            )
        return bool(answer)

    return retryable


def _instance_of(
    classes: type[BaseException] | tuple[type[BaseException], ...],
) -> Callable[[BaseException], bool]:
    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, classes)

    return retryable


def _finite(name: str, value: object, *, minimum: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < minimum
    ):
        raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How often and how patiently to retry.

    Args:
        max_attempts: Total attempts including the first (1 = no retry).
        base_delay: Delay after the first failed attempt, in seconds.
        max_delay: Cap of any backoff delay (``retry_after`` may exceed it).
        exponential_base: Growth factor between consecutive delays (>= 1).
        jitter: Randomise each delay uniformly in ``[d/2, d]`` (equal jitter).
        deadline: Seconds from the first attempt after which no retry is started.
    """

    max_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 30.0
    exponential_base: float = 2.0
    jitter: bool = True
    deadline: float | None = None

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {attempts!r}")
        _finite("base_delay", self.base_delay, minimum=0.0)
        _finite("max_delay", self.max_delay, minimum=0.0)
        if self.max_delay < self.base_delay:
            raise ValueError(
                f"max_delay ({self.max_delay!r}) must be >= base_delay ({self.base_delay!r})"
            )
        _finite("exponential_base", self.exponential_base, minimum=1.0)
        if not isinstance(self.jitter, bool):
            raise TypeError(f"jitter must be a bool, got {self.jitter!r}")
        if self.deadline is not None:
            _finite("deadline", self.deadline, minimum=0.0)
            if self.deadline == 0:
                raise ValueError("deadline must be > 0 seconds, or None for no deadline")
            object.__setattr__(self, "deadline", float(self.deadline))
        # Floats throughout: an int base would make ``base ** n`` a huge exact integer.
        for name in ("base_delay", "max_delay", "exponential_base"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def backoff(self, attempt: int) -> float:
        """Delay before the next try after ``attempt`` (1-based) failed, without jitter."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt!r}")
        if self.base_delay == 0:
            return 0.0
        try:
            raw = self.base_delay * self.exponential_base ** (attempt - 1)
        except OverflowError:  # the growth passed any float: the cap applies
            return self.max_delay
        return min(self.max_delay, raw)

    def delay_bounds(self, attempt: int) -> tuple[float, float]:
        """The interval a (possibly jittered) delay after ``attempt`` lies in."""
        nominal = self.backoff(attempt)
        return (nominal / 2, nominal) if self.jitter else (nominal, nominal)

    def describe(self) -> str:
        """Short human description, e.g. ``3 attempts, 1s x2 up to 30s, jitter``."""
        if self.max_attempts == 1:
            return "no retry"
        text = (
            f"{self.max_attempts} attempts, {self.base_delay:g}s x{self.exponential_base:g}"
            f" up to {self.max_delay:g}s"
        )
        if self.jitter:
            text += ", jitter"
        if self.deadline is not None:
            text += f", deadline {self.deadline:g}s"
        return text


@dataclass(slots=True)
class RetryStats:
    """Counters of one policy (cheap; read by tests, benchmarks and observability)."""

    executions: int = 0  #: calls to :meth:`RetryPolicy.execute`
    retries: int = 0  #: sleeps started, i.e. attempts beyond the first
    tenacity_loops: int = 0  #: executions whose first attempt failed retryably
    give_ups: int = 0  #: executions that re-raised an error after retrying or refusing to

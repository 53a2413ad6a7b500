"""Observer hooks: how breakers and retry policies report what they decide.

Metrics, logs and traces (the observability package) subscribe here instead of wrapping
the policies, so every decision is reported once, from the place that made it.

Design:

* Two small :class:`typing.Protocol` s, one per event family: :class:`BreakerObserver`
  (state transitions and the outcome of each guarded call) and :class:`RetryObserver`
  (a retry was scheduled; the policy gave up). :class:`ResilienceObserver` is both. An
  observer is any object with those methods -- no base class to inherit.
* **Cheap when unused.** Components keep their observers in a tuple and test it for
  truthiness before building any event, so a policy with no observer pays one ``if``.
* **An observer cannot break a call.** :func:`notify` logs and swallows an exception
  raised by an observer; the guarded call's own result or error is what the caller sees.
* :class:`RecordingObserver` keeps every event in memory. It is public because users'
  tests (and ours) assert on decisions with it rather than by mocking the policies.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

__all__ = [
    "BreakerObserver",
    "BreakerState",
    "CallOutcome",
    "GiveUpReason",
    "RecordingObserver",
    "ResilienceObserver",
    "RetryObserver",
    "notify",
]

_log = logging.getLogger("infra.resilience")


class BreakerState(enum.StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CallOutcome(enum.StrEnum):
    """How one call through a breaker ended, as far as the breaker is concerned."""

    SUCCESS = "success"  #: returned normally
    FAILURE = "failure"  #: raised an error that counts against the backend
    EXCLUDED = "excluded"  #: raised a caller error; counts neither way
    REJECTED = "rejected"  #: not attempted: the breaker was open (or probes were busy)
    CANCELLED = "cancelled"  #: cancelled (or another BaseException); never counted
    IGNORED = "ignored"  #: finished after the breaker changed state; not counted


class GiveUpReason(enum.StrEnum):
    """Why a retry policy stopped and re-raised the last error."""

    NOT_RETRYABLE = "not_retryable"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    DEADLINE = "deadline"
    BUDGET_EXHAUSTED = "budget_exhausted"
    CALLBACK_FAILED = "callback_failed"  #: the call's ``on_retry`` callback raised


@runtime_checkable
class BreakerObserver(Protocol):
    """Receives a circuit breaker's transitions and call outcomes."""

    def on_state_change(self, name: str, old: BreakerState, new: BreakerState) -> None:
        """The breaker ``name`` moved from ``old`` to ``new``."""
        ...

    def on_call(self, name: str, outcome: CallOutcome) -> None:
        """A call through the breaker ``name`` ended with ``outcome``."""
        ...


@runtime_checkable
class RetryObserver(Protocol):
    """Receives a retry policy's decisions."""

    def on_retry(self, name: str, attempt: int, delay: float, error: BaseException) -> None:
        """Attempt ``attempt`` failed with ``error``; the next starts after ``delay`` s."""
        ...

    def on_give_up(
        self, name: str, attempts: int, reason: GiveUpReason, error: BaseException
    ) -> None:
        """The policy re-raised ``error`` after ``attempts`` attempts, for ``reason``."""
        ...


@runtime_checkable
class ResilienceObserver(BreakerObserver, RetryObserver, Protocol):
    """An observer of both breakers and retry policies (what observability provides)."""


_O = TypeVar("_O")


def notify(observers: Sequence[_O], event: Callable[[_O], object]) -> None:
    """Deliver ``event`` to each observer; an observer's error is logged, never raised.

    Callers check ``if observers:`` first, so nothing here runs when none is registered.
    """
    for observer in observers:
        try:
            event(observer)
        # An observer is instrumentation: its bug must not turn a successful call into a
        # failure, nor replace the real error the caller should see.
        except Exception:  # noqa: BLE001
            _log.warning("resilience observer %r raised; event dropped", observer, exc_info=True)


@dataclass(slots=True)
class RecordingObserver:
    """Keeps every event in order; for tests and interactive debugging."""

    transitions: list[tuple[str, BreakerState, BreakerState]] = field(default_factory=list)
    calls: list[tuple[str, CallOutcome]] = field(default_factory=list)
    retries: list[tuple[str, int, float, BaseException]] = field(default_factory=list)
    give_ups: list[tuple[str, int, GiveUpReason, BaseException]] = field(default_factory=list)

    def on_state_change(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.transitions.append((name, old, new))

    def on_call(self, name: str, outcome: CallOutcome) -> None:
        self.calls.append((name, outcome))

    def on_retry(self, name: str, attempt: int, delay: float, error: BaseException) -> None:
        self.retries.append((name, attempt, delay, error))

    def on_give_up(
        self, name: str, attempts: int, reason: GiveUpReason, error: BaseException
    ) -> None:
        self.give_ups.append((name, attempts, reason, error))

    def outcomes(self) -> list[CallOutcome]:
        """Just the call outcomes, in order."""
        return [outcome for _, outcome in self.calls]

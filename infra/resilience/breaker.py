"""Circuit breaker: fail fast while a backend is down, let a bounded probe test recovery.

CLOSED counts failures; at ``failure_threshold`` consecutive failed calls (or, when
``failure_rate_threshold`` is set, at that failure rate over the last ``window_size``
counted attempts once ``minimum_calls`` were seen) it turns OPEN. While OPEN every call fails
at once with :class:`~infra.exceptions.CircuitBreakerOpenError`. After ``timeout``
seconds the next call turns it HALF_OPEN and becomes a probe; at most
``half_open_max_calls`` probes run at a time, the rest fail fast. A probe's success closes
the breaker; a probe's failure reopens it with a fresh timeout.

**What we take from aiobreaker, and why the rest is ours.** The design card names
aiobreaker. We keep its state record: a :class:`aiobreaker.storage.memory.
CircuitMemoryStorage` holds the state (as :class:`aiobreaker.CircuitBreakerState`), the
consecutive-failure counter and the wall-clock opening time. Its ``CircuitBreaker`` and
state classes are not used, because with aiobreaker 1.2.0 they (measured): re-raise a
``CircuitBreakerError`` instead of the original error on the tripping call; let every
concurrent caller through in HALF_OPEN; count excluded errors as successes (resetting the
counter); time the OPEN period with the deprecated, naive ``datetime.utcnow()`` (wrong on
non-UTC hosts, a DeprecationWarning on 3.12+); and offer no ``async with``. The
transition rules, probe admission, failure-rate window and timing are therefore here.

Counting rules:

* a failure is any ``Exception`` not in ``config.excluded``; timeouts count
  (:class:`~infra.exceptions.InfraTimeoutError`, builtin ``TimeoutError``);
* excluded errors (caller errors: the backend answered, the request was wrong) neither
  count nor reset the counter -- see :data:`DEFAULT_EXCLUDED` for the list and reasons;
* ``asyncio.CancelledError`` (any non-``Exception``) never counts; a probe slot it held
  is released;
* a call that finishes after the breaker changed state (a slow call admitted before a
  trip, a second probe after the first closed it) is ignored, so it cannot reopen a
  freshly closed breaker nor close a freshly reopened one.

**Calls and attempts.** Used on its own, every call through the breaker is one attempt.
A retrying ``ResiliencePolicy`` makes several attempts per call and, by default, reports
them with :meth:`CircuitBreaker.record_attempt` (seen by observers and the rate window,
but the consecutive count waits) and the call's end with
:meth:`CircuitBreaker.record_give_up` (one failure, if the final error counts). So
``failure_threshold`` counts failed *calls*, and transient errors that retries absorb do
not add up to a trip; the reasoning and the numbers are in :mod:`infra.resilience.policy`.
``CircuitBreakerConfig.count_retried_attempts`` makes the policy count every attempt.

The happy path reads two plain attributes (``_closed``, ``_quiet``) mirroring the
aiobreaker storage, whose fields are Python properties: admitting and recording a
success in a steady CLOSED state costs no property call (with observers, recording it
is one ``on_call`` per observer).

Time comes from the injected :class:`~infra.resilience.clock.Clock` (monotonic). The
breaker is confined to one event loop: every state change happens between two awaits, so
no lock is needed.

The module holds the configuration and snapshot value objects
(:class:`CircuitBreakerConfig`: validated at construction, naming the offending field, so
a bad preset or setting fails at startup, not at the first outage), the state machine
and the call styles of :class:`CircuitBreaker`.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FunctionType, TracebackType
from typing import Any, Final, ParamSpec, Self, TypeVar, overload

from aiobreaker import CircuitBreakerState as _AioState
from aiobreaker.storage.memory import CircuitMemoryStorage

from infra.exceptions import (
    BackendAuthenticationError,
    BudgetExceededError,
    CallerError,
    CircuitBreakerOpenError,
    ConfigurationError,
    LockAcquireTimeoutError,
    LockNotOwnedError,
    PoolExhaustedError,
    RateLimitedError,
    ResilienceError,
    SerializationFailureError,
)
from infra.resilience._awaitables import NOTHING, misuse
from infra.resilience.clock import Clock, MonotonicClock
from infra.resilience.hooks import BreakerObserver, BreakerState, CallOutcome, notify

__all__ = [
    "ALWAYS_EXCLUDED",
    "DEFAULT_EXCLUDED",
    "BreakerSnapshot",
    "CircuitBreaker",
    "CircuitBreakerConfig",
]

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


_TO_AIO: Final = {
    BreakerState.CLOSED: _AioState.CLOSED,
    BreakerState.OPEN: _AioState.OPEN,
    BreakerState.HALF_OPEN: _AioState.HALF_OPEN,
}
_FROM_AIO: Final = {aio: ours for ours, aio in _TO_AIO.items()}
_AIO_CLOSED: Final = _AioState.CLOSED
_AIO_OPEN: Final = _AioState.OPEN
_AIO_HALF_OPEN: Final = _AioState.HALF_OPEN

#: The ticket of a call that the same breaker already guards in the same task (a nested
#: call): admitted without a probe slot, its outcome is left to the outer call. Never
#: equal to a generation, so every record path ignores it.
NESTED: Final = -1
_current_task: Final = asyncio.current_task


P = ParamSpec("P")
T = TypeVar("T")

# ``async with breaker:`` needs the generation it was admitted in at exit time. Each task
# runs in its own context, so a context variable holding a stack of (breaker, generation,
# task) keeps concurrent tasks and nested breakers apart without per-task bookkeeping.
# The task is recorded because tasks created inside the block inherit a copy of the
# stack: only the task that entered is inside the block.
_ENTERED: ContextVar[tuple[tuple[CircuitBreaker, int, asyncio.Task[Any] | None], ...]] = ContextVar(
    "infra_resilience_breaker_entered", default=()
)
#: Attribute marking a function returned by ``@breaker`` with the breaker guarding it.
_GUARDED_BY: Final = "__circuit_breaker__"


class CircuitBreaker:
    """An asyncio circuit breaker; see the module docstring for the exact rules.

    Args:
        config: Thresholds and exclusions (defaults: 5 failed calls, 60 s, 1 probe).
        name: Identifies the breaker in errors, snapshots and observer events.
        component: ``component`` of the errors it raises; defaults to ``name``.
        clock: Time source; :class:`MonotonicClock` unless a test injects another.
        hooks: Observers told about every transition and call outcome.

    Build it as ``CircuitBreaker("redis", config)`` (name first) or
    ``CircuitBreaker(config, name="redis")``. Use it as ``await breaker.call(fn, *args,
    **kwargs)``, ``async with breaker: ...`` or as a decorator ``@breaker`` on an async
    function.

    **One call, one count.** A call the same breaker already guards in the same task is
    not guarded a second time: ``breaker.call(f)`` on a function decorated with
    ``@breaker``, ``@breaker`` applied twice, ``breaker.call``/a decorated function/a
    nested ``async with breaker`` inside ``async with breaker``, and -- while HALF_OPEN --
    any call a probe makes through the breaker again (also through a
    ``ResiliencePolicy`` holding it). The inner call runs straight through and the outer
    one alone is admitted and counted; otherwise each failure would count twice, and a
    half-open probe would be refused by its own probe slot and wedge the breaker in
    HALF_OPEN. Not detected, because telling it apart would cost every call: a
    CLOSED-state call that reaches the breaker again through a layer of its own (e.g.
    ``breaker.call(lambda: breaker.call(f))``); its failure counts at both layers.
    """

    __slots__ = (
        "_blocks",
        "_clock",
        "_closed",
        "_component",
        "_config",
        "_excluded",
        "_failures_in_window",
        "_gen",
        "_hooks",
        "_name",
        "_opened_at",
        "_probe_tasks",
        "_probes",
        "_quiet",
        "_store",
        "_window",
    )

    @overload
    def __init__(
        self,
        name: str,
        config: CircuitBreakerConfig | None = None,
        /,
        *,
        component: str | None = None,
        clock: Clock | None = None,
        hooks: Sequence[BreakerObserver] = (),
    ) -> None: ...

    @overload
    def __init__(
        self,
        config: CircuitBreakerConfig | None = None,
        /,
        *,
        name: str,
        component: str | None = None,
        clock: Clock | None = None,
        hooks: Sequence[BreakerObserver] = (),
    ) -> None: ...

    @overload
    def __init__(
        self,
        *,
        config: CircuitBreakerConfig | None = None,
        name: str,
        component: str | None = None,
        clock: Clock | None = None,
        hooks: Sequence[BreakerObserver] = (),
    ) -> None: ...

    def __init__(
        self,
        *positional: str | CircuitBreakerConfig | None,
        config: CircuitBreakerConfig | None = None,
        name: str | None = None,
        component: str | None = None,
        clock: Clock | None = None,
        hooks: Sequence[BreakerObserver] = (),
    ) -> None:
        name, config = _name_and_config(positional, name, config)
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self._config = config if config is not None else CircuitBreakerConfig()
        if not isinstance(self._config, CircuitBreakerConfig):
            raise TypeError(f"config must be a CircuitBreakerConfig, got {config!r}")
        self._name = name
        self._component = component or name
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._hooks = tuple(hooks)
        self._excluded = self._config.excluded
        self._store = CircuitMemoryStorage(_AIO_CLOSED)
        self._gen = 0  # bumped on every transition; outcomes from older generations are ignored
        self._probes = 0  # probes in flight in the current HALF_OPEN generation
        # Tasks holding those probes: a probe that calls through the breaker again is a
        # nested call, not a second probe (it would find every slot busy -- its own).
        self._probe_tasks: set[asyncio.Task[object]] = set()
        self._blocks = 0  # ``async with`` blocks of this breaker open, in any task
        self._opened_at = 0.0  # clock time of the last transition to OPEN
        self._window = self._config.new_window()
        self._failures_in_window = 0
        # Mirrors of the store (whose fields are properties) for the happy path: CLOSED,
        # and "a success changes nothing" (CLOSED, count 0, no window, no observers).
        self._closed: bool
        self._quiet: bool
        self._settle()

    # ------------------------------------------------------------------ introspection
    @property
    def name(self) -> str:
        """The breaker's name."""
        return self._name

    @property
    def config(self) -> CircuitBreakerConfig:
        """The configuration it was built with."""
        return self._config

    @property
    def state(self) -> BreakerState:
        """The current state. Reading it changes nothing: an OPEN breaker whose timeout
        has elapsed stays OPEN (``snapshot().retry_after_s == 0``) until a call is
        admitted as its probe, which is when it turns HALF_OPEN and observers hear of it.
        """
        return _FROM_AIO[self._store.state]

    @property
    def failure_count(self) -> int:
        """Consecutive counted failures (the number that tripped it, while OPEN)."""
        return int(self._store.counter)

    def snapshot(self) -> BreakerSnapshot:
        """A consistent, immutable view for health checks, metrics and logs."""
        state = self.state
        window = self._window
        rate = None
        if window is not None and len(window) >= self._config.minimum_calls:
            rate = self._failures_in_window / len(window)
        opened_at = self._store.opened_at if state is not BreakerState.CLOSED else None
        return BreakerSnapshot(
            name=self._name,
            state=state,
            failure_count=self.failure_count,
            failure_rate=rate,
            window_calls=len(window) if window is not None else 0,
            retry_after_s=self._remaining() if state is BreakerState.OPEN else None,
            half_open_in_flight=self._probes if state is BreakerState.HALF_OPEN else 0,
            opened_at=opened_at,
        )

    def describe(self) -> str:
        """One line, e.g. ``breaker(5 failures / 60s, 1 probe)``."""
        return f"breaker({self._config.describe()})"

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(name={self._name!r}, state={_FROM_AIO[self._store.state].value}, "
            f"failure_count={self.failure_count}, {self._config.describe()})"
        )

    # ------------------------------------------------------------------ manual control
    def reset(self) -> None:
        """Close the breaker and forget all counts (operator action, tests)."""
        if self._store.state is not _AIO_CLOSED:
            self._transition(BreakerState.CLOSED)
        self._store.reset_counter()
        self._clear_window()
        self._settle()

    def force_open(self) -> None:
        """Open the breaker now, with a fresh timeout (operator action, tests)."""
        self._transition(BreakerState.OPEN)

    # ------------------------------------------------------------------ state machine
    def _remaining(self) -> float:
        return max(0.0, self._opened_at + self._config.timeout - self._clock.now())

    def _admit(self) -> int:
        """Admission when not CLOSED: fail fast, or become a half-open probe.

        The only place an OPEN breaker turns HALF_OPEN: when a call is admitted as its
        probe (never when the state is read).
        """
        state = self._store.state
        if state is _AIO_OPEN:
            remaining = self._remaining()
            if remaining > 0.0:
                raise self._rejected(BreakerState.OPEN, remaining)
            self._transition(BreakerState.HALF_OPEN)
        elif state is _AIO_CLOSED:
            return self._gen
        task = _current_task()
        if task is not None and task in self._probe_tasks:
            return NESTED  # this task's own probe calls through us again
        if self._probes >= self._config.half_open_max_calls:
            raise self._rejected(BreakerState.HALF_OPEN, 0.0)
        self._probes += 1
        if task is not None:
            self._probe_tasks.add(task)
        return self._gen

    def _rejected(self, state: BreakerState, retry_after: float) -> CircuitBreakerOpenError:
        if self._hooks:
            notify(self._hooks, lambda o: o.on_call(self._name, CallOutcome.REJECTED))
        return CircuitBreakerOpenError(
            component=self._component,
            details={
                "breaker": self._name,
                "state": state.value,
                "failure_count": int(self._store.counter),
                "retry_after_s": round(retry_after, 6),
            },
        )

    def _succeeded(self, gen: int) -> None:
        store = self._store
        if gen != self._gen:
            outcome = CallOutcome.IGNORED
        else:
            outcome = CallOutcome.SUCCESS
            if store.state is _AIO_HALF_OPEN:
                self._notify_call(outcome)
                self._transition(BreakerState.CLOSED)
                return
            if store.counter:
                store.reset_counter()
                self._settle()
            if self._window is not None:
                self._record_in_window(failed=False)
        if self._hooks:
            self._notify_call(outcome)

    def _failed(self, exc: Exception, gen: int, *, final: bool = True) -> None:
        """Count a failure; with ``final=False`` leave the consecutive count to the caller."""
        if isinstance(exc, self._excluded):
            self._abandoned(gen, CallOutcome.EXCLUDED)
            return
        if gen != self._gen:
            self._notify_call(CallOutcome.IGNORED)
            return
        store = self._store
        if store.state is _AIO_HALF_OPEN:
            store.increment_counter()
            self._quiet = False
            self._notify_call(CallOutcome.FAILURE)
            self._transition(BreakerState.OPEN)
            return
        tripped = False
        if final:
            store.increment_counter()
            self._quiet = False
            tripped = store.counter >= self._config.failure_threshold
        self._notify_call(CallOutcome.FAILURE)
        if self._window is not None:
            self._record_in_window(failed=True)
            tripped = tripped or self._rate_exceeded()
        if tripped:
            self._transition(BreakerState.OPEN)

    def _count_failed_call(self) -> None:
        """One more failed call in a row (CLOSED); open at ``failure_threshold``."""
        store = self._store
        store.increment_counter()
        self._quiet = False
        if store.counter >= self._config.failure_threshold:
            self._transition(BreakerState.OPEN)

    def _abandoned(self, gen: int, outcome: CallOutcome) -> None:
        """The call neither succeeded nor failed; free its probe slot if it held one."""
        if gen == self._gen and self._store.state is _AIO_HALF_OPEN:
            self._probes -= 1
            task = _current_task()
            if task is not None:
                self._probe_tasks.discard(task)
        self._notify_call(outcome)

    def _notify_call(self, outcome: CallOutcome) -> None:
        if self._hooks:
            notify(self._hooks, lambda o: o.on_call(self._name, outcome))

    def _record_in_window(self, *, failed: bool) -> None:
        window = self._window
        assert window is not None  # noqa: S101 -- callers check; narrows the type
        if len(window) == window.maxlen:
            self._failures_in_window -= window[0]
        window.append(1 if failed else 0)
        self._failures_in_window += 1 if failed else 0

    def _rate_exceeded(self) -> bool:
        window = self._window
        rate = self._config.failure_rate_threshold
        if window is None or rate is None or len(window) < self._config.minimum_calls:
            return False
        return self._failures_in_window >= rate * len(window)

    def _clear_window(self) -> None:
        if self._window is not None:
            self._window.clear()
        self._failures_in_window = 0

    def _settle(self) -> None:
        """Refresh the happy-path mirrors after the state or the count changed."""
        self._closed = closed = self._store.state is _AIO_CLOSED
        # Quiet: a success changes nothing (observers are still told, see record()).
        self._quiet = closed and not self._store.counter and self._window is None

    def _transition(self, new: BreakerState) -> None:
        store = self._store
        old = _FROM_AIO[store.state]
        store.state = _TO_AIO[new]
        self._gen += 1
        self._probes = 0
        self._probe_tasks.clear()
        if new is BreakerState.OPEN:
            self._opened_at = self._clock.now()
            store.opened_at = datetime.now(UTC)  # wall time, for humans; decisions use _opened_at
        elif new is BreakerState.CLOSED:
            store.reset_counter()
            self._clear_window()
        self._settle()
        if self._hooks and old is not new:
            notify(self._hooks, lambda o: o.on_state_change(self._name, old, new))

    # ------------------------------------------------------------ manual admission
    def admit(self) -> int:
        """Admit one call made outside :meth:`call`; returns its ticket for :meth:`record`.

        For composing layers without an extra coroutine (``ResiliencePolicy`` uses it).
        Every admitted ticket must be passed to :meth:`record` or :meth:`release` once.

        Raises:
            CircuitBreakerOpenError: Open, or half-open with every probe slot busy.
        """
        return self._gen if self._closed else self._admit()

    def record(self, ticket: int, error: BaseException | None = None) -> None:
        """The admitted call ended: ``None`` for success, else the error it raised."""
        if error is None:
            if not self._quiet or ticket != self._gen:
                self._succeeded(ticket)
            elif self._hooks:
                self._notify_call(CallOutcome.SUCCESS)
        elif isinstance(error, Exception):
            self._failed(error, ticket)
        else:
            self._abandoned(ticket, CallOutcome.CANCELLED)

    def record_attempt(self, ticket: int, error: BaseException) -> None:
        """An admitted attempt failed with ``error``; its caller may still retry the call.

        As :meth:`record`, except that a counted failure while CLOSED does not move the
        consecutive count (the failure-rate window and the observers see it as usual).
        The caller either retries -- a later success resets the count as usual -- or
        reports the call's end to :meth:`record_give_up`. A failed half-open probe still
        reopens the breaker at once.
        """
        if isinstance(error, Exception):
            self._failed(error, ticket, final=False)
        else:
            self._abandoned(ticket, CallOutcome.CANCELLED)

    def record_give_up(self, ticket: int, error: BaseException) -> None:
        """A call whose attempts went through :meth:`record_attempt` failed for good.

        ``ticket`` is that of its last admitted attempt, ``error`` what the call raised.
        Counts one failure toward ``failure_threshold`` -- unless ``error`` is one the
        breaker does not count (excluded, or not an ``Exception``) or the breaker
        changed state since ``ticket`` was admitted (a probe's failure already reopened
        it, the rate rule tripped it, or another call did).
        """
        if (
            ticket == self._gen
            and self._closed
            and isinstance(error, Exception)
            and not isinstance(error, self._excluded)
        ):
            self._count_failed_call()

    def release(self, ticket: int) -> None:
        """The admitted call proved nothing (it never reached the backend); count nothing."""
        self._abandoned(ticket, CallOutcome.EXCLUDED)

    # ------------------------------------------------------------------ guarded calls
    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` (any awaitable-returning callable) under the breaker.

        Raises:
            CircuitBreakerOpenError: Open, or half-open with every probe slot busy.
            Exception: Whatever ``fn`` raised -- always the original error.
        """
        # Already guarded by us (a function we decorated, or a call inside one of our
        # blocks): count it once. Cheap on purpose -- a plain function's __dict__ is
        # empty, and _blocks is 0 unless some task is inside ``async with self``.
        if (
            fn.__class__ is FunctionType and fn.__dict__ and fn.__dict__.get(_GUARDED_BY) is self
        ) or (self._blocks and self._inside_block()):
            return await fn(*args, **kwargs)
        gen = self._gen if self._closed else self._admit()
        returned: Any = NOTHING
        try:
            awaitable = returned = fn(*args, **kwargs)
            result = await awaitable
        except Exception as exc:
            bad = misuse(fn, returned, exc)
            if bad is not None:
                self._abandoned(gen, CallOutcome.EXCLUDED)
                raise bad from exc
            self._failed(exc, gen)
            raise
        except BaseException:
            self._abandoned(gen, CallOutcome.CANCELLED)
            raise
        self._succeeded(gen)
        return result

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function so every call goes through this breaker (once:
        decorating a function this breaker already guards returns it unchanged)."""
        if not callable(fn):
            raise TypeError(f"@{type(self).__name__} decorates a callable, got {fn!r}")
        if getattr(fn, _GUARDED_BY, None) is self:
            return fn

        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self.call(fn, *args, **kwargs)

        setattr(guarded, _GUARDED_BY, self)
        return guarded

    def _inside_block(self) -> bool:
        """Whether the current task is inside an ``async with`` of this breaker."""
        task = _current_task()
        return any(breaker is self and owner is task for breaker, _, owner in _ENTERED.get())

    async def __aenter__(self) -> Self:
        if self._blocks and self._inside_block():
            gen = NESTED  # the outer block is admitted and counted; this one passes through
        else:
            gen = self._gen if self._closed else self._admit()
        _ENTERED.set((*_ENTERED.get(), (self, gen, _current_task())))
        self._blocks += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entered = _ENTERED.get()
        for index in range(len(entered) - 1, -1, -1):
            if entered[index][0] is self:
                gen = entered[index][1]
                _ENTERED.set(entered[:index] + entered[index + 1 :])
                break
        else:
            raise RuntimeError(f"{self!r}: __aexit__ without a matching __aenter__")
        self._blocks -= 1
        if gen == NESTED:
            return
        if exc is None:
            self._succeeded(gen)
        elif isinstance(exc, Exception):
            self._failed(exc, gen)
        else:
            self._abandoned(gen, CallOutcome.CANCELLED)


def _name_and_config(
    positional: tuple[str | CircuitBreakerConfig | None, ...],
    name: str | None,
    config: CircuitBreakerConfig | None,
) -> tuple[str | None, CircuitBreakerConfig | None]:
    """Both spellings: ``CircuitBreaker("redis", config)`` (name first, the design
    document's form) and ``CircuitBreaker(config, name="redis")``; each value once."""
    if len(positional) > 2:
        raise TypeError(
            f"CircuitBreaker takes at most 2 positional arguments (name, config), "
            f"got {len(positional)}"
        )
    rest = list(positional)
    if rest and isinstance(rest[0], str):
        if name is not None:
            raise TypeError("CircuitBreaker got the name twice (positionally and as name=)")
        name = rest.pop(0)  # type: ignore[assignment]  # narrowed by the isinstance above
    if rest:
        if len(rest) > 1 or config is not None:
            raise TypeError(
                "CircuitBreaker got the config twice, or a second positional argument "
                "after the config; write CircuitBreaker('redis', config) or "
                "CircuitBreaker(config, name='redis')"
            )
        first = rest[0]
        if first is not None and not isinstance(first, CircuitBreakerConfig):
            raise TypeError(
                f"CircuitBreaker's positional arguments are (name: str, config: "
                f"CircuitBreakerConfig), got {type(first).__name__} {first!r}"
            )
        config = first
    if name is None:
        raise TypeError(
            "CircuitBreaker needs a name: CircuitBreaker('redis', config) or "
            "CircuitBreaker(config, name='redis')"
        )
    return name, config

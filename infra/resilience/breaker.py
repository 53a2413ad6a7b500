"""Circuit breaker: fail fast while a backend is down, let a bounded probe test recovery.

CLOSED counts failures; at ``failure_threshold`` consecutive failures (or, when
``failure_rate_threshold`` is set, at that failure rate over the last ``window_size``
counted calls once ``minimum_calls`` were seen) it turns OPEN. While OPEN every call fails
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

Time comes from the injected :class:`~infra.resilience.clock.Clock` (monotonic). The
breaker is confined to one event loop: every state change happens between two awaits, so
no lock is needed.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, ParamSpec, Self, TypeVar

from aiobreaker import CircuitBreakerState as _AioState
from aiobreaker.storage.memory import CircuitMemoryStorage

from infra.exceptions import CircuitBreakerOpenError
from infra.resilience._calls import NOTHING, misuse
from infra.resilience.breaker_config import DEFAULT_EXCLUDED, BreakerSnapshot, CircuitBreakerConfig
from infra.resilience.clock import Clock, MonotonicClock
from infra.resilience.hooks import BreakerObserver, BreakerState, CallOutcome, notify

__all__ = [
    "DEFAULT_EXCLUDED",
    "BreakerSnapshot",
    "CircuitBreaker",
    "CircuitBreakerConfig",
]

P = ParamSpec("P")
T = TypeVar("T")

_TO_AIO: Final = {
    BreakerState.CLOSED: _AioState.CLOSED,
    BreakerState.OPEN: _AioState.OPEN,
    BreakerState.HALF_OPEN: _AioState.HALF_OPEN,
}
_FROM_AIO: Final = {aio: ours for ours, aio in _TO_AIO.items()}
_AIO_CLOSED: Final = _AioState.CLOSED
_AIO_OPEN: Final = _AioState.OPEN
_AIO_HALF_OPEN: Final = _AioState.HALF_OPEN

# ``async with breaker:`` needs the generation it was admitted in at exit time. Each task
# runs in its own context, so a context variable holding a stack of (breaker, generation)
# keeps concurrent tasks and nested breakers apart without any per-task bookkeeping.
_ENTERED: ContextVar[tuple[tuple[CircuitBreaker, int], ...]] = ContextVar(
    "infra_resilience_breaker_entered", default=()
)


class CircuitBreaker:
    """An asyncio circuit breaker; see the module docstring for the exact rules.

    Args:
        config: Thresholds and exclusions (defaults: 5 failures, 60 s, 1 probe).
        name: Identifies the breaker in errors, snapshots and observer events.
        component: ``component`` of the errors it raises; defaults to ``name``.
        clock: Time source; :class:`MonotonicClock` unless a test injects another.
        hooks: Observers told about every transition and call outcome.

    Use it as ``await breaker.call(fn, *args, **kwargs)``, ``async with breaker: ...``
    or as a decorator ``@breaker`` on an async function.
    """

    __slots__ = (
        "_clock",
        "_component",
        "_config",
        "_excluded",
        "_failures_in_window",
        "_gen",
        "_hooks",
        "_name",
        "_opened_at",
        "_probes",
        "_store",
        "_window",
    )

    def __init__(
        self,
        config: CircuitBreakerConfig | None = None,
        *,
        name: str,
        component: str | None = None,
        clock: Clock | None = None,
        hooks: Sequence[BreakerObserver] = (),
    ) -> None:
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
        self._opened_at = 0.0  # clock time of the last transition to OPEN
        self._window = self._config.new_window()
        self._failures_in_window = 0

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
        """Current state; an OPEN breaker whose timeout elapsed reports HALF_OPEN."""
        self._refresh()
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

    def force_open(self) -> None:
        """Open the breaker now, with a fresh timeout (operator action, tests)."""
        self._transition(BreakerState.OPEN)

    # ------------------------------------------------------------ manual admission
    def admit(self) -> int:
        """Admit one call made outside :meth:`call`; returns its ticket for :meth:`record`.

        For composing layers without an extra coroutine (``ResiliencePolicy`` uses it).
        Every admitted ticket must be passed to :meth:`record` or :meth:`release` once.

        Raises:
            CircuitBreakerOpenError: Open, or half-open with every probe slot busy.
        """
        return self._gen if self._store.state is _AIO_CLOSED else self._admit()

    def record(self, ticket: int, error: BaseException | None = None) -> None:
        """The admitted call ended: ``None`` for success, else the error it raised."""
        if error is None:
            self._succeeded(ticket)
        elif isinstance(error, Exception):
            self._failed(error, ticket)
        else:
            self._abandoned(ticket, CallOutcome.CANCELLED)

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
        gen = self._gen if self._store.state is _AIO_CLOSED else self._admit()
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
        """Decorate an async function so every call goes through this breaker."""
        if not callable(fn):
            raise TypeError(f"@{type(self).__name__} decorates a callable, got {fn!r}")

        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self.call(fn, *args, **kwargs)

        return guarded

    async def __aenter__(self) -> Self:
        gen = self._gen if self._store.state is _AIO_CLOSED else self._admit()
        _ENTERED.set((*_ENTERED.get(), (self, gen)))
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
        if exc is None:
            self._succeeded(gen)
        elif isinstance(exc, Exception):
            self._failed(exc, gen)
        else:
            self._abandoned(gen, CallOutcome.CANCELLED)

    # ------------------------------------------------------------------ state machine
    def _remaining(self) -> float:
        return max(0.0, self._opened_at + self._config.timeout - self._clock.now())

    def _refresh(self) -> None:
        if self._store.state is _AIO_OPEN and self._remaining() <= 0.0:
            self._transition(BreakerState.HALF_OPEN)

    def _admit(self) -> int:
        """Admission when not CLOSED: fail fast, or become a half-open probe."""
        state = self._store.state
        if state is _AIO_OPEN:
            remaining = self._remaining()
            if remaining > 0.0:
                raise self._rejected(BreakerState.OPEN, remaining)
            self._transition(BreakerState.HALF_OPEN)
        elif state is _AIO_CLOSED:
            return self._gen
        if self._probes >= self._config.half_open_max_calls:
            raise self._rejected(BreakerState.HALF_OPEN, 0.0)
        self._probes += 1
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
            if self._window is not None:
                self._record_in_window(failed=False)
        if self._hooks:
            self._notify_call(outcome)

    def _failed(self, exc: Exception, gen: int) -> None:
        if isinstance(exc, self._excluded):
            self._abandoned(gen, CallOutcome.EXCLUDED)
            return
        if gen != self._gen:
            self._notify_call(CallOutcome.IGNORED)
            return
        store = self._store
        store.increment_counter()
        self._notify_call(CallOutcome.FAILURE)
        if store.state is _AIO_HALF_OPEN:
            self._transition(BreakerState.OPEN)
            return
        tripped = store.counter >= self._config.failure_threshold
        if self._window is not None:
            self._record_in_window(failed=True)
            tripped = tripped or self._rate_exceeded()
        if tripped:
            self._transition(BreakerState.OPEN)

    def _abandoned(self, gen: int, outcome: CallOutcome) -> None:
        """The call neither succeeded nor failed; free its probe slot if it held one."""
        if gen == self._gen and self._store.state is _AIO_HALF_OPEN:
            self._probes -= 1
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

    def _transition(self, new: BreakerState) -> None:
        store = self._store
        old = _FROM_AIO[store.state]
        store.state = _TO_AIO[new]
        self._gen += 1
        self._probes = 0
        if new is BreakerState.OPEN:
            self._opened_at = self._clock.now()
            store.opened_at = datetime.now(UTC)  # wall time, for humans; decisions use _opened_at
        elif new is BreakerState.CLOSED:
            store.reset_counter()
            self._clear_window()
        if self._hooks and old is not new:
            notify(self._hooks, lambda o: o.on_state_change(self._name, old, new))

"""The circuit breaker's state machine, under the public call styles of ``breaker.py``.

:class:`BreakerCore` holds the state (in aiobreaker's ``CircuitMemoryStorage``, see
:mod:`infra.resilience.breaker` for why only that part of aiobreaker is used), the
transition rules, half-open probe admission, the failure-rate window and introspection.
:class:`~infra.resilience.breaker.CircuitBreaker` adds the ways to call through it.
Split only to keep each module short; the rules are documented in ``breaker.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, overload

from aiobreaker import CircuitBreakerState as _AioState
from aiobreaker.storage.memory import CircuitMemoryStorage

from infra.exceptions import CircuitBreakerOpenError
from infra.resilience.breaker_config import BreakerSnapshot, CircuitBreakerConfig
from infra.resilience.clock import Clock, MonotonicClock
from infra.resilience.hooks import BreakerObserver, BreakerState, CallOutcome, notify

__all__ = ["NESTED", "BreakerCore"]

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


class BreakerCore:
    """State, transitions and introspection of a circuit breaker (see ``CircuitBreaker``)."""

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
        self._quiet = (
            closed and not self._store.counter and self._window is None and not self._hooks
        )

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

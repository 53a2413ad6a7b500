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
success in a steady CLOSED state costs no property call.

Time comes from the injected :class:`~infra.resilience.clock.Clock` (monotonic). The
breaker is confined to one event loop: every state change happens between two awaits, so
no lock is needed.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from types import FunctionType, TracebackType
from typing import Any, Final, ParamSpec, Self, TypeVar

from infra.resilience._calls import NOTHING, misuse
from infra.resilience.breaker_config import DEFAULT_EXCLUDED, BreakerSnapshot, CircuitBreakerConfig
from infra.resilience.breaker_state import NESTED, BreakerCore
from infra.resilience.hooks import CallOutcome

__all__ = [
    "DEFAULT_EXCLUDED",
    "BreakerSnapshot",
    "CircuitBreaker",
    "CircuitBreakerConfig",
]

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
_current_task: Final = asyncio.current_task
#: Attribute marking a function returned by ``@breaker`` with the breaker guarding it.
_GUARDED_BY: Final = "__circuit_breaker__"


class CircuitBreaker(BreakerCore):
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

    __slots__ = ()

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

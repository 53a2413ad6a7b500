"""How a ResiliencePolicy runs one call: the hot path, kept apart from construction.

:class:`PolicyRun` is the execution half of
:class:`~infra.resilience.policy.ResiliencePolicy` (a mixin: the policy class holds the
layers; see its module docstring for the order and why).

**Few coroutines per call.** Every coroutine frame costs about a microsecond around a
real backend call (measured around a loopback Redis GET: each one adds ~1 % to it), so
on the happy path the policy adds one coroutine (and the bulkhead's ``acquire``):
:meth:`PolicyRun.execute` itself runs the first attempt -- breaker admission, rate
limiter, bulkhead, the attempt timeout's ``begin``/``end`` -- inline, and awaits
``fn``'s awaitable. Only when that attempt fails does the retry layer
take over (:meth:`PolicyRun._retry_after`): the failed attempt is handed to
``RetryPolicy.execute`` as its attempt 1, so the retry's decisions (retryable?
attempts, deadline, budget, backoff, observers) are exactly its own, and attempts 2..n
run through :meth:`PolicyRun._attempt`. The retry policy's per-call bookkeeping (its
``stats.executions`` and its budget's ``record_call``) is done here on the inline
success path and by ``RetryPolicy.execute`` otherwise, so each call counts once. Calls
under a fallback, or whose overall timeout needs a timer of its own, take the general
path (:meth:`PolicyRun._run`): the same layers, with a coroutine per layer.

**The breaker counts calls** (unless ``CircuitBreakerConfig.count_retried_attempts``):
each failed attempt is reported with ``record_attempt`` and its ticket collected; when
the call fails for good, ``record_give_up`` counts one failure if the final error is one
the breaker counts. A success resets the count as always.

**An attempt that never reached the backend counts nothing** (:meth:`PolicyRun.
_not_attempted`): when the rate limiter or the bulkhead refuses, fails (e.g. a shared
limiter's Redis is down) or is cancelled before ``fn`` is called, the breaker ticket is
released, and a call whose last attempt ended that way does not count as failed -- its
final error is not the backend's.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from infra.exceptions import InfraTimeoutError, OperationTimeoutError
from infra.resilience._calls import NOTHING, misuse

# Imported at run time, not under TYPE_CHECKING: typing.get_type_hints must resolve them.
from infra.resilience.breaker import CircuitBreaker
from infra.resilience.budget import RetryBudget
from infra.resilience.bulkhead import Bulkhead
from infra.resilience.clock import Clock
from infra.resilience.fallback import Fallback
from infra.resilience.rate_limit import RateLimiter
from infra.resilience.retry import RetryPolicy
from infra.resilience.timeout import Timeout, published_deadline

__all__ = ["PolicyRun"]

T = TypeVar("T")


class PolicyRun:
    """Execution of a ResiliencePolicy; the layers are attributes of the subclass."""

    __slots__ = ()

    _attempt_timeout: Timeout | None
    _bound: float
    _breaker: CircuitBreaker | None
    _budget: RetryBudget | None
    _bulkhead: Bulkhead | None
    _clamped: bool
    _clock: Clock
    _component: str
    _fallback: Fallback[Any] | None
    _limiter: RateLimiter | None
    _limiter_wait: float | None
    _per_call: bool
    _retry: RetryPolicy | None
    _timeout: Timeout | None

    # One function on purpose: each helper split out would be another call or coroutine on
    # every backend call, which is the cost this path exists to avoid.
    async def execute(  # noqa: PLR0912, PLR0915
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        idempotent: bool = True,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` (any awaitable-returning callable) under every layer.

        ``idempotent=False`` disables retry for this call. Errors are the real ones:
        the backend's own (after retries), or a ``ResilienceError``/timeout of ours.
        """
        timeout = self._timeout
        if self._fallback is not None or (timeout is not None and not self._clamped):
            return await self._general(fn, args, kwargs, idempotent)
        # The first attempt inline: the body of _attempt, without its coroutine. The
        # breaker tickets are collected from the first failure on (see _attempt).
        tickets: list[int] | None = None
        retry = self._retry if idempotent else None
        try:
            deadline_at = None if timeout is None else self._clock.now() + timeout.seconds
            breaker = self._breaker
            try:
                ticket = breaker.admit() if breaker is not None else 0
            except Exception as exc:  # refused: reported by the retry layer, as any attempt
                if retry is None:
                    raise
                first: Exception = exc
                ran = False
            else:
                returned: Any = NOTHING
                called = False
                try:
                    if self._limiter is not None:
                        await self._limiter.acquire(1, timeout=self._limiter_wait)
                    bulkhead = self._bulkhead
                    if bulkhead is not None:
                        await bulkhead.acquire()
                    try:
                        called = True
                        returned = fn(*args, **kwargs)
                        attempt_timeout = self._attempt_timeout
                        if attempt_timeout is None:
                            result: T = await returned
                        else:
                            scope = attempt_timeout.begin()
                            try:
                                result = await returned
                            except BaseException as exc:
                                attempt_timeout.end(scope, exc)
                                raise
                            attempt_timeout.end(scope, None)
                    finally:
                        if bulkhead is not None:
                            bulkhead.release()
                except BaseException as exc:
                    if self._per_call:
                        tickets = []
                    if called:
                        bad = self._failed(ticket, fn, returned, exc, tickets)
                    else:
                        bad = None
                        self._not_attempted(ticket, exc, tickets)
                    if retry is None or not isinstance(exc, Exception):
                        if retry is not None:
                            _count_call(retry)
                        if bad is not None:
                            raise bad from exc
                        raise
                    if bad is not None:
                        bad.__cause__ = exc  # as ``raise bad from exc``
                    # Handed to the retry below, outside this handler (no implicit chaining).
                    first = exc if bad is None else bad
                    ran = True
                else:
                    if breaker is not None:
                        breaker.record(ticket)
                    if retry is not None:  # _count_call, inlined
                        retry.stats.executions += 1
                        budget = self._budget
                        if budget is not None:
                            budget.record_call()
                    return result
            return await self._retry_after(
                retry, first, fn, args, kwargs, deadline_at=deadline_at, tickets=tickets, ran=ran
            )
        except Exception as exc:
            if tickets:
                self._gave_up(tickets, exc)
            raise

    async def _general(
        self, fn: Callable[..., Awaitable[T]], args: Any, kwargs: Any, idempotent: bool
    ) -> T:
        """The general path: fallback, and an overall timeout with a timer of its own."""
        if self._fallback is not None:
            result: T = await self._fallback.call(self._guarded, fn, args, kwargs, idempotent)
            return result
        return await self._guarded(fn, args, kwargs, idempotent)

    async def _guarded(
        self, fn: Callable[..., Awaitable[T]], args: Any, kwargs: Any, idempotent: bool
    ) -> T:
        """Everything inside the fallback, a coroutine per layer."""
        tickets: list[int] | None = [] if self._per_call else None
        try:
            return await self._run(fn, args, kwargs, idempotent, tickets)
        except Exception as exc:
            if tickets:
                self._gave_up(tickets, exc)
            raise

    def _gave_up(self, tickets: list[int], error: Exception) -> None:
        """The call failed for good: one failure for the breaker, if ``error`` counts."""
        breaker = self._breaker
        assert breaker is not None  # noqa: S101 -- tickets are only collected with one
        breaker.record_give_up(tickets[-1], error)

    def _retry_after(
        self,
        retry: RetryPolicy,
        first: Exception,
        fn: Callable[..., Awaitable[T]],
        args: Any,
        kwargs: Any,
        *,
        deadline_at: float | None,
        tickets: list[int] | None,
        ran: bool,
    ) -> Awaitable[T]:
        """The inline first attempt failed with ``first``: let ``retry`` decide and go on.

        ``first`` is replayed as the retry's attempt 1 (raised without calling the
        backend again); attempts 2..n run :meth:`_attempt`. When the first attempt
        ``ran`` (took time, so the retry starts late) the overall deadline is published
        meanwhile: the retry never starts a sleep past it. When it was refused at once,
        the retry's own deadline (the overall one, see ``ResiliencePolicy``) is exact.
        """
        replayed = False

        def attempt() -> Awaitable[T]:
            nonlocal replayed
            if not replayed:
                replayed = True
                raise first
            return self._attempt(fn, args, kwargs, deadline_at, tickets)

        if deadline_at is None or not ran:
            return retry.execute(attempt)
        return self._within(deadline_at, retry.execute(attempt))

    async def _within(self, deadline_at: float, retrying: Awaitable[T]) -> T:
        """Await ``retrying`` with the overall deadline published."""
        with published_deadline(deadline_at, self._clock):
            return await retrying

    # _run and _retried are plain functions returning the next layer's coroutine: one
    # coroutine frame fewer per layer.
    def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: Any,
        kwargs: Any,
        idempotent: bool,
        tickets: list[int] | None,
    ) -> Awaitable[T]:
        """Overall timeout and retry around :meth:`_attempt`."""
        timeout = self._timeout
        if timeout is not None and not self._clamped:
            return timeout.call(self._retried, fn, args, kwargs, idempotent, None, tickets=tickets)
        deadline_at = None if timeout is None else self._clock.now() + timeout.seconds
        return self._retried(fn, args, kwargs, idempotent, deadline_at, tickets=tickets)

    def _retried(
        self,
        fn: Callable[..., Awaitable[T]],
        args: Any,
        kwargs: Any,
        idempotent: bool,
        deadline_at: float | None,
        *,
        tickets: list[int] | None,
    ) -> Awaitable[T]:
        if self._retry is not None and idempotent:
            return self._retry.execute(self._attempt, fn, args, kwargs, deadline_at, tickets)
        return self._attempt(fn, args, kwargs, deadline_at, tickets)

    async def _attempt(
        self,
        fn: Callable[..., Awaitable[T]],
        args: Any,
        kwargs: Any,
        deadline_at: float | None,
        tickets: list[int] | None,
    ) -> T:
        """One attempt: breaker → rate limiter → bulkhead → attempt timeout → fn.

        ``deadline_at`` is set when the overall timeout has no timer of its own (see the
        policy's module docstring): an attempt starting with less than ``_bound`` seconds
        left runs under a timer for the time left instead. ``tickets`` collects the
        breaker tickets of failed attempts when the breaker counts per call (``None``:
        per attempt). :meth:`execute` inlines this body for the first attempt.
        """
        if deadline_at is not None and deadline_at - self._clock.now() < self._bound:
            return await self._near_deadline(fn, args, kwargs, deadline_at, tickets)
        breaker = self._breaker
        ticket = breaker.admit() if breaker is not None else 0
        returned: Any = NOTHING
        called = False
        try:
            if self._limiter is not None:
                await self._limiter.acquire(1, timeout=self._limiter_wait)
            bulkhead = self._bulkhead
            if bulkhead is not None:
                await bulkhead.acquire()
            try:
                called = True
                returned = fn(*args, **kwargs)
                timeout = self._attempt_timeout
                if timeout is None:
                    result: T = await returned
                else:
                    # Timeout.call inlined (begin/end): no coroutine of its own.
                    scope = timeout.begin()
                    try:
                        result = await returned
                    except BaseException as exc:
                        timeout.end(scope, exc)
                        raise
                    timeout.end(scope, None)
            finally:
                if bulkhead is not None:
                    bulkhead.release()
        except BaseException as exc:
            if not called:
                self._not_attempted(ticket, exc, tickets)
                raise
            bad = self._failed(ticket, fn, returned, exc, tickets)
            if bad is not None:
                raise bad from exc
            raise
        if breaker is not None:
            breaker.record(ticket)
        return result

    def _failed(
        self,
        ticket: int,
        fn: object,
        returned: object,
        exc: BaseException,
        tickets: list[int] | None,
    ) -> TypeError | None:
        """Tell the breaker how the attempt ended; a clear TypeError for a misused ``fn``."""
        bad = misuse(fn, returned, exc)
        breaker = self._breaker
        if breaker is not None:
            if bad is not None:
                breaker.release(ticket)
            elif tickets is None:
                breaker.record(ticket, exc)
            else:
                breaker.record_attempt(ticket, exc)
                tickets.append(ticket)
        return bad

    def _not_attempted(self, ticket: int, exc: BaseException, tickets: list[int] | None) -> None:
        """The attempt ended before ``fn`` was called -- the rate limiter or the bulkhead
        refused it, failed (a shared limiter's Redis is down) or was cancelled while
        waiting -- so it says nothing about the backend: the breaker ticket is released
        (a cancellation is recorded as such), and the call's earlier failed attempts are
        forgotten, since its final error is not the backend's."""
        breaker = self._breaker
        if breaker is not None:
            if isinstance(exc, Exception):
                breaker.release(ticket)
            else:
                breaker.record(ticket, exc)
        if tickets:
            tickets.clear()

    async def _near_deadline(
        self,
        fn: Callable[..., Awaitable[T]],
        args: Any,
        kwargs: Any,
        deadline_at: float,
        tickets: list[int] | None,
    ) -> T:
        """An attempt under a timer for what is left of the overall timeout."""
        overall = self._timeout
        assert overall is not None  # noqa: S101 -- deadline_at implies an overall timeout
        remaining = deadline_at - self._clock.now()
        if remaining <= 0:
            raise _spent(overall)
        clamp = Timeout(
            remaining, component=self._component, error=_OverallExpiredError, clock=self._clock
        )
        try:
            return await clamp.call(self._attempt, fn, args, kwargs, None, tickets)
        except _OverallExpiredError as exc:
            raise _spent(overall) from exc


def _count_call(retry: RetryPolicy) -> None:
    """What ``RetryPolicy.execute`` records per call, for a call it did not run."""
    retry.stats.executions += 1
    budget = retry.budget
    if budget is not None:
        budget.record_call()


class _OverallExpiredError(OperationTimeoutError):
    """Marks the expiry of a clamp timer; never escapes (replaced by the overall error)."""


def _spent(overall: Timeout) -> InfraTimeoutError:
    """The overall timeout's error; not retryable, since the time budget is spent."""
    error = overall.make_error()
    error.retryable = False
    return error


def attempt_bound(
    attempt_timeout: Timeout | None,
    limiter: RateLimiter | None,
    limiter_wait: float | None,
    bulkhead: Bulkhead | None,
) -> float:
    """The longest one attempt can take (queue waits + attempt timeout), or inf."""
    if attempt_timeout is None:
        return math.inf
    bound = attempt_timeout.seconds
    if limiter is not None:
        bound += math.inf if limiter_wait is None else limiter_wait
    if bulkhead is not None and bulkhead.max_queue > 0:
        bound += math.inf if bulkhead.max_wait is None else bulkhead.max_wait
    return bound

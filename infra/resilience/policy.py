"""ResiliencePolicy: every resilience layer around one call, in one documented order.

::

    fallback → overall timeout → retry → breaker → rate limiter → bulkhead → attempt timeout → fn

Why this order (outermost first):

1. **Fallback** last sees the final outcome -- whatever escaped everything else,
   including the overall timeout and an open breaker -- and substitutes a degraded answer.
2. **Overall timeout** bounds what the caller waits in total, backoff sleeps included.
   The retry layer knows its deadline and will not start a sleep that would cross it, so
   the caller gets the last real error instead of a timeout mid-sleep.
3. **Retry** repeats whole attempts. Each attempt passes the breaker separately, and
   once the breaker opens its ``CircuitBreakerOpenError`` (not retryable) stops the
   loop at once.
4. **Breaker** before the limiter and bulkhead: an open breaker rejects without taking a
   token or a slot, so failing fast stays cheap. Rejections of the inner layers are
   :class:`~infra.exceptions.ResilienceError` s, which the breaker excludes: our own
   load shedding never trips it.
5. **Rate limiter** (optional) spends one token per attempt, retries included.
6. **Bulkhead** caps concurrency into the backend; its queue wait is bounded separately
   (``max_wait``) and is not part of the attempt timeout.
7. **Attempt timeout** innermost: it measures the backend alone, and its
   :class:`~infra.exceptions.OperationTimeoutError` is a failure the breaker counts and
   the retry retries (``asyncio.CancelledError`` never counts, so a timeout placed
   *outside* the breaker could never trip it -- aiobreaker's blind spot).

**The breaker counts calls, not attempts** (by default). ``failure_threshold=5`` opens
the breaker after 5 *calls* in a row failed for good -- retries spent or refused, or
the overall timeout expired -- with an error the breaker counts. A failed attempt that
a retry then makes good is a success. Why: the design promises 99.5 % recovery of transient
failures and < 0.1 % false trips. Counting every attempt, "5 in a row" happens by
chance under a steady 10 % of transient errors (3 attempts: in 2 of 10 benchmark runs
of 10,000 calls), and then 60 s of calls fail fast: 92.8 % success overall. Counted
per call, 5 failed calls in a row at that rate have a probability of about 1e-15 per
call. A real outage fails every attempt, so every call fails and the breaker still
opens after 5 calls; under load sooner, because the retry budget runs out and calls
give up after one attempt. The price: a lone caller makes 15 attempts (7.5-15 s of its
own jittered backoff) before the breaker opens, not 5. Each attempt still reaches the
observers and the failure-rate window, a failed half-open probe still reopens at once,
and ``CircuitBreakerConfig(count_retried_attempts=True)`` restores per-attempt counting.

**One timer on the happy path.** A timer is the most expensive part of a policy. When
the attempt timeout plus the bounded queue waits fit inside the overall timeout (true
for the default settings: 10 s + 5 s <= 30 s), the overall timeout needs no timer of
its own: the retry gets the overall deadline and never sleeps past it, and an attempt
that starts with less than that bound left runs under a second timer for the time that
is left, whose expiry raises the overall timeout's error (not retryable). Otherwise the
overall timeout wraps the retry loop with its own timer.

``execute(fn, *args, idempotent=False)`` skips the retry layer: a write that may have
been applied must not be repeated blindly. Each layer is optional; a missing one costs an
``is None`` test.

**One attempt path.** Every attempt, the first included, is :meth:`ResiliencePolicy.
_attempt` (breaker admission, rate limiter, bulkhead, attempt timeout, ``fn``). On the
common path (no fallback, no timer of the overall timeout's own: the defaults)
:meth:`~ResiliencePolicy.execute` awaits the first attempt directly and hands the retry
layer nothing unless it fails: the failed attempt becomes the retry's attempt 1
(:meth:`~ResiliencePolicy._retry_after`), so the retry's decisions (retryable?
attempts, deadline, budget, backoff, observers) are its own, and attempts 2..n run
through the same :meth:`~ResiliencePolicy._attempt`. The retry's per-call bookkeeping
(``stats.executions``, its budget's ``record_call``) is done here for a call the retry
layer never saw, so each call counts once. Calls under a fallback, or whose overall
timeout needs a timer of its own, take the general path (:meth:`~ResiliencePolicy._run`):
the same attempt, with a coroutine per layer around it. (The first attempt used to be a
hand-inlined copy of ``_attempt`` inside ``execute``, to save its coroutine frame:
about 0.4 µs of CPU per call, under 0.5 % of a loopback call; see docs/decisions.md.)

**An attempt that never reached the backend counts nothing** (:meth:`ResiliencePolicy.
_not_attempted`): when the rate limiter or the bulkhead refuses, fails (e.g. a shared
limiter's Redis is down) or is cancelled before ``fn`` is called, the breaker ticket is
released, and a call whose last attempt ended that way does not count as failed -- its
final error is not the backend's.

Construction: :meth:`ResiliencePolicy.build` from configs/presets,
:meth:`ResiliencePolicy.from_settings` from ``settings.resilience``,
:meth:`ResiliencePolicy.instant` for tests (one shared ManualClock: the same decisions,
no real sleeping), :meth:`ResiliencePolicy.passthrough` (calls ``fn`` directly).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Self, TypeVar

from infra.exceptions import CircuitBreakerOpenError, InfraTimeoutError, OperationTimeoutError
from infra.resilience._awaitables import NOTHING, misuse
from infra.resilience.breaker import CircuitBreaker, CircuitBreakerConfig
from infra.resilience.budget import RetryBudget
from infra.resilience.bulkhead import Bulkhead, BulkheadHooks
from infra.resilience.clock import Clock, ManualClock, MonotonicClock
from infra.resilience.fallback import Fallback
from infra.resilience.hooks import ResilienceObserver
from infra.resilience.policy_config import (
    BulkheadConfig,
    HasResilienceSettings,
    ResilienceSettingsLike,
    configs_from_settings,
    settings_errors,
)
from infra.resilience.rate_limit import RateLimiter
from infra.resilience.retry import RetryConfig, RetryPolicy
from infra.resilience.timeout import Timeout, published_deadline

__all__ = ["BulkheadConfig", "ResiliencePolicy"]

T = TypeVar("T")


class ResiliencePolicy:
    """Composes optional resilience layers around a call; see the module docstring.

    ``await policy.execute(fn, *args, idempotent=True, **kwargs)`` runs a call.

    Prefer the factories (:meth:`build`, :meth:`from_settings`, :meth:`instant`,
    :meth:`passthrough`); the constructor takes already-built layers.
    """

    __slots__ = (
        "_attempt_timeout",
        "_bound",
        "_breaker",
        "_budget",
        "_bulkhead",
        "_clamped",
        "_clock",
        "_component",
        "_fallback",
        "_limiter",
        "_limiter_wait",
        "_per_call",
        "_retry",
        "_timeout",
    )

    def __init__(
        self,
        component: str,
        *,
        fallback: Fallback[Any] | None = None,
        timeout: Timeout | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        rate_limiter: RateLimiter | None = None,
        rate_limit_wait: float | None = None,
        bulkhead: Bulkhead | None = None,
        attempt_timeout: Timeout | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(component, str) or not component:
            raise ValueError(f"component must be a non-empty string, got {component!r}")
        self._component = component
        self._fallback = fallback
        self._timeout = timeout
        self._retry = retry if retry is None or retry.config.max_attempts > 1 else None
        self._breaker = breaker
        self._limiter = rate_limiter
        self._limiter_wait = rate_limit_wait
        self._bulkhead = bulkhead
        self._attempt_timeout = attempt_timeout
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        # Count each call once in the breaker (see CircuitBreakerConfig.count_retried_attempts).
        self._per_call = breaker is not None and not breaker.config.count_retried_attempts
        self._budget = None if self._retry is None else self._retry.budget
        self._bound = _attempt_bound(attempt_timeout, rate_limiter, rate_limit_wait, bulkhead)
        self._clamped = timeout is not None and self._bound <= timeout.seconds
        if self._clamped and self._retry is not None and timeout is not None:
            # The retry must not start a sleep past the overall deadline (see _attempt).
            own = self._retry.config.deadline
            if own is None or own > timeout.seconds:
                self._retry = self._retry.with_config(
                    replace(self._retry.config, deadline=timeout.seconds)
                )

    # ------------------------------------------------------------------ factories
    @classmethod
    def build(
        cls,
        component: str,
        *,
        breaker: CircuitBreakerConfig | None = None,
        retry: RetryConfig | None = None,
        retry_budget_ratio: float | None = None,
        bulkhead: BulkheadConfig | None = None,
        timeout: float | None = None,
        attempt_timeout: float | None = None,
        timeout_error: type[InfraTimeoutError] = OperationTimeoutError,
        fallback: Fallback[Any] | None = None,
        rate_limiter: RateLimiter | None = None,
        rate_limit_wait: float | None = None,
        clock: Clock | None = None,
        hooks: Sequence[ResilienceObserver] = (),
        bulkhead_hooks: BulkheadHooks | None = None,
    ) -> Self:
        """A policy from value configs (e.g. presets); ``None`` leaves a layer out.

        ``hooks`` observe the breaker and the retry; ``bulkhead_hooks`` the bulkhead.
        """
        clock = clock if clock is not None else MonotonicClock()
        budget = None
        if retry_budget_ratio is not None:
            budget = RetryBudget(retry_budget_ratio, clock=clock)
        return cls(
            component,
            fallback=fallback,
            timeout=_timeout(timeout, component, timeout_error, clock),
            retry=None
            if retry is None
            else RetryPolicy(retry, name=component, clock=clock, budget=budget, hooks=hooks),
            breaker=None
            if breaker is None
            else CircuitBreaker(breaker, name=component, clock=clock, hooks=hooks),
            rate_limiter=rate_limiter,
            rate_limit_wait=rate_limit_wait,
            bulkhead=None if bulkhead is None else bulkhead.build(component, bulkhead_hooks),
            attempt_timeout=_timeout(attempt_timeout, component, timeout_error, clock),
            clock=clock,
        )

    @classmethod
    def from_settings(
        cls,
        settings: HasResilienceSettings | ResilienceSettingsLike,
        *,
        component: str,
        timeout_error: type[InfraTimeoutError] = OperationTimeoutError,
        fallback: Fallback[Any] | None = None,
        rate_limiter: RateLimiter | None = None,
        clock: Clock | None = None,
        hooks: Sequence[ResilienceObserver] = (),
        bulkhead_hooks: BulkheadHooks | None = None,
    ) -> Self:
        """The policy ``settings.resilience`` describes, for one ``component``.

        ``settings`` is ``config.Settings`` or its ``settings.resilience`` view.
        ``breaker_enabled=False`` / ``retry_enabled=False`` leave those layers out.

        Raises:
            ConfigurationError: A combination of values the layers reject, naming the
                environment variables to fix.
        """
        layers = configs_from_settings(settings, component=component)
        with settings_errors(component, "SEMANTICA_BULKHEAD_* / SEMANTICA_*_TIMEOUT"):
            return cls.build(
                component,
                breaker=layers.breaker,
                retry=layers.retry,
                retry_budget_ratio=layers.retry_budget_ratio,
                bulkhead=layers.bulkhead,
                timeout=layers.timeout,
                attempt_timeout=layers.attempt_timeout,
                timeout_error=timeout_error,
                fallback=fallback,
                rate_limiter=rate_limiter,
                clock=clock,
                hooks=hooks,
                bulkhead_hooks=bulkhead_hooks,
            )

    @classmethod
    def instant(
        cls,
        component: str = "test",
        *,
        breaker: CircuitBreakerConfig | None = None,
        retry: RetryConfig | None = None,
        retry_budget_ratio: float | None = None,
        bulkhead: BulkheadConfig | None = None,
        timeout: float | None = None,
        attempt_timeout: float | None = None,
        fallback: Fallback[Any] | None = None,
        hooks: Sequence[ResilienceObserver] = (),
    ) -> Self:
        """The same decisions on a :class:`ManualClock`: backoff and breaker timeouts are
        virtual (``policy.clock`` shows the time that would have passed; advance it to
        let an open breaker recover). Defaults: the design's breaker and retry, no timeouts."""
        return cls.build(
            component,
            breaker=breaker if breaker is not None else CircuitBreakerConfig(),
            retry=retry if retry is not None else RetryConfig(),
            retry_budget_ratio=retry_budget_ratio,
            bulkhead=bulkhead,
            timeout=timeout,
            attempt_timeout=attempt_timeout,
            fallback=fallback,
            clock=ManualClock(),
            hooks=hooks,
        )

    @classmethod
    def passthrough(cls, component: str = "passthrough") -> Self:
        """No layers at all: ``execute`` just awaits ``fn`` (for benchmarks and opt-outs)."""
        return cls(component)

    def without_bulkhead(self) -> Self:
        """This policy minus its bulkhead: the same breaker, retry (and budget), limiter,
        timeouts and fallback objects, so state is shared; ``self`` if it has none.

        For calls that already hold a connection of the pool the bulkhead guards, such as
        the statements of an open transaction: their concurrency is bounded by that pool,
        and making them wait for a slot could deadlock with callers that hold every slot
        while they wait for the connection the transaction holds.
        """
        if self._bulkhead is None:
            return self
        return type(self)(
            self._component,
            fallback=self._fallback,
            timeout=self._timeout,
            retry=self._retry,
            breaker=self._breaker,
            rate_limiter=self._limiter,
            rate_limit_wait=self._limiter_wait,
            bulkhead=None,
            attempt_timeout=self._attempt_timeout,
            clock=self._clock,
        )

    # ------------------------------------------------------------------- execution
    async def execute(
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
        retry = self._retry if idempotent else None
        tickets: list[int] | None = [] if self._per_call else None
        # The overall deadline matters only to a retry (a single attempt is bounded by the
        # attempt timeout, which fits inside it: see the module docstring).
        deadline_at = (
            None if timeout is None or retry is None else self._clock.now() + timeout.seconds
        )
        try:
            try:
                # The first attempt has the whole overall timeout ahead: no clamp check.
                result: T = await self._attempt(fn, args, kwargs, None, tickets)
            except Exception as exc:
                if retry is None or retry.ends_at_first(exc):
                    raise  # e.g. refused by the open breaker: never retried, fail fast
                first = exc  # handed to the retry below, outside this handler (no chaining)
            except BaseException:
                if retry is not None:
                    self._count_call(retry)
                raise
            else:
                if retry is not None:
                    self._count_call(retry)
                return result
            return await self._retry_after(
                retry, first, fn, args, kwargs, deadline_at=deadline_at, tickets=tickets
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

    def _count_call(self, retry: RetryPolicy) -> None:
        """What ``RetryPolicy.execute`` records per call, for a call it did not run."""
        retry.stats.executions += 1
        if self._budget is not None:  # the retry's budget, read once at construction
            self._budget.record_call()

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
    ) -> Awaitable[T]:
        """The first attempt failed with ``first``: let ``retry`` decide and go on.

        ``first`` is replayed as the retry's attempt 1 (raised without calling the
        backend again); attempts 2..n run :meth:`_attempt`. The overall deadline is
        published meanwhile, so the retry never starts a sleep past it (the first
        attempt took time: the retry's own deadline would start late) -- except after a
        refusal by the open breaker, which took no time and is never retried.
        """
        replayed = False

        def attempt() -> Awaitable[T]:
            nonlocal replayed
            if not replayed:
                replayed = True
                raise first
            return self._attempt(fn, args, kwargs, deadline_at, tickets)

        if deadline_at is None or isinstance(first, CircuitBreakerOpenError):
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

    def _attempt(
        self,
        fn: Callable[..., Awaitable[T]],
        args: Any,
        kwargs: Any,
        deadline_at: float | None,
        tickets: list[int] | None,
    ) -> Awaitable[T]:
        """One attempt: breaker → rate limiter → bulkhead → attempt timeout → fn.

        ``deadline_at`` is set when the overall timeout has no timer of its own (see the
        policy's module docstring): an attempt starting with less than ``_bound`` seconds
        left runs under a timer for the time left instead. ``tickets`` collects the
        breaker tickets of failed attempts when the breaker counts per call (``None``:
        per attempt).

        The breaker admits or refuses here, before any coroutine exists: a call refused
        by an open breaker raises at once (fail-fast stays cheap, see docs/decisions.md);
        the rest of the attempt is :meth:`_admitted`.
        """
        if deadline_at is not None and deadline_at - self._clock.now() < self._bound:
            return self._near_deadline(fn, args, kwargs, deadline_at, tickets)
        breaker = self._breaker
        ticket = breaker.admit() if breaker is not None else 0
        return self._admitted(ticket, fn, args, kwargs, tickets)

    async def _admitted(
        self,
        ticket: int,
        fn: Callable[..., Awaitable[T]],
        args: Any,
        kwargs: Any,
        tickets: list[int] | None,
    ) -> T:
        """The attempt after the breaker admitted it with ``ticket``."""
        breaker = self._breaker
        returned: Any = NOTHING
        called = False
        try:
            if self._limiter is not None:
                await self._limiter.acquire(1, timeout=self._limiter_wait)
            bulkhead = self._bulkhead
            if bulkhead is not None and not bulkhead.try_acquire():
                await bulkhead.acquire()
            try:
                called = True
                returned = fn(*args, **kwargs)
                timeout = self._attempt_timeout
                if timeout is None:
                    result: T = await returned
                else:
                    # Timeout.call's body (begin/end): no coroutine of its own.
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

    # ----------------------------------------------------------------- introspection
    @property
    def component(self) -> str:
        """The component this policy protects."""
        return self._component

    @property
    def clock(self) -> Clock:
        """The clock shared by the layers (a ManualClock for :meth:`instant`)."""
        return self._clock

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker layer, if any."""
        return self._breaker

    @property
    def retry(self) -> RetryPolicy | None:
        """The retry layer, if any (``None`` when it would allow only one attempt)."""
        return self._retry

    @property
    def bulkhead(self) -> Bulkhead | None:
        """The bulkhead layer, if any."""
        return self._bulkhead

    def layers(self) -> list[str]:
        """Each present layer described, outermost first."""
        parts: list[str] = []
        if self._fallback is not None:
            names = ", ".join(cls.__name__ for cls in self._fallback.on)
            parts.append(f"fallback(on {names})")
        if self._timeout is not None:
            parts.append(f"timeout({self._timeout.seconds:g}s)")
        if self._retry is not None:
            parts.append(self._retry.describe())
        if self._breaker is not None:
            parts.append(self._breaker.describe())
        if self._limiter is not None:
            parts.append(f"rate-limit({self._limiter!r})")
        if self._bulkhead is not None:
            b = self._bulkhead
            wait = "" if b.max_wait is None else f", wait {b.max_wait:g}s"
            parts.append(f"bulkhead({b.max_concurrent} running, {b.max_queue} queued{wait})")
        if self._attempt_timeout is not None:
            parts.append(f"attempt-timeout({self._attempt_timeout.seconds:g}s)")
        return parts

    def describe(self) -> str:
        """One line for logs, e.g. ``redis: timeout(30s) → retry(...) → breaker(...)``."""
        return f"{self._component}: " + (" → ".join(self.layers()) or "passthrough")

    def __repr__(self) -> str:
        return f"ResiliencePolicy({self.describe()})"


def _timeout(
    seconds: float | None, component: str, error: type[InfraTimeoutError], clock: Clock
) -> Timeout | None:
    return (
        None if seconds is None else Timeout(seconds, component=component, error=error, clock=clock)
    )


class _OverallExpiredError(OperationTimeoutError):
    """Marks the expiry of a clamp timer; never escapes (replaced by the overall error)."""


def _spent(overall: Timeout) -> InfraTimeoutError:
    """The overall timeout's error; not retryable, since the time budget is spent."""
    error = overall.make_error()
    error.retryable = False
    return error


def _attempt_bound(
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

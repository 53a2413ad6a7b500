"""Retry with exponential backoff, on tenacity, without tenacity's cost on the happy path.

``await RetryPolicy(RetryConfig(max_attempts=3)).execute(fn, *args, **kwargs)`` runs the
first attempt directly -- a plain ``await`` plus two counters. Only when it fails with a
retryable error does a tenacity ``AsyncRetrying`` loop take over, with our own ``retry``,
``wait``, ``stop`` and ``sleep`` (the injected clock). The already-failed first attempt is
handed to tenacity as attempt 1, so tenacity's attempt numbers are ours.

We drive tenacity's ``async for`` protocol and record each outcome ourselves instead of
calling ``AsyncRetrying(fn)``, because that (tenacity 9.2, measured) costs ~45 µs per
call, never awaits a plain function that returns a coroutine (every redis-py asyncio
command), and catches ``BaseException``. Here:

* **CancelledError is never caught**: attempts are wrapped in ``except Exception``, so
  cancellation leaves the loop immediately, between or during attempts;
* **the last real error is raised**, the same object (``reraise=True``; never
  ``tenacity.RetryError``), with a ``__notes__`` line saying why we stopped -- whatever
  its type: a ``StopAsyncIteration`` (``execute(stream.__anext__)`` reaching the end of
  the stream on a retry) reaches the caller too, which driving tenacity with ``async
  for`` would swallow (the loop is therefore driven with ``anext``);
* **delays** after attempt *n*: ``min(max_delay, base_delay * exponential_base**(n-1))``
  (1, 2, 4 s for the defaults). With ``jitter`` we use *equal jitter*: uniformly in
  ``[d/2, d]``, which spreads a thundering herd while never retrying immediately;
* a server's ``Retry-After`` is honoured: the wait is at least ``retry_after`` seconds
  (not capped by ``max_delay``: the server knows best). It is read from
  ``RateLimitedError.retry_after`` and from ``details["retry_after"]`` of any
  :class:`~infra.exceptions.InfraError` -- where the translation puts it for every HTTP
  429 (a throttling Qdrant server, not only an LLM provider);
* ``deadline`` (seconds from the first attempt): a sleep that would end past it is never
  started; the policy gives up instead. The same holds for the deadline of an enclosing
  :class:`~infra.resilience.timeout.Timeout` (read via ``current_deadline()``), so an
  overall timeout ends in the last real error rather than in a timeout mid-sleep. The
  deadline does not interrupt a running attempt -- that is the Timeout's job;
* an optional :class:`~infra.resilience.budget.RetryBudget` is consulted last, before
  each sleep; when spent, the last error is raised at once.

Default ``retryable``: an :class:`~infra.exceptions.InfraError` says so itself
(``.retryable``); a builtin ``TimeoutError`` or ``ConnectionError`` (raised by code that
is not behind a translating adapter) is transient by nature and retried; anything else is
not. ``retryable=`` (on the policy or per call) takes what tenacity's
``retry_if_exception_type`` and ``except`` clauses take -- an exception class or a tuple
of them -- or a predicate ``(error) -> bool``; anything else is a ``TypeError`` raised
before the first attempt (see :func:`~infra.resilience.retry_config.as_predicate`).

**An ``on_retry`` callback that raises stops the retries and its error is raised**, the
same object, with ``__cause__`` set to the attempt's error it was told about (unless it
had a cause of its own), a ``__notes__`` line, and a give-up reported with reason
``callback_failed``; the retry it announced is not counted. Why not log and go on, as
for observers (:func:`~infra.resilience.hooks.notify`)? An observer is shared
instrumentation registered once; ``on_retry`` is the caller's own code in the caller's
own call -- often work the next attempt depends on, such as refreshing a credential --
so its bug is the caller's to see, and retrying past it would hide the real cause.
tenacity's ``before_sleep`` behaves the same way. **A ``retryable`` predicate that
raises** ends the call the same way (its error raised, caused by the attempt's error,
noted, and reported as a give-up with reason ``callback_failed``) -- tenacity lets an
error of its ``retry=`` callback propagate too; before, the call ended unreported.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState

from infra.exceptions import InfraError, RateLimitedError
from infra.resilience._awaitables import NOTHING, AsyncCallable, misuse
from infra.resilience.budget import RetryBudget
from infra.resilience.clock import Clock, MonotonicClock
from infra.resilience.hooks import GiveUpReason, RetryObserver, notify
from infra.resilience.retry_config import (
    OnRetry,
    Retryable,
    RetryConfig,
    RetryStats,
    as_predicate,
    default_retryable,
)
from infra.resilience.timeout import current_deadline

__all__ = [
    "OnRetry",
    "RetryConfig",
    "RetryPolicy",
    "RetryStats",
    "Retryable",
    "default_retryable",
]

T = TypeVar("T")


class _Run:
    """One tenacity loop: our retry/wait/stop/before_sleep callbacks and what they decided."""

    __slots__ = (
        "attempts",
        "callback",
        "callback_name",
        "deadline_at",
        "delay",
        "on_retry",
        "policy",
        "predicate",
        "reason",
    )

    def __init__(
        self,
        policy: RetryPolicy,
        predicate: Callable[[BaseException], bool],
        on_retry: OnRetry | None,
        deadline_at: float | None,
    ) -> None:
        self.policy = policy
        self.predicate = predicate
        self.on_retry = on_retry
        self.deadline_at = deadline_at
        self.attempts = 1
        self.reason: GiveUpReason | None = None
        self.delay = 0.0
        self.callback: Exception | None = None  # what on_retry or retryable raised
        self.callback_name = "on_retry"

    def retry(self, state: RetryCallState) -> bool:
        if state.attempt_number == 1:
            # The replayed first attempt: its error was already found retryable (the loop
            # runs only then); a predicate is consulted once per failed attempt.
            return True
        error = _error_of(state)
        try:
            decision = self.predicate(error)
        except Exception as failed:
            # The caller's predicate failed: ends the call as a failed on_retry does.
            self.reason = GiveUpReason.CALLBACK_FAILED
            self.callback, self.callback_name = failed, "retryable"
            _caused_by(failed, error)
            raise
        if decision:
            return True
        self.reason = GiveUpReason.NOT_RETRYABLE
        return False

    def wait(self, state: RetryCallState) -> float:
        return self.policy.delay_for(state.attempt_number, _error_of(state))

    def stop(self, state: RetryCallState) -> bool:
        policy = self.policy
        budget = policy.budget
        if state.attempt_number >= policy.config.max_attempts:
            self.reason = GiveUpReason.ATTEMPTS_EXHAUSTED
        elif _passes_deadline(policy.clock.now(), state.upcoming_sleep, self.deadline_at):
            self.reason = GiveUpReason.DEADLINE
            self.delay = state.upcoming_sleep
        elif budget is not None and not budget.try_acquire():
            self.reason = GiveUpReason.BUDGET_EXHAUSTED
        else:
            return False
        return True

    async def before_sleep(self, state: RetryCallState) -> None:
        error, attempt, delay = _error_of(state), state.attempt_number, state.upcoming_sleep
        if self.on_retry is not None:
            try:
                outcome = self.on_retry(error, attempt, delay)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as failed:
                # The caller's own callback failed: stop and raise its error (see the
                # module docstring), caused by the attempt's error it was told about.
                self.reason = GiveUpReason.CALLBACK_FAILED
                self.callback = failed
                _caused_by(failed, error)
                raise
        self.policy.on_retry_scheduled(attempt, delay, error)

    def note(self) -> str:
        """The ``__notes__`` line added to the error we finally raise."""
        attempts = f"{self.attempts} attempt" + ("s" if self.attempts != 1 else "")
        why = {
            GiveUpReason.NOT_RETRYABLE: "the error is not retryable",
            GiveUpReason.ATTEMPTS_EXHAUSTED: (
                f"max_attempts={self.policy.config.max_attempts} reached"
            ),
            GiveUpReason.DEADLINE: f"sleeping {self.delay:.3g}s more would pass the deadline",
            GiveUpReason.BUDGET_EXHAUSTED: "the retry budget is exhausted",
            GiveUpReason.CALLBACK_FAILED: (
                f"{self.callback_name} raised {type(self.callback).__name__} after attempt "
                f"{self.attempts} failed; no further attempt was made"
            ),
        }[self.reason or GiveUpReason.NOT_RETRYABLE]
        return f"{self.policy.name}: gave up after {attempts}: {why}"


class RetryPolicy:
    """Retries an async call per :class:`RetryConfig`; see the module docstring.

    Args:
        config: Attempts and delays (defaults: 3 attempts, 1 s doubling, jitter).
        name: Names the policy in notes and observer events.
        clock: Time source and sleep; a ManualClock makes retries instant in tests.
        budget: Optional shared :class:`RetryBudget`.
        hooks: Observers told about every retry and give-up.
        retryable: Which errors to retry: an exception class, a tuple of them or a
            predicate (default :func:`default_retryable`); a per-call ``retryable`` wins.
        rng: Random source for jitter (seed one for reproducible delays).
    """

    __slots__ = ("_budget", "_clock", "_config", "_hooks", "_name", "_predicate", "_rng", "stats")

    def __init__(
        self,
        config: RetryConfig | None = None,
        *,
        name: str = "retry",
        clock: Clock | None = None,
        budget: RetryBudget | None = None,
        hooks: Sequence[RetryObserver] = (),
        retryable: Retryable | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config if config is not None else RetryConfig()
        if not isinstance(self._config, RetryConfig):
            raise TypeError(f"config must be a RetryConfig, got {config!r}")
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(f"budget must be a RetryBudget or None, got {budget!r}")
        self._name = name
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._budget = budget
        self._hooks = tuple(hooks)
        self._predicate = default_retryable if retryable is None else as_predicate(retryable)
        # Jitter is load spreading, not security; a seedable PRNG is what tests need.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        self.stats = RetryStats()

    @property
    def config(self) -> RetryConfig:
        """The configuration it was built with."""
        return self._config

    @property
    def name(self) -> str:
        """Names the policy in notes and observer events."""
        return self._name

    @property
    def budget(self) -> RetryBudget | None:
        """The retry budget, if any."""
        return self._budget

    @property
    def clock(self) -> Clock:
        """The clock used for sleeping and for the deadline."""
        return self._clock

    def with_config(self, config: RetryConfig) -> RetryPolicy:
        """A policy with ``config`` sharing this one's name, clock, budget, hooks and rng."""
        twin = RetryPolicy(
            config, name=self._name, clock=self._clock, budget=self._budget, hooks=self._hooks
        )
        twin._predicate = self._predicate
        twin._rng = self._rng
        return twin

    def delay_for(self, attempt: int, error: BaseException | None = None) -> float:
        """The delay this policy would sleep after ``attempt`` failed with ``error``."""
        low, high = self._config.delay_bounds(attempt)
        delay = self._rng.uniform(low, high) if high > low else high
        retry_after = _retry_after(error)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def describe(self) -> str:
        """One line, e.g. ``retry(3 attempts, 1s x2 up to 30s, jitter)``."""
        budget = f", {self._budget.describe()}" if self._budget is not None else ""
        return f"retry({self._config.describe()}{budget})"

    def __repr__(self) -> str:
        return f"RetryPolicy(name={self._name!r}, {self.describe()})"

    async def execute(
        self,
        fn: AsyncCallable[T],
        /,
        *args: Any,
        retryable: Retryable | None = None,
        on_retry: OnRetry | None = None,
        **kwargs: Any,
    ) -> T:
        """Call ``fn(*args, **kwargs)``, retrying retryable failures.

        ``fn`` is any callable returning an awaitable; it is called afresh per attempt.
        ``retryable`` (an exception class, a tuple of them or a predicate) overrides the
        policy's for this call; ``on_retry(error, attempt, delay)`` (sync or async) runs
        before each sleep.

        Raises:
            Exception: The last attempt's own error (with a ``__notes__`` entry when we
                retried or refused to), never a wrapper -- or the error ``on_retry``
                raised, which ends the retries.
            TypeError: ``retryable`` or ``on_retry`` is not one of the accepted forms
                (raised before any attempt).
        """
        # Arguments are checked before the first attempt, not on the first failure: a
        # misuse must not wait for an outage to show.
        predicate = self._predicate if retryable is None else as_predicate(retryable)
        if on_retry is not None and not callable(on_retry):
            raise TypeError(
                f"on_retry must be a callable (error, attempt, delay) -> None, got {on_retry!r}"
            )
        self.stats.executions += 1
        if self._budget is not None:
            self._budget.record_call()
        started = self._clock.now() if self._config.deadline is not None else 0.0
        returned: Any = NOTHING
        try:
            awaitable = returned = fn(*args, **kwargs)
            return await awaitable
        except Exception as exc:
            bad = misuse(fn, returned, exc)
            if bad is not None:
                raise bad from exc
            if self._gives_up_at_first(exc, predicate):
                raise
            first = exc
        return await self._retry(
            fn, args, kwargs, first=first, started=started, predicate=predicate, on_retry=on_retry
        )

    async def _retry(
        self,
        fn: AsyncCallable[T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        first: Exception,
        started: float,
        predicate: Callable[[BaseException], bool],
        on_retry: OnRetry | None,
    ) -> T:
        """Attempts 2..n, driven by tenacity; attempt 1 (``first``) already failed."""
        self.stats.tenacity_loops += 1
        deadline = self._config.deadline
        run = _Run(self, predicate, on_retry, None if deadline is None else started + deadline)
        retrying = AsyncRetrying(
            sleep=self._clock.sleep,
            stop=run.stop,
            wait=run.wait,
            retry=run.retry,
            before_sleep=run.before_sleep,
            reraise=True,
        )
        try:
            # Driven by hand, not ``async for``: tenacity raises the final error out of
            # ``__anext__``, and ``async for`` would take a StopAsyncIteration there (the
            # end of a stream read through ``execute(stream.__anext__)``, or one raised by
            # ``on_retry``) for the end of the loop and swallow it.
            attempts = aiter(retrying)
            while True:
                attempt = await anext(attempts)
                state = attempt.retry_state
                run.attempts = state.attempt_number
                if state.attempt_number == 1:
                    state.set_exception((type(first), first, first.__traceback__))
                    continue
                returned: Any = NOTHING
                try:
                    awaitable = returned = fn(*args, **kwargs)
                    result: T = await awaitable
                except Exception as exc:
                    bad = misuse(fn, returned, exc)
                    if bad is not None:
                        raise bad from exc
                    state.set_exception((type(exc), exc, exc.__traceback__))
                else:
                    return result
        except Exception as final:
            if run.reason is not None:
                final.add_note(run.note())
                self._notify_give_up(run.attempts, run.reason, final)
            raise

    def on_retry_scheduled(self, attempt: int, delay: float, error: BaseException) -> None:
        """Count a retry and tell the observers (called by the loop before each sleep)."""
        self.stats.retries += 1
        if self._hooks:
            notify(self._hooks, lambda o: o.on_retry(self._name, attempt, delay, error))

    def ends_at_first(self, error: Exception) -> bool:
        """Whether a call whose first attempt failed with ``error`` ends there, recorded
        exactly as :meth:`execute` records it (the call counted, the give-up reported).

        For a caller that ran the first attempt itself (``ResiliencePolicy`` does): when
        this returns ``False``, hand the failure to :meth:`execute` (which counts the call
        then); when ``True``, re-raise ``error``. A call refused by an open breaker ends
        here without replaying the refusal through :meth:`execute` -- the fail-fast path.
        If the ``retryable`` predicate raises, the call is counted and ends with its error.
        """
        try:
            ends = self._gives_up_at_first(error, self._predicate)
        except Exception:  # the predicate raised: the call ends here, with that error
            self._count_execution()
            raise
        if ends:
            self._count_execution()
        return ends

    def _count_execution(self) -> None:
        self.stats.executions += 1
        if self._budget is not None:
            self._budget.record_call()

    def _gives_up_at_first(
        self, error: Exception, predicate: Callable[[BaseException], bool]
    ) -> bool:
        """The first attempt failed with ``error``: report a give-up and return ``True``
        if the call ends. The loop's order: "not retryable" before "no attempts left"."""
        try:
            decision = predicate(error)
        except Exception as failed:
            # The caller's predicate failed: reported as a failed on_retry is.
            _caused_by(failed, error)
            failed.add_note(
                f"{self._name}: gave up after 1 attempt: retryable raised "
                f"{type(failed).__name__} after attempt 1 failed; no further attempt was made"
            )
            self._notify_give_up(1, GiveUpReason.CALLBACK_FAILED, failed)
            raise
        if not decision:
            self._notify_give_up(1, GiveUpReason.NOT_RETRYABLE, error)
            return True
        if self._config.max_attempts == 1:
            self._notify_give_up(1, GiveUpReason.ATTEMPTS_EXHAUSTED, error)
            return True
        return False

    def _notify_give_up(self, attempts: int, reason: GiveUpReason, error: BaseException) -> None:
        self.stats.give_ups += 1
        if self._hooks:
            notify(self._hooks, lambda o: o.on_give_up(self._name, attempts, reason, error))


def _passes_deadline(now: float, delay: float, deadline_at: float | None) -> bool:
    """Whether a sleep of ``delay`` from ``now`` ends past our deadline or an outer one."""
    if deadline_at is not None and now + delay > deadline_at:
        return True
    outer = current_deadline()  # set by an enclosing Timeout (e.g. the overall timeout)
    return outer is not None and delay >= outer.remaining()


def _caused_by(failed: BaseException, error: BaseException) -> None:
    """Chain a failed callback's error to the attempt's error it was deciding about."""
    if failed.__cause__ is None:
        failed.__cause__ = error


def _error_of(state: RetryCallState) -> BaseException:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    if error is None:  # our loop records only failures; tenacity never calls us otherwise
        raise RuntimeError("retry callback invoked without a failed outcome")
    return error


def _retry_after(error: BaseException | None) -> float | None:
    """The wait a server asked for, when the error carries one (see the module docstring)."""
    if isinstance(error, RateLimitedError):
        return error.retry_after
    if isinstance(error, InfraError):
        value = error.details.get("retry_after")
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None

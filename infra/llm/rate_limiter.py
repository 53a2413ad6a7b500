"""A rate limiter for LLM providers that waits: requests per minute and tokens per minute.

::

    limiter = LLMRateLimiter.in_process(rpm=500, tpm=200_000, max_wait=30.0)
    charge = await limiter.acquire(tokens=estimated_tokens)   # waits its turn
    ...                                                       # the provider call
    limiter.settle(charge, used=response_usage_total)         # reconcile the estimate
    limiter.pause(retry_after)                                # the provider said 429

Decisions:

* **Two token buckets, reused.** The request bucket and the token bucket are the
  resilience package's :class:`~infra.resilience.TokenBucketLimiter` (in-process) or
  :class:`~infra.resilience.RedisTokenBucketLimiter` (shared by every process using the
  same Redis key prefix): FIFO-fair waiting, cancellation-safe, injectable clock. This
  module only composes them; it does not re-implement a bucket. litellm's Router was not
  used: it rejects at once when an rpm limit is hit instead of waiting.
* **Maximum wait, then a typed error.** ``acquire`` waits at most ``max_wait`` seconds in
  total (pause, then the request bucket, then the token bucket) and otherwise raises
  :class:`~infra.exceptions.RateLimitExceededError` -- decided as soon as the buckets
  know the wait is too long, not after sleeping it.
* **Estimate before, reconcile after.** A request is charged its estimated tokens
  (prompt tokens counted by litellm plus the completion's ``max_tokens``). ``settle``
  carries the difference to the real usage into the next charge: a call that used more
  than estimated makes the next one pay the excess, one that used less gives credit. A
  bucket cannot give tokens back, so the correction is applied on the next acquire.
* **A caller that gives up keeps nothing.** A request slot is taken before the token
  wait; when that wait fails (``max_wait``) or is cancelled, the slot is given back as a
  credit the next caller uses instead of the request bucket (buckets cannot take tokens
  back) -- a cancelled waiter used to burn a request of the minute's budget. A credit
  is used only while nobody is queued for the request bucket, so it never lets a
  newcomer overtake a waiter; the burst after idleness may exceed the bucket's by the
  credits held, the rate over time is exact.
* **Large requests wait for a full bucket.** A request estimated above the token
  bucket's capacity is charged the capacity (and the rest is carried as above), so a big
  prompt waits for a full minute's budget instead of failing.
* **Retry-After pauses the bucket.** :meth:`pause` holds every later ``acquire`` until the
  provider's ``Retry-After`` has passed (the longest pause wins). The pause is kept in
  this process; with shared buckets each process pauses when it sees the provider's 429.
* **A pause is capped** at ``max_pause`` (60 s by default: one rate window). A
  ``Retry-After`` is the provider's text -- a garbage ``1e9`` or an HTTP date in the year
  9999 parses as years -- and an uncapped pause froze every later call of the process
  (each one waiting, or failing at once past ``max_wait``) until a restart. Capped, a
  provider still throttling answers the next call with another 429 and another pause,
  so a cap too short costs one request per window, while a pause too long cost the
  process.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from infra.exceptions import InvalidArgumentError, RateLimitExceededError
from infra.resilience import Clock, MonotonicClock, RateLimiter, TokenBucketLimiter

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from infra.observability.metrics import MetricsCollector
    from infra.observability.tracing import TracingState

__all__ = ["LLMRateLimiter"]

_MINUTE: Final = 60.0
#: Longest pause a provider's ``Retry-After`` sets by default: one rate window.
DEFAULT_MAX_PAUSE: Final = 60.0


def _check_limit(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(f"{name} must be a number per minute > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgumentError(f"{name} must be a finite number per minute > 0, got {value!r}")
    return float(value)


class LLMRateLimiter:
    """Requests-per-minute and tokens-per-minute limits with FIFO waiting.

    Build one with :meth:`in_process` or :meth:`shared`; the constructor takes the buckets
    themselves (any :class:`~infra.resilience.RateLimiter`).

    Args:
        requests: The request bucket (1 token per request), or ``None`` for no RPM limit.
        tokens: The token bucket, or ``None`` for no TPM limit.
        token_capacity: The token bucket's capacity (largest charge per request).
        max_wait: Longest total wait of one ``acquire`` in seconds (``None``: no limit).
        max_pause: Longest pause one :meth:`pause` may set, seconds.
        clock: Time source of the pause (use the buckets' clock).
        name: Reported as ``component`` on errors.
    """

    def __init__(
        self,
        *,
        requests: RateLimiter | None,
        tokens: RateLimiter | None,
        token_capacity: float = math.inf,
        max_wait: float | None = None,
        max_pause: float = DEFAULT_MAX_PAUSE,
        clock: Clock | None = None,
        name: str = "llm_rate_limit",
    ) -> None:
        if max_wait is not None and (not math.isfinite(max_wait) or max_wait < 0):
            raise InvalidArgumentError(f"max_wait must be None or seconds >= 0, got {max_wait!r}")
        if isinstance(max_pause, bool) or not (
            isinstance(max_pause, int | float) and math.isfinite(max_pause) and max_pause > 0
        ):
            raise InvalidArgumentError(
                f"max_pause must be finite seconds > 0, got {max_pause!r}", argument="max_pause"
            )
        self._max_pause = float(max_pause)
        self._requests = requests
        self._tokens = tokens
        self._capacity = token_capacity
        self._max_wait = max_wait
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._paused_until = 0.0
        self._carry = 0.0
        self._request_credit = 0
        self._requesting = 0  # callers of this limiter waiting for the request bucket
        self.name = name

    @classmethod
    def in_process(
        cls,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        max_wait: float | None = None,
        max_pause: float = DEFAULT_MAX_PAUSE,
        burst_seconds: float = 1.0,
        clock: Clock | None = None,
    ) -> LLMRateLimiter:
        """Buckets in this process. ``burst_seconds`` of requests may go at once after
        idleness; the token bucket holds a full minute (a provider's own window)."""
        rpm_rate, tpm_rate = _check_limit("rpm", rpm), _check_limit("tpm", tpm)
        clock = clock if clock is not None else MonotonicClock()
        requests = tokens = None
        if rpm_rate is not None:
            rate = rpm_rate / _MINUTE
            requests = TokenBucketLimiter(
                rate, max(1.0, rate * burst_seconds), clock=clock, name="llm_rpm"
            )
        if tpm_rate is not None:
            tokens = TokenBucketLimiter(tpm_rate / _MINUTE, tpm_rate, clock=clock, name="llm_tpm")
        return cls(
            requests=requests,
            tokens=tokens,
            token_capacity=tpm_rate if tpm_rate is not None else math.inf,
            max_wait=max_wait,
            max_pause=max_pause,
            clock=clock,
        )

    @classmethod
    def shared(
        cls,
        client: Redis,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        max_wait: float | None = None,
        max_pause: float = DEFAULT_MAX_PAUSE,
        burst_seconds: float = 1.0,
        key: str = "llm",
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> LLMRateLimiter:
        """Buckets in Redis under ``key``, shared by every process that uses the same key;
        their Redis calls are recorded into ``collector`` and traced from ``tracing``
        (``None``: the current ones at call time)."""
        from infra.resilience import RedisTokenBucketLimiter  # noqa: PLC0415

        rpm_rate, tpm_rate = _check_limit("rpm", rpm), _check_limit("tpm", tpm)
        requests = tokens = None
        if rpm_rate is not None:
            rate = rpm_rate / _MINUTE
            requests = RedisTokenBucketLimiter(
                client,
                f"{key}:rpm",
                rate=rate,
                capacity=max(1.0, rate * burst_seconds),
                collector=collector,
                tracing=tracing,
            )
        if tpm_rate is not None:
            tokens = RedisTokenBucketLimiter(
                client,
                f"{key}:tpm",
                rate=tpm_rate / _MINUTE,
                capacity=tpm_rate,
                collector=collector,
                tracing=tracing,
            )
        return cls(
            requests=requests,
            tokens=tokens,
            token_capacity=tpm_rate if tpm_rate is not None else math.inf,
            max_wait=max_wait,
            max_pause=max_pause,
        )

    # ----------------------------------------------------------------------- use
    async def acquire(self, tokens: int = 0) -> float:
        """Wait for one request and ``tokens`` tokens; returns the tokens charged (give
        it to :meth:`settle`).

        Raises:
            RateLimitExceededError: the grant would come after ``max_wait`` seconds.
            InvalidArgumentError: ``tokens`` is negative.
        """
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise InvalidArgumentError(f"tokens must be an int >= 0, got {tokens!r}")
        start = self._clock.now()
        await self._wait_pause(start)
        await self._take_request(start)
        if self._tokens is None:
            return float(tokens)
        wanted = tokens + self._carry
        charge = min(max(wanted, 0.0), self._capacity)
        self._carry = wanted - charge
        if charge > 0:
            try:
                await self._tokens.acquire(charge, timeout=self._left(start))
            except BaseException:
                self._carry += charge - tokens  # not granted: as if never asked
                if self._requests is not None:
                    self._request_credit += 1  # its request slot goes to a later caller
                raise
        return float(tokens)

    async def _take_request(self, start: float) -> None:
        """One request from the request bucket -- or a slot an earlier caller took and
        gave back (its token wait failed or was cancelled), when no caller of this
        limiter waits for the bucket (a refund never lets a newcomer overtake one)."""
        if self._requests is None:
            return
        if self._request_credit > 0 and self._requesting == 0:
            self._request_credit -= 1
            return
        self._requesting += 1  # counted here: works for any bucket, Redis-shared too
        try:
            await self._requests.acquire(1, timeout=self._left(start))
        finally:
            self._requesting -= 1

    def settle(self, charged: float, *, used: int) -> None:
        """Carry the difference between ``used`` tokens and the ``charged`` estimate into
        the next charge (more used: the next request pays it; less: it gets credit)."""
        if self._tokens is not None and used >= 0:
            self._carry += used - charged

    def pause(self, seconds: float | None) -> None:
        """Hold every later :meth:`acquire` for ``seconds`` (a provider's Retry-After),
        at most ``max_pause`` (see the module docstring); not a positive number: no pause."""
        if (
            seconds is None
            or isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or math.isnan(seconds)
            or seconds <= 0
        ):
            return
        until = self._clock.now() + min(float(seconds), self._max_pause)
        self._paused_until = max(self._paused_until, until)

    @property
    def limits_tokens(self) -> bool:
        """Whether there is a tokens-per-minute bucket (callers count tokens only then)."""
        return self._tokens is not None

    @property
    def request_credits(self) -> int:
        """Request slots given back by callers whose token wait failed, not yet reused."""
        return self._request_credit

    @property
    def carried_tokens(self) -> float:
        """Tokens carried into the next charge: positive when calls used more than
        estimated (or a large request exceeded the bucket), negative as credit."""
        return self._carry

    @property
    def paused_for(self) -> float:
        """Seconds the limiter stays paused (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock.now())

    async def _wait_pause(self, start: float) -> None:
        while (remaining := self._paused_until - self._clock.now()) > 0:
            left = self._left(start)
            if left is not None and remaining > left:
                raise RateLimitExceededError(
                    f"rate limiter {self.name!r} is paused by the provider's Retry-After for "
                    f"{remaining:.3f}s, longer than max_wait={self._max_wait}s",
                    component=self.name,
                    details={
                        "reason": "paused",
                        "timeout": self._max_wait,
                        "retry_after_s": remaining,
                    },
                )
            await self._clock.sleep(remaining)

    def _left(self, start: float) -> float | None:
        if self._max_wait is None:
            return None
        return max(0.0, self._max_wait - (self._clock.now() - start))

    def __repr__(self) -> str:
        return (
            f"LLMRateLimiter(rpm={self._requests is not None}, "
            f"tpm={self._tokens is not None}, max_wait={self._max_wait!r})"
        )

"""Resilience for async calls: breaker, retry, timeout, bulkhead, fallback, rate limits.

Most code needs one object, a :class:`ResiliencePolicy`, built from settings or presets::

    policy = ResiliencePolicy.from_settings(settings, component="redis")
    value = await policy.execute(client.get, "key")          # any awaitable-returning fn
    await policy.execute(client.incr, "n", idempotent=False)  # never retried

It composes, outermost first: fallback → overall timeout → retry → breaker → rate
limiter → bulkhead → attempt timeout (see :mod:`infra.resilience.policy` for why). Each
layer is also usable alone: :class:`CircuitBreaker` (``async with``, ``call``,
decorator), :class:`RetryPolicy`, :class:`Timeout`, :class:`Bulkhead`,
:class:`Fallback`, :class:`TokenBucketLimiter` / :class:`RedisTokenBucketLimiter`.
tenacity and aiobreaker stay behind these types; they never appear in a signature.

Design rules shared by every layer: time comes from an injected :class:`Clock`
(:class:`ManualClock` makes tests instant and deterministic); ``asyncio.CancelledError``
is never retried, counted or replaced; the error a caller sees is the real one (the
backend's own after retries, or one of our :class:`~infra.exceptions.ResilienceError` /
timeout types), never a library wrapper; and the happy path stays cheap -- tenacity only
engages after a retryable failure, observers cost one ``if`` when none is registered.

Inner retries: the decision
---------------------------
The clients retry on their own, and layered naively 3 attempts of ours become 33 of
theirs (redis-py 8: 10 retries, i.e. 11 connection attempts over 3.4 s; the openai SDK
under litellm: 2; neo4j managed transactions: up to 30 s). **Under a ResiliencePolicy the
client's own retries are off, so the effective number of attempts is exactly
``retry_max_attempts``** and every attempt is visible to our breaker, budget and metrics.
Adapters apply it when they build their client (helpers in
:mod:`infra.resilience.client_retries`, drivers imported lazily):

* **redis-py**: ``retry=Retry(NoBackoff(), 0)`` (:func:`redis_no_retry`). Not
  ``retry_on_timeout=False``: that argument is deprecated since redis-py 6 and the
  zero-retry ``Retry`` already covers timeouts.
* **litellm / openai SDK**: ``num_retries=0`` (litellm's wrapper) and ``max_retries=0``
  (the provider SDK client) per call (:func:`litellm_no_retry_kwargs`).
* **neo4j**: use ``session.run`` or explicit transactions, not the managed
  ``execute_read`` / ``execute_write`` retry loops; the driver is also built with
  ``max_transaction_retry_time=0`` (:func:`neo4j_no_retry_config`) so a managed
  transaction used anyway makes a single try.
* **qdrant-client**: plain calls do not retry; ``upload_points`` /
  ``upload_collection`` do (3 by default) and get ``max_retries=0``
  (:func:`qdrant_no_retry_kwargs`).
* **asyncpg**: no built-in retries; nothing to turn off.

When a policy has no retry layer (``retry_enabled=False`` or a non-idempotent call) the
clients' retries stay off too: "no retry" then means one attempt, as configured.
"""

from __future__ import annotations

from infra.resilience.breaker import (
    DEFAULT_EXCLUDED,
    BreakerSnapshot,
    CircuitBreaker,
    CircuitBreakerConfig,
)
from infra.resilience.budget import RetryBudget
from infra.resilience.bulkhead import Bulkhead
from infra.resilience.client_retries import (
    litellm_no_retry_kwargs,
    neo4j_no_retry_config,
    qdrant_no_retry_kwargs,
    redis_no_retry,
    redis_no_retry_kwargs,
)
from infra.resilience.clock import Clock, ManualClock, MonotonicClock
from infra.resilience.fallback import Fallback, FallbackResult
from infra.resilience.hooks import (
    BreakerObserver,
    BreakerState,
    CallOutcome,
    GiveUpReason,
    RecordingObserver,
    ResilienceObserver,
    RetryObserver,
)
from infra.resilience.policy import BulkheadConfig, ResiliencePolicy
from infra.resilience.presets import BreakerPresets, RetryPresets, breaker_preset, retry_preset
from infra.resilience.rate_limit import RateLimiter, TokenBucketLimiter
from infra.resilience.rate_limit_redis import RedisTokenBucketLimiter
from infra.resilience.retry import RetryConfig, RetryPolicy, RetryStats, default_retryable
from infra.resilience.timeout import Deadline, Timeout, current_deadline

__all__ = [
    "DEFAULT_EXCLUDED",
    "BreakerObserver",
    "BreakerPresets",
    "BreakerSnapshot",
    "BreakerState",
    "Bulkhead",
    "BulkheadConfig",
    "CallOutcome",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "Clock",
    "Deadline",
    "Fallback",
    "FallbackResult",
    "GiveUpReason",
    "ManualClock",
    "MonotonicClock",
    "RateLimiter",
    "RecordingObserver",
    "RedisTokenBucketLimiter",
    "ResilienceObserver",
    "ResiliencePolicy",
    "RetryBudget",
    "RetryConfig",
    "RetryObserver",
    "RetryPolicy",
    "RetryPresets",
    "RetryStats",
    "Timeout",
    "TokenBucketLimiter",
    "breaker_preset",
    "current_deadline",
    "default_retryable",
    "litellm_no_retry_kwargs",
    "neo4j_no_retry_config",
    "qdrant_no_retry_kwargs",
    "redis_no_retry",
    "redis_no_retry_kwargs",
    "retry_preset",
]

"""ResiliencePolicy: layer order, timeouts, idempotency, settings, presets, variants."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from config import Settings
from infra.exceptions import (
    BackendConnectionError,
    BulkheadFullError,
    CircuitBreakerOpenError,
    ConfigurationError,
    InfraError,
    OperationTimeoutError,
)
from infra.resilience.breaker import CircuitBreakerConfig
from infra.resilience.clock import ManualClock
from infra.resilience.fallback import Fallback
from infra.resilience.hooks import BreakerState, CallOutcome, RecordingObserver
from infra.resilience.policy import BulkheadConfig, ResiliencePolicy
from infra.resilience.presets import BreakerPresets, RetryPresets, breaker_preset, retry_preset
from infra.resilience.retry import RetryConfig

NO_JITTER = RetryConfig(max_attempts=5, jitter=False)


class Backend:
    """Fails with the given errors in order, then returns "ok"; counts calls."""

    def __init__(self, *errors: BaseException, tick: float = 0.0, clock: Any = None) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.tick = tick
        self.clock = clock

    async def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        if self.tick:
            self.clock.advance(self.tick)  # the call "takes" tick seconds of virtual time
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def down(n: int) -> list[BackendConnectionError]:
    return [BackendConnectionError(f"down #{i}") for i in range(n)]


def manual(policy: ResiliencePolicy) -> ManualClock:
    clock = policy.clock
    assert isinstance(clock, ManualClock)
    return clock


# ----------------------------------------------------------------------------- order
async def test_retry_stops_as_soon_as_the_breaker_opens() -> None:
    """Per-attempt counting, threshold 2: two attempts reach the backend, the third is refused."""
    policy = ResiliencePolicy.instant(
        breaker=CircuitBreakerConfig(failure_threshold=2, count_retried_attempts=True),
        retry=NO_JITTER,
    )
    backend = Backend(*down(10))
    with pytest.raises(CircuitBreakerOpenError):
        await policy.execute(backend)
    assert backend.calls == 2
    assert policy.breaker is not None
    assert policy.breaker.state is BreakerState.OPEN


async def test_attempt_timeout_is_counted_by_the_breaker_and_retried() -> None:
    """A hung attempt times out inside the breaker: a failure the breaker sees, retried."""
    rec = RecordingObserver()
    policy = ResiliencePolicy.instant(
        breaker=CircuitBreakerConfig(failure_threshold=5),
        retry=RetryConfig(max_attempts=2, base_delay=0.0),
        attempt_timeout=0.01,
        hooks=[rec],
    )
    calls = 0

    async def hang() -> None:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()

    with pytest.raises(OperationTimeoutError) as info:
        await policy.execute(hang)
    assert calls == 2
    assert info.value.details["timeout"] == 0.01
    assert rec.outcomes() == [CallOutcome.FAILURE, CallOutcome.FAILURE]
    assert policy.breaker is not None
    assert policy.breaker.failure_count == 1  # one call failed for good


async def test_fallback_sees_the_final_error_and_answers() -> None:
    """The fallback is outermost: it receives the open-breaker error and returns its value."""
    seen: list[BaseException] = []

    async def degraded(error: BaseException) -> str:
        seen.append(error)
        return "cached"

    policy = ResiliencePolicy.instant(
        breaker=CircuitBreakerConfig(failure_threshold=1),
        retry=RetryConfig(max_attempts=1),
        fallback=Fallback(degraded),
    )
    assert await policy.execute(Backend(*down(1))) == "cached"
    assert await policy.execute(Backend()) == "cached"
    assert isinstance(seen[0], BackendConnectionError)
    assert isinstance(seen[1], CircuitBreakerOpenError)


async def test_non_idempotent_calls_are_not_retried() -> None:
    """idempotent=False: one attempt, the real error."""
    policy = ResiliencePolicy.instant(retry=NO_JITTER)
    backend = Backend(*down(3))
    with pytest.raises(BackendConnectionError):
        await policy.execute(backend, idempotent=False)
    assert backend.calls == 1
    assert await policy.execute(Backend(*down(2))) == "ok"


async def test_arguments_reach_fn() -> None:
    """Positional and keyword arguments pass through every layer (fallback included)."""

    async def join(a: str, *, b: str) -> str:
        return a + b

    policy = ResiliencePolicy.instant(fallback=Fallback.value("x"), attempt_timeout=1.0)
    assert await policy.execute(join, "a", b="b") == "ab"


async def test_bulkhead_rejection_is_neither_counted_nor_retried() -> None:
    """A full bulkhead is our own load shedding: no breaker count, no retry."""
    policy = ResiliencePolicy.instant(
        breaker=CircuitBreakerConfig(failure_threshold=1),
        retry=NO_JITTER,
        bulkhead=BulkheadConfig(1),
    )
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "slow"

    first = asyncio.create_task(policy.execute(slow))
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFullError):
        await policy.execute(Backend())
    gate.set()
    assert await first == "slow"
    assert policy.breaker is not None
    assert policy.breaker.state is BreakerState.CLOSED
    assert manual(policy).sleeps == []


async def test_cancellation_releases_permits_and_counts_nothing() -> None:
    """Cancelling execute frees the bulkhead slot and leaves the breaker count alone."""
    policy = ResiliencePolicy.instant(
        breaker=CircuitBreakerConfig(failure_threshold=1), bulkhead=BulkheadConfig(2)
    )
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(policy.execute(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert policy.bulkhead is not None
    assert policy.bulkhead.in_flight == 0
    assert policy.breaker is not None
    assert policy.breaker.failure_count == 0


async def test_non_awaitable_fn_is_a_clear_type_error_not_a_breaker_failure() -> None:
    """A sync function returning a value is named in a TypeError and not counted."""
    policy = ResiliencePolicy.instant(breaker=CircuitBreakerConfig(failure_threshold=1))

    def sync_fn() -> int:
        return 1

    with pytest.raises(TypeError, match="sync_fn returned int"):
        await policy.execute(sync_fn)  # type: ignore[arg-type]  # the misuse under test
    assert policy.breaker is not None
    assert policy.breaker.state is BreakerState.CLOSED


# --------------------------------------------------------------------------- timeouts
async def test_overall_timeout_stops_retrying_before_a_sleep_would_cross_it() -> None:
    """timeout=5 with 1-2-4 backoff: sleeps 1 and 2, then the last real error."""
    policy = ResiliencePolicy.instant(retry=NO_JITTER, timeout=5.0, attempt_timeout=1.0)
    errors = down(10)
    with pytest.raises(BackendConnectionError) as info:
        await policy.execute(Backend(*errors))
    assert manual(policy).sleeps == [1.0, 2.0]
    assert info.value is errors[2]


async def test_overall_timeout_without_attempt_timeout_behaves_the_same() -> None:
    """The nested layout (overall timer around retry) makes the same decision."""
    policy = ResiliencePolicy.instant(retry=NO_JITTER, timeout=5.0)
    errors = down(10)
    with pytest.raises(BackendConnectionError) as info:
        await policy.execute(Backend(*errors))
    assert manual(policy).sleeps == [1.0, 2.0]
    assert info.value is errors[2]


async def test_attempt_near_the_deadline_is_cut_to_the_time_left() -> None:
    """An attempt starting 1 s before the overall deadline ends with the overall error."""
    policy = ResiliencePolicy.instant(
        retry=RetryConfig(max_attempts=10, base_delay=1.0, exponential_base=1.0, jitter=False),
        timeout=5.0,
        attempt_timeout=2.0,
    )
    clock = manual(policy)
    backend = Backend(*down(10), tick=1.0, clock=clock)
    with pytest.raises(OperationTimeoutError) as info:
        await policy.execute(backend)
    assert backend.calls == 3  # t=0-1, 2-3, 4-5; the third is clamped to 1 s
    assert info.value.details["timeout"] == 5.0
    assert info.value.retryable is False
    assert isinstance(info.value.__cause__, OperationTimeoutError)
    assert policy.breaker is not None
    assert policy.breaker.failure_count == 1  # the call failed for good: counted once


async def test_clamped_policy_gives_its_retry_the_overall_deadline() -> None:
    """With an attempt timeout that fits, the retry layer carries the overall deadline."""
    policy = ResiliencePolicy.instant(retry=NO_JITTER, timeout=30.0, attempt_timeout=10.0)
    assert policy.retry is not None
    assert policy.retry.config.deadline == 30.0


# --------------------------------------------------------------------------- settings
def test_from_settings_builds_every_enabled_layer() -> None:
    """Default settings give timeout → retry → breaker → bulkhead → attempt timeout."""
    policy = ResiliencePolicy.from_settings(Settings(), component="redis")
    assert policy.describe() == (
        "redis: timeout(30s) → retry(3 attempts, 1s x2 up to 30s, jitter, deadline 30s, "
        "budget 20% + 10/s over 10s) → breaker(5 failed calls / 60s, 1 probe) → "
        "bulkhead(20 running, 1000 queued, wait 5s) → attempt-timeout(10s)"
    )
    assert repr(policy) == f"ResiliencePolicy({policy.describe()})"


def test_from_settings_honours_the_switches() -> None:
    """circuit_breaker_enabled / retry_enabled = False leave those layers out."""
    settings = Settings(circuit_breaker_enabled=False, retry_enabled=False)
    policy = ResiliencePolicy.from_settings(settings, component="pg")
    assert policy.breaker is None
    assert policy.retry is None
    assert "breaker" not in policy.describe()
    assert "retry" not in policy.describe()


def test_from_settings_accepts_the_grouped_view() -> None:
    """settings.resilience works as well as the whole Settings."""
    settings = Settings(circuit_breaker_failure_threshold=7, bulkhead_max_wait=0)
    policy = ResiliencePolicy.from_settings(settings.resilience, component="qdrant")
    assert policy.breaker is not None
    assert policy.breaker.config.failure_threshold == 7
    assert policy.bulkhead is not None
    assert policy.bulkhead.max_queue == 0  # max_wait 0 = do not wait


def test_from_settings_reports_inconsistent_values_as_configuration_error() -> None:
    """retry_max_delay below retry_base_delay names the settings to fix."""
    settings = Settings(retry_base_delay=5.0, retry_max_delay=1.0)
    with pytest.raises(ConfigurationError, match="SEMANTICA_RETRY_") as info:
        ResiliencePolicy.from_settings(settings, component="llm")
    assert info.value.component == "llm"


async def test_from_settings_shares_observers_between_breaker_and_retry() -> None:
    """One observer sees the retry's decisions and the breaker's outcomes."""
    rec = RecordingObserver()
    settings = Settings(retry_base_delay=0.0)
    policy = ResiliencePolicy.from_settings(settings, component="redis", hooks=[rec])
    assert await policy.execute(Backend(*down(1))) == "ok"
    assert [r[:2] for r in rec.retries] == [("redis", 1)]
    assert [name for name, _ in rec.calls] == ["redis", "redis"]


async def test_from_settings_wires_bulkhead_hooks() -> None:
    """bulkhead_hooks reach the policy's bulkhead: one call shows a slot taken and freed."""
    seen: list[tuple[str, int, int]] = []

    class Hooks:
        def on_bulkhead_change(self, name: str, in_flight: int, queued: int) -> None:
            seen.append((name, in_flight, queued))

        def on_bulkhead_reject(self, name: str, reason: str) -> None:
            raise AssertionError(reason)

    policy = ResiliencePolicy.from_settings(Settings(), component="redis", bulkhead_hooks=Hooks())
    assert await policy.execute(Backend()) == "ok"
    assert seen == [("redis", 1, 0), ("redis", 0, 0)]


# ---------------------------------------------------------------- presets and variants
def test_presets_match_the_spec() -> None:
    """Breaker 20/30, 5/60, 10/120; retry 5, 1, and 2 attempts with a 5 s base."""
    assert (BreakerPresets.HIGH_TRAFFIC.failure_threshold, BreakerPresets.HIGH_TRAFFIC.timeout) == (
        20,
        30.0,
    )
    assert (BreakerPresets.LOW_TRAFFIC.failure_threshold, BreakerPresets.LOW_TRAFFIC.timeout) == (
        5,
        60.0,
    )
    assert (BreakerPresets.CRITICAL.failure_threshold, BreakerPresets.CRITICAL.timeout) == (
        10,
        120.0,
    )
    assert RetryPresets.IDEMPOTENT.max_attempts == 5
    assert RetryPresets.NON_IDEMPOTENT.max_attempts == 1
    assert (RetryPresets.EXPENSIVE.max_attempts, RetryPresets.EXPENSIVE.base_delay) == (2, 5.0)


def test_presets_by_name() -> None:
    """Names are case- and dash-insensitive; an unknown name lists the choices."""
    assert breaker_preset("High-Traffic") is BreakerPresets.HIGH_TRAFFIC
    assert retry_preset("expensive") is RetryPresets.EXPENSIVE
    with pytest.raises(ValueError, match="idempotent, non_idempotent"):
        retry_preset("sometimes")


async def test_non_idempotent_preset_means_no_retry_layer() -> None:
    """A one-attempt retry config is left out of the policy entirely."""
    policy = ResiliencePolicy.build("pg", retry=RetryPresets.NON_IDEMPOTENT)
    assert policy.retry is None
    backend = Backend(*down(1))
    with pytest.raises(BackendConnectionError):
        await policy.execute(backend)
    assert backend.calls == 1


async def test_instant_policy_makes_the_same_decisions_without_sleeping() -> None:
    """Backoff is recorded on the virtual clock; an open breaker recovers when advanced."""
    policy = ResiliencePolicy.instant(
        breaker=CircuitBreakerConfig(failure_threshold=2, timeout=60.0), retry=NO_JITTER
    )
    for _ in range(2):
        with pytest.raises(BackendConnectionError):
            await policy.execute(Backend(*down(10)))
    assert manual(policy).sleeps == [1.0, 2.0, 4.0, 8.0] * 2
    with pytest.raises(CircuitBreakerOpenError):
        await policy.execute(Backend())
    manual(policy).advance(60.0)
    assert await policy.execute(Backend()) == "ok"


async def test_passthrough_calls_fn_directly() -> None:
    """No layer: the first error is raised as is, once."""
    policy = ResiliencePolicy.passthrough()
    backend = Backend(*down(1))
    with pytest.raises(BackendConnectionError) as info:
        await policy.execute(backend)
    assert backend.calls == 1
    assert not hasattr(info.value, "__notes__")
    assert policy.describe() == "passthrough: passthrough"


def test_component_is_required() -> None:
    """An empty component name is rejected."""
    with pytest.raises(ValueError, match="component"):
        ResiliencePolicy("")


def test_fallback_is_described_with_its_errors() -> None:
    """describe() names the fallback's trigger types."""
    policy = ResiliencePolicy.build("x", fallback=Fallback.value(None, on=(InfraError,)))
    assert policy.describe() == "x: fallback(on InfraError)"


def test_package_public_api_is_pinned() -> None:
    """infra.resilience exports exactly these names, each resolvable, with resolvable hints."""
    import typing

    from infra import resilience

    assert sorted(resilience.__all__) == sorted(
        [
            "DEFAULT_EXCLUDED", "BreakerObserver", "BreakerPresets", "BreakerSnapshot",
            "BreakerState", "Bulkhead", "BulkheadConfig", "CallOutcome", "CircuitBreaker",
            "CircuitBreakerConfig", "Clock", "Deadline", "Fallback", "FallbackResult",
            "GiveUpReason", "ManualClock", "MonotonicClock", "RateLimiter", "RecordingObserver",
            "RedisTokenBucketLimiter", "ResilienceObserver", "ResiliencePolicy", "RetryBudget",
            "RetryConfig", "RetryObserver", "RetryPolicy", "RetryPresets", "RetryStats",
            "Timeout", "TokenBucketLimiter", "breaker_preset", "current_deadline",
            "default_retryable", "litellm_no_retry_kwargs", "neo4j_no_retry_config",
            "qdrant_no_retry_kwargs", "redis_no_retry", "redis_no_retry_kwargs", "retry_preset",
        ]
    )  # fmt: skip
    for name in resilience.__all__:
        obj = getattr(resilience, name)
        if isinstance(obj, type):
            typing.get_type_hints(obj)
    typing.get_type_hints(resilience.ResiliencePolicy.from_settings)
    typing.get_type_hints(resilience.RetryPolicy.execute)
    typing.get_type_hints(resilience.CircuitBreaker.call)


async def test_without_bulkhead_shares_every_other_layer() -> None:
    """The twin for calls on an already-held connection: no bulkhead, while the breaker,
    retry budget and timeouts are the very same objects; without a bulkhead, itself."""
    policy = ResiliencePolicy.from_settings(Settings(), component="postgres")
    assert policy.bulkhead is not None
    twin = policy.without_bulkhead()
    assert twin.bulkhead is None
    assert twin.breaker is policy.breaker
    assert twin.retry is not None
    assert policy.retry is not None
    assert twin.retry.budget is policy.retry.budget
    assert twin.describe() == policy.describe().replace(
        " → bulkhead(20 running, 1000 queued, wait 5s)", ""
    )
    assert twin.without_bulkhead() is twin
    # Slots all taken: the twin still runs, and its failures reach the shared breaker.
    for _ in range(policy.bulkhead.max_concurrent):
        await policy.bulkhead.acquire()
    # typeshed overloads asyncio.sleep; through the ParamSpec mypy binds its first (-> None) form.
    assert await twin.execute(asyncio.sleep, 0, "ran") == "ran"  # type: ignore[func-returns-value]
    assert policy.breaker is not None
    policy.breaker.force_open()
    with pytest.raises(CircuitBreakerOpenError):
        await twin.execute(asyncio.sleep, 0)

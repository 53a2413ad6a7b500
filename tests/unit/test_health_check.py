"""infra.health_check: the result type, argument checks and the breaker rules, with no
server (adapters pointed at a port nothing listens on)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config import Settings
from infra.cache.redis import RedisCache
from infra.exceptions import CacheConnectionError, InvalidArgumentError
from infra.health_check import HealthCheckResult, HealthProbe, check_health
from infra.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitBreakerConfig,
    ManualClock,
    RecordingObserver,
    ResiliencePolicy,
)
from infra.storage import EnhancedPostgresStore

DEAD_DSN = "postgresql://app:pw-123@127.0.0.1:1/app"
DEAD_REDIS = "redis://127.0.0.1:1/0"


class Probe:
    """Counts probes; fails with ``error`` or sleeps ``delay`` real seconds."""

    def __init__(self, error: BaseException | None = None, delay: float = 0.0) -> None:
        self.error = error
        self.delay = delay
        self.sent = 0

    async def __call__(self) -> None:
        self.sent += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error


def breaker_in(state: str) -> tuple[CircuitBreaker, RecordingObserver]:
    clock = ManualClock()
    rec = RecordingObserver()
    breaker = CircuitBreaker(CircuitBreakerConfig(timeout=10.0), name="b", clock=clock, hooks=[rec])
    if state != "closed":
        breaker.force_open()
        clock.advance(5.0 if state == "open_waiting" else 10.0)
    if state == "half_open":
        breaker.release(breaker.admit())
    return breaker, rec


async def run(probe: Probe, breaker: CircuitBreaker | None, **kwargs: Any) -> HealthCheckResult:
    kwargs.setdefault("latency_threshold_ms", 10_000.0)
    kwargs.setdefault("timeout", 1.0)
    return await check_health(
        probe, breaker=breaker, probe_name="PING", backend="the backend", **kwargs
    )


def test_the_result_unpacks_and_is_truthy_exactly_when_healthy() -> None:
    """A 2-tuple for `ok, details = ...`, and `if result:` means healthy."""
    good, bad = HealthCheckResult(True, {"status": "healthy"}), HealthCheckResult(False, {})
    assert good
    assert not bad
    ok, details = good
    assert (ok, details) == (True, {"status": "healthy"})
    assert (good.ok, bad.details) == (True, {})
    assert bad == (False, {})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"latency_threshold_ms": -1.0}, ValueError, "latency_threshold_ms"),
        ({"latency_threshold_ms": float("nan")}, ValueError, "latency_threshold_ms"),
        ({"latency_threshold_ms": "fast"}, TypeError, "latency_threshold_ms"),
        ({"latency_threshold_ms": True}, TypeError, "latency_threshold_ms"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": float("inf")}, ValueError, "timeout"),
        ({"timeout": "2"}, TypeError, "timeout"),
    ],
)
async def test_bad_arguments_raise_before_anything_is_sent(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """A programming error is raised, naming the argument; the probe is not sent."""
    probe = Probe()
    with pytest.raises(error, match=match):
        await run(probe, None, **kwargs)
    assert probe.sent == 0


@given(
    state=st.sampled_from(["closed", "open_waiting", "open_due", "half_open"]),
    outcome=st.sampled_from(["ok", "slow", "error", "timeout"]),
    closed=st.booleans(),
)
async def test_the_rules_for_every_breaker_state_and_probe_outcome(
    state: str, outcome: str, closed: bool
) -> None:
    """Closed adapter or waiting OPEN breaker: unhealthy, no probe. Otherwise the probe
    decides. The breaker is read, never changed, and its observers hear nothing."""
    breaker, rec = breaker_in(state)
    before, events = breaker.snapshot(), (list(rec.transitions), list(rec.calls))
    probe = {
        "ok": Probe(),
        "slow": Probe(delay=0.002),
        "error": Probe(CacheConnectionError("refused", component="b")),
        "timeout": Probe(delay=5.0),
    }[outcome]
    threshold = 1.0 if outcome == "slow" else 10_000.0
    timeout = 0.05 if outcome == "timeout" else 30.0  # only the hung probe meets it
    ok, details = await run(
        probe, breaker, closed=closed, latency_threshold_ms=threshold, timeout=timeout
    )
    assert breaker.snapshot() == before
    assert (rec.transitions, rec.calls) == events
    assert details["circuit_breaker"] == before.state.value
    if closed or state == "open_waiting":
        assert probe.sent == 0
        assert (ok, details["status"], details["latency_ms"]) == (False, "unhealthy", None)
        assert ("closed" if closed else "circuit breaker is open") in details["error"]
        return
    assert probe.sent == 1
    expected = {
        "ok": (True, "healthy", None),
        "slow": (True, "degraded", None),
        "error": (False, "unhealthy", "CacheConnectionError"),
        "timeout": (False, "unhealthy", "TimeoutError"),
    }[outcome]
    assert (ok, details["status"], details.get("error")) == expected
    assert details["latency_ms"] >= 0.0
    if outcome == "timeout":
        assert details["message"] == "no answer to PING within 0.05 s"


@pytest.mark.parametrize("kind", ["postgres", "redis"])
async def test_adapters_health_checks_on_a_dead_server_never_feed_the_breaker(
    kind: str,
) -> None:
    """Threshold 1: one counted failure would open the breaker. Ten failed health checks
    leave it CLOSED at zero, with no observer event (the Redis check used to go
    through the policy and open it)."""
    rec = RecordingObserver()
    policy = ResiliencePolicy.instant(
        kind, breaker=CircuitBreakerConfig(failure_threshold=1), hooks=[rec]
    )
    subject: Any
    if kind == "postgres":
        subject = EnhancedPostgresStore(DEAD_DSN, 1, 1, policy=policy)
    else:
        subject = RedisCache.from_settings(Settings(redis_url=DEAD_REDIS), policy)
    try:
        for _ in range(10):
            ok, details = await subject.health_check()
            assert (ok, details["status"]) == (False, "unhealthy")
            assert details["error"].endswith("ConnectionError")
            assert "pw-123" not in str(details)
    finally:
        await (subject.close() if kind == "postgres" else subject.aclose())
    breaker = policy.breaker
    assert breaker is not None
    assert (breaker.state, breaker.failure_count) == (BreakerState.CLOSED, 0)
    assert (rec.calls, rec.retries, rec.give_ups) == ([], [], [])


# --------------------------------------------------------------- HealthProbe.check
_thresholds = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 10**6),
    st.sampled_from([None, True, "100", b"1", [1]]),
)
_timeouts = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 10),
    st.sampled_from([True, "1", b"1", 10**10]),
)


@given(threshold=_thresholds, timeout=_timeouts)
async def test_health_probe_check_is_check_health_after_one_argument_check(
    threshold: Any, timeout: Any
) -> None:
    """Every adapter's health_check is HealthProbe.check: a bad argument raises an
    InvalidArgumentError naming it and the component, before any probe; a good one gives
    check_health's answer, with the probe's default timeout when none is given."""
    probe = Probe()
    health = HealthProbe(
        send=probe,
        name="PING",
        backend="the backend",
        component="redis",
        timeout=3.0,
        threshold_in_details=True,
    )
    error: InvalidArgumentError | None = None
    try:
        result = await health.check(threshold, timeout=timeout, breaker=None)
    except InvalidArgumentError as exc:
        error = exc
    if error is not None:
        assert error.argument in {"latency_threshold_ms", "timeout"}
        assert error.component == "redis"
        assert probe.sent == 0
        return
    assert probe.sent == 1
    plain = await run(Probe(), None, latency_threshold_ms=threshold, timeout=timeout or 3.0)
    assert result.ok is plain.ok is True
    assert result.details["latency_threshold_ms"] == threshold
    assert set(result.details) == {"latency_threshold_ms", *plain.details}

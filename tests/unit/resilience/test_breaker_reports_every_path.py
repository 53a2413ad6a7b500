"""A circuit breaker's counts, snapshot, errors and descriptions on every path.

The failure count starts again from zero whenever the breaker closes (a successful probe,
``reset()``), so a recovered backend gets the full ``failure_threshold`` again; the
snapshot, the fail-fast error and the observer events say exactly what state the breaker
is in; configuration errors name the field to fix.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.exceptions import (
    BackendConnectionError,
    CallerError,
    CircuitBreakerOpenError,
    QuerySyntaxError,
)
from infra.resilience import CircuitBreaker, CircuitBreakerConfig, ManualClock
from infra.resilience.hooks import BreakerState, CallOutcome, RecordingObserver

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def make(**config: Any) -> tuple[CircuitBreaker, ManualClock, RecordingObserver]:
    clock = ManualClock()
    rec = RecordingObserver()
    settings = {"failure_threshold": 3, "timeout": 10.0, **config}
    breaker = CircuitBreaker(CircuitBreakerConfig(**settings), name="db", clock=clock, hooks=[rec])
    return breaker, clock, rec


async def ok() -> str:
    return "ok"


async def down() -> None:
    raise BackendConnectionError(component="db")


async def admit_in_another_task(breaker: CircuitBreaker) -> int:
    """Admit a call from a task of its own: a second ``admit()`` in a task that holds a
    half-open probe is that probe's nested call, not another probe."""

    async def admit() -> int:
        return breaker.admit()

    return await asyncio.create_task(admit())


async def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(BackendConnectionError):
            await breaker.call(down)


# ------------------------------------------------------------ the count on closing
@given(threshold=st.integers(min_value=1, max_value=6), probes=st.integers(1, 3))
async def test_a_successful_probe_closes_with_a_fresh_count(threshold: int, probes: int) -> None:
    breaker, clock, rec = make(failure_threshold=threshold, half_open_max_calls=probes)
    await fail(breaker, threshold)
    assert breaker.failure_count == threshold
    clock.advance(10.0)
    assert await breaker.call(ok) == "ok"  # the probe
    assert breaker.state is CLOSED
    assert breaker.failure_count == 0
    assert rec.transitions == [
        ("db", CLOSED, OPEN),
        ("db", OPEN, HALF_OPEN),
        ("db", HALF_OPEN, CLOSED),
    ]
    # The recovered backend gets the whole threshold again before the breaker reopens.
    await fail(breaker, threshold - 1)
    assert breaker.state is CLOSED
    assert breaker.failure_count == threshold - 1
    assert await breaker.call(ok) == "ok"
    assert breaker.failure_count == 0
    await fail(breaker, threshold)
    assert breaker.snapshot().state is OPEN


async def test_a_failed_probe_reopens_with_a_fresh_timeout() -> None:
    breaker, clock, rec = make(failure_threshold=2)
    await fail(breaker, 2)
    clock.advance(10.0)
    await fail(breaker)  # the probe fails
    snap = breaker.snapshot()
    assert snap.state is OPEN
    assert snap.retry_after_s == 10.0
    clock.advance(9.5)
    with pytest.raises(CircuitBreakerOpenError) as rejected:
        await breaker.call(ok)
    assert rejected.value.details["retry_after_s"] == 0.5
    assert rec.transitions[-2:] == [("db", OPEN, HALF_OPEN), ("db", HALF_OPEN, OPEN)]


async def test_reset_closes_and_forgets_the_count() -> None:
    breaker, _clock, rec = make(failure_threshold=3)
    await fail(breaker, 2)
    breaker.reset()
    assert breaker.failure_count == 0
    await fail(breaker, 2)
    assert breaker.state is CLOSED  # 2 < 3 again
    await fail(breaker)
    breaker.reset()
    assert (breaker.state, breaker.failure_count) == (CLOSED, 0)
    assert rec.transitions == [("db", CLOSED, OPEN), ("db", OPEN, CLOSED)]
    assert await breaker.call(ok) == "ok"


async def test_force_open_rejects_until_the_timeout_passes() -> None:
    breaker, clock, rec = make(timeout=4.0)
    breaker.force_open()
    assert rec.transitions == [("db", CLOSED, OPEN)]
    with pytest.raises(CircuitBreakerOpenError) as rejected:
        await breaker.call(ok)
    assert rejected.value.details == {
        "breaker": "db",
        "state": "open",
        "failure_count": 0,
        "retry_after_s": 4.0,
    }
    assert rejected.value.component == "db"
    assert rec.outcomes() == [CallOutcome.REJECTED]
    clock.advance(4.0)
    assert await breaker.call(ok) == "ok"
    assert breaker.state is CLOSED


# ---------------------------------------------------------------- what it reports
async def test_the_snapshot_describes_each_state() -> None:
    breaker, clock, _rec = make(failure_threshold=2, timeout=8.0, half_open_max_calls=2)
    closed = breaker.snapshot()
    assert (closed.state, closed.failure_count, closed.retry_after_s) == (CLOSED, 0, None)
    assert (closed.opened_at, closed.half_open_in_flight, closed.name) == (None, 0, "db")
    assert (closed.failure_rate, closed.window_calls) == (None, 0)

    before = datetime.now(UTC)
    await fail(breaker, 2)
    clock.advance(3.0)
    opened = breaker.snapshot()
    assert (opened.state, opened.failure_count, opened.retry_after_s) == (OPEN, 2, 5.0)
    assert opened.opened_at is not None
    assert before <= opened.opened_at <= datetime.now(UTC)
    assert opened.half_open_in_flight == 0
    as_dict = opened.to_dict()
    assert as_dict["state"] == "open"
    assert as_dict["opened_at"] == opened.opened_at.isoformat()
    assert as_dict["retry_after_s"] == 5.0
    assert as_dict["failure_count"] == 2

    clock.advance(5.0)
    ticket = breaker.admit()  # one probe in flight of two allowed
    probing = breaker.snapshot()
    assert (probing.state, probing.half_open_in_flight, probing.retry_after_s) == (
        HALF_OPEN,
        1,
        None,
    )
    assert probing.opened_at is not None
    breaker.release(breaker.admit())  # the probe's own nested call: no second slot taken
    assert breaker.snapshot().half_open_in_flight == 1
    second = await admit_in_another_task(breaker)
    assert breaker.snapshot().half_open_in_flight == 2
    with pytest.raises(CircuitBreakerOpenError) as rejected:
        await admit_in_another_task(breaker)
    assert rejected.value.details["state"] == "half_open"
    assert rejected.value.details["retry_after_s"] == 0.0
    breaker.record(ticket)
    assert breaker.snapshot().state is CLOSED
    breaker.record(second, BackendConnectionError(component="db"))  # from the old generation
    assert (breaker.state, breaker.failure_count) == (CLOSED, 0)
    assert breaker.snapshot().to_dict()["opened_at"] is None


async def test_the_rate_window_is_reported_once_judged() -> None:
    breaker, _clock, _rec = make(
        failure_threshold=100, failure_rate_threshold=0.5, window_size=4, minimum_calls=3
    )
    await breaker.call(ok)
    await fail(breaker)
    snap = breaker.snapshot()
    assert (snap.window_calls, snap.failure_rate) == (2, None)  # fewer than minimum_calls
    await breaker.call(ok)
    snap = breaker.snapshot()
    assert snap.window_calls == 3
    assert snap.failure_rate == pytest.approx(1 / 3)
    await breaker.call(ok)
    await breaker.call(ok)  # the window holds the last 4: fail, ok, ok, ok
    snap = breaker.snapshot()
    assert snap.window_calls == 4
    assert snap.failure_rate == 0.25
    await breaker.call(ok)  # the failure slid out
    assert breaker.snapshot().failure_rate == 0.0


async def test_the_rate_rule_trips_at_the_threshold_share() -> None:
    breaker, _clock, rec = make(
        failure_threshold=100, failure_rate_threshold=0.5, window_size=4, minimum_calls=4
    )
    await breaker.call(ok)
    await fail(breaker)
    await breaker.call(ok)
    assert breaker.state is CLOSED  # 3 calls: not judged yet
    await fail(breaker)  # 2 of 4 failed = 50 %
    assert breaker.snapshot().state is OPEN
    assert rec.transitions == [("db", CLOSED, OPEN)]


async def test_observers_see_every_outcome() -> None:
    breaker, clock, rec = make(failure_threshold=1)
    await breaker.call(ok)
    with pytest.raises(QuerySyntaxError):
        await breaker.call(_raise, QuerySyntaxError("bad", component="db"))
    await fail(breaker)
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.call(ok)
    assert rec.outcomes() == [
        CallOutcome.SUCCESS,
        CallOutcome.EXCLUDED,
        CallOutcome.FAILURE,
        CallOutcome.REJECTED,
    ]
    assert all(name == "db" for name, _ in rec.calls)
    clock.advance(10.0)
    ticket = breaker.admit()
    breaker.record(ticket)
    late = breaker.admit()  # closed again: a normal call
    breaker.force_open()
    breaker.record(late)  # finished after the state changed: ignored
    assert rec.outcomes()[-2:] == [CallOutcome.SUCCESS, CallOutcome.IGNORED]
    assert breaker.snapshot().state is OPEN


async def _raise(error: BaseException) -> None:
    raise error


async def test_an_excluded_error_neither_counts_nor_resets() -> None:
    breaker, _clock, _rec = make(failure_threshold=3)
    await fail(breaker, 2)
    with pytest.raises(QuerySyntaxError):
        await breaker.call(_raise, QuerySyntaxError("bad", component="db"))
    assert breaker.failure_count == 2
    await fail(breaker)
    assert breaker.snapshot().state is OPEN


async def test_a_success_resets_the_consecutive_count() -> None:
    breaker, _clock, _rec = make(failure_threshold=3)
    await fail(breaker, 2)
    assert await breaker.call(ok) == "ok"
    assert breaker.failure_count == 0
    await fail(breaker, 2)
    assert breaker.state is CLOSED


async def test_async_with_and_decorator_count_like_call() -> None:
    breaker, _clock, rec = make(failure_threshold=2)

    @breaker
    async def decorated(value: int) -> int:
        return value * 2

    assert await decorated(21) == 42
    async with breaker as entered:
        assert entered is breaker
    with pytest.raises(BackendConnectionError):
        async with breaker:
            await down()
    with pytest.raises(BackendConnectionError):
        await breaker(down)()
    assert rec.outcomes() == [CallOutcome.SUCCESS] * 2 + [CallOutcome.FAILURE] * 2
    assert breaker.snapshot().state is OPEN


async def test_nested_async_with_pairs_each_exit_with_its_own_entry() -> None:
    outer, _c1, rec1 = make(failure_threshold=1)
    inner, _c2, rec2 = make(failure_threshold=1)

    async def body() -> None:
        async with outer:
            async with inner:
                pass
            await down()

    with pytest.raises(BackendConnectionError):
        await body()
    assert rec2.outcomes() == [CallOutcome.SUCCESS]
    assert rec1.outcomes() == [CallOutcome.FAILURE]


async def test_exit_without_enter_is_a_clear_error() -> None:
    breaker, _clock, _rec = make()
    with pytest.raises(RuntimeError, match="without a matching __aenter__"):
        await breaker.__aexit__(None, None, None)


async def test_concurrent_tasks_in_async_with_keep_their_own_generation() -> None:
    breaker, _clock, rec = make(failure_threshold=1)
    gate = asyncio.Event()

    async def slow_success() -> None:
        async with breaker:
            await gate.wait()

    task = asyncio.create_task(slow_success())
    await asyncio.sleep(0)
    await fail(breaker)  # trips while the slow call is still inside
    gate.set()
    await task
    # The slow call was admitted before the trip: its success is ignored.
    assert rec.outcomes() == [CallOutcome.FAILURE, CallOutcome.IGNORED]
    assert breaker.snapshot().state is OPEN


# ------------------------------------------------------------- text and validation
@pytest.mark.parametrize(
    ("config", "text"),
    [
        (CircuitBreakerConfig(), "5 failed calls / 60s, 1 probe"),
        (
            CircuitBreakerConfig(failure_threshold=2, timeout=1.5, half_open_max_calls=3),
            "2 failed calls / 1.5s, 3 probes",
        ),
        (CircuitBreakerConfig(count_retried_attempts=True), "5 failed attempts / 60s, 1 probe"),
        (
            CircuitBreakerConfig(failure_rate_threshold=0.25, window_size=20, minimum_calls=5),
            "5 failed calls / 60s, 1 probe, or 25% of last 20 (min 5)",
        ),
    ],
)
def test_describe_names_every_rule(config: CircuitBreakerConfig, text: str) -> None:
    assert config.describe() == text
    breaker = CircuitBreaker(config, name="pg")
    assert breaker.describe() == f"breaker({text})"
    assert repr(breaker) == f"CircuitBreaker(name='pg', state=closed, failure_count=0, {text})"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"window_size": 0}, "window_size"),
        ({"window_size": 1.5}, "window_size"),
        ({"minimum_calls": 0}, "minimum_calls"),
        ({"minimum_calls": 11, "window_size": 10}, "minimum_calls"),
        ({"minimum_calls": 2.0}, "minimum_calls"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": False}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"failure_rate_threshold": 0}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold"),
        ({"failure_rate_threshold": True}, "failure_rate_threshold"),
        ({"failure_rate_threshold": "0.5"}, "failure_rate_threshold"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} must"):
        CircuitBreakerConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"count_retried_attempts": 1}, "count_retried_attempts"),
        ({"excluded": ValueError}, "excluded"),
        ({"excluded": (ValueError, "x")}, "excluded"),
        ({"excluded": (int,)}, "excluded"),
    ],
)
def test_bad_types_are_rejected_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(TypeError, match=f"^{field} must"):
        CircuitBreakerConfig(**kwargs)


def test_the_edges_of_the_valid_range_are_accepted() -> None:
    config = CircuitBreakerConfig(
        failure_threshold=1,
        half_open_max_calls=1,
        window_size=1,
        minimum_calls=1,
        failure_rate_threshold=1,
        timeout=0.001,
        excluded=[KeyError],  # type: ignore[arg-type]  # a list is normalised to a tuple
    )
    assert config.excluded == (KeyError, CallerError)  # caller errors are always excluded
    assert CircuitBreakerConfig(minimum_calls=100, window_size=100).minimum_calls == 100


def test_the_breaker_rejects_a_bad_name_or_config() -> None:
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        CircuitBreaker(name="")
    with pytest.raises(TypeError, match="config must be a CircuitBreakerConfig"):
        CircuitBreaker(name="db", config={"failure_threshold": 1})  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"positional arguments are \(name: str, config"):
        CircuitBreaker({"failure_threshold": 1}, name="db")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="decorates a callable"):
        CircuitBreaker(name="db")(42)  # type: ignore[arg-type]


async def test_errors_name_the_component_when_given() -> None:
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold=1),
        name="primary",
        component="postgres",
        clock=ManualClock(),
    )
    assert breaker.name == "primary"
    await fail(breaker)
    with pytest.raises(CircuitBreakerOpenError) as rejected:
        await breaker.call(ok)
    assert rejected.value.component == "postgres"
    assert rejected.value.details["breaker"] == "primary"
    assert rejected.value.details["failure_count"] == 1


def test_the_documented_defaults() -> None:
    """docs/resilience.md: 5 failed calls, 60 s, 1 probe, no rate rule, window 100, min 10."""
    config = CircuitBreakerConfig()
    assert (config.failure_threshold, config.timeout, config.half_open_max_calls) == (5, 60.0, 1)
    assert (config.failure_rate_threshold, config.window_size, config.minimum_calls) == (
        None,
        100,
        10,
    )
    assert config.count_retried_attempts is False


def test_excluded_must_be_a_collection_of_types() -> None:
    for bad in (42, "ValueError", None):
        with pytest.raises(TypeError, match=r"^excluded must be a tuple of exception types"):
            CircuitBreakerConfig(excluded=bad)  # type: ignore[arg-type]


async def test_each_exit_pairs_with_its_own_entry_even_out_of_order() -> None:
    """Two breakers entered a, b and exited a, b (an exit stack unwinding by hand)."""
    a, _ca, rec_a = make(failure_threshold=1)
    b, _cb, rec_b = make(failure_threshold=1)
    await a.__aenter__()
    await b.__aenter__()
    await a.__aexit__(None, None, None)
    await b.__aexit__(BackendConnectionError, BackendConnectionError(component="db"), None)
    assert rec_a.outcomes() == [CallOutcome.SUCCESS]
    assert rec_b.outcomes() == [CallOutcome.FAILURE]
    made = [make(failure_threshold=1) for _ in range(3)]
    for breaker, _clock, _rec in made:
        await breaker.__aenter__()
    for breaker, _clock, _rec in made:  # first in, first out
        await breaker.__aexit__(None, None, None)
    assert [rec.outcomes() for _b, _c, rec in made] == [[CallOutcome.SUCCESS]] * 3


async def test_an_exit_after_a_finished_block_has_no_entry_left() -> None:
    breaker, _clock, rec = make()
    async with breaker:
        pass
    with pytest.raises(RuntimeError, match="without a matching __aenter__"):
        await breaker.__aexit__(None, None, None)
    async with breaker, breaker:  # the same breaker nested: two entries, two exits
        pass
    with pytest.raises(RuntimeError, match="without a matching __aenter__"):
        await breaker.__aexit__(None, None, None)
    # the nested block is guarded by the outer one and counted once with it
    assert rec.outcomes() == [CallOutcome.SUCCESS] * 2


async def test_to_dict_names_every_field() -> None:
    breaker, clock, _rec = make(
        failure_threshold=2, failure_rate_threshold=1.0, window_size=3, minimum_calls=1
    )
    await breaker.call(ok)
    await fail(breaker)
    assert breaker.snapshot().to_dict() == {
        "name": "db",
        "state": "closed",
        "failure_count": 1,
        "failure_rate": 0.5,
        "window_calls": 2,
        "retry_after_s": None,
        "half_open_in_flight": 0,
        "opened_at": None,
    }
    breaker.force_open()
    clock.advance(10.0)
    breaker.admit()
    probing = breaker.snapshot().to_dict()
    assert probing["state"] == "half_open"
    assert probing["half_open_in_flight"] == 1
    assert isinstance(probing["opened_at"], str)


async def test_retry_after_is_reported_to_the_microsecond() -> None:
    breaker, clock, _rec = make(timeout=10.0)
    breaker.force_open()
    clock.advance(1 / 3)
    with pytest.raises(CircuitBreakerOpenError) as rejected:
        await breaker.call(ok)
    assert rejected.value.details["retry_after_s"] == 9.666667
    assert breaker.snapshot().retry_after_s == pytest.approx(10.0 - 1 / 3)


async def test_a_failed_probe_keeps_counting_consecutive_failures() -> None:
    """No success came between: the count that tripped it goes on (threshold + 1)."""
    breaker, clock, _rec = make(failure_threshold=3)
    await fail(breaker, 3)
    clock.advance(10.0)
    await fail(breaker)  # the probe
    assert breaker.failure_count == 4
    with pytest.raises(CircuitBreakerOpenError) as rejected:
        await breaker.call(ok)
    assert rejected.value.details["failure_count"] == 4
    clock.advance(10.0)
    assert await breaker.call(ok) == "ok"
    assert breaker.failure_count == 0


async def test_a_stale_cancelled_call_does_not_free_the_current_probe_slot() -> None:
    """A call admitted before the trip and cancelled during the probe frees nothing."""
    breaker, clock, rec = make(failure_threshold=1)
    stale = breaker.admit()  # admitted while CLOSED
    await fail(breaker)  # trips
    clock.advance(10.0)
    probe = breaker.admit()  # the one probe slot
    breaker.record(stale, asyncio.CancelledError())
    assert rec.outcomes()[-1] is CallOutcome.CANCELLED
    assert breaker.snapshot().half_open_in_flight == 1
    with pytest.raises(CircuitBreakerOpenError):
        await admit_in_another_task(breaker)  # still busy
    breaker.release(stale)  # a stale "proved nothing" frees nothing either
    with pytest.raises(CircuitBreakerOpenError):
        await admit_in_another_task(breaker)
    breaker.record(probe)
    assert breaker.state is CLOSED


async def test_a_cancelled_closed_call_does_not_leave_a_spare_probe() -> None:
    breaker, clock, _rec = make(failure_threshold=1)
    ticket = breaker.admit()
    breaker.record(ticket, asyncio.CancelledError())  # while CLOSED: no slot to free
    breaker.release(breaker.admit())
    await fail(breaker)
    clock.advance(10.0)
    breaker.admit()
    with pytest.raises(CircuitBreakerOpenError):  # exactly one probe, not three
        await admit_in_another_task(breaker)


async def test_without_observers_a_success_still_resets_the_count() -> None:
    """The quiet fast path (no observers, no window) must not skip a needed reset."""
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=3), name="db")
    for _ in range(2):
        breaker.record(breaker.admit(), BackendConnectionError(component="db"))
    assert breaker.failure_count == 2
    breaker.record(breaker.admit())
    assert breaker.failure_count == 0
    for _ in range(2):
        breaker.record(breaker.admit(), BackendConnectionError(component="db"))
    assert breaker.state is CLOSED


@pytest.mark.parametrize("how", ["reset", "probe"])
async def test_closing_empties_the_rate_window(how: str) -> None:
    breaker, clock, _rec = make(
        failure_threshold=100, failure_rate_threshold=0.5, window_size=4, minimum_calls=2
    )
    await breaker.call(ok)
    await fail(breaker)  # 1 of 2 = 50 %: trips
    assert breaker.snapshot().state is OPEN
    if how == "reset":
        breaker.reset()
    else:
        clock.advance(10.0)
        await breaker.call(ok)
    snap = breaker.snapshot()
    assert (snap.state, snap.window_calls, snap.failure_rate) == (CLOSED, 0, None)
    await breaker.call(ok)
    await breaker.call(ok)
    assert breaker.snapshot().failure_rate == 0.0  # no failure left over from before
    await fail(breaker)
    snap = breaker.snapshot()
    assert snap.failure_rate == pytest.approx(1 / 3)
    assert snap.state is CLOSED


def test_the_config_repr_leaves_out_the_long_exclusion_list() -> None:
    text = repr(CircuitBreakerConfig(failure_threshold=2))
    assert text.startswith("CircuitBreakerConfig(failure_threshold=2, timeout=60.0")
    assert "excluded" not in text
    assert text.endswith("count_retried_attempts=False)")

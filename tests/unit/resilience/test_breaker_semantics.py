"""CircuitBreaker semantics users of peer libraries rely on: reading the state is pure,
a call is guarded (and counted) once however it is nested, a cancelled call frees its
probe slot in every call style, the failure count across a recovery cycle, and both
constructor spellings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.exceptions import BackendConnectionError, CircuitBreakerOpenError, QuerySyntaxError
from infra.resilience.breaker import CircuitBreaker, CircuitBreakerConfig
from infra.resilience.clock import ManualClock
from infra.resilience.hooks import BreakerState, CallOutcome, RecordingObserver
from infra.resilience.policy import ResiliencePolicy
from infra.resilience.retry import RetryConfig

State = BreakerState


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """The state read afresh: mypy would keep ``breaker.state`` narrowed across awaits."""
    return breaker.state


def make(
    threshold: int = 2, timeout: float = 10.0, probes: int = 1
) -> tuple[CircuitBreaker, ManualClock, RecordingObserver]:
    clock = ManualClock()
    rec = RecordingObserver()
    config = CircuitBreakerConfig(
        failure_threshold=threshold, timeout=timeout, half_open_max_calls=probes
    )
    return CircuitBreaker(config, name="db", clock=clock, hooks=[rec]), clock, rec


async def ok() -> str:
    return "ok"


async def down() -> None:
    raise BackendConnectionError("down")


async def trip(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(BackendConnectionError):
            await breaker.call(down)


def reads(breaker: CircuitBreaker) -> list[object]:
    """Everything /ready, metrics and logs read from a breaker."""
    return [
        breaker.state,
        breaker.failure_count,
        breaker.snapshot(),
        breaker.snapshot().to_dict(),
        repr(breaker),
        breaker.describe(),
    ]


# ------------------------------------------------------------------ reading is pure
async def test_reading_an_elapsed_open_breaker_changes_nothing_until_a_call() -> None:
    """The reported case: /ready read the state of a due OPEN breaker, which turned it
    HALF_OPEN and told the observers (the gauge dropped, the page cleared) with no probe
    sent. Now it stays OPEN; the first admitted call makes the transition."""
    breaker, clock, rec = make(threshold=1, timeout=30.0)
    await trip(breaker, 1)
    clock.advance(31.0)
    events = (list(rec.transitions), list(rec.calls))
    for _ in range(5):
        assert breaker.state is State.OPEN
        snapshot = breaker.snapshot()
        assert (snapshot.state, snapshot.retry_after_s) == (State.OPEN, 0.0)
    assert (rec.transitions, rec.calls) == events
    assert await breaker.call(ok) == "ok"
    assert [new for _, _, new in rec.transitions] == [State.OPEN, State.HALF_OPEN, State.CLOSED]


ACTIONS = st.one_of(
    st.tuples(st.just("ok"), st.just(0.0)),
    st.tuples(st.just("fail"), st.just(0.0)),
    st.tuples(st.just("excluded"), st.just(0.0)),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 5.0, 9.999, 10.0, 25.0])),
    st.tuples(st.just("read"), st.integers(1, 20).map(float)),
)


@given(actions=st.lists(ACTIONS, max_size=40), threshold=st.integers(1, 3))
async def test_no_number_of_reads_changes_the_state_or_tells_an_observer(
    actions: list[tuple[str, float]], threshold: int
) -> None:
    """Any interleaving of calls, time and reads: a burst of reads never adds an observer
    event nor changes what the next read or call sees, and the state always equals the
    target of the last transition observers were told about."""
    breaker, clock, rec = make(threshold=threshold)
    for action, amount in actions:
        if action == "ok":
            with contextlib.suppress(CircuitBreakerOpenError):
                await breaker.call(ok)
        elif action in ("fail", "excluded"):
            error = BackendConnectionError() if action == "fail" else QuerySyntaxError()
            with pytest.raises((BackendConnectionError, QuerySyntaxError, CircuitBreakerOpenError)):
                await breaker.call(_raise, error)
        elif action == "advance":
            clock.advance(amount)
        else:
            before = (list(rec.transitions), list(rec.calls), reads(breaker))
            for _ in range(int(amount)):
                reads(breaker)
            assert (list(rec.transitions), list(rec.calls), reads(breaker)) == before
        last = rec.transitions[-1][2] if rec.transitions else State.CLOSED
        assert breaker.state is last


async def _raise(error: Exception) -> None:
    raise error


# -------------------------------------------------------- one call, one admission
async def test_call_on_a_decorated_function_counts_each_failure_once() -> None:
    """The reported case: breaker.call(f) with f already decorated by the same breaker."""
    breaker, _, rec = make(threshold=2)

    @breaker
    async def fetch() -> None:
        raise BackendConnectionError("down")

    with pytest.raises(BackendConnectionError):
        await breaker.call(fetch)
    assert breaker.failure_count == 1
    assert rec.outcomes() == [CallOutcome.FAILURE]
    with pytest.raises(BackendConnectionError):
        await breaker.call(fetch)
    assert breaker.state is State.OPEN  # exactly at the threshold, not before


async def test_a_decorated_probe_is_not_refused_by_its_own_slot() -> None:
    """HALF_OPEN with one slot: breaker.call(decorated) used to take the slot, have the
    inner call refused ("half-open, busy") and stay HALF_OPEN forever."""
    breaker, clock, rec = make(threshold=1, timeout=5.0)
    reached = 0

    @breaker
    async def fetch() -> str:
        nonlocal reached
        reached += 1
        return "back"

    await trip(breaker, 1)
    clock.advance(5.0)
    assert await breaker.call(fetch) == "back"
    assert reached == 1
    assert breaker.state is State.CLOSED
    assert CallOutcome.REJECTED not in rec.outcomes()


def test_decorating_twice_with_the_same_breaker_is_decorating_once() -> None:
    """@breaker on a function it already guards returns that function; another breaker
    wraps it as usual."""
    breaker, _, _ = make()
    other = CircuitBreaker(name="other")

    async def fetch() -> str:
        return "x"

    once = breaker(fetch)
    assert breaker(once) is once
    assert other(once) is not once


NESTINGS: dict[
    str, Callable[[CircuitBreaker, Callable[[], Coroutine[Any, Any, Any]]], Awaitable[Any]]
] = {}


def nesting(name: str) -> Callable[[Any], Any]:
    def register(fn: Any) -> Any:
        NESTINGS[name] = fn
        return fn

    return register


@nesting("call(decorated)")
async def _call_decorated(
    breaker: CircuitBreaker, inner: Callable[[], Coroutine[Any, Any, Any]]
) -> Any:
    return await breaker.call(breaker(inner))


@nesting("decorated(decorated)")
async def _double_decorated(
    breaker: CircuitBreaker, inner: Callable[[], Coroutine[Any, Any, Any]]
) -> Any:
    return await breaker(breaker(inner))()


@nesting("async with + call")
async def _block_call(
    breaker: CircuitBreaker, inner: Callable[[], Coroutine[Any, Any, Any]]
) -> Any:
    async with breaker:
        return await breaker.call(inner)


@nesting("async with + decorated")
async def _block_decorated(
    breaker: CircuitBreaker, inner: Callable[[], Coroutine[Any, Any, Any]]
) -> Any:
    async with breaker:
        return await breaker(inner)()


@nesting("async with + async with")
async def _block_block(
    breaker: CircuitBreaker, inner: Callable[[], Coroutine[Any, Any, Any]]
) -> Any:
    async with breaker, breaker:
        return await inner()


@pytest.mark.parametrize("style", sorted(NESTINGS))
@pytest.mark.parametrize("half_open", [False, True])
async def test_every_nesting_of_one_breaker_is_admitted_and_counted_once(
    style: str, half_open: bool
) -> None:
    """Each nesting the breaker can see: one observer event per call, one count per
    failure, and a half-open probe that succeeds closes the breaker."""
    breaker, clock, rec = make(threshold=3, timeout=1.0)
    if half_open:
        await trip(breaker, 3)
        clock.advance(1.0)
        assert await NESTINGS[style](breaker, ok) == "ok"
        assert breaker.state is State.CLOSED
        assert rec.outcomes()[-1] is CallOutcome.SUCCESS
        assert rec.outcomes().count(CallOutcome.SUCCESS) == 1
        return
    with pytest.raises(BackendConnectionError):
        await NESTINGS[style](breaker, down)
    assert breaker.failure_count == 1
    assert rec.outcomes() == [CallOutcome.FAILURE]
    assert await NESTINGS[style](breaker, ok) == "ok"
    assert rec.outcomes() == [CallOutcome.FAILURE, CallOutcome.SUCCESS]


@given(
    calls=st.lists(
        st.tuples(st.sampled_from([*sorted(NESTINGS), "plain"]), st.booleans()),
        min_size=1,
        max_size=25,
    )
)
async def test_any_sequence_of_nested_calls_counts_like_plain_calls(
    calls: list[tuple[str, bool]],
) -> None:
    """Whatever mix of nestings and plain calls, failing or not: the failure count is the
    number of failed calls since the last success, and observers see one outcome per
    call -- exactly what the same sequence of plain calls gives."""
    breaker, _, rec = make(threshold=1000)
    expected_count = 0
    for style, fails in calls:
        inner = down if fails else ok
        run = breaker.call(inner) if style == "plain" else NESTINGS[style](breaker, inner)
        if fails:
            with pytest.raises(BackendConnectionError):
                await run
            expected_count += 1
        else:
            assert await run == "ok"
            expected_count = 0
        assert breaker.failure_count == expected_count
    assert rec.outcomes() == [
        CallOutcome.FAILURE if fails else CallOutcome.SUCCESS for _, fails in calls
    ]


async def test_a_half_open_probe_reaching_the_breaker_again_through_a_policy() -> None:
    """A probe (via the policy's admit/record) whose fn calls the same breaker again is
    not refused by its own slot, whatever the call style of the inner call."""
    policy = ResiliencePolicy.instant(
        "svc",
        breaker=CircuitBreakerConfig(failure_threshold=1, timeout=1.0),
        retry=RetryConfig(max_attempts=1),
    )
    breaker = policy.breaker
    assert breaker is not None

    async def inner() -> str:
        return await breaker.call(ok)

    with pytest.raises(BackendConnectionError):
        await policy.execute(down)
    policy.clock.advance(1.0)  # type: ignore[attr-defined]
    assert await policy.execute(inner) == "ok"
    assert breaker.state is State.CLOSED


async def test_tasks_started_inside_a_block_are_guarded_on_their_own() -> None:
    """Only the task that entered `async with` is inside it: a task it starts is a
    separate call, admitted and counted by itself."""
    breaker, _, rec = make(threshold=5)
    async with breaker:
        with pytest.raises(BackendConnectionError):
            await asyncio.create_task(breaker.call(down))
        assert breaker.failure_count == 1
    assert rec.outcomes() == [CallOutcome.FAILURE, CallOutcome.SUCCESS]


# ------------------------------------------- a cancelled probe frees its slot, always
async def _style_call(breaker: CircuitBreaker, body: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return await breaker.call(body)


async def _style_decorated(
    breaker: CircuitBreaker, body: Callable[[], Coroutine[Any, Any, Any]]
) -> Any:
    return await breaker(body)()


async def _style_block(
    breaker: CircuitBreaker, body: Callable[[], Coroutine[Any, Any, Any]]
) -> Any:
    async with breaker:
        return await body()


async def _style_record(
    breaker: CircuitBreaker, body: Callable[[], Coroutine[Any, Any, Any]]
) -> Any:
    ticket = breaker.admit()
    try:
        result = await body()
    except BaseException as exc:
        breaker.record(ticket, exc)
        raise
    breaker.record(ticket)
    return result


async def _style_record_attempt(
    breaker: CircuitBreaker, body: Callable[[], Coroutine[Any, Any, Any]]
) -> Any:
    ticket = breaker.admit()
    try:
        result = await body()
    except BaseException as exc:
        breaker.record_attempt(ticket, exc)
        raise
    breaker.record(ticket)
    return result


async def _style_policy(
    breaker: CircuitBreaker, body: Callable[[], Coroutine[Any, Any, Any]]
) -> Any:
    policy = ResiliencePolicy("svc", breaker=breaker, clock=ManualClock())
    return await policy.execute(body)


STYLES = {
    "call": _style_call,
    "decorator": _style_decorated,
    "async with": _style_block,
    "admit/record": _style_record,
    "admit/record_attempt": _style_record_attempt,
    "policy": _style_policy,
}


@pytest.mark.parametrize("style", sorted(STYLES))
async def test_a_cancelled_half_open_probe_frees_its_slot_in_every_call_style(
    style: str,
) -> None:
    """Cancelled mid-probe: nothing is counted, the breaker stays HALF_OPEN with no probe
    in flight, and the next caller becomes the probe that closes it."""
    breaker, clock, rec = make(threshold=1, timeout=1.0)
    await trip(breaker, 1)
    clock.advance(1.0)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    probe = asyncio.create_task(STYLES[style](breaker, hang))
    await started.wait()
    assert breaker.snapshot().half_open_in_flight == 1
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state is State.HALF_OPEN
    assert breaker.snapshot().half_open_in_flight == 0
    assert rec.outcomes()[-1] is CallOutcome.CANCELLED
    assert breaker.failure_count == 1
    assert await STYLES[style](breaker, ok) == "ok"
    assert state_of(breaker) is State.CLOSED


# --------------------------------------------------- the count across a recovery
async def test_failure_count_holds_while_open_and_half_open_and_resets_on_closing() -> None:
    """The count that tripped the breaker is reported while OPEN and HALF_OPEN (also in
    the rejection's details); a failed probe adds one; only closing resets it."""
    breaker, clock, _ = make(threshold=3, timeout=1.0, probes=1)
    await trip(breaker, 3)
    assert (breaker.state, breaker.failure_count) == (State.OPEN, 3)
    clock.advance(1.0)
    gate = asyncio.Event()

    async def slow_failure() -> None:
        await gate.wait()
        raise BackendConnectionError("still down")

    probe = asyncio.create_task(breaker.call(slow_failure))
    await asyncio.sleep(0)
    assert (breaker.state, breaker.failure_count) == (State.HALF_OPEN, 3)
    with pytest.raises(CircuitBreakerOpenError) as refused:
        await breaker.call(ok)
    assert refused.value.details["failure_count"] == 3
    assert breaker.snapshot().failure_count == 3
    gate.set()
    with pytest.raises(BackendConnectionError):
        await probe
    assert (breaker.state, breaker.failure_count) == (State.OPEN, 4)
    clock.advance(1.0)
    assert await breaker.call(ok) == "ok"
    assert (breaker.state, breaker.failure_count) == (State.CLOSED, 0)
    await trip(breaker, 2)
    assert (breaker.state, breaker.failure_count) == (State.CLOSED, 2)


# -------------------------------------------------------------- constructor forms
def test_name_first_positional_form_and_the_keyword_form_build_the_same_breaker() -> None:
    """CircuitBreaker("redis", config) -- the design document's form -- and the keyword
    forms are equivalent; the name may also come alone."""
    config = CircuitBreakerConfig(failure_threshold=5, timeout=60.0)
    forms = [
        CircuitBreaker("redis", config),
        CircuitBreaker(config, name="redis"),
        CircuitBreaker(config=config, name="redis"),
        # Accepted at run time; the typed overloads advertise the three forms above.
        CircuitBreaker("redis", config=config),  # type: ignore[call-overload]
    ]
    for breaker in forms:
        assert (breaker.name, breaker.config) == ("redis", config)
    assert CircuitBreaker("redis").config == CircuitBreakerConfig()
    assert CircuitBreaker(name="redis").name == "redis"


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((), {}, "needs a name"),
        ((CircuitBreakerConfig(),), {}, "needs a name"),
        (("redis",), {"name": "again"}, "name twice"),
        (("redis", CircuitBreakerConfig()), {"config": CircuitBreakerConfig()}, "config twice"),
        ((CircuitBreakerConfig(), "redis"), {"name": "x"}, "CircuitBreaker\\('redis', config\\)"),
        (("redis", "cfg"), {}, "positional arguments are \\(name"),
        (("redis", CircuitBreakerConfig(), None), {}, "at most 2"),
        ((42,), {"name": "x"}, "positional arguments are \\(name"),
    ],
)
def test_ambiguous_or_wrong_constructor_arguments_are_type_errors(
    args: tuple[Any, ...], kwargs: dict[str, Any], match: str
) -> None:
    """Each misuse names what is wrong and shows a correct form."""
    with pytest.raises(TypeError, match=match):
        CircuitBreaker(*args, **kwargs)


# ------------------------------------------------------------------------- misuse
async def test_misusing_a_breaker_is_a_clear_error_that_counts_nothing() -> None:
    """Decorating a non-callable, a wrong config type, leaving a block never entered:
    each is a typed error naming the problem, and the breaker's state is untouched."""
    breaker, _, rec = make()
    with pytest.raises(TypeError, match="decorates a callable"):
        breaker(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config must be a CircuitBreakerConfig"):
        CircuitBreaker(config={"failure_threshold": 5}, name="x")  # type: ignore[call-overload]
    with pytest.raises(RuntimeError, match="without a matching __aenter__"):
        await breaker.__aexit__(None, None, None)
    assert (breaker.state, breaker.failure_count, rec.calls) == (State.CLOSED, 0, [])


def test_misusing_a_retry_policy_is_a_clear_error() -> None:
    """A config or budget of the wrong type is refused at construction, by name."""
    from infra.resilience.retry import RetryPolicy

    with pytest.raises(TypeError, match="config must be a RetryConfig"):
        RetryPolicy({"max_attempts": 3})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="budget must be a RetryBudget"):
        RetryPolicy(budget=0.2)  # type: ignore[arg-type]

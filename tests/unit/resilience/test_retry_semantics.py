"""RetryPolicy semantics a tenacity user expects: what ``retryable`` accepts, what a
failing ``on_retry`` does, and the counters and hook arguments on every path.

Every test runs on a ManualClock: backoff sleeps are virtual.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.exceptions import BackendConnectionError, QuerySyntaxError
from infra.resilience.budget import RetryBudget
from infra.resilience.clock import ManualClock
from infra.resilience.hooks import GiveUpReason, RecordingObserver
from infra.resilience.retry import RetryConfig, RetryPolicy


class BaseError(Exception):
    """Root of a small hierarchy for the retryable properties."""


class ChildError(BaseError):
    pass


class OtherError(Exception):
    pass


ERRORS: list[type[Exception]] = [
    BaseError,
    ChildError,
    OtherError,
    ValueError,
    KeyError,
    ConnectionError,
]


class Script:
    """Raises the scripted errors in order, then returns "ok"; counts calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def make(attempts: int = 3, **kwargs: Any) -> tuple[RetryPolicy, RecordingObserver]:
    rec = RecordingObserver()
    policy = RetryPolicy(
        RetryConfig(max_attempts=attempts, jitter=False),
        name="svc",
        clock=ManualClock(),
        hooks=[rec],
        **kwargs,
    )
    return policy, rec


# --------------------------------------------------------------- what retryable accepts
def _forms(allowed: list[type[Exception]]) -> list[tuple[str, Any]]:
    """Every accepted spelling of "retry exactly these classes"."""
    forms: list[tuple[str, Any]] = [
        ("tuple", tuple(allowed)),
        ("predicate", lambda exc: isinstance(exc, tuple(allowed))),
    ]
    if len(allowed) == 1:
        forms.append(("class", allowed[0]))
    return forms


@given(
    allowed=st.lists(st.sampled_from(ERRORS), min_size=1, max_size=3, unique=True),
    raised=st.sampled_from(ERRORS),
    per_call=st.booleans(),
)
async def test_retryable_as_a_class_a_tuple_or_a_predicate_retries_exactly_its_errors(
    allowed: list[type[Exception]], raised: type[Exception], per_call: bool
) -> None:
    """Every form retries an error iff it is an instance of the named classes (subclasses
    included) -- a bare class is never mistaken for a predicate that accepts everything."""
    expected = 3 if issubclass(raised, tuple(allowed)) else 1
    for _, form in _forms(allowed):
        if per_call:
            policy, _ = make()
            run = policy.execute
            kwargs: dict[str, Any] = {"retryable": form}
        else:
            policy, _ = make(retryable=form)
            run = policy.execute
            kwargs = {}
        backend = Script(*(raised("x") for _ in range(5)))
        with pytest.raises(raised):
            await run(backend, **kwargs)
        assert backend.calls == expected


async def test_a_single_exception_class_does_not_retry_other_errors() -> None:
    """The reported case: retryable=SomeError used to retry every exception."""
    policy, rec = make()
    backend = Script(KeyError("not retryable"))
    with pytest.raises(KeyError):
        await policy.execute(backend, retryable=ValueError)
    assert backend.calls == 1
    assert rec.give_ups[0][1:3] == (1, GiveUpReason.NOT_RETRYABLE)
    backend = Script(ValueError("retryable"), ValueError("again"))
    assert await policy.execute(backend, retryable=ValueError) == "ok"
    assert backend.calls == 3


@pytest.mark.parametrize(
    ("bad", "hint"),
    [
        (int, "not an exception"),
        ([ValueError], "use a tuple"),
        ({ValueError}, "use a tuple"),
        (ValueError | KeyError, "use a tuple"),
        ((ValueError, "KeyError"), "exception classes only"),
        ((ValueError, int), "exception classes only"),
        ("ValueError", "predicate"),
        (42, "predicate"),
    ],
)
async def test_anything_else_is_a_type_error_naming_retryable_before_any_attempt(
    bad: object, hint: str
) -> None:
    """A wrong retryable fails at construction or at the call, before fn runs."""
    with pytest.raises(TypeError, match="retryable") as caught:
        RetryPolicy(retryable=bad)  # type: ignore[arg-type]
    assert hint in str(caught.value)
    policy, _ = make()
    backend = Script()
    with pytest.raises(TypeError, match="retryable"):
        await policy.execute(backend, retryable=bad)  # type: ignore[arg-type]
    assert backend.calls == 0


async def test_on_retry_must_be_callable() -> None:
    """on_retry that cannot be called is rejected before the first attempt."""
    policy, _ = make()
    backend = Script()
    with pytest.raises(TypeError, match="on_retry"):
        await policy.execute(backend, on_retry="log it")  # type: ignore[arg-type]
    assert backend.calls == 0


def test_union_types_are_reported_as_such() -> None:
    """X | Y is not a class: the error says to use a tuple (and is a TypeError)."""
    assert isinstance(ValueError | KeyError, types.UnionType)
    with pytest.raises(TypeError, match=r"\(ErrorA, ErrorB\)"):
        RetryPolicy(retryable=ValueError | KeyError)  # type: ignore[arg-type]


# ------------------------------------------------------------- a failing on_retry
@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_failing_on_retry_stops_retrying_and_raises_its_own_error(
    asynchronous: bool,
) -> None:
    """The callback's error reaches the caller: same object, caused by the attempt's error,
    with a note; a give-up is reported (callback_failed) and no retry is counted."""
    policy, rec = make(attempts=5)
    bug = RuntimeError("bug in the callback")
    first = BackendConnectionError("down")
    backend = Script(first, BackendConnectionError("down again"))

    def sync_callback(error: BaseException, attempt: int, delay: float) -> None:
        raise bug

    async def async_callback(error: BaseException, attempt: int, delay: float) -> None:
        await asyncio.sleep(0)
        raise bug

    callback: Callable[..., Any] = async_callback if asynchronous else sync_callback
    with pytest.raises(RuntimeError) as caught:
        await policy.execute(backend, on_retry=callback)
    assert caught.value is bug
    assert caught.value.__cause__ is first
    assert any("on_retry raised RuntimeError" in note for note in caught.value.__notes__)
    assert backend.calls == 1
    assert policy.stats.retries == 0
    assert policy.stats.give_ups == 1
    assert rec.retries == []
    assert rec.give_ups == [("svc", 1, GiveUpReason.CALLBACK_FAILED, bug)]
    assert policy.clock.sleeps == []  # type: ignore[attr-defined]


async def test_a_callback_error_with_its_own_cause_keeps_it() -> None:
    """A callback that chained its own error keeps that chain."""
    policy, _ = make()
    inner = OSError("disk full")

    def callback(error: BaseException, attempt: int, delay: float) -> None:
        raise RuntimeError("could not log") from inner

    with pytest.raises(RuntimeError) as caught:
        await policy.execute(Script(BackendConnectionError()), on_retry=callback)
    assert caught.value.__cause__ is inner


async def test_a_callback_failing_on_a_later_retry_reports_that_attempt() -> None:
    """The give-up carries the attempt after which the callback failed."""
    policy, rec = make(attempts=5)
    calls = 0

    def callback(error: BaseException, attempt: int, delay: float) -> None:
        nonlocal calls
        calls += 1
        if attempt == 2:
            raise LookupError("second time")

    backend = Script(*(BackendConnectionError() for _ in range(4)))
    with pytest.raises(LookupError):
        await policy.execute(backend, on_retry=callback)
    assert (backend.calls, calls, policy.stats.retries) == (2, 2, 1)
    assert rec.give_ups[0][1:3] == (2, GiveUpReason.CALLBACK_FAILED)


async def test_cancellation_inside_an_async_on_retry_is_not_a_give_up() -> None:
    """CancelledError in the callback propagates as itself and reports nothing."""
    policy, rec = make()
    entered = asyncio.Event()

    async def callback(error: BaseException, attempt: int, delay: float) -> None:
        entered.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(policy.execute(Script(BackendConnectionError()), on_retry=callback))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (policy.stats.give_ups, rec.give_ups, rec.retries) == (0, [], [])


# --------------------------------------------------- counters and hooks on every path
OUTCOMES = st.sampled_from(["ok", "transient", "fatal"])


@given(
    attempts=st.integers(1, 5),
    script=st.lists(OUTCOMES, min_size=0, max_size=6),
)
async def test_counters_and_hook_arguments_match_what_happened(
    attempts: int, script: list[str]
) -> None:
    """For any sequence of attempt outcomes: executions, retries and give_ups add up;
    on_retry gets (name, attempt, delay, error) per sleep with attempts 1..k and the
    backoff delays; on_give_up gets the attempt count, the reason and the raised error
    (a single-attempt call included) -- exactly once when the call fails, never when it
    succeeds."""
    errors: list[Exception] = []
    for outcome in script:
        if outcome == "ok":
            break
        errors.append(BackendConnectionError() if outcome == "transient" else QuerySyntaxError())
    policy, rec = make(attempts=attempts)
    backend = Script(*errors)
    # What must happen: attempts run until one succeeds, one is not retryable, or none is left.
    ran = 0
    reason: GiveUpReason | None = None
    for index in range(attempts):
        ran = index + 1
        if index >= len(errors):
            break
        if isinstance(errors[index], QuerySyntaxError):
            reason = GiveUpReason.NOT_RETRYABLE
            break
        if ran == attempts:
            reason = GiveUpReason.ATTEMPTS_EXHAUSTED
    if reason is None:
        assert await policy.execute(backend) == "ok"
    else:
        with pytest.raises((BackendConnectionError, QuerySyntaxError)) as caught:
            await policy.execute(backend)
        assert caught.value is errors[ran - 1]
    assert backend.calls == ran
    assert policy.stats.executions == 1
    assert policy.stats.retries == ran - 1 == len(rec.retries)
    assert policy.stats.tenacity_loops == (1 if ran > 1 else 0)
    expected_retries = [("svc", n, policy.config.backoff(n), errors[n - 1]) for n in range(1, ran)]
    assert rec.retries == expected_retries
    assert policy.clock.sleeps == [r[2] for r in expected_retries]  # type: ignore[attr-defined]
    if reason is None:
        assert policy.stats.give_ups == 0
        assert rec.give_ups == []
    else:
        assert policy.stats.give_ups == 1
        assert rec.give_ups == [("svc", ran, reason, errors[ran - 1])]
        notes = getattr(caught.value, "__notes__", [])
        # The loop notes why it stopped; a first attempt that ends the call has no note.
        assert any(f"gave up after {ran} attempts" in n for n in notes) == (ran > 1)


async def test_a_single_attempt_call_reports_one_attempt_for_either_reason() -> None:
    """max_attempts=1: a retryable error gives up as attempts_exhausted, a caller error as
    not_retryable -- both after 1 attempt, both counted once."""
    policy, rec = make(attempts=1)
    transient, fatal = BackendConnectionError(), QuerySyntaxError()
    for error in (transient, fatal):
        with pytest.raises(type(error)):
            await policy.execute(Script(error))
    assert rec.give_ups == [
        ("svc", 1, GiveUpReason.ATTEMPTS_EXHAUSTED, transient),
        ("svc", 1, GiveUpReason.NOT_RETRYABLE, fatal),
    ]
    assert policy.stats.give_ups == 2
    assert policy.stats.executions == 2
    assert policy.stats.retries == 0


async def test_deadline_and_budget_give_ups_are_counted_with_their_reason() -> None:
    """The two remaining reasons, each once, with the attempts actually made."""
    clock = ManualClock()
    rec = RecordingObserver()
    timed = RetryPolicy(
        RetryConfig(max_attempts=5, base_delay=1.0, jitter=False, deadline=2.5),
        name="svc",
        clock=clock,
        hooks=[rec],
    )
    errors = [BackendConnectionError() for _ in range(5)]
    with pytest.raises(BackendConnectionError) as caught:
        await timed.execute(Script(*errors))
    # 1 s after attempt 1 fits, 2 s more after attempt 2 would end at 3 s > 2.5 s.
    assert caught.value is errors[1]
    assert rec.give_ups == [("svc", 2, GiveUpReason.DEADLINE, errors[1])]
    assert timed.stats.give_ups == 1

    rec = RecordingObserver()
    budget = RetryBudget(0.0, min_per_second=0.1, ttl=10.0, clock=clock)  # one retry in all
    spent = RetryPolicy(
        RetryConfig(max_attempts=5, jitter=False),
        name="svc",
        clock=clock,
        budget=budget,
        hooks=[rec],
    )
    errors = [BackendConnectionError() for _ in range(5)]
    with pytest.raises(BackendConnectionError) as caught:
        await spent.execute(Script(*errors))
    assert rec.give_ups == [("svc", 2, GiveUpReason.BUDGET_EXHAUSTED, errors[1])]
    assert (spent.stats.retries, spent.stats.give_ups) == (1, 1)

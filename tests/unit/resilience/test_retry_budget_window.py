"""RetryBudget against a reference model of its documented window.

The docstring's rule: the window is ``slots`` buckets of ``ttl / slots`` seconds each
(bucket ``floor(t / width)``); an event counts while its bucket is among the last
``slots`` ones; a retry is granted while ``retries + 1 <= ratio * calls + min_per_second
* ttl``; ``available`` is ``floor(ratio * calls + reserve) - retries`` (never negative).
The model below keeps every event with its bucket and recomputes that from scratch; any
sequence of calls, retries and clock advances must agree with it.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.resilience import ManualClock
from infra.resilience.budget import RetryBudget


class Model:
    def __init__(self, ratio: float, reserve: float, ttl: float, slots: int) -> None:
        self.ratio, self.reserve, self.ttl, self.slots = ratio, reserve, ttl, slots
        self.width = ttl / slots
        self.events: list[tuple[int, str]] = []

    def bucket(self, now: float) -> int:
        return math.floor(now / self.width)

    def live(self, now: float) -> tuple[int, int]:
        oldest = self.bucket(now) - self.slots + 1
        calls = sum(1 for b, kind in self.events if b >= oldest and kind == "call")
        retries = sum(1 for b, kind in self.events if b >= oldest and kind == "retry")
        return calls, retries

    def record_call(self, now: float) -> None:
        self.events.append((self.bucket(now), "call"))

    def try_acquire(self, now: float) -> bool:
        calls, retries = self.live(now)
        if retries + 1 > self.ratio * calls + self.reserve * self.ttl:
            return False
        self.events.append((self.bucket(now), "retry"))
        return True

    def available(self, now: float) -> int:
        calls, retries = self.live(now)
        return max(0, math.floor(self.ratio * calls + self.reserve * self.ttl) - retries)


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.integers(1, 5)),
        st.tuples(st.just("retry"), st.integers(1, 5)),
        st.tuples(st.just("advance"), st.sampled_from([0.25, 0.5, 1.0, 2.5, 7.0, 13.0])),
    ),
    max_size=40,
)


@given(
    steps=STEPS,
    ratio=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    reserve=st.sampled_from([0.0, 0.1, 0.5]),
    slots=st.integers(1, 12),
    start=st.sampled_from([0.0, 3.0, 1000.0]),
)
def test_the_budget_agrees_with_the_window_model(
    steps: list[tuple[str, float]], ratio: float, reserve: float, slots: int, start: float
) -> None:
    clock = ManualClock(start)
    budget = RetryBudget(ratio, min_per_second=reserve, ttl=10.0, slots=slots, clock=clock)
    model = Model(ratio, reserve, 10.0, slots)
    for kind, amount in steps:
        if kind == "advance":
            clock.advance(amount)
        elif kind == "call":
            for _ in range(int(amount)):
                budget.record_call()
                model.record_call(clock.now())
        else:
            for _ in range(int(amount)):
                assert budget.try_acquire() is model.try_acquire(clock.now())
        assert budget.available == model.available(clock.now())


@given(steps=STEPS)
def test_the_defaults_are_20_percent_plus_10_per_second_over_10_s_in_10_slots(
    steps: list[tuple[str, float]],
) -> None:
    clock = ManualClock()
    budget = RetryBudget(clock=clock)
    model = Model(0.2, 10.0, 10.0, 10)
    assert budget.ratio == 0.2
    assert (budget.min_per_second, budget.ttl) == (10.0, 10.0)
    for kind, amount in steps:
        if kind == "advance":
            clock.advance(amount)
        elif kind == "call":
            budget.record_call()
            model.record_call(clock.now())
        else:
            assert budget.try_acquire() is model.try_acquire(clock.now())
    assert budget.available == model.available(clock.now())


def test_an_event_leaves_the_window_exactly_when_its_bucket_does() -> None:
    clock = ManualClock()
    budget = RetryBudget(1.0, min_per_second=0.0, ttl=10.0, slots=10, clock=clock)
    clock.advance(0.95)  # bucket 0 (of width 1 s)
    budget.record_call()
    clock.advance(9.0)  # 9.95: bucket 9, bucket 0 still inside
    assert budget.available == 1
    clock.advance(0.05)  # 10.0: bucket 10, bucket 0 has left
    assert budget.available == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": -0.1}, "ratio must be a finite number >= 0, got -0.1"),
        ({"ratio": math.nan}, "ratio must be a finite number >= 0, got nan"),
        ({"ratio": True}, "ratio must be a finite number >= 0, got True"),
        ({"min_per_second": -1}, "min_per_second must be a finite number >= 0, got -1"),
        ({"ttl": 0}, "ttl must be a finite number > 0, got 0"),
        ({"ttl": math.inf}, "ttl must be a finite number > 0, got inf"),
        ({"slots": 0}, "slots must be an integer >= 1, got 0"),
        ({"slots": 2.0}, "slots must be an integer >= 1, got 2.0"),
        ({"slots": True}, "slots must be an integer >= 1, got True"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$".replace(".", r"\.")):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


def test_zero_ratio_and_reserve_are_allowed_and_grant_nothing() -> None:
    budget = RetryBudget(0, min_per_second=0, clock=ManualClock())
    budget.record_call()
    assert budget.try_acquire() is False
    assert budget.available == 0


def test_describe_and_repr() -> None:
    budget = RetryBudget(0.25, min_per_second=2.5, ttl=30, clock=ManualClock())
    assert budget.describe() == "budget 25% + 2.5/s over 30s"
    assert repr(budget) == ("RetryBudget(ratio=0.25, min_per_second=2.5, ttl=30.0, available=75)")


def test_the_default_window_has_ten_buckets_of_one_second() -> None:
    clock = ManualClock()
    budget = RetryBudget(clock=clock)  # 20 %, 10/s reserve, 10 s
    clock.advance(0.95)  # bucket 0 of ten; it would be bucket 1 of eleven
    for _ in range(5):
        budget.record_call()
    assert budget.available == 101  # floor(0.2 * 5 + 10 * 10)
    clock.advance(9.05)  # t = 10.0: bucket 0 has left the window
    assert budget.available == 100


def test_the_first_bucket_ends_one_width_after_the_start() -> None:
    clock = ManualClock(100.0)  # 100.0 is the start of bucket 100 (width 1 s)
    budget = RetryBudget(1.0, min_per_second=0.0, ttl=10.0, slots=10, clock=clock)
    budget.record_call()  # bucket 100
    clock.advance(1.5)
    budget.record_call()  # bucket 101: a new bucket, not the first one again
    clock.advance(8.5)  # t = 110.0: bucket 100 left, bucket 101 is still inside
    assert budget.available == 1
    clock.advance(1.0)  # t = 111.0: bucket 101 left too
    assert budget.available == 0

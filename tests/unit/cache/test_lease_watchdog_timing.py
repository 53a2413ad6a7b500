"""The lease watchdog's schedule and its loss reports, on virtual time.

It renews every ``lease / 3``; a failed renewal is retried after half the time left,
within ``[lease / 30, lease / 9]`` and never past the lease's end, while the lease (minus
the drift margin: 1 % + 2 ms) lasts; it reports a loss once, with the lock, fence and
renewal count and the last error as ``__cause__``: at once when the backend says the
lease is no longer ours, at the lease's end when renewals keep failing, and if the
watchdog itself breaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.cache.lease_hold import (
    DRIFT_FACTOR,
    DRIFT_FLOOR_S,
    RETRY_CEILING,
    RETRY_FLOOR,
    LeaseWatchdog,
    retry_delay,
)
from infra.exceptions import CacheConnectionError, LockLostError, LockNotOwnedError
from infra.ports import LockLease
from infra.resilience import ManualClock

LEASE = LockLease("job", "owner", 7, 3.0)


class Renewals:
    """A renew function whose answers the test scripts; records when it was called."""

    def __init__(self, clock: ManualClock, answers: list[BaseException | None]) -> None:
        self.clock = clock
        self.answers = answers
        self.calls: list[float] = []
        self.done = asyncio.Event()

    async def __call__(self, lease: LockLease) -> LockLease:
        self.calls.append(self.clock.now())
        if len(self.calls) >= len(self.answers):
            self.done.set()
            await asyncio.Event().wait()  # park here until the test stops the watchdog
        answer = self.answers[len(self.calls) - 1]
        if answer is not None:
            raise answer
        return LockLease(lease.name, lease.owner, lease.fencing_token, lease.lease_seconds)


def watchdog(
    clock: ManualClock, renew: Renewals, lost: list[LockLostError], lease: LockLease = LEASE
) -> LeaseWatchdog:
    on_lost: Callable[[LockLostError], None] = lost.append
    return LeaseWatchdog(
        lease, renew, clock=clock, granted_at=clock.now(), on_lost=on_lost, component="locks"
    )


async def until(event: asyncio.Event) -> None:
    for _ in range(10_000):
        if event.is_set():
            return
        await asyncio.sleep(0)
    raise AssertionError("the watchdog never got there")


async def test_it_renews_every_third_of_the_lease() -> None:
    clock = ManualClock(100.0)
    renew = Renewals(clock, [None, None, None, None])
    lost: list[LockLostError] = []
    dog = watchdog(clock, renew, lost)
    dog.start()
    dog.start()  # idempotent: one task
    named = [t for t in asyncio.all_tasks() if t.get_name() == "semantica-lock-watchdog"]
    assert len(named) == 1  # findable by name when debugging a stuck loop
    await until(renew.done)
    await dog.stop()
    assert all(t.done() for t in named)  # stop() returns once the task has ended
    await dog.stop()
    assert renew.calls == [101.0, 102.0, 103.0, 104.0]
    assert dog.renewals == 3
    assert lost == []
    assert repr(dog) == "LeaseWatchdog(lock='job', interval=1, renewals=3)"


async def test_stop_before_start_is_harmless() -> None:
    clock = ManualClock()
    dog = watchdog(clock, Renewals(clock, [None]), [])
    await dog.stop()
    assert dog.renewals == 0


async def test_a_lease_taken_over_is_reported_at_once_with_its_cause() -> None:
    clock = ManualClock()
    taken = LockNotOwnedError("not ours", component="locks")
    renew = Renewals(clock, [None, taken, None])
    lost: list[LockLostError] = []
    dog = watchdog(clock, renew, lost)
    dog.start()
    for _ in range(1000):
        if lost:
            break
        await asyncio.sleep(0)
    for _ in range(50):  # give a watchdog that wrongly went on the time to renew again
        await asyncio.sleep(0)
    await dog.stop()
    [error] = lost
    assert error.__cause__ is taken
    assert error.component == "locks"
    assert error.details == {"lock": "job", "fence": 7, "renewals": 1}
    assert "was lost while it was held: the lock expired or was taken over (" in str(error)
    assert renew.calls == [1.0, 2.0]  # no retry after "not ours"


async def test_failing_renewals_are_retried_until_the_lease_runs_out() -> None:
    clock = ManualClock()
    down = [CacheConnectionError(f"down {n}", component="locks") for n in range(500)]
    renew = Renewals(clock, [*down, None])
    lost: list[LockLostError] = []
    dog = watchdog(clock, renew, lost)
    dog.start()
    for _ in range(10_000):
        if lost:
            break
        await asyncio.sleep(0)
    await dog.stop()
    [error] = lost
    margin = 3.0 * DRIFT_FACTOR + DRIFT_FLOOR_S
    # First try at 1 s, then every lease/9 (1/3 s) or half the time left, while any is.
    assert renew.calls[0] == 1.0
    assert renew.calls[1] == pytest.approx(1.0 + 1 / 3)
    gaps = [b - a for a, b in zip(renew.calls, renew.calls[1:], strict=False)]
    assert all(gap <= 1 / 3 + 1e-9 for gap in gaps)
    assert renew.calls[-1] < 3.0 - margin
    assert clock.now() >= 3.0 - margin - 1e-9  # declared at the lease's end, not before
    assert clock.now() <= 3.0
    assert error.__cause__ is down[len(renew.calls) - 1]  # the last renewal's error
    assert "was lost while it was held: the lease could not be renewed before it ended (" in str(
        error
    )
    assert error.details == {"lock": "job", "fence": 7, "renewals": 0}


async def test_a_renewal_restarts_the_lease_from_when_it_was_sent() -> None:
    """After one good renewal at 1 s, the lease runs until 1 + 3 s (not 0 + 3 s)."""
    clock = ManualClock()
    down = [CacheConnectionError("down", component="locks") for _ in range(500)]
    renew = Renewals(clock, [None, *down])
    lost: list[LockLostError] = []
    dog = watchdog(clock, renew, lost)
    dog.start()
    for _ in range(10_000):
        if lost:
            break
        await asyncio.sleep(0)
    await dog.stop()
    assert lost
    margin = 3.0 * DRIFT_FACTOR + DRIFT_FLOOR_S
    assert 4.0 - margin - 1e-9 <= clock.now() <= 4.0
    assert lost[0].details["renewals"] == 1


async def test_a_broken_watchdog_reports_the_lease_lost() -> None:
    class BrokenClock(ManualClock):
        async def sleep(self, seconds: float) -> None:
            raise RuntimeError("clock broke")

    clock = BrokenClock()
    lost: list[LockLostError] = []
    dog = watchdog(clock, Renewals(clock, [None]), lost)
    dog.start()
    for _ in range(100):
        if lost:
            break
        await asyncio.sleep(0)
    await dog.stop()
    [error] = lost
    assert isinstance(error.__cause__, RuntimeError)
    assert "was lost while it was held: the lock watchdog failed (" in str(error)


# ------------------------------------------------------------ retry schedule floor

LEASES = st.floats(0.01, 10_000.0, allow_nan=False, allow_infinity=False)


@given(lease=LEASES, fraction=st.floats(0.0, 1.0))
def test_a_retry_wait_is_half_the_time_left_within_a_floor_and_a_ceiling(
    lease: float, fraction: float
) -> None:
    """Never past the lease's end, never above lease/9, and never below lease/30 unless
    less than that is left (then exactly what is left: the last wait)."""
    left = lease * fraction
    delay = retry_delay(lease, left)
    assert 0.0 <= delay <= left
    assert delay <= lease * RETRY_CEILING
    if left >= lease * RETRY_FLOOR:
        assert delay >= lease * RETRY_FLOOR
        assert delay == pytest.approx(min(lease / 9, max(lease / 30, left / 2)))
    else:
        assert delay == left


class FailingRenewals:
    """Every renewal fails after taking the scripted time (on the manual clock)."""

    def __init__(self, clock: ManualClock, durations: list[float]) -> None:
        self.clock = clock
        self.durations = durations
        self.calls: list[float] = []
        self.errors: list[CacheConnectionError] = []

    async def __call__(self, lease: LockLease) -> LockLease:
        self.calls.append(self.clock.now())
        self.clock.advance(self.durations[(len(self.calls) - 1) % len(self.durations)])
        self.errors.append(CacheConnectionError("down", component="locks"))
        raise self.errors[-1]


@given(
    lease_seconds=st.floats(0.01, 600.0),
    durations=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8),
)
async def test_failing_renewals_are_never_retried_faster_than_a_thirtieth_of_the_lease(
    lease_seconds: float, durations: list[float]
) -> None:
    """However long failing attempts take (up to 1/30 of the lease each), retries are at
    least lease/30 apart, so at most 31 follow the first failure; the loss is declared at
    the lease's end (minus the drift margin), with the last attempt's error as cause."""
    clock = ManualClock()
    renew = FailingRenewals(clock, [d * lease_seconds / 30 for d in durations])
    lost: list[LockLostError] = []
    lease = LockLease("job", "owner", 7, lease_seconds)
    dog = LeaseWatchdog(
        lease, renew, clock=clock, granted_at=0.0, on_lost=lost.append, component="locks"
    )
    dog.start()
    for _ in range(1_000):
        if lost:
            break
        await asyncio.sleep(0)
    await dog.stop()
    [error] = lost
    gaps = [b - a for a, b in zip(renew.calls, renew.calls[1:], strict=False)]
    assert all(gap >= lease_seconds * RETRY_FLOOR * (1 - 1e-9) for gap in gaps)
    assert len(renew.calls) <= 32
    end = lease_seconds - (lease_seconds * DRIFT_FACTOR + DRIFT_FLOOR_S)
    assert clock.now() >= end * (1 - 1e-9)
    assert error.__cause__ is renew.errors[-1]

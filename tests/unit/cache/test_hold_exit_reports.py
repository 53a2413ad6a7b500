"""``lock.hold()`` exits: what a lease that expired during the body looks like.

(Only the rules where the lease really ran out are pinned here: the body outlived its
lease. A body that releases the lock itself is a separate case.) A clean body whose
lease expired gets ``LockLostError`` naming the lock, fence and lease length, chained
from the ``LockNotOwnedError`` of the release, and ``lock_lost_total`` counts it; a body
that raised keeps its own exception, with the release failure as a note and a warning
log carrying the component and both error types. A hold is entered once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from infra.cache.lease_lock import LOCK_LOST_TOTAL
from infra.exceptions import LockLostError, LockNotOwnedError
from infra.observability import MetricsCollector, reset_metrics_collector, set_metrics_collector
from infra.resilience import ManualClock
from infra.testing.fakes.lock import FakeDistributedLock


@pytest.fixture
def collector() -> Iterator[MetricsCollector]:
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    yield fresh
    reset_metrics_collector()


async def test_a_lease_that_ran_out_during_a_clean_body_is_lost(
    collector: MetricsCollector,
) -> None:
    clock = ManualClock()
    lock = FakeDistributedLock(clock=clock, component="jobs")
    with pytest.raises(LockLostError) as raised:
        async with lock.hold("job", lease=1.5) as lease:
            clock.advance(2.0)  # the body outlives its lease
    assert isinstance(raised.value.__cause__, LockNotOwnedError)
    assert raised.value.component == "jobs"
    assert raised.value.details == {
        "lock": "job",
        "fence": lease.fencing_token,
        "lease_seconds": 1.5,
    }
    assert collector.get_counter(LOCK_LOST_TOTAL, component="jobs") == 1


async def test_a_failing_body_keeps_its_error_and_notes_the_lost_lease(
    collector: MetricsCollector, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    lock = FakeDistributedLock(clock=clock, component="jobs")

    async def critical_section() -> None:
        async with lock.hold("job", lease=1.0):
            clock.advance(2.0)
            raise ValueError("body failed")

    with (
        caplog.at_level(logging.WARNING, logger="infra.cache.lock"),
        pytest.raises(ValueError, match="body failed") as raised,
    ):
        await critical_section()
    [note] = raised.value.__notes__
    assert note.startswith("hold('job') could not release the lock: ")
    [record] = [r for r in caplog.records if r.name == "infra.cache.lock"]
    assert record.getMessage() == "lock release failed after the critical section raised"
    assert record.__dict__["component"] == "jobs"
    assert record.__dict__["error_type"] == "LockLostError"
    assert record.__dict__["body_error_type"] == "ValueError"
    assert collector.get_counter(LOCK_LOST_TOTAL, component="jobs") == 1


async def test_a_hold_cannot_be_entered_twice() -> None:
    lock = FakeDistributedLock(clock=ManualClock())
    hold = lock.hold("job")
    async with hold:
        with pytest.raises(RuntimeError, match="single-use"):
            await hold.__aenter__()  # entered again while still inside
    with pytest.raises(RuntimeError, match="single-use"):
        async with hold:
            pass

"""Bulkhead queue deadlines: every queued call is served in order or rejected after its own
``max_wait``, however arrivals, releases and cancellations interleave (one timer serves the
whole queue, so these pin that it re-arms for each waiter)."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from infra.exceptions import BulkheadFullError
from infra.resilience.bulkhead import Bulkhead

MAX_WAIT = 0.02
# The loop may run a timer up to one clock resolution early; allow for it.
EARLY = 0.002


class Gauge:
    """Hooks that keep the last reported (in_flight, queued), as a metrics gauge would."""

    def __init__(self) -> None:
        self.last = (0, 0)
        self.rejects = 0

    def on_bulkhead_change(self, name: str, in_flight: int, queued: int) -> None:
        self.last = (in_flight, queued)

    def on_bulkhead_reject(self, name: str, reason: Literal["full", "max_wait"]) -> None:
        self.rejects += 1


worker_plans = st.lists(
    st.tuples(
        st.integers(0, 30),  # arrival, ms
        st.integers(0, 30),  # time holding the slot, ms
        st.one_of(st.none(), st.integers(0, 40)),  # cancelled this many ms after arrival
    ),
    min_size=1,
    max_size=12,
)


@hypothesis_settings(max_examples=40)
@given(max_concurrent=st.integers(1, 3), plans=worker_plans)
def test_queued_calls_are_served_in_order_or_rejected_after_max_wait(
    max_concurrent: int, plans: list[tuple[int, int, int | None]]
) -> None:
    asyncio.run(_scenario(max_concurrent, plans))


async def _scenario(max_concurrent: int, plans: list[tuple[int, int, int | None]]) -> None:
    loop = asyncio.get_running_loop()
    gauge = Gauge()
    bulkhead = Bulkhead(max_concurrent, max_queue=len(plans), max_wait=MAX_WAIT, hooks=gauge)
    running = 0
    peak = 0
    queued_order: list[int] = []  # workers that had to queue, in the order they queued
    served_order: list[int] = []  # those of them that got a slot, in the order they got it

    async def worker(i: int, arrive: int, hold: int) -> str:
        nonlocal running, peak
        await asyncio.sleep(arrive / 1000)
        must_queue = bulkhead.in_flight >= max_concurrent or bulkhead.queued > 0
        if must_queue:
            queued_order.append(i)
        start = loop.time()
        try:
            await bulkhead.acquire()
        except BulkheadFullError as exc:
            reason = exc.details["reason"]
            assert reason == "max_wait"
            assert must_queue
            assert loop.time() - start >= MAX_WAIT - EARLY
            return "rejected"
        if must_queue:
            served_order.append(i)
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(hold / 1000)
        finally:
            running -= 1
            bulkhead.release()
        return "ok"

    tasks = [
        asyncio.create_task(worker(i, arrive, hold)) for i, (arrive, hold, _) in enumerate(plans)
    ]
    for task, (arrive, _, cancel_after) in zip(tasks, plans, strict=True):
        if cancel_after is not None:
            loop.call_later((arrive + cancel_after) / 1000, task.cancel)
    async with asyncio.timeout(60):  # a waiter the timer forgot would hang here
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert all(o in ("ok", "rejected") or isinstance(o, asyncio.CancelledError) for o in outcomes)
    assert peak <= max_concurrent
    # FIFO: queued calls got their slots in the order they queued.
    assert served_order == [i for i in queued_order if i in served_order]
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)
    # What the hooks last reported matches (a waiter leaving the queue is always reported).
    assert gauge.last == (0, 0)
    # Each max_wait rejection is reported; a waiter cancelled after it was rejected but
    # before it resumed ends cancelled.
    cancelled = sum(isinstance(o, asyncio.CancelledError) for o in outcomes)
    assert outcomes.count("rejected") <= gauge.rejects <= outcomes.count("rejected") + cancelled


async def test_each_waiter_gets_its_own_max_wait_after_the_front_was_served() -> None:
    """The front waiter is served; the one behind it still waits its full max_wait.

    ``first`` must still be queued when the slot is released: its max_wait is ten
    times the gap between the two arrivals, so a stall on a loaded machine cannot
    expire it first (with 50 ms against 20 ms, one 30 ms stall did)."""
    loop = asyncio.get_running_loop()
    bulkhead = Bulkhead(1, max_queue=2, max_wait=0.5)
    await bulkhead.acquire()
    first = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0.05)  # the second arrives later: its deadline is its own
    queued_at = loop.time()
    second = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    bulkhead.release()  # hands the slot to `first`
    await first
    with pytest.raises(BulkheadFullError):
        await second
    assert loop.time() - queued_at >= 0.5 - 0.002
    assert (bulkhead.in_flight, bulkhead.queued) == (1, 0)
    bulkhead.release()


def test_waiters_expire_on_every_event_loop_the_bulkhead_is_used_on() -> None:
    """A bulkhead shared by two event loops in turn times out waiters on both."""
    bulkhead = Bulkhead(1, max_queue=1, max_wait=0.02)

    async def one_rejected_waiter() -> None:
        await bulkhead.acquire()
        try:
            async with asyncio.timeout(2):
                with pytest.raises(BulkheadFullError):
                    await bulkhead.acquire()
        finally:
            bulkhead.release()

    async def leave_a_waiter_pending() -> None:
        await bulkhead.acquire()
        waiter = asyncio.create_task(bulkhead.acquire())
        await asyncio.sleep(0)  # queued: the queue's timer is armed on this loop
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        bulkhead.release()

    asyncio.run(leave_a_waiter_pending())
    asyncio.run(one_rejected_waiter())
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


async def test_a_cancelled_waiter_dropped_by_the_queue_timer_is_reported() -> None:
    """A waiter cancelled just before the queue's timer fires (in the same loop iteration)
    leaves the queue, and the hooks hear of it."""
    loop = asyncio.get_running_loop()
    gauge = Gauge()
    bulkhead = Bulkhead(1, max_queue=1, max_wait=0.01, hooks=gauge)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)  # queued; the queue's timer is armed for its deadline
    loop.call_later(0.005, waiter.cancel)  # due just before the timer
    time.sleep(0.03)  # noqa: ASYNC251 -- block the loop so both handles run in one iteration
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (bulkhead.in_flight, bulkhead.queued) == (1, 0)
    assert gauge.last == (1, 0)
    bulkhead.release()
    assert gauge.last == (0, 0)

"""Bulkhead: concurrency cap, bounded FIFO queue, max wait, and permits that never leak."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

import pytest

from infra.exceptions import BulkheadFullError
from infra.resilience.bulkhead import Bulkhead

T = TypeVar("T")


class Recorder:
    """A BulkheadHooks implementation that keeps every event."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, int, int]] = []
        self.rejects: list[tuple[str, str]] = []

    def on_bulkhead_change(self, name: str, in_flight: int, queued: int) -> None:
        self.changes.append((name, in_flight, queued))

    def on_bulkhead_reject(self, name: str, reason: Literal["full", "max_wait"]) -> None:
        self.rejects.append((name, reason))


class BrokenHooks:
    """Hooks that always raise."""

    def on_bulkhead_change(self, name: str, in_flight: int, queued: int) -> None:
        raise RuntimeError("observer bug")

    def on_bulkhead_reject(self, name: str, reason: Literal["full", "max_wait"]) -> None:
        raise RuntimeError("observer bug")


async def _within(awaitable: Awaitable[T], seconds: float = 2.0) -> T:
    """Await with a guard, so a leaked permit fails the test instead of hanging it."""
    async with asyncio.timeout(seconds):
        return await awaitable


async def _settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrency_never_exceeds_the_limit_with_150_tasks() -> None:
    """150 tasks through max_concurrent=10: peak is exactly 10, all finish, counters 0."""
    bulkhead = Bulkhead(10, max_queue=200)
    running = 0
    peak = 0

    async def work(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        assert bulkhead.in_flight <= 10
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        running -= 1
        return i

    results = await _within(asyncio.gather(*(bulkhead.call(work, i) for i in range(150))))
    assert results == list(range(150))
    assert peak == 10
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


async def test_full_bulkhead_rejects_at_once_with_details() -> None:
    """With slots and queue full, the next call fails immediately with BulkheadFullError."""
    bulkhead = Bulkhead(2, max_queue=1, name="postgres")
    gate = asyncio.Event()
    holders = [asyncio.create_task(bulkhead.call(gate.wait)) for _ in range(3)]
    await _settle()
    assert (bulkhead.in_flight, bulkhead.queued) == (2, 1)

    with pytest.raises(BulkheadFullError) as info:
        await bulkhead.call(gate.wait)
    err = info.value
    assert err.component == "postgres"
    assert err.details["reason"] == "full"
    assert err.details["in_flight"] == 2
    assert err.details["queued"] == 1
    assert err.details["max_concurrent"] == 2
    assert err.details["max_queue"] == 1

    gate.set()
    await _within(asyncio.gather(*holders))
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


async def test_no_queue_means_reject_when_all_slots_busy() -> None:
    """max_queue=0 (the default) never queues."""
    bulkhead = Bulkhead(1)
    async with bulkhead:
        with pytest.raises(BulkheadFullError):
            await bulkhead.acquire()
    assert bulkhead.in_flight == 0


async def test_queued_waiters_are_served_in_fifo_order() -> None:
    """Waiters get the slot in arrival order, and a newcomer cannot barge ahead."""
    bulkhead = Bulkhead(1, max_queue=120)
    order: list[int] = []

    async def work(i: int) -> None:
        order.append(i)
        await asyncio.sleep(0)

    await bulkhead.acquire()  # hold the only slot
    tasks = []
    for i in range(120):
        tasks.append(asyncio.create_task(bulkhead.call(work, i)))
        await asyncio.sleep(0)  # each waiter enqueues before the next starts
    assert bulkhead.queued == 120
    bulkhead.release()
    assert bulkhead.in_flight == 1  # handed straight to the first waiter
    late = asyncio.create_task(bulkhead.call(work, 999))
    await _within(asyncio.gather(*tasks, late))
    assert order == [*range(120), 999]
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


async def test_waiter_gives_up_after_max_wait() -> None:
    """A queued call waits at most max_wait, then raises and leaves the queue."""
    recorder = Recorder()
    bulkhead = Bulkhead(1, max_queue=1, max_wait=0.02, name="qdrant", hooks=recorder)
    async with bulkhead:
        with pytest.raises(BulkheadFullError) as info:
            await bulkhead.acquire()
        assert info.value.details["reason"] == "max_wait"
        assert info.value.details["max_wait"] == 0.02
        assert bulkhead.queued == 0
        assert bulkhead.in_flight == 1
    assert bulkhead.in_flight == 0
    assert recorder.rejects == [("qdrant", "max_wait")]


async def test_waiter_granted_within_max_wait_runs() -> None:
    """A slot freed before max_wait is taken by the waiter."""
    bulkhead = Bulkhead(1, max_queue=1, max_wait=5.0)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.call(asyncio.sleep, 0, "ran"))
    await _settle()
    bulkhead.release()
    assert await _within(waiter) == "ran"
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


async def test_cancelled_waiter_leaves_the_queue() -> None:
    """Cancelling a queued call removes it at once; later waiters keep their turn."""
    bulkhead = Bulkhead(1, max_queue=5)
    await bulkhead.acquire()
    first = asyncio.create_task(bulkhead.call(asyncio.sleep, 0, "first"))
    second = asyncio.create_task(bulkhead.call(asyncio.sleep, 0, "second"))
    await _settle()
    assert bulkhead.queued == 2
    first.cancel()
    await _settle()
    assert bulkhead.queued == 1
    bulkhead.release()
    assert await _within(second) == "second"
    assert first.cancelled()
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


async def test_slot_handed_to_a_waiter_cancelled_before_resuming_passes_on() -> None:
    """A waiter cancelled right after being handed a slot gives it to the next waiter."""
    bulkhead = Bulkhead(1, max_queue=5)
    await bulkhead.acquire()
    doomed = asyncio.create_task(bulkhead.call(asyncio.sleep, 0, "doomed"))
    nxt = asyncio.create_task(bulkhead.call(asyncio.sleep, 0, "next"))
    await _settle()
    bulkhead.release()  # hands the slot to `doomed` ...
    doomed.cancel()  # ... which is cancelled before it can resume
    assert await _within(nxt) == "next"
    assert doomed.cancelled()
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


async def test_waiter_cancelled_after_its_max_wait_expired_releases_nothing() -> None:
    """A cancel landing after max_wait fired (before the waiter resumed) frees no slot."""
    loop = asyncio.get_running_loop()
    bulkhead = Bulkhead(1, max_queue=1, max_wait=0.01)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)  # enqueued; its max_wait timer is armed
    loop.call_later(0.01, waiter.cancel)  # due just after the max_wait timer
    time.sleep(0.03)  # noqa: ASYNC251 -- block the loop so both timers fire in one iteration
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (bulkhead.in_flight, bulkhead.queued) == (1, 0)  # the holder keeps its slot
    bulkhead.release()
    assert bulkhead.in_flight == 0


async def test_cancelled_runner_frees_its_slot() -> None:
    """Cancelling a running call returns its slot."""
    bulkhead = Bulkhead(1)
    runner = asyncio.create_task(bulkhead.call(asyncio.sleep, 3600))
    await _settle()
    assert bulkhead.in_flight == 1
    runner.cancel()
    await _settle()
    assert bulkhead.in_flight == 0


async def test_counters_return_to_zero_after_random_cancellations_of_200_tasks() -> None:
    """Random cancels of runners and waiters never leak or exceed permits."""
    rng = random.Random(1234)
    bulkhead = Bulkhead(7, max_queue=300)
    gate = asyncio.Event()
    running = 0
    peak = 0

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await gate.wait()
            await asyncio.sleep(0)
        finally:
            running -= 1

    tasks = [asyncio.create_task(bulkhead.call(work)) for _ in range(200)]
    await _settle()
    assert (bulkhead.in_flight, bulkhead.queued) == (7, 193)
    victims = rng.sample(tasks, 90)
    for i, task in enumerate(victims):
        task.cancel()
        if i % 10 == 0:
            await asyncio.sleep(0)  # interleave cancels with progress
    gate.set()
    results = await _within(asyncio.gather(*tasks, return_exceptions=True))
    cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
    assert cancelled == 90
    assert all(r is None for r in results if not isinstance(r, BaseException))
    assert peak == 7
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


async def test_call_releases_the_slot_when_the_call_fails() -> None:
    """An error in the call propagates and frees the slot."""
    bulkhead = Bulkhead(1)

    async def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await bulkhead.call(boom)
    assert bulkhead.in_flight == 0


async def test_hooks_see_every_change_and_rejection() -> None:
    """Hooks receive (name, in_flight, queued) after each change, and rejections."""
    recorder = Recorder()
    bulkhead = Bulkhead(1, max_queue=1, name="llm", hooks=recorder)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await _settle()
    with pytest.raises(BulkheadFullError):
        await bulkhead.acquire()
    bulkhead.release()  # handed to the waiter
    await _within(waiter)
    bulkhead.release()
    assert recorder.changes == [("llm", 1, 0), ("llm", 1, 1), ("llm", 1, 0), ("llm", 0, 0)]
    assert recorder.rejects == [("llm", "full")]


async def test_failing_hooks_do_not_break_accounting(caplog: pytest.LogCaptureFixture) -> None:
    """An observer that raises is logged; permits are still counted correctly."""
    bulkhead = Bulkhead(1, hooks=BrokenHooks())
    async with bulkhead:
        assert bulkhead.in_flight == 1
        with pytest.raises(BulkheadFullError):
            await bulkhead.acquire()
    assert bulkhead.in_flight == 0
    assert "on_bulkhead_change failed" in caplog.text
    assert "on_bulkhead_reject failed" in caplog.text


def test_release_without_acquire_is_an_error() -> None:
    """Releasing more often than acquiring is a programming error."""
    with pytest.raises(RuntimeError, match="released more often"):
        Bulkhead(1).release()


@pytest.mark.parametrize(
    ("args", "kwargs", "exc_type", "match"),
    [
        ((0,), {}, ValueError, "max_concurrent"),
        ((1.5,), {}, TypeError, "max_concurrent"),
        ((True,), {}, TypeError, "max_concurrent"),
        ((1,), {"max_queue": -1}, ValueError, "max_queue"),
        ((1,), {"max_queue": 2.0}, TypeError, "max_queue"),
        ((1,), {"max_wait": 0}, ValueError, "max_wait"),
        ((1,), {"max_wait": float("inf")}, ValueError, "max_wait"),
    ],
)
def test_invalid_arguments_are_rejected(
    args: tuple[Any, ...], kwargs: dict[str, Any], exc_type: type[Exception], match: str
) -> None:
    """Bad limits fail at construction, naming the argument."""
    with pytest.raises(exc_type, match=match):
        Bulkhead(*args, **kwargs)


def test_properties_and_repr_report_configuration() -> None:
    """max_concurrent and the repr expose the configuration."""
    bulkhead = Bulkhead(4, max_queue=8, max_wait=1.5, name="redis")
    assert bulkhead.max_concurrent == 4
    text = repr(bulkhead)
    assert "redis" in text
    assert "max_concurrent=4" in text
    assert "max_queue=8" in text


async def test_try_acquire_takes_a_free_slot_and_never_jumps_the_queue() -> None:
    """try_acquire is acquire's no-wait half: a free slot is taken, a full bulkhead or a
    queue with waiters answers False and changes nothing."""
    bulkhead = Bulkhead(2, max_queue=5, name="try")
    assert bulkhead.try_acquire()
    assert bulkhead.try_acquire()
    assert not bulkhead.try_acquire()  # full
    assert bulkhead.in_flight == 2
    waiter = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    bulkhead.release()  # the slot goes to the waiter, not to the next try_acquire
    assert not bulkhead.try_acquire()
    await waiter
    bulkhead.release()
    assert bulkhead.try_acquire()  # the queue is empty again: a slot is free
    bulkhead.release()
    bulkhead.release()
    assert bulkhead.in_flight == 0

"""Timeout's shared loop timer: one handle per instance, yet every scope keeps its own time."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from infra.exceptions import OperationTimeoutError
from infra.resilience.timeout import Timeout, current_deadline


async def _hang() -> None:
    await asyncio.Event().wait()


async def test_a_later_scope_keeps_its_full_time_after_an_earlier_one_expires() -> None:
    """A scope begun 0.25 s after another is neither cut short by the earlier deadline nor
    left unbounded: it finishes when its work takes 0.35 s (past the earlier deadline),
    and times out at its own 0.5 s.

    The margins are wide on purpose: with 50 ms limits and 40 ms of work, one 10 ms
    scheduling stall on a loaded machine made the work's timer and the deadline fall due
    in the same loop iteration, and the deadline won."""
    loop = asyncio.get_running_loop()
    limit, offset, work = 0.5, 0.25, 0.35
    timeout = Timeout(limit)

    async def late(work: float | None) -> float:
        await asyncio.sleep(offset)
        started = loop.time()
        if work is None:
            with pytest.raises(OperationTimeoutError):
                await timeout.call(_hang)
        else:
            await timeout.call(asyncio.sleep, work)
        return loop.time() - started

    first = asyncio.create_task(timeout.call(_hang))
    finished, timed_out = await asyncio.gather(late(work), late(None))
    with pytest.raises(OperationTimeoutError):
        await first
    assert work <= finished  # ran to the end, past the first scope's deadline
    assert timed_out >= limit


async def test_many_calls_arm_one_loop_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """500 sequential calls arm at most one timer on the loop (counted at the loop's
    public scheduling methods), where a timer per call would arm 500."""
    loop = asyncio.get_running_loop()
    timeout = Timeout(10.0)
    armed: list[str] = []
    for method in ("call_at", "call_later"):
        original = getattr(loop, method)

        def counting(*args: Any, _original: Any = original, _name: str = method) -> Any:
            armed.append(_name)
            return _original(*args)

        monkeypatch.setattr(loop, method, counting)
    for i in range(500):
        assert await timeout.call(asyncio.sleep, 0, i) == i
    assert len(armed) <= 1


async def test_finished_scopes_behind_a_slow_one_are_released_when_it_ends() -> None:
    """Scopes that end out of order wait behind the oldest running one, then all go.

    Observed through the tasks the scopes bound: a waiting scope keeps its task alive
    (the memory cost the module documents), a released one lets it be collected."""
    timeout = Timeout(10.0)
    gate = asyncio.Event()
    slow = asyncio.create_task(timeout.call(gate.wait))
    await asyncio.sleep(0)
    finished: list[weakref.ref[asyncio.Task[None]]] = []
    for _ in range(20):
        task = asyncio.create_task(timeout.call(asyncio.sleep, 0))
        await task
        finished.append(weakref.ref(task))
    del task
    gc.collect()
    assert all(ref() is not None for ref in finished)  # queued behind the slow scope
    gate.set()
    assert await slow is True
    gc.collect()
    assert [ref for ref in finished if ref() is not None] == []
    assert timeout.open_scopes == 0


async def test_begin_and_end_bound_work_without_a_coroutine_of_their_own() -> None:
    """begin() publishes the deadline; end() converts our own expiry into our error."""
    timeout = Timeout(0.01, component="x")

    async def bounded() -> None:
        scope = timeout.begin()
        assert current_deadline() is scope
        try:
            await _hang()
        except BaseException as exc:
            timeout.end(scope, exc)
            raise

    with pytest.raises(OperationTimeoutError) as info:
        await bounded()
    assert info.value.component == "x"
    assert current_deadline() is None
    scope = timeout.begin()
    await asyncio.sleep(0)
    timeout.end(scope, None)  # in time: returns quietly


async def test_nested_scopes_of_one_instance_raise_one_timeout_and_balance_cancels() -> None:
    """Re-entering the same Timeout: one OperationTimeoutError, cancel count restored."""
    task = asyncio.current_task()
    assert task is not None
    before = task.cancelling()
    timeout = Timeout(0.01)

    async def nested() -> None:
        async with timeout, timeout:
            await _hang()

    with pytest.raises(OperationTimeoutError):
        await nested()
    assert task.cancelling() == before
    assert timeout.open_scopes == 0


async def test_the_same_instance_works_on_another_event_loop() -> None:
    """A Timeout used on this loop still times out on a second loop (in a thread), and here."""
    timeout = Timeout(0.01)
    assert await timeout.call(asyncio.sleep, 0, "here") == "here"

    async def elsewhere() -> str:
        try:
            await timeout.call(_hang)
        except OperationTimeoutError:
            return "timed out"
        return "not bounded"

    assert await asyncio.to_thread(asyncio.run, elsewhere()) == "timed out"
    with pytest.raises(OperationTimeoutError):
        await timeout.call(_hang)

"""A bulkhead tells its hooks about every change, on every path, and explains rejections.

A waiter that leaves the queue (cancelled, or its ``max_wait`` ran out) is a change the
hooks see; the two rejections carry different messages and details; ``async with``
yields the bulkhead; a failing hook is logged by name and never breaks the accounting.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import pytest

from infra.exceptions import BulkheadFullError
from infra.resilience import Bulkhead


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[str, int, int]] = []
        self.rejects: list[tuple[str, str]] = []

    def on_bulkhead_change(self, name: str, in_flight: int, queued: int) -> None:
        self.changes.append((name, in_flight, queued))

    def on_bulkhead_reject(self, name: str, reason: Literal["full", "max_wait"]) -> None:
        self.rejects.append((name, reason))


class Broken:
    def on_bulkhead_change(self, name: str, in_flight: int, queued: int) -> None:
        raise RuntimeError("hook bug")

    def on_bulkhead_reject(self, name: str, reason: str) -> None:
        raise RuntimeError("hook bug")


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_cancelled_waiter_leaving_the_queue_is_reported() -> None:
    rec = Recorder()
    bulkhead = Bulkhead(1, max_queue=2, name="pg", hooks=rec)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert rec.changes == [("pg", 1, 0), ("pg", 1, 1), ("pg", 1, 0)]
    bulkhead.release()
    assert rec.changes[-1] == ("pg", 0, 0)


async def test_a_waiter_whose_max_wait_runs_out_is_reported_and_rejected() -> None:
    rec = Recorder()
    bulkhead = Bulkhead(1, max_queue=1, max_wait=0.01, name="pg", hooks=rec)
    await bulkhead.acquire()
    with pytest.raises(BulkheadFullError) as raised:
        await bulkhead.acquire()
    assert rec.changes == [("pg", 1, 0), ("pg", 1, 1), ("pg", 1, 0)]
    assert rec.rejects == [("pg", "max_wait")]
    assert str(raised.value).startswith("[pg] bulkhead 'pg': no slot within max_wait=0.01s")
    assert raised.value.details == {
        "reason": "max_wait",
        "max_concurrent": 1,
        "max_queue": 1,
        "max_wait": 0.01,
        "in_flight": 1,
        "queued": 0,
    }
    bulkhead.release()


async def test_a_full_bulkhead_says_how_full() -> None:
    rec = Recorder()
    bulkhead = Bulkhead(2, name="pg", hooks=rec)
    await bulkhead.acquire()
    await bulkhead.acquire()
    with pytest.raises(BulkheadFullError) as raised:
        await bulkhead.acquire()
    assert str(raised.value).startswith("[pg] bulkhead 'pg' full: 2 running, 0 queued")
    assert raised.value.details["reason"] == "full"
    assert raised.value.component == "pg"
    assert rec.rejects == [("pg", "full")]


async def test_async_with_yields_the_bulkhead_and_returns_the_slot() -> None:
    bulkhead = Bulkhead(1, name="pg")
    async with bulkhead as entered:
        assert entered is bulkhead
        assert bulkhead.in_flight == 1
    assert bulkhead.in_flight == 0


async def test_a_failing_hook_is_logged_by_name(caplog: pytest.LogCaptureFixture) -> None:
    bulkhead = Bulkhead(1, name="pg", hooks=Broken())
    with caplog.at_level(logging.ERROR, logger="infra.resilience.bulkhead"):
        async with bulkhead:
            with pytest.raises(BulkheadFullError):
                await bulkhead.acquire()
    messages = [r.getMessage() for r in caplog.records]
    assert "bulkhead hook on_bulkhead_change failed" in messages
    assert "bulkhead hook on_bulkhead_reject failed" in messages
    assert bulkhead.in_flight == 0

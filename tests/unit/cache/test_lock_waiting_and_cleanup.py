"""How a lease lock waits for a refused grant and cleans up a failed one.

Checked on a scripted backend (a ``LeaseLockBase`` subclass, the documented extension
point) and virtual time: refused tries back off exponentially (the pause after try *n*
is drawn from the upper half of ``initial * multiplier**n``), never longer than the
holder's remaining lease when the backend reports it; a grant that fails with anything
but our own policy's refusal is abandoned once, and a failing abandon is logged
(debug level after an error, warning level after a cancellation).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from infra.cache.lease_lock import LeaseLockBase, LockBackoff
from infra.exceptions import BulkheadFullError, CacheConnectionError
from infra.resilience import ManualClock


class Scripted(LeaseLockBase):
    """Answers grants from a script: ``(token, holder_ttl)`` tuples or errors to raise."""

    def __init__(
        self,
        grants: list[tuple[int | None, float] | BaseException],
        *,
        clock: ManualClock,
        backoff: LockBackoff | None = None,
        abandon_error: BaseException | None = None,
    ) -> None:
        super().__init__(
            component="scripted",
            default_lease=10.0,
            default_wait=60.0,
            clock=clock,
            watchdog=False,
            backoff=backoff,
        )
        self.grants = grants
        self.abandoned: list[str] = []
        self.abandon_error = abandon_error
        self.block = asyncio.Event()

    async def _grant(self, name: str, owner: str, lease_ms: int) -> tuple[int | None, float]:
        answer = self.grants.pop(0)
        if isinstance(answer, asyncio.CancelledError):
            await self.block.wait()  # a reply that never comes: cancel the caller here
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def _release(self, name: str, owner: str) -> bool:
        return True

    async def _extend(self, name: str, owner: str, lease_ms: int) -> bool:
        return True

    async def _abandon(self, name: str, owner: str, lease_ms: int) -> None:
        self.abandoned.append(name)
        if self.abandon_error is not None:
            raise self.abandon_error


async def test_refused_tries_back_off_exponentially_in_the_upper_half() -> None:
    clock = ManualClock()
    refused: tuple[int | None, float] = (None, 0.0)
    grants: list[tuple[int | None, float] | BaseException] = [*[refused] * 4, (9, 0.0)]
    lock = Scripted(
        grants,
        clock=clock,
        backoff=LockBackoff(initial=0.1, maximum=10.0, multiplier=2.0),
    )
    lease = await lock.acquire("job")
    assert lease.fencing_token == 9
    assert len(clock.sleeps) == 4
    for n, pause in enumerate(clock.sleeps):
        base = 0.1 * 2.0**n
        assert base / 2 <= pause <= base  # holder TTL unknown (0): the backoff decides


async def test_a_known_holder_ttl_caps_the_pause() -> None:
    clock = ManualClock()
    lock = Scripted(
        [(None, 0.25), (None, 0.0), (3, 0.0)],
        clock=clock,
        backoff=LockBackoff(initial=2.0, maximum=2.0),
    )
    await lock.acquire("job")
    assert clock.sleeps[0] == pytest.approx(0.251)  # the holder's 250 ms left + 1 ms
    assert 1.0 <= clock.sleeps[1] <= 2.0  # unknown again: back to the backoff


async def test_a_failed_grant_is_abandoned_once_and_its_failure_logged_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = CacheConnectionError("reply lost", component="scripted")
    lock = Scripted([error], clock=ManualClock(), abandon_error=CacheConnectionError("still down"))
    with (
        caplog.at_level(logging.DEBUG, logger="infra.cache.lock"),
        pytest.raises(CacheConnectionError) as raised,
    ):
        await lock.acquire("job")
    assert raised.value is error
    assert lock.abandoned == ["job"]
    [record] = [r for r in caplog.records if r.name == "infra.cache.lock"]
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == (
        "could not clean up an interrupted lock grant; it expires with its lease"
    )
    assert record.__dict__["component"] == "scripted"
    assert record.__dict__["error_type"] == "CacheConnectionError"


async def test_a_cancelled_grant_logs_a_failing_cleanup_as_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lock = Scripted(
        [asyncio.CancelledError()],
        clock=ManualClock(),
        abandon_error=CacheConnectionError("still down"),
    )
    task = asyncio.create_task(lock.acquire("job"))
    for _ in range(10):
        await asyncio.sleep(0)
    with caplog.at_level(logging.DEBUG, logger="infra.cache.lock"):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert lock.abandoned == ["job"]
    [record] = [r for r in caplog.records if r.name == "infra.cache.lock"]
    assert record.levelno == logging.WARNING


async def test_our_own_policy_refusing_a_grant_needs_no_cleanup() -> None:
    lock = Scripted([BulkheadFullError("full", component="scripted")], clock=ManualClock())
    with pytest.raises(BulkheadFullError):
        await lock.acquire("job")
    assert lock.abandoned == []

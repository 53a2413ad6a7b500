"""Lease-lock behaviour that needs virtual time or injected faults: waiting and backoff,
hold() exit rules, the watchdog, cancellation cleanup -- on FakeDistributedLock, which
shares this code with RedisDistributedLock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from infra.cache._lock_base import LockBackoff
from infra.cache.distributed_lock import RedisDistributedLock
from infra.exceptions import (
    CacheConnectionError,
    CircuitBreakerOpenError,
    LockAcquireTimeoutError,
    LockLostError,
    LockNotOwnedError,
)
from infra.resilience.clock import ManualClock
from infra.testing.fakes.lock import FakeDistributedLock, FakeLockServer

BACKOFF = LockBackoff(initial=0.01, maximum=0.04)


@pytest.fixture
def clock() -> ManualClock:
    """Virtual time shared by the server and its locks."""
    return ManualClock()


@pytest.fixture
def server(clock: ManualClock) -> FakeLockServer:
    """One fake Redis."""
    return FakeLockServer(clock)


@pytest.fixture
def make(server: FakeLockServer) -> Callable[..., FakeDistributedLock]:
    """A factory of locks on the shared server (one per simulated process)."""

    def build(**kwargs: object) -> FakeDistributedLock:
        kwargs.setdefault("backoff", BACKOFF)
        return FakeDistributedLock(server, **kwargs)  # type: ignore[arg-type]

    return build


async def spin(until: Callable[[], bool], limit: int = 200) -> None:
    """Yield to the loop until ``until()`` holds (fails after ``limit`` turns)."""
    for _ in range(limit):
        if until():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


# ------------------------------------------------------------------------ waiting
def test_backoff_grows_is_capped_and_jittered_in_the_upper_half() -> None:
    """delay(n) lies in [d/2, d] for d = min(max, initial * mult**n)."""
    backoff = LockBackoff(initial=0.01, maximum=0.04, multiplier=2)
    assert [backoff.delay(n, 0.0) for n in range(4)] == [0.005, 0.01, 0.02, 0.02]
    assert [backoff.delay(n, 0.999999) for n in range(4)] == pytest.approx([0.01, 0.02, 0.04, 0.04])


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"initial": 0.1, "maximum": 0.05}, {"multiplier": 0.5}],
)
def test_backoff_rejects_nonsense(kwargs: dict[str, float]) -> None:
    """Zero start, a cap below the start or a shrinking multiplier are ValueErrors."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LockBackoff(**kwargs)


async def test_waiting_never_sleeps_past_the_deadline_and_tries_at_it(
    make: Callable[..., FakeDistributedLock], clock: ManualClock
) -> None:
    """Refused tries sleep <= the backoff cap, in total exactly `wait`, then one last try."""
    await make().acquire("job", lease=60)
    waiter = make()
    with pytest.raises(LockAcquireTimeoutError):
        await waiter.acquire("job", wait=0.5)
    assert max(clock.sleeps) <= 0.04
    assert sum(clock.sleeps) == pytest.approx(0.5)
    assert waiter.calls.count("acquire") == len(clock.sleeps) + 1


async def test_wait_zero_makes_exactly_one_try(
    make: Callable[..., FakeDistributedLock], clock: ManualClock
) -> None:
    """wait=0: one grant request, no sleep."""
    await make().acquire("job")
    waiter = make()
    with pytest.raises(LockAcquireTimeoutError):
        await waiter.acquire("job", wait=0)
    assert waiter.calls == ["acquire"]
    assert clock.sleeps == []


async def test_a_waiter_wakes_when_the_holders_lease_ends(
    make: Callable[..., FakeDistributedLock], clock: ManualClock
) -> None:
    """The pause is cut to the holder's remaining lease, so expiry is picked up promptly."""
    await make().acquire("job", lease=0.003)
    granted = await make(backoff=LockBackoff(initial=1.0, maximum=1.0)).acquire("job", wait=5)
    assert granted.fencing_token == 2
    assert clock.now() < 0.01


async def test_connection_failure_is_raised_not_waited_out(
    make: Callable[..., FakeDistributedLock], clock: ManualClock
) -> None:
    """Fail closed: an unreachable server raises CacheConnectionError on the first try."""
    lock = make()
    lock.unavailable = True
    with pytest.raises(CacheConnectionError):
        await lock.acquire("job", wait=10)
    assert clock.sleeps == []


# ------------------------------------------------------------------- cancellation
async def test_cancel_while_the_grant_reply_is_in_flight_releases_the_lock(
    make: Callable[..., FakeDistributedLock], server: FakeLockServer
) -> None:
    """The grant was applied, its reply not yet delivered, the waiter is cancelled: the
    cleanup releases the lock before CancelledError propagates."""
    lock = make()
    reply = lock.stall_next("acquire")
    task = asyncio.create_task(lock.acquire("job"))
    await spin(lambda: server.holder("job") is not None)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.holder("job") is None
    assert lock.calls == ["acquire", "abandon"]
    assert not reply.is_set()


async def test_a_failed_grant_is_cleaned_up_even_if_it_was_applied(
    make: Callable[..., FakeDistributedLock], server: FakeLockServer
) -> None:
    """A grant that was applied but answered with an error leaves no lock behind."""
    lock = make()
    lock.fail_next("acquire", after_apply=True)
    with pytest.raises(CacheConnectionError):
        await lock.acquire("job")
    assert server.holder("job") is None
    assert server.fencing_counter("job") == 1
    assert lock.calls == ["acquire", "abandon"]


async def test_a_policy_rejection_needs_no_cleanup(
    make: Callable[..., FakeDistributedLock],
) -> None:
    """An open breaker refused the grant before sending it: no abandon round trip."""
    lock = make()
    lock.fail_next("acquire", error=CircuitBreakerOpenError(component="fake_lock"))
    with pytest.raises(CircuitBreakerOpenError):
        await lock.acquire("job")
    assert lock.calls == ["acquire"]


async def test_an_abandoned_owner_is_never_granted(
    server: FakeLockServer,
) -> None:
    """Once abandoned, a late grant request of the same owner is refused."""
    server.abandon("job", "owner-1", 1000)
    assert server.grant("job", "owner-1", 1000) == (None, 0.0)
    assert server.grant("job", "owner-2", 1000)[0] == 1


# ------------------------------------------------------------------ hold exit rules
async def test_hold_surfaces_a_release_failure_after_a_clean_body(
    make: Callable[..., FakeDistributedLock],
) -> None:
    """Body fine, release cannot reach the server: hold() raises that error."""
    lock = make()
    with pytest.raises(CacheConnectionError):
        async with lock.hold("job"):
            lock.fail_next("release")


async def test_hold_keeps_the_body_error_and_notes_the_release_failure(
    make: Callable[..., FakeDistributedLock],
) -> None:
    """Body raised and release failed: the body's error propagates, with a note."""
    lock = make()

    async def failing_body() -> None:
        async with lock.hold("job"):
            lock.fail_next("release")
            raise ValueError("body")

    with pytest.raises(ValueError, match="body") as caught:
        await failing_body()
    assert any("could not release" in note for note in caught.value.__notes__)


async def test_hold_releases_when_the_body_is_cancelled(
    make: Callable[..., FakeDistributedLock], server: FakeLockServer
) -> None:
    """Cancelling the task inside hold() releases the lock and propagates CancelledError."""
    lock = make()
    entered = asyncio.Event()

    async def body() -> None:
        async with lock.hold("job"):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.holder("job") is None


async def test_hold_is_single_use(make: Callable[..., FakeDistributedLock]) -> None:
    """Entering the same hold() object twice is a RuntimeError."""
    holding = make().hold("job")
    async with holding:
        pass
    with pytest.raises(RuntimeError, match="single-use"):
        await holding.__aenter__()


# ------------------------------------------------------------------------ watchdog
async def test_watchdog_keeps_the_lock_for_many_leases(
    make: Callable[..., FakeDistributedLock], clock: ManualClock
) -> None:
    """With the watchdog, a body running 10 leases keeps the lock; others are refused."""
    lock, other = make(watchdog=True), make()
    async with lock.hold("job", lease=3):
        while clock.now() < 30:
            await clock.sleep(0.1)
            with pytest.raises(LockAcquireTimeoutError):
                await other.acquire("job", wait=0)
    assert lock.calls.count("extend") >= 10


async def test_watchdog_cancels_the_body_when_the_lock_is_taken(
    make: Callable[..., FakeDistributedLock], server: FakeLockServer, clock: ManualClock
) -> None:
    """The key vanishes: the next renewal cancels the body; hold() raises LockLostError."""
    lock = make()
    finished = False
    leases = []

    async def critical_section() -> None:
        nonlocal finished
        async with lock.hold("job", lease=3, watchdog=True) as lease:
            leases.append(lease)
            server.delete("job")
            await asyncio.Event().wait()
            finished = True

    with pytest.raises(LockLostError) as caught:
        await critical_section()
    assert not finished
    assert isinstance(caught.value.__cause__, LockNotOwnedError)
    assert caught.value.details["fence"] == leases[0].fencing_token
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_watchdog_gives_up_before_the_lease_ends_when_unreachable(
    make: Callable[..., FakeDistributedLock], clock: ManualClock
) -> None:
    """Renewals failing with connection errors: loss is declared before the lease ends."""
    lock = make()
    lost_at: list[float] = []

    async def critical_section() -> None:
        async with lock.hold("job", lease=3, watchdog=True):
            lock.unavailable = True
            try:
                while True:
                    await clock.sleep(0.01)
            finally:
                lost_at.append(clock.now())

    with pytest.raises(LockLostError) as caught:
        await critical_section()
    assert isinstance(caught.value.__cause__, CacheConnectionError)
    assert lock.calls.count("extend") >= 2
    assert lost_at[0] < 3.0


async def test_lost_lease_is_reported_even_if_the_body_swallows_the_cancel(
    make: Callable[..., FakeDistributedLock], server: FakeLockServer, clock: ManualClock
) -> None:
    """A body that catches CancelledError still exits hold() with LockLostError."""
    lock = make()

    async def stubborn_body() -> None:
        async with lock.hold("job", lease=3, watchdog=True):
            server.delete("job")
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()

    with pytest.raises(LockLostError):
        await stubborn_body()


async def test_an_outside_cancel_during_a_lost_lease_still_propagates(
    make: Callable[..., FakeDistributedLock], server: FakeLockServer
) -> None:
    """Watchdog and someone else both cancel the task: CancelledError wins, not LockLostError."""
    lock = make()
    entered = asyncio.Event()

    async def body() -> None:
        async with lock.hold("job", lease=3, watchdog=True):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await entered.wait()
    server.delete("job")
    await spin(lambda: task.cancelling() == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ------------------------------------------------------------------ construction
def test_fake_rejects_a_clock_other_than_its_servers(server: FakeLockServer) -> None:
    """A lock and its server must measure leases on the same clock."""
    with pytest.raises(ValueError, match="clock"):
        FakeDistributedLock(server, clock=ManualClock())


def test_fake_fault_injection_rejects_unknown_operations() -> None:
    """fail_next/stall_next name the operations they accept."""
    lock = FakeDistributedLock()
    with pytest.raises(ValueError, match="operation"):
        lock.fail_next("get")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        lock.fail_next("acquire", times=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"namespace": ""}, "namespace"),
        ({"default_lease": 0}, "default_lease"),
        ({"default_wait": -1}, "default_wait"),
    ],
)
async def test_redis_lock_validates_its_settings(kwargs: dict[str, object], match: str) -> None:
    """Bad constructor arguments are ValueErrors naming the argument."""
    client = Redis(host="127.0.0.1", port=1)
    try:
        with pytest.raises(ValueError, match=match):
            RedisDistributedLock(client, **kwargs)  # type: ignore[arg-type]
    finally:
        await client.aclose()


async def test_redis_lock_construction_connects_to_nothing() -> None:
    """Building the lock against a dead port succeeds; keys carry the namespace + hash tag."""
    client = Redis(host="127.0.0.1", port=1)
    try:
        lock = RedisDistributedLock(client, namespace="app:lock:")
        assert lock.key("invoice:42") == "app:lock:{invoice:42}"
        assert "app:lock:" in repr(lock)
    finally:
        await client.aclose()

"""Lease-lock behaviour that needs virtual time or injected faults: waiting and backoff,
hold() exit rules, the watchdog, cancellation cleanup -- on FakeDistributedLock, which
shares this code with RedisDistributedLock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from infra.cache.distributed_lock import RedisDistributedLock
from infra.cache.lease_lock import LockBackoff
from infra.exceptions import (
    CacheConnectionError,
    CircuitBreakerOpenError,
    LockAcquireTimeoutError,
    LockLostError,
    LockNotOwnedError,
)
from infra.observability.metrics import (
    MetricsCollector,
    reset_metrics_collector,
    set_metrics_collector,
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


# ------------------------------------------------- releasing inside hold(), late renewals
@pytest.fixture
def collector() -> Iterator[MetricsCollector]:
    """A fresh metrics collector (lock_lost_total starts at 0)."""
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    yield fresh
    reset_metrics_collector()


def lost_total(collector: MetricsCollector) -> float:
    return collector.get_counter("lock_lost_total", component="fake_lock")


@given(
    watchdog=st.booleans(),
    before=st.integers(0, 40),
    after=st.integers(0, 40),
    lease=st.sampled_from([1.0, 3.0]),
)
async def test_releasing_inside_hold_ends_it_without_a_lost_lease(
    watchdog: bool, before: int, after: int, lease: float
) -> None:
    """The body releases its own lease after `before` steps of a tenth of a lease (with
    the watchdog, up to four leases of renewals; without, within the lease) and keeps
    working `after` steps: leaving the block raises nothing, lock_lost_total stays 0,
    exactly one release is sent, the watchdog renews nothing after the release, and
    another holder can take the lock while the body still runs."""
    if not watchdog:
        before = min(before, 8)
    clock = ManualClock()
    server = FakeLockServer(clock)
    lock = FakeDistributedLock(server, backoff=BACKOFF)
    other = FakeDistributedLock(server, backoff=BACKOFF)
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    try:
        async with lock.hold("job", lease=lease, watchdog=watchdog) as held:
            for _ in range(before):
                await clock.sleep(lease / 10)
            await lock.release(held)
            extends = lock.calls.count("extend")
            taken = await other.acquire("job", wait=0)
            for _ in range(after):
                await clock.sleep(lease / 10)
            assert server.holder("job") == taken.owner
        assert lost_total(fresh) == 0
        assert lock.calls.count("release") == 1
        assert lock.calls.count("extend") == extends
        assert server.holder("job") == taken.owner  # the exit released nothing of theirs
    finally:
        reset_metrics_collector()


async def test_a_failed_release_inside_hold_leaves_the_hold_as_it_was(
    make: Callable[..., FakeDistributedLock], server: FakeLockServer, collector: MetricsCollector
) -> None:
    """The body's release fails (Redis unreachable): the body sees that error; the hold
    still owns the lock and releases it on exit."""
    lock = make()
    async with lock.hold("job") as held:
        lock.fail_next("release")
        with pytest.raises(CacheConnectionError):
            await lock.release(held)
        assert server.holder("job") == held.owner
    assert server.holder("job") is None
    assert lock.calls.count("release") == 2
    assert lost_total(collector) == 0


async def test_releasing_an_already_lost_lease_inside_hold_still_reports_the_loss(
    make: Callable[..., FakeDistributedLock], clock: ManualClock, collector: MetricsCollector
) -> None:
    """The lease ran out before the body released it: the body's release says so
    (LockNotOwnedError) and leaving the block raises LockLostError, counted once."""
    lock = make()
    refused: list[BaseException] = []

    async def late_release() -> None:
        async with lock.hold("job", lease=1.0) as held:
            clock.advance(2.0)
            try:
                await lock.release(held)
            except LockNotOwnedError as exc:
                refused.append(exc)

    with pytest.raises(LockLostError) as caught:
        await late_release()
    assert len(refused) == 1
    assert isinstance(caught.value.__cause__, LockNotOwnedError)
    assert lost_total(collector) == 1


async def test_releasing_twice_inside_hold_is_not_owned_the_second_time(
    make: Callable[..., FakeDistributedLock], collector: MetricsCollector
) -> None:
    """The first release ends the hold; a second one is an ordinary not-owned release."""
    lock = make()
    async with lock.hold("job") as held:
        await lock.release(held)
        with pytest.raises(LockNotOwnedError):
            await lock.release(held)
    assert lost_total(collector) == 0


async def test_a_loss_seen_while_the_body_releases_is_dropped_when_the_release_works(
    make: Callable[..., FakeDistributedLock], clock: ManualClock, collector: MetricsCollector
) -> None:
    """The watchdog's renewal answers 'not yours' because the body's release just went
    through: that is the release, not a loss."""
    lock = make(watchdog=True)
    gate = lock.stall_next("release")
    finished = False
    async with lock.hold("job", lease=3.0) as held:
        releasing = asyncio.create_task(lock.release(held))
        await spin(lambda: lock.calls.count("release") == 1)
        clock.advance(1.0)  # the watchdog renews now, against a key already deleted
        await spin(lambda: lock.calls.count("extend") >= 1)
        for _ in range(5):
            await asyncio.sleep(0)
        gate.set()
        await releasing
        await clock.sleep(5.0)
        finished = True
    assert finished
    assert lost_total(collector) == 0


async def test_a_watchdog_waking_after_a_blocked_loop_reports_the_renewals_error(
    make: Callable[..., FakeDistributedLock], clock: ManualClock
) -> None:
    """The loop was blocked past the lease (the body never awaited): the watchdog still
    tries one renewal, so LockLostError.__cause__ is its error (the key expired), as
    documented -- not None."""
    lock = make()

    async def blocked_body() -> None:
        async with lock.hold("job", lease=3.0, watchdog=True):
            clock.advance(10.0)  # blocked: no await while the lease runs out
            await asyncio.Event().wait()

    with pytest.raises(LockLostError) as caught:
        await blocked_body()
    assert isinstance(caught.value.__cause__, LockNotOwnedError)
    assert lock.calls.count("extend") == 1


async def test_a_late_watchdog_that_finds_the_lease_still_held_renews_it(
    make: Callable[..., FakeDistributedLock], server: FakeLockServer, clock: ManualClock
) -> None:
    """Woken after its conservative estimate of the lease end but before the server's:
    the owner-checked renewal succeeds, which proves nobody else held the lock -- no
    loss, and the body finishes."""
    lock = make()
    finished = False
    async with lock.hold("job", lease=3.0, watchdog=True) as held:
        await asyncio.sleep(0)  # the watchdog starts its first sleep (to t = 1.0)
        assert clock.now() == 1.0
        clock.advance(1.99)  # t = 2.99: past lease - margin (2.968), before the server's 3.0
        await spin(lambda: lock.calls.count("extend") == 1)
        await clock.sleep(0.5)
        assert server.holder("job") == held.owner
        finished = True
    assert finished
    assert server.holder("job") is None


async def test_a_late_watchdog_facing_an_unreachable_server_reports_that_error(
    make: Callable[..., FakeDistributedLock], clock: ManualClock
) -> None:
    """Blocked past the lease, then the renewal cannot reach Redis: the cause is that
    connection error."""
    lock = make()

    async def blocked_body() -> None:
        async with lock.hold("job", lease=3.0, watchdog=True):
            lock.unavailable = True
            clock.advance(10.0)
            await asyncio.Event().wait()

    with pytest.raises(LockLostError) as caught:
        await blocked_body()
    assert isinstance(caught.value.__cause__, CacheConnectionError)

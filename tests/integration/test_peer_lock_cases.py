"""redis-py's own lock cases (``tests/test_asyncio/test_lock.py`` of redis/redis-py),
restated against :class:`~infra.cache.distributed_lock.RedisDistributedLock` on the
suite's real Redis.

Each test names the redis-py case it restates. Expiry is simulated by deleting or
overwriting the key (what Redis does when a lease runs out or another client takes it),
never by sleeping; waits run on a ``ManualClock``. Where our lock deliberately differs
from redis-py's ``Lock``, the test pins our behaviour and docs/distributed_lock.md lists
the difference.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from infra.cache.distributed_lock import RedisDistributedLock
from infra.cache.lease_lock import LockBackoff
from infra.exceptions import (
    InvalidArgumentError,
    InvalidKeyError,
    LockAcquireTimeoutError,
    LockLostError,
    LockNotOwnedError,
)
from infra.ports import LockLease
from infra.resilience import ManualClock
from infra.testing.fakes import FakeDistributedLock, FakeLockServer

pytestmark = pytest.mark.redis

FAST = LockBackoff(initial=0.0005, maximum=0.004)


@pytest.fixture
def lock(redis_client: Redis) -> RedisDistributedLock:
    return RedisDistributedLock(redis_client, namespace="peer:", backoff=FAST, clock=ManualClock())


async def pttl(client: Redis, lock: RedisDistributedLock, name: str) -> int:
    return int(await client.pttl(lock.key(name)))


async def test_lock(redis_client: Redis, lock: RedisDistributedLock) -> None:  # test_lock
    lease = await lock.acquire("foo", wait=0)
    # test_lock_token: the key holds this lease's owner token.
    assert await redis_client.get(lock.key("foo")) == lease.owner.encode()
    # redis-py's lock without timeout has no TTL; ours always has a lease.
    assert 0 < await pttl(redis_client, lock, "foo") <= 30_000
    await lock.release(lease)
    assert await redis_client.exists(lock.key("foo")) == 0


async def test_competing_locks(lock: RedisDistributedLock) -> None:  # test_competing_locks
    first = await lock.acquire("foo", wait=0)
    # blocking=False returns False in redis-py; wait=0 raises here.
    with pytest.raises(LockAcquireTimeoutError) as info:
        await lock.acquire("foo", wait=0)
    assert info.value.details["lock"] == "foo"
    await lock.release(first)
    second = await lock.acquire("foo", wait=0)
    assert second.fencing_token > first.fencing_token
    await lock.release(second)


async def test_not_reentrant(lock: RedisDistributedLock) -> None:
    # redis-py's Lock is not reentrant either: a second acquire by the same process waits.
    async with lock.hold("foo", wait=0):
        with pytest.raises(LockAcquireTimeoutError):
            await lock.acquire("foo", wait=0)


async def test_timeout(redis_client: Redis, lock: RedisDistributedLock) -> None:  # test_timeout
    lease = await lock.acquire("foo", lease=10, wait=0)
    assert 8000 < await pttl(redis_client, lock, "foo") <= 10_000
    await lock.release(lease)


async def test_float_timeout(redis_client: Redis, lock: RedisDistributedLock) -> None:
    # test_float_timeout
    lease = await lock.acquire("foo", lease=9.5, wait=0)
    assert 8000 < await pttl(redis_client, lock, "foo") <= 9500
    await lock.release(lease)


async def test_blocking_timeout(lock: RedisDistributedLock) -> None:  # test_blocking_timeout
    held = await lock.acquire("foo", wait=0)
    clock = lock.clock
    assert isinstance(clock, ManualClock)
    with pytest.raises(LockAcquireTimeoutError) as info:
        await lock.acquire("foo", wait=0.2)
    assert info.value.timeout == 0.2
    assert math.isclose(sum(clock.sleeps), 0.2)  # waited exactly the wait, on the clock
    await lock.release(held)


async def test_high_sleep_small_blocking_timeout(redis_client: Redis) -> None:
    # test_high_sleep_small_blocking_timeout: a long pause between tries never extends
    # the wait past its bound.
    clock = ManualClock()
    slow = LockBackoff(initial=60.0, maximum=60.0)
    lock = RedisDistributedLock(redis_client, namespace="peer:", backoff=slow, clock=clock)
    held = await lock.acquire("foo", wait=0)
    with pytest.raises(LockAcquireTimeoutError):
        await lock.acquire("foo", wait=1)
    assert sum(clock.sleeps) <= 1.0
    await lock.release(held)


async def test_context_manager(redis_client: Redis, lock: RedisDistributedLock) -> None:
    # test_context_manager
    async with lock.hold("foo", wait=0.2) as lease:
        assert await redis_client.get(lock.key("foo")) == lease.owner.encode()
    assert await redis_client.get(lock.key("foo")) is None


async def test_context_manager_raises_when_not_acquired(
    redis_client: Redis, lock: RedisDistributedLock
) -> None:  # test_context_manager_raises_when_locked_not_acquired
    await redis_client.set(lock.key("foo"), "bar")
    entered = False
    with pytest.raises(LockAcquireTimeoutError):
        async with lock.hold("foo", wait=0.1):
            entered = True
    assert not entered


async def test_context_manager_lease_lost_in_body(
    redis_client: Redis, lock: RedisDistributedLock
) -> None:  # test_context_manager_not_raise_on_release_lock_not_owned_error
    # redis-py raises LockNotOwnedError at exit (unless raise_on_release_error=False);
    # ours always reports it, as LockLostError caused by the LockNotOwnedError.
    with pytest.raises(LockLostError) as info:
        async with lock.hold("foo", wait=0):
            await redis_client.delete(lock.key("foo"))  # the lease ran out
    assert isinstance(info.value.__cause__, LockNotOwnedError)


async def test_context_manager_body_releases(lock: RedisDistributedLock) -> None:
    # test_context_manager_not_raise_on_release_lock_error: redis-py raises LockError at
    # exit when the body released; ours treats that release as the hold's own.
    async with lock.hold("foo", wait=0) as lease:
        await lock.release(lease)
    with pytest.raises(LockNotOwnedError):
        await lock.release(lease)  # released once; a second release is not ours


def stranger(name: str) -> LockLease:
    """A well-formed lease that was never granted (redis-py: a Lock never acquired)."""
    return LockLease(name, "0" * 32, 1, 10.0)


async def test_releasing_unlocked_lock_raises_error(lock: RedisDistributedLock) -> None:
    with pytest.raises(LockNotOwnedError):
        await lock.release(stranger("foo"))


async def test_releasing_lock_no_longer_owned_raises_error(
    redis_client: Redis, lock: RedisDistributedLock
) -> None:
    lease = await lock.acquire("foo", wait=0)
    await redis_client.set(lock.key("foo"), "a")
    with pytest.raises(LockNotOwnedError):
        await lock.release(lease)
    assert await redis_client.get(lock.key("foo")) == b"a"  # the other owner's key kept


async def test_extend_lock(redis_client: Redis, lock: RedisDistributedLock) -> None:
    # test_extend_lock: redis-py's extend(10) ADDS 10 s; ours sets the lease from now, so
    # "10 s more" is lease_seconds=<what is left> + 10.
    lease = await lock.acquire("foo", lease=10, wait=0)
    left = await pttl(redis_client, lock, "foo") / 1000
    longer = await lock.extend(lease, lease_seconds=left + 10)
    assert 16_000 < await pttl(redis_client, lock, "foo") <= 20_000
    assert longer.fencing_token == lease.fencing_token
    await lock.release(longer)


async def test_extend_lock_replace_ttl(redis_client: Redis, lock: RedisDistributedLock) -> None:
    # test_extend_lock_replace_ttl: our extend always replaces.
    lease = await lock.acquire("foo", lease=10, wait=0)
    await lock.extend(lease, lease_seconds=10)
    assert 8000 < await pttl(redis_client, lock, "foo") <= 10_000
    await lock.release(lease)


async def test_extend_lock_float(redis_client: Redis, lock: RedisDistributedLock) -> None:
    lease = await lock.acquire("foo", lease=10.5, wait=0)
    extended = await lock.extend(lease, lease_seconds=20.5)
    assert extended.lease_seconds == 20.5
    assert 19_000 < await pttl(redis_client, lock, "foo") <= 20_500
    await lock.release(extended)


async def test_extending_unlocked_lock_raises_error(lock: RedisDistributedLock) -> None:
    with pytest.raises(LockNotOwnedError):
        await lock.extend(stranger("foo"), lease_seconds=10)


async def test_extending_lock_no_longer_owned_raises_error(
    redis_client: Redis, lock: RedisDistributedLock
) -> None:
    lease = await lock.acquire("foo", lease=10, wait=0)
    await redis_client.set(lock.key("foo"), "a")
    with pytest.raises(LockNotOwnedError):
        await lock.extend(lease)
    assert await redis_client.pttl(lock.key("foo")) == -1  # the other key's TTL untouched


async def test_reacquire_lock(redis_client: Redis, lock: RedisDistributedLock) -> None:
    # test_reacquire_lock: extend() with no length resets the lease to its own length.
    lease = await lock.acquire("foo", lease=10, wait=0)
    assert await redis_client.pexpire(lock.key("foo"), 5000)
    assert await lock.extend(lease) == lease
    assert 8000 < await pttl(redis_client, lock, "foo") <= 10_000
    await lock.release(lease)


async def test_reacquiring_lock_no_longer_owned_raises_error(
    redis_client: Redis, lock: RedisDistributedLock
) -> None:
    lease = await lock.acquire("foo", lease=10, wait=0)
    await redis_client.delete(lock.key("foo"))
    with pytest.raises(LockNotOwnedError):
        await lock.extend(lease)


async def test_release_cancellation_preserves_lock_state(
    redis_client: Redis, lock: RedisDistributedLock
) -> None:  # test_release_cancellation_preserves_lock_state
    lease = await lock.acquire("foo", wait=0)
    task = asyncio.create_task(lock.release(lease))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    if await redis_client.get(lock.key("foo")) is not None:
        await lock.release(lease)  # the lease is a value: the release can be retried
    assert await redis_client.exists(lock.key("foo")) == 0
    again = await lock.acquire("foo", wait=0)
    await lock.release(again)


async def test_token_ownership_after_expiry(
    redis_client: Redis, lock: RedisDistributedLock
) -> None:
    old = await lock.acquire("foo", lease=10, wait=0)
    await redis_client.delete(lock.key("foo"))  # the lease ran out
    new = await lock.acquire("foo", wait=0)
    with pytest.raises(LockNotOwnedError):
        await lock.release(old)
    with pytest.raises(LockNotOwnedError):
        await lock.extend(old)
    assert await redis_client.get(lock.key("foo")) == new.owner.encode()
    assert new.fencing_token > old.fencing_token
    await lock.release(new)


@pytest.mark.parametrize("lease", [0, -1, 0.0004, math.nan, math.inf, True, "10"])
async def test_bad_lease_is_refused(lock: RedisDistributedLock, lease: Any) -> None:
    # redis-py: timeout=None means no expiry and 0/negative reach Redis; ours refuses.
    with pytest.raises(InvalidArgumentError) as info:
        await lock.acquire("foo", lease=lease, wait=0)
    assert info.value.argument == "lease"


@pytest.mark.parametrize("wait", [-1, -0.001, math.nan, math.inf, "1"])
async def test_bad_wait_is_refused(lock: RedisDistributedLock, wait: Any) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        await lock.acquire("foo", wait=wait)
    assert info.value.argument == "wait"


@pytest.mark.parametrize("name", ["", b"foo", 1, None, "x" * 257, "\ud800"])
async def test_bad_name_is_refused(lock: RedisDistributedLock, name: Any) -> None:
    # redis-py accepts bytes and any length; ours wants a str of at most 256 characters.
    with pytest.raises(InvalidKeyError) as info:
        await lock.acquire(name, wait=0)
    assert info.value.argument == "name"


async def test_cancelled_body_releases(redis_client: Redis, lock: RedisDistributedLock) -> None:
    # The context-manager half of test_release_cancellation_preserves_lock_state: a body
    # cancelled inside the hold leaves no key behind.
    entered = asyncio.Event()

    async def body() -> None:
        async with lock.hold("foo", wait=0):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await redis_client.exists(lock.key("foo")) == 0


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lease=st.floats(min_value=0.001, max_value=1e6, allow_nan=False))
async def test_any_valid_lease_is_the_ttl(redis_client: Redis, lease: float) -> None:
    # Property (test_timeout/test_float_timeout): a granted lease's TTL never exceeds the
    # lease asked for, rounded up to the millisecond.
    lock = RedisDistributedLock(redis_client, namespace="peer:prop:", backoff=FAST)
    granted = await lock.acquire("foo", lease=lease, wait=0)
    try:
        left = await redis_client.pttl(lock.key("foo"))
        assert left <= math.ceil(lease * 1000)
    finally:
        await redis_client.delete(lock.key("foo"))
    assert granted.lease_seconds == lease


# ------------------------------------ python-redis-lock's cases (tests/test_redis_lock.py)
async def test_waiter_gets_an_expiring_lock() -> None:  # test_timeout_expire
    # A holder whose lease runs out within the waiter's wait lets the waiter in (on the
    # fake's clock: the real Redis clock cannot be advanced).
    server = FakeLockServer(ManualClock())
    holder = FakeDistributedLock(server, backoff=FAST)
    waiter = FakeDistributedLock(server, backoff=FAST)
    first = await holder.acquire("foobar", lease=1, wait=0)
    second = await waiter.acquire("foobar", wait=2)
    assert second.fencing_token > first.fencing_token
    assert server.holder("foobar") == second.owner


async def test_extend_from_another_instance(
    redis_client: Redis, lock: RedisDistributedLock
) -> None:  # test_extend_another_instance
    # The lease is a plain value: rebuilt from its fields, in another lock object (another
    # process), it still extends and releases.
    lease = await lock.acquire("foobar", lease=100, wait=0)
    other = RedisDistributedLock(redis_client, namespace="peer:")
    rebuilt = LockLease(lease.name, lease.owner, lease.fencing_token, lease.lease_seconds)
    await other.extend(rebuilt, lease_seconds=1000)
    assert await pttl(redis_client, lock, "foobar") > 100_000
    await other.release(rebuilt)
    assert await redis_client.exists(lock.key("foobar")) == 0


async def test_extend_with_a_different_owner_fails(
    redis_client: Redis, lock: RedisDistributedLock
) -> None:  # test_extend_another_instance_different_id_fail
    lease = await lock.acquire("foobar", lease=100, wait=0)
    forged = LockLease(lease.name, "f" * 32, lease.fencing_token, 1000.0)
    with pytest.raises(LockNotOwnedError):
        await lock.extend(forged)
    assert await pttl(redis_client, lock, "foobar") <= 100_000
    await lock.release(lease)


async def test_double_acquire_is_not_reentrant(lock: RedisDistributedLock) -> None:
    # test_double_acquire: python-redis-lock raises AlreadyAcquired at once; ours waits
    # (as redis-py's Lock does) and then says why it may never have succeeded.
    async with lock.hold("foobar", wait=0):
        with pytest.raises(LockAcquireTimeoutError, match="not reentrant"):
            await lock.acquire("foobar", wait=0.01)


@pytest.mark.parametrize("seconds", [-1, -123, 0, "-1"])
async def test_broken_extend_lengths(lock: RedisDistributedLock, seconds: Any) -> None:
    # test_borken_expires: a negative (or zero, or text) length is refused before any I/O.
    lease = await lock.acquire("foobar", wait=0)
    with pytest.raises(InvalidArgumentError) as info:
        await lock.extend(lease, lease_seconds=seconds)
    assert info.value.argument == "lease_seconds"
    await lock.release(lease)

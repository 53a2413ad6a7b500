"""DistributedLock contract: the fake and the Redis adapter give the same answers.

Each test runs twice: on :class:`FakeDistributedLock` (virtual time: a ``ManualClock``
that the waits advance) and on :class:`RedisDistributedLock` against the embedded Redis
(real time, leases of tens of milliseconds). ``env.elapse`` lets time pass on either.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis

from infra.cache.distributed_lock import RedisDistributedLock
from infra.cache.lease_lock import LeaseLockBase, LockBackoff
from infra.exceptions import (
    CallerError,
    InvalidArgumentError,
    InvalidKeyError,
    LockAcquireTimeoutError,
    LockLostError,
    LockNotOwnedError,
)
from infra.ports import DistributedLock, LockLease
from infra.resilience import ResiliencePolicy
from infra.resilience.clock import ManualClock
from infra.testing.fakes.lock import FakeDistributedLock, FakeLockServer

FAST = LockBackoff(initial=0.001, maximum=0.005)


@dataclass
class LockEnv:
    """One backend under test: a lock factory, time controls and a TTL probe."""

    kind: str
    make: Callable[..., LeaseLockBase]
    #: Let this much lease time pass.
    elapse: Callable[[float], Awaitable[None]]
    #: Let concurrent tasks make a few round trips (virtual time must barely move).
    settle: Callable[[], Awaitable[None]]
    ttl: Callable[[str], Awaitable[float | None]]


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> str | None:
    """``None`` for the fake; the Redis URL for the real adapter."""
    if request.param == "fake":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def env(backend: str | None) -> AsyncIterator[LockEnv]:
    """The backend's lock factory and time controls; a real client is flushed and closed."""
    if backend is None:
        clock = ManualClock()
        server = FakeLockServer(clock)

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        async def fake_ttl(name: str) -> float | None:
            return server.ttl(name)

        async def yield_a_little() -> None:
            for _ in range(4):
                await asyncio.sleep(0)

        def make_fake(**kwargs: Any) -> LeaseLockBase:
            return FakeDistributedLock(server, backoff=FAST, **kwargs)

        yield LockEnv("fake", make_fake, advance, yield_a_little, fake_ttl)
        return
    client = Redis.from_url(backend)
    await client.flushdb()
    probe = RedisDistributedLock(client)

    async def real_ttl(name: str) -> float | None:
        pttl = int(await client.pttl(probe.key(name)))
        return None if pttl < 0 else pttl / 1000

    def make_real(**kwargs: Any) -> LeaseLockBase:
        return RedisDistributedLock(client, backoff=FAST, **kwargs)

    async def short_real_pause() -> None:
        await asyncio.sleep(0.01)

    try:
        yield LockEnv("real", make_real, asyncio.sleep, short_real_pause, real_ttl)
    finally:
        await client.aclose()


async def test_satisfies_the_port_and_grants_a_lease(env: LockEnv) -> None:
    """acquire returns a LockLease with the name, a 128-bit owner token and token >= 1."""
    lock = env.make()
    assert isinstance(lock, DistributedLock)
    lease = await lock.acquire("job", lease=5)
    assert isinstance(lease, LockLease)
    assert (lease.name, lease.lease_seconds) == ("job", 5.0)
    assert len(lease.owner) == 32
    int(lease.owner, 16)
    assert lease.fencing_token >= 1
    await lock.release(lease)


async def test_released_lock_is_granted_again_at_once(env: LockEnv) -> None:
    """After release, a try-once acquire by another process succeeds."""
    first, second = env.make(), env.make()
    lease = await first.acquire("job")
    await first.release(lease)
    again = await second.acquire("job", wait=0)
    assert again.owner != lease.owner
    await second.release(again)


async def test_second_acquirer_waits_then_times_out(env: LockEnv) -> None:
    """A held lock makes another acquirer wait `wait` seconds, then LockAcquireTimeoutError."""
    holder, waiter = env.make(), env.make()
    await holder.acquire("job", lease=10)
    with pytest.raises(LockAcquireTimeoutError) as caught:
        await waiter.acquire("job", wait=0.05)
    assert caught.value.timeout == 0.05
    assert caught.value.details["lock"] == "job"
    assert caught.value.retryable is False


async def test_wait_zero_tries_once_and_fails_fast(env: LockEnv) -> None:
    """wait=0 on a held lock raises LockAcquireTimeoutError(timeout=0) without waiting."""
    holder, waiter = env.make(), env.make()
    await holder.acquire("job")
    with pytest.raises(LockAcquireTimeoutError) as caught:
        await waiter.acquire("job", wait=0)
    assert caught.value.timeout == 0.0


async def test_waiter_gets_the_lock_when_the_holder_releases(env: LockEnv) -> None:
    """A waiting acquirer is granted soon after the holder releases, with a larger token."""
    holder, waiter = env.make(), env.make()
    held = await holder.acquire("job", lease=10)
    waiting = asyncio.create_task(waiter.acquire("job", wait=2))
    await env.settle()
    assert not waiting.done()
    await holder.release(held)
    granted = await asyncio.wait_for(waiting, 1)
    assert granted.fencing_token > held.fencing_token


async def test_waiter_gets_the_lock_when_the_holder_lease_expires(env: LockEnv) -> None:
    """A holder that never releases blocks others for one lease only."""
    holder, waiter = env.make(), env.make()
    held = await holder.acquire("job", lease=0.05)
    granted = await waiter.acquire("job", wait=2)
    assert granted.fencing_token > held.fencing_token


async def test_fencing_tokens_strictly_increase_across_grants_and_expiry(env: LockEnv) -> None:
    """Every grant -- after a release or after an expiry -- gets a larger fencing token."""
    lock = env.make()
    tokens = []
    for _ in range(3):
        lease = await lock.acquire("job")
        tokens.append(lease.fencing_token)
        await lock.release(lease)
    expired = await lock.acquire("job", lease=0.03)
    tokens.append(expired.fencing_token)
    await env.elapse(0.06)
    tokens.append((await lock.acquire("job", wait=0)).fencing_token)
    assert tokens == sorted(set(tokens))
    assert len(tokens) == 5


async def test_expired_holder_cannot_release_or_extend_the_new_holders_lock(
    env: LockEnv,
) -> None:
    """An expired lease gets LockNotOwnedError on release and extend; the new holder keeps it."""
    old, new = env.make(), env.make()
    stale = await old.acquire("job", lease=0.03)
    await env.elapse(0.06)
    current = await new.acquire("job", lease=10, wait=0)
    with pytest.raises(LockNotOwnedError) as caught:
        await old.release(stale)
    assert caught.value.details["lock"] == "job"
    with pytest.raises(LockNotOwnedError):
        await old.extend(stale, lease_seconds=10)
    with pytest.raises(LockAcquireTimeoutError):
        await old.acquire("job", wait=0)
    await new.release(current)


async def test_release_twice_raises_lock_not_owned(env: LockEnv) -> None:
    """A second release of the same lease is LockNotOwnedError, not a silent no-op."""
    lock = env.make()
    lease = await lock.acquire("job")
    await lock.release(lease)
    with pytest.raises(LockNotOwnedError):
        await lock.release(lease)


async def test_extend_prolongs_the_lease(env: LockEnv) -> None:
    """extend resets the lease; the lock outlives its original lease and keeps its token."""
    holder, other = env.make(), env.make()
    lease = await holder.acquire("job", lease=0.1)
    longer = await holder.extend(lease, lease_seconds=5)
    assert longer.lease_seconds == 5.0
    assert longer.fencing_token == lease.fencing_token
    await env.elapse(0.15)
    with pytest.raises(LockAcquireTimeoutError):
        await other.acquire("job", wait=0)
    await holder.release(longer)


async def test_lease_is_always_set(env: LockEnv) -> None:
    """Every granted lock has a TTL between 0 and its lease, also with the default lease."""
    lock = env.make(default_lease=7)
    await lock.acquire("a")
    await lock.acquire("b", lease=0.5)
    ttl_a, ttl_b = await env.ttl("a"), await env.ttl("b")
    assert ttl_a is not None
    assert 0 < ttl_a <= 7
    assert ttl_b is not None
    assert 0 < ttl_b <= 0.5


async def test_hold_excludes_others_and_releases_on_exit(env: LockEnv) -> None:
    """Inside hold() nobody else gets the lock; after it, the lock is free."""
    lock, other = env.make(), env.make()
    async with lock.hold("job") as lease:
        assert lease.name == "job"
        with pytest.raises(LockAcquireTimeoutError):
            await other.acquire("job", wait=0)
    assert await env.ttl("job") is None
    await other.acquire("job", wait=0)


async def test_hold_releases_when_the_body_raises(env: LockEnv) -> None:
    """An exception in the body propagates and the lock is released anyway."""
    lock = env.make()
    with pytest.raises(RuntimeError, match="boom"):
        async with lock.hold("job"):
            raise RuntimeError("boom")
    await lock.acquire("job", wait=0)


async def test_hold_raises_lock_lost_when_the_lease_ran_out_in_the_body(env: LockEnv) -> None:
    """A body that outlived its lease (no watchdog) makes hold() exit with LockLostError."""
    lock, other = env.make(), env.make()

    async def overrun() -> None:
        async with lock.hold("job", lease=0.03):
            await env.elapse(0.06)
            await other.acquire("job", wait=0)

    with pytest.raises(LockLostError) as caught:
        await overrun()
    assert isinstance(caught.value.__cause__, LockNotOwnedError)
    assert caught.value.details["lock"] == "job"


async def test_names_are_independent(env: LockEnv) -> None:
    """Holding one name does not block another."""
    lock = env.make()
    await lock.acquire("a")
    await lock.acquire("b", wait=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": ""}, ValueError, "lock name"),
        ({"name": "x" * 257}, ValueError, "lock name"),
        ({"name": 42}, TypeError, "lock name"),
        ({"name": "ok", "lease": 0}, ValueError, "lease"),
        ({"name": "ok", "lease": float("inf")}, ValueError, "lease"),
        ({"name": "ok", "wait": -1}, ValueError, "wait"),
        ({"name": "ok", "wait": "1"}, TypeError, "wait"),
    ],
)
async def test_bad_arguments_are_rejected_before_any_call(
    env: LockEnv, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Invalid names, leases and waits raise TypeError/ValueError naming the argument."""
    lock = env.make()
    with pytest.raises(error, match=match):
        await lock.acquire(**kwargs)
    with pytest.raises(error, match=match):
        lock.hold(**kwargs)


# ------------------------------------------------------------------ hostile input
async def _hold(lock: LeaseLockBase, name: Any) -> None:
    async with lock.hold(name):
        pass


async def _extend_by(lock: LeaseLockBase, seconds: Any) -> None:
    lease = await lock.acquire("hostile-extend", lease=5)
    try:
        await lock.extend(lease, lease_seconds=seconds)
    finally:
        await lock.release(lease)


#: (id, call, expected type, argument named). Each is refused before any I/O.
HOSTILE: list[tuple[str, Any, type[CallerError], str]] = [
    ("surrogate-name", lambda lock: lock.acquire("job:\ud800"), InvalidKeyError, "name"),
    ("empty-name", lambda lock: lock.acquire(""), InvalidKeyError, "name"),
    ("long-name", lambda lock: lock.acquire("x" * 257), InvalidKeyError, "name"),
    ("bytes-name", lambda lock: lock.acquire(b"job"), InvalidKeyError, "name"),
    ("none-name", lambda lock: lock.acquire(None), InvalidKeyError, "name"),
    ("hold-surrogate", lambda lock: _hold(lock, "\udfff"), InvalidKeyError, "name"),
    ("huge-lease", lambda lock: lock.acquire("ok", lease=1e10), InvalidArgumentError, "lease"),
    (
        "nan-lease",
        lambda lock: lock.acquire("ok", lease=float("nan")),
        InvalidArgumentError,
        "lease",
    ),
    ("bool-wait", lambda lock: lock.acquire("ok", wait=True), InvalidArgumentError, "wait"),
    ("release-a-name", lambda lock: lock.release("job"), InvalidArgumentError, "lease"),
    (
        "release-forged-lease",
        lambda lock: lock.release(LockLease("\ud800", "0" * 32, 1, 1.0)),
        InvalidKeyError,
        "name",
    ),
    ("extend-a-name", lambda lock: lock.extend("job"), InvalidArgumentError, "lease"),
    ("extend-negative", lambda lock: _extend_by(lock, -1), InvalidArgumentError, "lease_seconds"),
]


@pytest.mark.parametrize(
    ("call", "expected", "argument"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
async def test_hostile_names_and_arguments_are_refused_before_any_io(
    env: LockEnv, call: Any, expected: type[CallerError], argument: str
) -> None:
    """The same caller error on both backends, naming the argument; no breaker count, and
    the fake's server never sees the bad call."""
    policy = ResiliencePolicy.instant("redis_lock")
    lock = env.make(policy=policy) if env.kind == "real" else env.make()
    with pytest.raises(expected) as caught:
        await call(lock)
    assert caught.value.retryable is False
    assert caught.value.details["argument"] == argument
    breaker = policy.breaker
    assert breaker is not None
    assert (breaker.state.value, breaker.failure_count) == ("closed", 0)
    if isinstance(lock, FakeDistributedLock):
        # Nothing but _extend_by's own (valid) lease reached the fake server.
        assert lock.calls in ([], ["acquire", "release"])
    held = await lock.acquire("after-hostile", wait=0)
    await lock.release(held)

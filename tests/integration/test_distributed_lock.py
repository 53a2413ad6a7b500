"""RedisDistributedLock on a real Redis: mutual exclusion, fencing, cancellation, watchdog.

Several tests put a :class:`~infra.testing.chaos.ChaosProxy` between the lock's client and
Redis. It forwards bytes both ways but can *hold* replies (the server has executed a
request, the client has not heard back), *hold* requests on the connections open at that
moment (a request still in flight), or reset connections while a reply is held (a lost
reply). That turns the races around cancellation and retries into deterministic tests.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest
from redis.asyncio import Redis

from infra.cache.distributed_lock import LOCK_ACQUIRE_WAIT_MS, RedisDistributedLock, fence_key
from infra.cache.lease_hold import Hold
from infra.cache.lease_lock import LockBackoff
from infra.exceptions import (
    CacheConnectionError,
    CircuitBreakerOpenError,
    LockAcquireTimeoutError,
    LockLostError,
    LockNotOwnedError,
)
from infra.observability.metrics import get_metrics_collector
from infra.resilience import (
    CircuitBreakerConfig,
    ResiliencePolicy,
    RetryConfig,
    redis_no_retry_kwargs,
)
from infra.testing.chaos import ChaosProxy

pytestmark = pytest.mark.redis

FAST = LockBackoff(initial=0.0005, maximum=0.004)
#: How long a test waits for something it expects: a hang guard, never a bound under test.
PATIENCE = 30.0
#: A lease a watchdog can keep on a loaded machine: renewed every third of it, so a
#: renewal may be late by more than half a second before the lease could lapse. (With
#: 0.15 s, one scheduling stall of ~0.1 s lost a lock the test expected to keep.)
KEPT_LEASE = 1.0
DOC = Path(__file__).resolve().parents[2] / "docs" / "distributed_lock.md"


@pytest.fixture
async def relay(redis_url: str) -> AsyncIterator[ChaosProxy]:
    """A fault-injecting proxy in front of the test Redis."""
    async with ChaosProxy.for_url(redis_url) as proxy:
        yield proxy


@pytest.fixture
async def relayed(relay: ChaosProxy) -> AsyncIterator[Redis]:
    """A client whose every connection passes through the relay."""
    client = Redis.from_url(relay.url, **redis_no_retry_kwargs())
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def second_client(redis_url: str) -> AsyncIterator[Redis]:
    """Another client with its own pool, as a second process would have."""
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = PATIENCE) -> None:
    """Poll ``check`` every 2 ms until it is true, or fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 -- polling the server; no event to await
            await asyncio.sleep(0.002)


async def warm(lock: RedisDistributedLock) -> None:
    """Load the scripts and leave one idle pooled connection behind."""
    await lock.release(await lock.acquire("warm-up"))


# ------------------------------------------------------------------- mutual exclusion
async def test_fifty_workers_on_two_clients_never_overlap(
    redis_client: Redis, second_client: Redis
) -> None:
    """50 tasks on 2 clients increment a Redis counter under the lock: no lost update, no
    overlap, and fencing tokens strictly increase in the order the lock was granted."""
    locks = [RedisDistributedLock(c, backoff=FAST) for c in (redis_client, second_client)]
    inside = 0
    most_inside = 0
    grant_order: list[int] = []

    async def worker(index: int) -> None:
        nonlocal inside, most_inside
        client = (redis_client, second_client)[index % 2]
        async with locks[index % 2].hold("counter", lease=5, wait=10) as lease:
            inside += 1
            most_inside = max(most_inside, inside)
            grant_order.append(lease.fencing_token)
            value = int(await client.get("shared-counter") or 0)
            await asyncio.sleep(0)
            await client.set("shared-counter", value + 1)
            inside -= 1

    await asyncio.gather(*(worker(i) for i in range(50)))
    assert int(await redis_client.get("shared-counter") or 0) == 50
    assert most_inside == 1
    assert grant_order == sorted(set(grant_order))
    assert len(grant_order) == 50


async def test_cancelling_waiters_at_random_points_leaves_the_lock_free(
    redis_client: Redis,
) -> None:
    """30 contending tasks, half cancelled at random moments: afterwards nothing is held."""
    lock = RedisDistributedLock(redis_client, backoff=FAST)
    rng = random.Random(5)

    async def worker() -> None:
        async with lock.hold("job", lease=5, wait=5):
            await asyncio.sleep(0.001)

    tasks = [asyncio.create_task(worker()) for _ in range(30)]
    for task in tasks[::2]:
        await asyncio.sleep(rng.random() * 0.004)
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)
    assert await redis_client.exists(lock.key("job")) == 0


# ----------------------------------------------------------------------- cancellation
async def test_cancel_after_the_server_granted_releases_the_lock(
    relay: ChaosProxy, relayed: Redis, redis_client: Redis
) -> None:
    """The grant executed on the server but its reply was in flight when the waiter was
    cancelled: the cleanup deletes the lock before CancelledError propagates."""
    lock = RedisDistributedLock(relayed, backoff=FAST)
    await warm(lock)
    relay.blackhole("to_client")
    acquiring = asyncio.create_task(lock.acquire("job", lease=30, wait=0))

    async def granted_on_server() -> bool:
        return bool(await redis_client.exists(lock.key("job")))

    await eventually(granted_on_server)
    acquiring.cancel()
    relay.heal()
    with pytest.raises(asyncio.CancelledError):
        await acquiring
    assert await redis_client.exists(lock.key("job")) == 0
    other = RedisDistributedLock(redis_client)
    await other.acquire("job", wait=0)


async def test_grant_request_arriving_after_the_cleanup_is_refused(
    relay: ChaosProxy, relayed: Redis, redis_client: Redis
) -> None:
    """The grant request of a cancelled waiter reaches Redis only after the cleanup ran
    (another connection overtook it): it must not grant a lock nobody would release."""
    lock = RedisDistributedLock(relayed, backoff=FAST)
    await warm(lock)
    relay.blackhole("to_upstream", connections="open")  # the cleanup's new one flows
    acquiring = asyncio.create_task(lock.acquire("job", lease=30, wait=0))

    async def request_held() -> bool:
        return relay.stats.stalled == 1

    await eventually(request_held)
    acquiring.cancel()
    with pytest.raises(asyncio.CancelledError):
        await acquiring
    connections = relay.stats.active
    relay.heal()  # the grant request reaches Redis now, after the cleanup

    async def late_request_answered() -> bool:
        # The held connection ends once Redis has answered the late request.
        return relay.stats.active == connections - 1

    await eventually(late_request_answered)
    assert await redis_client.exists(lock.key("job")) == 0


async def test_policy_retry_after_a_lost_reply_returns_the_same_grant(
    relay: ChaosProxy, relayed: Redis, redis_client: Redis
) -> None:
    """The grant's reply is lost and the policy retries: the replay is recognised as the
    same owner -- same fencing token, counter incremented once, lock held once."""
    policy = ResiliencePolicy.instant("redis_lock", retry=RetryConfig(max_attempts=3))
    lock = RedisDistributedLock(relayed, policy=policy, backoff=FAST)
    await warm(lock)
    relay.blackhole("to_client")
    acquiring = asyncio.create_task(lock.acquire("job", lease=30, wait=0))

    async def granted_on_server() -> bool:
        return bool(await redis_client.exists(lock.key("job")))

    await eventually(granted_on_server)
    assert relay.reset_all() == 1  # the reply is lost with its connection
    relay.heal()
    lease = await acquiring
    assert lease.fencing_token == 1
    assert int(await redis_client.get(fence_key(lock.key("job"))) or 0) == 1
    assert await redis_client.get(lock.key("job")) == lease.owner.encode()
    await lock.release(lease)


# --------------------------------------------------------------------------- watchdog
async def test_watchdog_keeps_the_lock_past_three_leases(
    redis_client: Redis, second_client: Redis
) -> None:
    """A body running 3x its lease keeps the lock (renewed every third of the lease)."""
    lock = RedisDistributedLock(redis_client, backoff=FAST)
    other = RedisDistributedLock(second_client)
    holding = cast("Hold", lock.hold("job", lease=KEPT_LEASE, watchdog=True))
    async with holding as lease:
        await asyncio.sleep(3 * KEPT_LEASE + 0.05)
        with pytest.raises(LockAcquireTimeoutError):
            await other.acquire("job", wait=0)
    assert holding.watchdog is not None
    assert holding.watchdog.renewals >= 3
    assert holding.watchdog.lease.fencing_token == lease.fencing_token
    assert await redis_client.exists(lock.key("job")) == 0


async def test_watchdog_cancels_the_body_when_the_key_is_deleted(redis_client: Redis) -> None:
    """An external DEL is noticed at the next renewal: the body is cancelled and hold()
    raises LockLostError caused by LockNotOwnedError."""
    lock = RedisDistributedLock(redis_client, backoff=FAST)
    finished = False

    async def critical_section() -> None:
        nonlocal finished
        async with lock.hold("job", lease=0.15, watchdog=True):
            await redis_client.delete(lock.key("job"))
            await asyncio.sleep(PATIENCE)  # cut short at a renewal (every 0.05 s)
            finished = True

    with pytest.raises(LockLostError) as caught:
        await critical_section()
    assert not finished
    assert isinstance(caught.value.__cause__, LockNotOwnedError)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_watchdog_cancels_the_body_when_redis_stops_answering(
    relay: ChaosProxy, relayed: Redis
) -> None:
    """Renewals that get no answer: the body is cancelled when the lease runs out (as
    measured locally), long before its own sleep ends; the cause is the timeout."""
    lock = RedisDistributedLock(relayed, backoff=FAST)
    finished = False

    async def critical_section() -> None:
        nonlocal finished
        async with lock.hold("job", lease=0.15, watchdog=True):
            relay.blackhole("to_client")
            await asyncio.sleep(PATIENCE)
            finished = True

    try:
        async with asyncio.timeout(2 * PATIENCE):  # a bug must fail the test, not hang it
            with pytest.raises(LockLostError) as caught:
                await critical_section()
    finally:
        relay.heal()
    assert not finished
    assert isinstance(caught.value.__cause__, TimeoutError)


async def test_releasing_inside_hold_is_not_a_lost_lease(
    redis_client: Redis, second_client: Redis
) -> None:
    """The body gives the lock back early and keeps working for several renewal periods:
    no LockLostError, lock_lost_total unchanged, the watchdog stops, the next holder gets
    in at once and keeps the lock after the block ends."""
    lock = RedisDistributedLock(redis_client, backoff=FAST)
    other = RedisDistributedLock(second_client, backoff=FAST)
    metrics = get_metrics_collector()
    lost_before = metrics.get_counter("lock_lost_total", component="redis_lock")
    holding = cast("Hold", lock.hold("job", lease=KEPT_LEASE, watchdog=True))
    async with holding as lease:
        watchdog = holding.watchdog
        assert watchdog is not None

        async def renewed() -> bool:
            return watchdog.renewals >= 1

        await eventually(renewed)
        await lock.release(lease)
        renewals = watchdog.renewals
        taken = await other.acquire("job", wait=0)
        await asyncio.sleep(KEPT_LEASE)  # three renewal periods: a live watchdog would renew
        assert holding.watchdog is not None
        assert holding.watchdog.renewals == renewals
    assert metrics.get_counter("lock_lost_total", component="redis_lock") == lost_before
    assert await redis_client.get(lock.key("job")) == taken.owner.encode()
    await other.release(taken)


async def test_a_blocked_loop_past_the_lease_reports_the_renewals_error(
    redis_client: Redis,
) -> None:
    """The event loop is blocked longer than the lease (a synchronous sleep in the body):
    the key expires on the server, and the LockLostError the watchdog raises is caused
    by its renewal's LockNotOwnedError, as documented (it used to be None)."""
    lock = RedisDistributedLock(redis_client, backoff=FAST)

    async def blocking_body() -> None:
        async with lock.hold("job", lease=0.1, watchdog=True):
            time.sleep(0.25)  # noqa: ASYNC251 -- the point: the loop is blocked
            await asyncio.sleep(1.0)

    with pytest.raises(LockLostError) as caught:
        await blocking_body()
    assert isinstance(caught.value.__cause__, LockNotOwnedError)


# ------------------------------------------------------------------------ fail closed
async def test_fails_closed_when_redis_is_unreachable(refusing_port: int) -> None:
    """Against a dead port acquire raises CacheConnectionError at once (it does not wait
    out ``wait=``), and hold() never runs its body."""
    client = Redis(host="127.0.0.1", port=refusing_port, **redis_no_retry_kwargs())
    lock = RedisDistributedLock(client)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        with pytest.raises(CacheConnectionError):
            await lock.acquire("job", wait=4 * PATIENCE)
        assert loop.time() - started < PATIENCE  # far below the wait it was given
        ran = False
        with pytest.raises(CacheConnectionError):
            async with lock.hold("job"):
                ran = True
        assert not ran
    finally:
        await client.aclose()


async def test_an_open_breaker_fails_acquire_fast(refusing_port: int) -> None:
    """After repeated connection failures the breaker opens and acquire is refused at once
    with CircuitBreakerOpenError -- still never a granted lock."""
    client = Redis(host="127.0.0.1", port=refusing_port, **redis_no_retry_kwargs())
    policy = ResiliencePolicy.instant(
        "redis_lock",
        breaker=CircuitBreakerConfig(failure_threshold=2, timeout=60),
        retry=RetryConfig(max_attempts=1),
    )
    lock = RedisDistributedLock(client, policy=policy)
    try:
        with pytest.raises(CacheConnectionError):
            await lock.acquire("job", wait=0)
        with pytest.raises(CircuitBreakerOpenError):
            await lock.acquire("job", wait=0)
    finally:
        await client.aclose()


# ------------------------------------------------------------------------ operations
async def test_acquire_reloads_scripts_after_script_flush(redis_client: Redis) -> None:
    """EVALSHA falls back to loading the script when the server's cache was flushed."""
    lock = RedisDistributedLock(redis_client)
    await warm(lock)
    await redis_client.script_flush()
    lease = await lock.acquire("job", wait=0)
    await lock.release(lease)


async def test_lock_names_never_become_metric_labels(redis_client: Redis) -> None:
    """Calls are recorded (wait histogram, per-operation counters) without the lock name."""
    lock = RedisDistributedLock(redis_client)
    secret_name = "tenant-8842:invoice-771"
    async with lock.hold(secret_name):
        pass
    metrics = get_metrics_collector()
    assert metrics.get_histogram_stats(LOCK_ACQUIRE_WAIT_MS, component="redis_lock").count >= 1
    assert metrics.get_counter("backend_calls_total", component="redis_lock") >= 2
    text, _ = metrics.render()
    assert b"tenant-8842" not in text


async def test_documented_examples_run(redis_url: str, redis_client: Redis) -> None:
    """Every ```python block of docs/distributed_lock.md runs against the real Redis."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 3
    for block in blocks:
        namespace: dict[str, object] = {}
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 -- our own docs
        main = namespace["main"]
        assert callable(main)
        await main(redis_url)

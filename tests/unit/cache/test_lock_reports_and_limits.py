"""The lock's metrics, keys, argument limits and backoff, asserted exactly.

Grants record their wait (waits included, in ms) under the lock's component, timeouts
are counted, and a new metrics collector receives the events from then on. Keys follow
the documented layout (cluster hash tag around the name). Every argument is checked with
an error naming it, at the documented edges.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from infra.cache import RedisDistributedLock
from infra.cache.distributed_lock import abandoned_key, fence_key, lock_key
from infra.cache.lease_lock import (
    LOCK_ACQUIRE_TIMEOUTS_TOTAL,
    LOCK_ACQUIRE_WAIT_MS,
    LOCK_LOST_TOTAL,
    MAX_LOCK_NAME_LENGTH,
    LockBackoff,
    check_lease_seconds,
    check_lock_name,
    check_wait_seconds,
)
from infra.exceptions import LockAcquireTimeoutError, LockLostError, LockNotOwnedError
from infra.observability import MetricsCollector, reset_metrics_collector, set_metrics_collector
from infra.resilience import ManualClock
from infra.testing.fakes.lock import FakeDistributedLock, FakeLockServer


@pytest.fixture
def collector() -> Iterator[MetricsCollector]:
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    yield fresh
    reset_metrics_collector()


def wait_stats(collector: MetricsCollector, component: str) -> tuple[int, float]:
    stats = collector.get_histogram_stats(LOCK_ACQUIRE_WAIT_MS, component=component)
    return stats.count, stats.sum


async def test_grants_record_the_wait_in_milliseconds(collector: MetricsCollector) -> None:
    clock = ManualClock()
    server = FakeLockServer(clock)
    holder = FakeDistributedLock(server, component="orders")
    waiter = FakeDistributedLock(server, component="orders")
    first = await holder.acquire("job", lease=2.5)
    assert wait_stats(collector, "orders") == (1, 0.0)  # granted at once
    second = await waiter.acquire("job", lease=5, wait=10)  # waits out the 2.5 s lease
    count, total = wait_stats(collector, "orders")
    assert count == 2
    assert 2500.0 <= total <= 2600.0
    assert second.fencing_token > first.fencing_token
    await waiter.release(second)


async def test_timeouts_are_counted_per_component(collector: MetricsCollector) -> None:
    clock = ManualClock()
    server = FakeLockServer(clock)
    await FakeDistributedLock(server, component="a").acquire("job", lease=60)
    for _ in range(2):
        with pytest.raises(LockAcquireTimeoutError) as raised:
            await FakeDistributedLock(server, component="b").acquire("job", wait=0.5)
    assert raised.value.details == {"lock": "job", "timeout": 0.5}
    assert raised.value.component == "b"
    assert "after waiting 0.5 s" in str(raised.value)
    assert collector.get_counter(LOCK_ACQUIRE_TIMEOUTS_TOTAL, component="b") == 2
    assert collector.get_counter(LOCK_ACQUIRE_TIMEOUTS_TOTAL, component="a") == 0
    assert collector.get_counter(LOCK_LOST_TOTAL, component="b") == 0


async def test_a_new_collector_receives_the_events_from_then_on() -> None:
    lock = FakeDistributedLock(clock=ManualClock(), component="swap")
    first, second = MetricsCollector(), MetricsCollector()
    try:
        set_metrics_collector(first)
        await lock.release(await lock.acquire("x"))
        set_metrics_collector(second)
        await lock.release(await lock.acquire("x"))
        await lock.release(await lock.acquire("x"))
    finally:
        reset_metrics_collector()
    assert wait_stats(first, "swap")[0] == 1
    assert wait_stats(second, "swap")[0] == 2


async def test_release_and_extend_of_a_lost_lease_name_the_lock_and_fence() -> None:
    clock = ManualClock()
    lock = FakeDistributedLock(clock=clock, component="jobs")
    lease = await lock.acquire("job", lease=1)
    clock.advance(2)
    for operation, call in (("extend", lock.extend(lease)), ("release", lock.release(lease))):
        with pytest.raises(LockNotOwnedError) as raised:
            await call
        assert str(raised.value).startswith(f"[jobs] cannot {operation} lock 'job'")
        assert raised.value.details == {"lock": "job", "fence": lease.fencing_token}


async def test_extend_keeps_the_lease_object_unless_the_length_changes() -> None:
    clock = ManualClock()
    lock = FakeDistributedLock(clock=clock)
    lease = await lock.acquire("job", lease=4)
    assert await lock.extend(lease) is lease
    assert await lock.extend(lease, lease_seconds=4.0) is lease
    longer = await lock.extend(lease, lease_seconds=9)
    assert longer.lease_seconds == 9.0
    assert longer.fencing_token == lease.fencing_token
    clock.advance(8)
    await lock.release(longer)  # still held: the 9 s lease runs from the extend


# ------------------------------------------------------------------ keys and names
def test_keys_follow_the_documented_layout() -> None:
    assert lock_key("app:lock:", "invoice:42") == "app:lock:{invoice:42}"
    assert fence_key("app:lock:{x}") == "app:lock:{x}:fence"
    assert abandoned_key("app:lock:{x}", "ab12") == "app:lock:{x}:abandoned:ab12"


async def test_the_redis_lock_writes_its_keys_under_its_namespace(redis_client: Redis) -> None:
    lock = RedisDistributedLock(redis_client, namespace="t:lock:", clock=ManualClock())
    assert lock.namespace == "t:lock:"
    assert lock.key("job") == "t:lock:{job}"
    lease = await lock.acquire("job", lease=5)
    assert await redis_client.get("t:lock:{job}") == lease.owner.encode()
    fence = await redis_client.get("t:lock:{job}:fence")
    assert fence is not None
    assert int(fence) == lease.fencing_token
    assert 0 < await redis_client.pttl("t:lock:{job}") <= 5000
    await lock.release(lease)
    assert await redis_client.exists("t:lock:{job}") == 0
    assert repr(lock) == (
        "RedisDistributedLock(namespace='t:lock:', default_lease=30, default_wait=10, "
        "watchdog=False, policy='redis_lock: passthrough')"
    )


@pytest.mark.parametrize("namespace", ["", None, 3])
def test_the_redis_lock_needs_a_namespace(redis_client: Redis, namespace: object) -> None:
    with pytest.raises(ValueError, match="namespace must be a non-empty string"):
        RedisDistributedLock(redis_client, namespace=namespace)  # type: ignore[arg-type]


# --------------------------------------------------------------- argument limits
def test_lock_names_of_one_to_256_characters_are_accepted() -> None:
    assert check_lock_name("a") == "a"
    assert check_lock_name("n" * MAX_LOCK_NAME_LENGTH) == "n" * 256
    with pytest.raises(ValueError, match=r"lock names must have at most 256 characters, got 257"):
        check_lock_name("n" * 257)
    with pytest.raises(ValueError, match="lock names must not be empty; use a stable identifier"):
        check_lock_name("")
    with pytest.raises(TypeError, match="lock names must be str, got bytes"):
        check_lock_name(b"job")


def test_a_lease_of_at_least_one_millisecond() -> None:
    assert check_lease_seconds(0.001) == 0.001
    assert check_lease_seconds(2) == 2.0
    assert isinstance(check_lease_seconds(2), float)
    assert check_lease_seconds(1e9) == 1e9
    for bad in (0.0009, 0, -1, 1.1e9, math.inf, math.nan):
        with pytest.raises(
            ValueError, match=r"^lease must be a finite number of seconds in \[0\.001, 1e\+09\]"
        ):
            check_lease_seconds(bad)
    with pytest.raises(
        TypeError, match=r"^ttl must be a number of seconds, got bool \(argument='ttl'\)$"
    ):
        check_lease_seconds(True, "ttl")


def test_a_wait_of_zero_or_more_seconds() -> None:
    assert check_wait_seconds(0) == 0.0
    assert check_wait_seconds(0.5) == 0.5
    assert check_wait_seconds(1e9) == 1e9
    for bad in (-0.001, 1.1e9, math.inf, math.nan):
        with pytest.raises(
            ValueError, match=r"^wait must be a finite number of seconds in \[0, 1e\+09\]"
        ):
            check_wait_seconds(bad)
    with pytest.raises(
        TypeError, match=r"^patience must be a number of seconds, got str \(argument='patience'\)$"
    ):
        check_wait_seconds("1", "patience")


async def test_the_lock_checks_its_defaults_and_component() -> None:
    with pytest.raises(ValueError, match=r"^default_lease must be"):
        FakeDistributedLock(default_lease=0)
    with pytest.raises(ValueError, match=r"^default_wait must be"):
        FakeDistributedLock(default_wait=-1)
    with pytest.raises(ValueError, match="component must be a non-empty string"):
        FakeDistributedLock(component="")
    lock = FakeDistributedLock(default_lease=7, default_wait=0, component="c")
    assert lock.component == "c"
    lease = await lock.acquire("x")
    assert lease.lease_seconds == 7.0


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 10, 100])
@pytest.mark.parametrize("draw", [0.0, 0.5, 0.999])
def test_backoff_delays_follow_the_formula(attempt: int, draw: float) -> None:
    backoff = LockBackoff(initial=0.01, maximum=0.5, multiplier=3.0)
    base = min(0.5, 0.01 * 3.0 ** min(attempt, 64))
    assert backoff.delay(attempt, draw) == pytest.approx(base / 2 + base / 2 * draw)


def test_backoff_edges_are_accepted() -> None:
    same = LockBackoff(initial=0.1, maximum=0.1, multiplier=1.0)
    assert same.delay(50, 0.0) == pytest.approx(0.05)
    assert LockBackoff().delay(0, 0.0) == pytest.approx(0.001)  # 2 ms default, upper half
    assert LockBackoff().delay(1000, 0.999) <= 0.05


async def test_the_redis_lock_defaults(redis_client: Redis) -> None:
    lock = RedisDistributedLock(redis_client, clock=ManualClock())
    assert lock.namespace == "semantica:lock:"
    assert lock.key("job") == "semantica:lock:{job}"
    assert lock.component == "redis_lock"
    lease = await lock.acquire("job")
    assert lease.lease_seconds == 30.0
    assert 29_000 < await redis_client.pttl("semantica:lock:{job}") <= 30_000
    await lock.release(lease)


async def test_lock_calls_are_traced_with_the_server_and_operation(redis_url: str) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from infra.observability import reset_tracing, setup_tracing

    client = Redis.from_url(redis_url)
    exporter = InMemorySpanExporter()
    setup_tracing(exporter=exporter)
    try:
        lock = RedisDistributedLock(client, namespace="t:span:", clock=ManualClock())
        lease = await lock.acquire("job", lease=5)
        lease = await lock.extend(lease)
        await lock.release(lease)
    finally:
        reset_tracing()
        await client.delete("t:span:{job}", "t:span:{job}:fence")
        await client.aclose()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert {"acquire", "extend", "release"} <= set(spans)
    attributes = spans["acquire"].attributes
    assert attributes is not None
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    assert attributes["server.address"] == host
    assert attributes["server.port"] == int(port)


async def test_lock_spans_name_the_redis_system(redis_url: str) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from infra.observability import reset_tracing, setup_tracing

    client = Redis.from_url(redis_url)
    exporter = InMemorySpanExporter()
    setup_tracing(exporter=exporter)
    try:
        lock = RedisDistributedLock(client, namespace="t:sys:", clock=ManualClock())
        await lock.release(await lock.acquire("job", lease=5))
    finally:
        reset_tracing()
        await client.delete("t:sys:{job}:fence")
        await client.aclose()
    [acquire] = [s for s in exporter.get_finished_spans() if s.name == "acquire"]
    assert acquire.attributes is not None
    assert acquire.attributes["db.system.name"] == "redis"


async def test_only_idempotent_lock_calls_are_retried() -> None:
    """acquire and extend may be replayed; release and the cleanup of a failed grant not.

    Against a port nothing listens on, every call fails with a retryable connection error,
    so the retry layer's counters show which operations went through it.
    """
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from infra.exceptions import CacheConnectionError
    from infra.observability import reset_tracing, setup_tracing
    from infra.ports import LockLease
    from infra.resilience import ResiliencePolicy, RetryConfig

    exporter = InMemorySpanExporter()
    setup_tracing(exporter=exporter)
    client = Redis.from_url("redis://127.0.0.1:9/0")
    policy = ResiliencePolicy.build(
        "redis_lock", retry=RetryConfig(max_attempts=3), clock=ManualClock()
    )
    lock = RedisDistributedLock(client, policy=policy, clock=ManualClock())
    retry = policy.retry
    assert retry is not None
    try:
        with pytest.raises(CacheConnectionError):
            await lock.acquire("job", wait=0)  # 3 attempts; then one abandon, not retried
        assert (retry.stats.executions, retry.stats.retries) == (1, 2)
        lease = LockLease("job", "0" * 32, 1, 5.0)  # a well-formed token acquire() could issue
        with pytest.raises(CacheConnectionError):
            await lock.release(lease)
        assert (retry.stats.executions, retry.stats.retries) == (1, 2)  # not retried
        with pytest.raises(CacheConnectionError):
            await lock.extend(lease)
        assert (retry.stats.executions, retry.stats.retries) == (2, 4)
    finally:
        reset_tracing()
        await client.aclose()
    names = [s.name for s in exporter.get_finished_spans()]
    assert names.count("abandon") == 1  # the failed grant was cleaned up, once
    assert names.count("release") == 1


def test_backoff_never_overflows_however_large_the_multiplier() -> None:
    """The exponent is capped before the power is taken, not only the result."""
    backoff = LockBackoff(initial=0.001, maximum=1.0, multiplier=60_000.0)
    assert backoff.delay(1_000_000, 0.0) == 0.5
    assert backoff.delay(64, 0.999) == pytest.approx(0.9995)


async def test_a_waiter_sleeps_no_longer_than_the_holders_lease_left(
    redis_client: Redis,
) -> None:
    """A refused grant reports the holder's remaining lease; the pause stops there."""
    holder = RedisDistributedLock(redis_client, namespace="t:ttl:")
    lease = await holder.acquire("job", lease=0.3)
    clock = ManualClock()
    slow_backoff = LockBackoff(initial=5.0, maximum=5.0)  # 2.5..5 s unless capped
    waiter = RedisDistributedLock(
        redis_client, namespace="t:ttl:", clock=clock, backoff=slow_backoff
    )
    try:
        # The holder's lease runs out in real time while the waiter's pauses are
        # virtual: on a fast machine it retries thousands of times, each pause adding
        # up to 0.3 virtual seconds, so the wait must be far longer than 600 s.
        second = await waiter.acquire("job", lease=1, wait=86_400)
        await waiter.release(second)
    finally:
        await redis_client.delete("t:ttl:{job}", "t:ttl:{job}:fence")
    assert clock.sleeps
    assert 0 < clock.sleeps[0] <= 0.301  # the holder's PTTL (<= 300 ms) + 1 ms
    assert lease.fencing_token < second.fencing_token


async def test_the_lock_metrics_are_exposed_with_their_help_and_label() -> None:
    collector = MetricsCollector()
    set_metrics_collector(collector)
    try:
        clock = ManualClock()
        server = FakeLockServer(clock)
        lock = FakeDistributedLock(server, component="exposed")
        await lock.acquire("job", lease=60)
        with pytest.raises(LockAcquireTimeoutError):
            await FakeDistributedLock(server, component="exposed").acquire("job", wait=0)

        async def overrun() -> None:
            async with lock.hold("other", lease=1):
                clock.advance(2)  # the lease runs out inside the block: counted as lost

        with pytest.raises(LockLostError):
            await overrun()
    finally:
        reset_metrics_collector()
    text = collector.render()[0].decode()
    assert "# HELP lock_acquire_wait_ms Time from acquire to grant, waits included, ms." in text
    assert "# HELP lock_acquire_timeouts_total Acquires that ran out of wait." in text
    assert "# HELP lock_lost_total Leases found lost while held." in text
    assert 'lock_acquire_wait_ms_count{component="exposed"} 2.0' in text
    assert 'lock_acquire_timeouts_total{component="exposed"} 1.0' in text
    assert 'lock_lost_total{component="exposed"} 1.0' in text

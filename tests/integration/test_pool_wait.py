"""Pools wait for a free connection, and the bulkhead fits the pools.

Against the embedded Redis and PostgreSQL, with twice (and up to three times) as many
concurrent calls as the pool has connections:

* no call fails -- no ``MaxConnectionsError``/``PoolExhaustedError``, no bulkhead
  rejection, no deadlock between the bulkhead and the pool (transactions included);
* no call is retried, counted by the policies' own observers (``RecordingObserver`` as
  the containers' ``resilience_hooks``);
* no more connections are opened than the pool size (counted by the server).

When the wait for a connection does run out, the error is a ``PoolExhaustedError`` that
is raised at once: not retried, and not counted against the circuit breaker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator

import pytest
from dependency_injector import providers
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.asyncio import BlockingConnectionPool, Redis

from config import Settings
from containers.lifecycle import resolve
from containers.postgres import PostgresContainer
from containers.redis import RedisContainer
from infra.cache import RedisCache, build_redis_client, close_redis_client
from infra.exceptions import PoolExhaustedError
from infra.observability import MetricsCollector, reset_metrics_collector, set_metrics_collector
from infra.resilience import GiveUpReason, RecordingObserver, ResiliencePolicy
from infra.storage import PostgresStore

POOL = 4  # connections; the concurrent tests run 2 x POOL calls


@pytest.fixture(autouse=True)
def collector() -> Iterator[MetricsCollector]:
    """A fresh metrics collector per test (the adapters record into it)."""
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    yield fresh
    reset_metrics_collector()


def no_retries(observer: RecordingObserver) -> None:
    assert observer.retries == []
    assert observer.give_ups == []


# --------------------------------------------------------------------------- Redis
async def redis_connections_named(redis_url: str, name: str) -> int:
    """How many connections the server lists under client name ``name``."""
    async with Redis.from_url(redis_url) as probe:
        return [c["name"] for c in await probe.client_list()].count(name)


async def test_redis_commands_beyond_the_pool_wait_for_a_connection(redis_url: str) -> None:
    """8 blocking commands on a pool of 4: the last 4 wait instead of failing at once
    (redis-py's plain pool raised MaxConnectionsError for them)."""
    name = f"wait-{uuid.uuid4().hex[:12]}"
    client = build_redis_client(
        Settings(redis_url=redis_url, redis_max_connections=POOL, service_name=name)
    )
    try:
        assert isinstance(client, Redis)
        assert isinstance(client.connection_pool, BlockingConnectionPool)
        lists = [f"{name}:{i}" for i in range(2 * POOL)]
        # Each BLPOP holds its connection for 50 ms: all four are busy at once.
        results = await asyncio.gather(*(client.blpop([key], timeout=0.05) for key in lists))
        assert results == [None] * (2 * POOL)
        assert await redis_connections_named(redis_url, name) == POOL
    finally:
        await close_redis_client(client)


@hypothesis_settings(max_examples=12)
@given(pool=st.integers(1, 4), factor=st.integers(1, 3), hold=st.sampled_from([0.0, 0.02]))
def test_any_burst_up_to_three_pools_is_served(
    redis_url: str, pool: int, factor: int, hold: float
) -> None:
    """Property: any burst of up to 3 x the pool size succeeds, on at most ``pool``
    connections, whether the commands are instant (GET) or hold their connection."""
    name = f"burst-{uuid.uuid4().hex[:12]}"
    tasks = pool * factor

    async def burst() -> None:
        client = build_redis_client(
            Settings(redis_url=redis_url, redis_max_connections=pool, service_name=name)
        )
        try:
            if hold:
                calls: list[Awaitable[object]] = [
                    client.blpop([f"{name}:{i}"], timeout=hold) for i in range(tasks)
                ]
            else:
                calls = [client.get(f"{name}:{i}") for i in range(tasks)]
            assert await asyncio.gather(*calls) == [None] * tasks
            assert 1 <= await redis_connections_named(redis_url, name) <= pool
        finally:
            await close_redis_client(client)

    asyncio.run(burst())


@pytest.fixture
async def redis_app(redis_url: str) -> AsyncIterator[tuple[RedisContainer, RecordingObserver]]:
    """The Redis container on a pool of 4 (so its bulkheads are 4 too), observed."""
    observer = RecordingObserver()
    settings = Settings(
        redis_url=redis_url,
        redis_max_connections=POOL,
        service_name=f"app-{uuid.uuid4().hex[:12]}",
    )
    container = RedisContainer(
        settings=providers.Object(settings),
        resilience_hooks=providers.List(providers.Object(observer)),
    )
    try:
        yield container, observer
    finally:
        stopping = container.shutdown_resources()
        assert stopping is not None  # async resources: an awaitable
        await stopping


async def test_cache_and_lock_at_twice_the_pool_are_not_retried(
    redis_app: tuple[RedisContainer, RecordingObserver], redis_url: str
) -> None:
    """The cache's and the lock's policies each admit 4 calls onto one pool of 4: 8 in
    flight. Every call succeeds on the first attempt; the pool never grows past 4."""
    container, observer = redis_app
    cache: RedisCache = await resolve(container.cache)
    lock = await resolve(container.lock)
    settings: Settings = container.settings()
    assert settings.resilience.bulkhead_max_concurrent == POOL
    await cache.set("shared", {"n": 1})

    async def reader() -> None:
        for _ in range(25):
            assert await cache.get("shared") == {"n": 1}

    async def locker(worker: int) -> None:
        for round_ in range(10):
            lease = await lock.acquire(f"job-{worker}-{round_}", lease=5.0, wait=1.0)
            await lock.release(lease)

    await asyncio.gather(*(reader() for _ in range(POOL)), *(locker(i) for i in range(POOL)))
    no_retries(observer)
    assert {outcome.value for _, outcome in observer.calls} == {"success"}
    assert await redis_connections_named(redis_url, settings.service_name) <= POOL


async def test_redis_pool_wait_timeout_is_typed_and_not_retried(redis_url: str) -> None:
    """A pool of 1 held by a blocking command: a cache read waits 50 ms, then raises
    PoolExhaustedError at once -- one attempt, and the breaker does not count it."""
    observer = RecordingObserver()
    name = f"pw-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        redis_url=redis_url,
        redis_max_connections=1,
        redis_pool_acquire_timeout=0.05,
        service_name=name,
    )
    policy = ResiliencePolicy.from_settings(settings, component="redis", hooks=[observer])
    async with RedisCache.from_settings(settings, policy, namespace="pw") as cache:
        key = f"held-{uuid.uuid4().hex}"
        # Released by the RPUSH below; the timeout only bounds a broken test.
        holder = asyncio.ensure_future(cache.client.blpop([key], timeout=60))
        # The holder has the only connection once the server runs its BLPOP (a fixed
        # sleep is no barrier: on a loaded machine the read could take the connection).
        async with Redis.from_url(redis_url) as probe, asyncio.timeout(30):
            while not any(  # noqa: ASYNC110 -- polling the server; no event to await
                c["name"] == name and c["cmd"] == "blpop" for c in await probe.client_list()
            ):
                await asyncio.sleep(0.005)
        with pytest.raises(PoolExhaustedError) as caught:
            await cache.get("anything")
        assert caught.value.retryable is False
        assert caught.value.component == "redis"
        assert observer.retries == []
        assert [(n, reason) for _, n, reason, _ in observer.give_ups] == [
            (1, GiveUpReason.NOT_RETRYABLE)
        ]
        assert policy.breaker is not None
        assert policy.breaker.failure_count == 0
        async with Redis.from_url(redis_url) as other:
            await other.rpush(key, "go")  # releases the holder's connection
        popped = await holder
        assert popped is not None
        assert list(popped) == [key.encode(), b"go"]
        assert await cache.get("anything") is None  # served again


# ----------------------------------------------------------------------- PostgreSQL
@pytest.fixture
async def postgres_app(
    postgres_dsn: str,
) -> AsyncIterator[tuple[PostgresContainer, RecordingObserver]]:
    """The PostgreSQL container on a pool of 4 (so its bulkhead is 4 too), observed."""
    observer = RecordingObserver()
    settings = Settings(
        database_url=postgres_dsn, postgres_min_pool_size=1, postgres_max_pool_size=POOL
    )
    container = PostgresContainer(
        settings=providers.Object(settings),
        resilience_hooks=providers.List(providers.Object(observer)),
    )
    try:
        yield container, observer
    finally:
        stopping = container.shutdown_resources()
        assert stopping is not None  # async resources: an awaitable
        await stopping


async def test_transactions_and_reads_at_twice_the_pool_all_succeed(
    postgres_app: tuple[PostgresContainer, RecordingObserver],
) -> None:
    """8 transactions (each holding its connection across statements) and 8 reads on a
    pool of 4 with a bulkhead of 4: no deadlock between slots and connections, every
    call succeeds on its first attempt. Before, the statements of the 4 transactions
    holding the connections queued for bulkhead slots held by BEGINs waiting for those
    connections, until both timed out."""
    container, observer = postgres_app
    store = await resolve(container.store)
    assert store.policy.bulkhead is not None
    assert store.policy.bulkhead.max_concurrent == POOL

    async def transfer(worker: int) -> int:
        async with store.transaction() as tx:
            await tx.fetchval("SELECT pg_sleep(0.02)")
            value: int = await tx.fetchval("SELECT $1::int + 1", worker)
            return value

    async def read(worker: int) -> int:
        value: int = await store.fetchval("SELECT $1::int * 2", worker)
        return value

    results = await asyncio.gather(
        *(transfer(i) for i in range(2 * POOL)), *(read(i) for i in range(2 * POOL))
    )
    assert results == [i + 1 for i in range(2 * POOL)] + [2 * i for i in range(2 * POOL)]
    no_retries(observer)
    assert {outcome.value for _, outcome in observer.calls} == {"success"}
    _, details = await store.health_check(latency_threshold_ms=1e6)
    assert 0 < details["pool_size"] <= POOL


@hypothesis_settings(max_examples=10)
@given(
    pool=st.integers(1, 4),
    transactions=st.integers(0, 12),
    reads=st.integers(0, 12),
)
def test_any_mix_of_transactions_and_reads_completes(
    postgres_dsn: str, pool: int, transactions: int, reads: int
) -> None:
    """Property: with the bulkhead at the pool size, any mix of up to 3 x the pool in
    concurrent transactions and reads completes without an error or a retry."""
    observer = RecordingObserver()
    settings = Settings(
        database_url=postgres_dsn,
        postgres_min_pool_size=1,
        postgres_max_pool_size=pool,
        postgres_pool_acquire_timeout=10.0,
    )
    policy = ResiliencePolicy.from_settings(settings, component="postgres", hooks=[observer])

    async def mix() -> list[int]:
        async with PostgresStore.from_settings(settings, policy=policy) as store:

            async def in_transaction(worker: int) -> int:
                async with store.transaction() as tx:
                    await tx.execute("SELECT pg_sleep(0.005)")
                    value: int = await tx.fetchval("SELECT $1::int", worker)
                    return value

            calls: list[Awaitable[int]] = [in_transaction(i) for i in range(transactions)]
            calls += [store.fetchval("SELECT $1::int", -i) for i in range(reads)]
            return await asyncio.gather(*calls)

    results = asyncio.run(mix())
    assert results == [*range(transactions), *(-i for i in range(reads))]
    no_retries(observer)


async def test_postgres_pool_wait_timeout_is_typed_and_not_retried(postgres_dsn: str) -> None:
    """A pool of 1 held by a transaction: a read waits 50 ms, then raises
    PoolExhaustedError at once -- one attempt, not counted by the breaker."""
    observer = RecordingObserver()
    settings = Settings(
        database_url=postgres_dsn,
        postgres_min_pool_size=1,
        postgres_max_pool_size=1,
        postgres_pool_acquire_timeout=0.05,
    )
    policy = ResiliencePolicy.from_settings(settings, component="postgres", hooks=[observer])
    async with PostgresStore.from_settings(settings, policy=policy) as store:
        async with store.transaction() as tx:
            with pytest.raises(PoolExhaustedError) as caught:
                await store.fetchval("SELECT 1")
            assert await tx.fetchval("SELECT 2") == 2
        assert caught.value.retryable is False
        assert observer.retries == []
        assert [(n, reason) for _, n, reason, _ in observer.give_ups] == [
            (1, GiveUpReason.NOT_RETRYABLE)
        ]
        assert policy.breaker is not None
        assert policy.breaker.failure_count == 0
        assert await store.fetchval("SELECT 3") == 3

"""Hostile callers never trip a breaker: a Hypothesis stream of bad input at every public
method of every adapter, on the real embedded servers and on the fakes.

The inputs: odd Unicode (lone surrogates, NUL, BOM, bidi overrides, the last code point),
huge strings, empty and blank strings, wrong types (``None``, ``bytes``, containers,
``object()``, ``bool``, NaN and infinities), out-of-range numbers, the wrong number of SQL
parameters, and -- mixed in -- valid input, so a call may also succeed. For each call the
property is:

* it returns, or raises a :class:`~infra.exceptions.CallerError` that is not retryable
  -- never a raw driver or builtin exception, never a backend error type;
* no retry was attempted, and the adapter's breaker is CLOSED with ``failure_count == 0``
  (a shared breaker across all examples: one counted failure anywhere fails the test);
* afterwards the adapter still serves a valid call.

``ThreeTierCache`` (over the real ``RedisCache`` and its Redis) has one more promise: a
hostile call never marks it degraded, so no caller's bad key makes every process fall back
to its loader.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from infra.cache import RedisCache, ThreeTierCache
from infra.cache.distributed_lock import RedisDistributedLock
from infra.exceptions import CallerError, InfraError, LockNotOwnedError
from infra.ports import LockLease
from infra.resilience import BreakerState, RecordingObserver, ResiliencePolicy
from infra.storage import EnhancedPostgresStore, PostgresStore
from infra.testing.fakes.cache import FakeCache
from infra.testing.fakes.lock import FakeDistributedLock
from infra.testing.fakes.relational import FakeRelationalStore
from infra.validation import ISOLATION_LEVELS

Draw = Callable[[st.SearchStrategy[Any]], Any]
Operation = Callable[[Any, Draw], Awaitable[object]]

# ------------------------------------------------------------------------- strategies
ODD_CHARACTERS = st.one_of(
    st.characters(),  # any code point but a surrogate
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),  # lone surrogates
    st.sampled_from(["\x00", "\ufeff", "\u202e", "\U0010ffff", "\r", "'", '"', ";", "\\"]),
)
HOSTILE_TEXT = st.one_of(
    st.text(ODD_CHARACTERS, max_size=30),
    st.sampled_from(["", " ", "\t\n", "\x00", "\ud800", "user:\udfff", "$1", "%s"]),
    st.integers(1_000, 300_000).map(lambda n: "k" * n),  # huge
)
WRONG_TYPES = st.sampled_from(
    [None, True, b"bytes", bytearray(b"x"), [], ["a"], {}, {"a": 1}, object(), {1}, ("t",)]
)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=2**62, max_value=2**200),
    st.floats(),  # NaN, infinities, subnormals
)
HOSTILE = st.one_of(HOSTILE_TEXT, WRONG_TYPES, NUMBERS, st.binary(max_size=20))
#: Time limits: absent, plainly valid, or invalid. A valid but tiny limit is left out:
#: a query that really times out is a backend-side answer, not a caller error.
TIMEOUTS = st.one_of(
    st.none(),
    st.none(),
    st.just(30.0),
    st.sampled_from([0, -1, -0.0, math.nan, math.inf, 1e10, "1", True, b"1", [1]]),
)
TEMPLATES = st.sampled_from(
    [
        "SELECT $1::text",
        "SELECT $1::int",
        "SELECT $1::bigint",
        "SELECT $1::float8",
        "SELECT $1::numeric",
        "SELECT $1::bytea",
        "SELECT $1::jsonb",
        "SELECT $1::uuid",
        "SELECT 1 / $1::int",
        "SELECT $1::text, $2::int",
        "SELECT $1 AS v",
        "SELECT $1 + 0 AS v",
        "SELECT 1 AS one",
    ]
)
# Mostly well-formed SQL, so that hostile arguments reach asyncpg and the server.
SQL = st.one_of(TEMPLATES, TEMPLATES, TEMPLATES, HOSTILE)
PLAIN = st.one_of(st.integers(-5, 5), st.text(max_size=8))
ARGS = st.lists(st.one_of(HOSTILE, PLAIN), max_size=3)
ROWS = st.one_of(HOSTILE, st.lists(st.one_of(HOSTILE, st.lists(HOSTILE, max_size=3)), max_size=3))
VALID_KEYS = st.text(min_size=1, max_size=20)
KEYS = st.one_of(HOSTILE, VALID_KEYS, VALID_KEYS)
LEASES = st.one_of(st.just(60.0), st.just(60.0), HOSTILE)  # none expires mid-example
WAITS = st.one_of(st.just(0), st.just(0), HOSTILE)


# ------------------------------------------------------------------- the operations
def _args(query: object, draw: Draw) -> list[Any]:
    """Any number of arguments, or -- half the time -- as many as ``query`` has."""
    if not isinstance(query, str) or draw(st.booleans()):
        drawn: list[Any] = draw(ARGS)
        return drawn
    arity = max((int(n) for n in re.findall(r"\$(\d+)", query)), default=0)
    exact: list[Any] = draw(st.lists(st.one_of(HOSTILE, PLAIN), min_size=arity, max_size=arity))
    return exact


async def _sql(store: Any, draw: Draw) -> object:
    method = draw(st.sampled_from(["fetch", "fetchrow", "fetchval", "execute", "executemany"]))
    query, timeout = draw(SQL), draw(TIMEOUTS)
    if method == "executemany":
        rows = draw(st.one_of(ROWS, st.lists(st.builds(tuple, st.just(_args(query, draw))))))
        return await store.executemany(query, rows, timeout=timeout)
    if method == "fetchval":
        column = draw(st.one_of(st.just(0), st.integers(-3, 3), WRONG_TYPES))
        return await store.fetchval(query, *_args(query, draw), column=column, timeout=timeout)
    return await getattr(store, method)(query, *_args(query, draw), timeout=timeout)


async def _transaction(store: Any, draw: Draw) -> object:
    isolation = draw(st.one_of(st.none(), st.sampled_from(ISOLATION_LEVELS), HOSTILE))
    async with store.transaction(isolation=isolation, readonly=draw(st.booleans())) as tx:
        await _sql(tx, draw)
        if draw(st.booleans()):
            async with tx.transaction() as savepoint:
                await _sql(savepoint, draw)
    return None


async def _store_health(store: Any, draw: Draw) -> object:
    threshold = draw(st.one_of(st.just(1e6), HOSTILE))
    return await store.health_check(threshold, timeout=draw(TIMEOUTS))


async def _cache_op(cache: Any, draw: Draw) -> object:
    method = draw(
        st.sampled_from(["get", "set", "delete", "mget", "mset", "exists", "ttl", "health"])
    )
    ttl = draw(st.one_of(st.none(), st.just(60.0), HOSTILE))
    if method == "set":
        return await cache.set(draw(KEYS), draw(HOSTILE), ttl=ttl)
    if method == "delete":
        return await cache.delete(*draw(st.lists(KEYS, max_size=3)))
    if method == "mget":
        return await cache.mget(draw(st.one_of(st.lists(KEYS, max_size=3), HOSTILE)))
    if method == "mset":
        items = draw(
            st.one_of(st.dictionaries(KEYS.filter(_hashable), HOSTILE, max_size=3), HOSTILE)
        )
        return await cache.mset(items, ttl=ttl)
    if method == "health":
        threshold = draw(st.one_of(st.just(1e6), HOSTILE))
        return await cache.health_check(threshold, timeout=draw(TIMEOUTS))
    return await getattr(cache, method)(draw(KEYS))


async def _three_tier_op(cache: Any, draw: Draw) -> object:
    method = draw(st.sampled_from(["get", "load", "set", "delete", "prefix", "tag"]))
    if method == "get":
        return await cache.get(draw(KEYS))
    if method == "load":
        return await cache.get(draw(KEYS), _load_one)
    if method == "set":
        tags = draw(st.one_of(st.none(), st.lists(KEYS, max_size=2), HOSTILE))
        return await cache.set(draw(KEYS), draw(HOSTILE), tags=tags)
    if method == "delete":
        return await cache.delete(draw(KEYS))
    if method == "prefix":
        return await cache.invalidate(prefix=draw(KEYS))
    return await cache.invalidate(tag=draw(KEYS))


async def _load_one() -> int:
    return 1


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


async def _lock_op(lock: Any, draw: Draw) -> object:
    method = draw(st.sampled_from(["acquire", "hold", "release", "extend"]))
    if method in ("release", "extend"):
        forged = draw(
            st.one_of(
                HOSTILE,
                st.builds(LockLease, HOSTILE, HOSTILE, HOSTILE, HOSTILE),
                st.builds(LockLease, st.just("prop"), st.just("0" * 32), st.just(1), LEASES),
            )
        )
        if method == "release":
            return await lock.release(forged)
        return await lock.extend(forged, lease_seconds=draw(st.one_of(st.none(), LEASES)))
    name, lease, wait = draw(KEYS), draw(LEASES), draw(WAITS)
    if method == "hold":
        async with lock.hold(name, lease=lease, wait=wait, watchdog=draw(HOSTILE)):
            return None
    granted = await lock.acquire(name, lease=lease, wait=wait)
    try:
        if draw(st.booleans()):
            granted = await lock.extend(granted, lease_seconds=draw(LEASES))
    finally:
        await lock.release(granted)
    return granted


# ---------------------------------------------------------------------- the adapters
@dataclass
class Target:
    """An adapter under test, its policy (if any) with an observer, and a sanity call."""

    adapter: Any
    healthy: Callable[[Any], Awaitable[object]]
    policy: ResiliencePolicy | None = None
    observer: RecordingObserver | None = None


def _policy(component: str) -> dict[str, Any]:
    """The design's breaker (5 failures) and retry (3 attempts) on a virtual clock, observed."""
    observer = RecordingObserver()
    return {"policy": ResiliencePolicy.instant(component, hooks=(observer,)), "observer": observer}


async def _select_one(store: Any) -> object:
    assert await store.fetchval("SELECT 1 AS one") == 1
    return None


async def _cache_round_trip(cache: Any) -> object:
    await cache.set("prop:ok", [1])
    assert await cache.get("prop:ok") == [1]
    return None


async def _lock_round_trip(lock: Any) -> object:
    held = await lock.acquire("prop:ok", lease=5, wait=0)
    await lock.release(held)
    return None


@pytest.fixture(scope="module")
async def enhanced_store(postgres_dsn: str) -> AsyncIterator[Target]:
    observed = _policy("postgres")
    store = EnhancedPostgresStore(
        postgres_dsn, 1, 4, policy=observed["policy"], name="hostile-enhanced"
    )
    yield Target(store, _select_one, **observed)
    await store.close()


@pytest.fixture(scope="module")
async def plain_store(postgres_dsn: str) -> AsyncIterator[Target]:
    store = PostgresStore(postgres_dsn, 1, 2, name="hostile-plain")
    yield Target(store, _select_one)
    await store.close()


@pytest.fixture(scope="module")
async def fake_store() -> AsyncIterator[Target]:
    observed = _policy("postgres")
    store = FakeRelationalStore(policy=observed["policy"])
    yield Target(store, _select_one, **observed)
    await store.close()


@pytest.fixture(scope="module")
async def redis_client_module(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
async def redis_cache(redis_client_module: Redis) -> Target:
    observed = _policy("redis")
    cache = RedisCache(redis_client_module, policy=observed["policy"], namespace="hostile")
    return Target(cache, _cache_round_trip, **observed)


@pytest.fixture(scope="module")
async def three_tier(redis_client_module: Redis) -> AsyncIterator[Target]:
    observed = _policy("redis")
    l2 = RedisCache(redis_client_module, policy=observed["policy"], namespace="hostile3")
    cache = ThreeTierCache(l2, redis=redis_client_module, namespace="hostile3")
    yield Target(cache, _cache_round_trip, **observed)
    assert not cache.degraded
    await cache.close()


@pytest.fixture(scope="module")
async def redis_lock(redis_client_module: Redis) -> Target:
    observed = _policy("redis_lock")
    lock = RedisDistributedLock(
        redis_client_module, namespace="hostile:lock:", policy=observed["policy"]
    )
    return Target(lock, _lock_round_trip, **observed)


async def _check(target: Target, operation: Operation, draw: Draw) -> None:
    """Run one hostile call and assert the property (see the module docstring)."""
    error: InfraError | None = None
    try:
        await operation(target.adapter, draw)
    except InfraError as raised:  # anything else propagates and fails the example
        error = raised
    event(f"{getattr(operation, '__name__', '?')}: {type(error).__name__ if error else 'ok'}")
    if error is not None:
        allowed = isinstance(error, CallerError) or (
            operation is _lock_op and isinstance(error, LockNotOwnedError)  # a forged lease
        )
        assert allowed, f"{type(error).__name__} is not a caller error: {error!r}"
        assert error.retryable is False
    observer, policy = target.observer, target.policy
    if observer is not None and policy is not None:
        assert observer.retries == [], observer.retries
        assert observer.give_ups == [] or all(
            isinstance(error, CallerError | LockNotOwnedError) for *_, error in observer.give_ups
        )
        assert observer.transitions == []
        breaker = policy.breaker
        assert breaker is not None
        assert (breaker.state, breaker.failure_count) == (BreakerState.CLOSED, 0)
    assert not getattr(target.adapter, "degraded", False)
    await target.healthy(target.adapter)


POSTGRES_OPERATIONS = st.sampled_from([_sql, _sql, _sql, _transaction, _store_health])


# ------------------------------------------------------------------------ properties
@settings(max_examples=300)
@given(data=st.data())
async def test_hostile_sql_input_never_counts_on_the_enhanced_store(
    enhanced_store: Target, data: st.DataObject
) -> None:
    """EnhancedPostgresStore on the embedded PostgreSQL: caller errors only, breaker closed."""
    await _check(enhanced_store, data.draw(POSTGRES_OPERATIONS), data.draw)


@settings(max_examples=100)
@given(data=st.data())
async def test_hostile_sql_input_raises_caller_errors_on_the_plain_store(
    plain_store: Target, data: st.DataObject
) -> None:
    """PostgresStore (no breaker) raises typed caller errors for the same stream."""
    await _check(plain_store, data.draw(POSTGRES_OPERATIONS), data.draw)


@settings(max_examples=300)
@given(data=st.data())
async def test_hostile_sql_input_never_counts_on_the_fake_store(
    fake_store: Target, data: st.DataObject
) -> None:
    """FakeRelationalStore: the same property, under the same policy."""
    await _check(fake_store, data.draw(POSTGRES_OPERATIONS), data.draw)


@settings(max_examples=300)
@given(data=st.data())
async def test_hostile_keys_never_count_on_the_redis_cache(
    redis_cache: Target, data: st.DataObject
) -> None:
    """RedisCache on the embedded Redis: caller errors only, breaker closed."""
    await _check(redis_cache, _cache_op, data.draw)


@settings(max_examples=300)
@given(data=st.data())
async def test_hostile_keys_raise_caller_errors_on_the_fake_cache(data: st.DataObject) -> None:
    """FakeCache: the same keys, values and TTLs raise the same kinds of errors."""
    await _check(Target(FakeCache(), _cache_round_trip), _cache_op, data.draw)


@settings(max_examples=300)
@given(data=st.data())
async def test_hostile_names_never_count_on_the_redis_lock(
    redis_lock: Target, data: st.DataObject
) -> None:
    """RedisDistributedLock on the embedded Redis: caller errors only, breaker closed."""
    await _check(redis_lock, _lock_op, data.draw)


@settings(max_examples=300)
@given(data=st.data())
async def test_hostile_names_raise_caller_errors_on_the_fake_lock(data: st.DataObject) -> None:
    """FakeDistributedLock: the same names, leases and waits."""
    await _check(Target(FakeDistributedLock(), _lock_round_trip), _lock_op, data.draw)


@settings(max_examples=200)
@given(data=st.data())
async def test_hostile_keys_never_count_or_degrade_the_three_tier_cache(
    three_tier: Target, data: st.DataObject
) -> None:
    """ThreeTierCache over the real RedisCache: caller errors only, breaker closed, never
    degraded."""
    await _check(three_tier, _three_tier_op, data.draw)

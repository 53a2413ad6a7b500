"""aiocache's own cache-interface cases, restated against our ``CacheStore`` port.

Each test names the aiocache case it restates (``tests/acceptance/test_base.py`` and
``tests/ut/test_base.py`` of aio-libs/aiocache). The cases run on ``FakeCache`` (time on a
``ManualClock``, so expiry is checked without sleeping) and on ``RedisCache`` over the
suite's real Redis (where TTLs are checked through ``ttl()``, never by sleeping). Where our
port deliberately differs from aiocache, the test pins our behaviour -- a clear, typed
error -- and docs/redis.md lists the difference.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from infra.cache import RedisCache
from infra.cache.ttl_policy import MAX_TTL_S
from infra.exceptions import InvalidArgumentError, InvalidKeyError
from infra.resilience import ManualClock
from infra.testing.fakes import FakeCache

KEY, KEY_1 = "key", "key_1"

Cache = RedisCache | FakeCache


@pytest.fixture(params=["fake", pytest.param("redis", marks=pytest.mark.redis)])
def cache(request: pytest.FixtureRequest) -> Cache:
    if request.param == "fake":
        return FakeCache(clock=ManualClock())
    client: Redis = request.getfixturevalue("redis_client")
    return RedisCache(client, namespace="test")


# ---------------------------------------------------------------- acceptance/test_base
async def test_get_missing(cache: Cache) -> None:  # test_get_missing
    assert await cache.get(KEY) is None


async def test_get_existing(cache: Cache) -> None:  # test_get_existing
    await cache.set(KEY, "value")
    assert await cache.get(KEY) == "value"


async def test_multi_get(cache: Cache) -> None:  # test_multi_get
    await cache.set(KEY, "value")
    assert await cache.mget([KEY, KEY_1]) == ["value", None]


async def test_delete_missing(cache: Cache) -> None:  # test_delete_missing
    assert await cache.delete(KEY) == 0


async def test_delete_existing(cache: Cache) -> None:  # test_delete_existing
    await cache.set(KEY, "value")
    assert await cache.delete(KEY) == 1
    assert await cache.get(KEY) is None


async def test_set_returns_and_stores(cache: Cache) -> None:  # test_set
    # aiocache's set returns True; ours returns nothing and raises on failure.
    await cache.set(KEY, "value")
    assert await cache.get(KEY) == "value"


async def test_set_replaces_previous_ttl(cache: Cache) -> None:
    # test_set_cancel_previous_ttl_handle: a new set starts a new lifetime.
    await cache.set(KEY, "value", ttl=4)
    await cache.set(KEY, "new_value", ttl=40)
    left = await cache.ttl(KEY)
    assert left is not None
    assert 4 < left <= 40
    assert await cache.get(KEY) == "new_value"


async def test_set_without_ttl_clears_previous_ttl(cache: Cache) -> None:
    # The same case's other half: a set without ttl leaves no old expiry behind.
    await cache.set(KEY, "value", ttl=4)
    await cache.set(KEY, "value")
    assert await cache.ttl(KEY) == math.inf


async def test_multi_set(cache: Cache) -> None:  # test_multi_set
    await cache.mset({KEY: "value", KEY_1: "random_value"})
    assert await cache.mget([KEY, KEY_1]) == ["value", "random_value"]


async def test_multi_set_with_ttl(cache: Cache) -> None:  # test_multi_set_with_ttl
    await cache.mset({KEY: "value", KEY_1: "random_value"}, ttl=1)
    for key in (KEY, KEY_1):
        left = await cache.ttl(key)
        assert left is not None
        assert 0 < left <= 1


async def test_multi_set_takes_a_mapping_not_pairs(cache: Cache) -> None:
    # aiocache's multi_set takes [(key, value), ...]; ours a mapping, and says so.
    pairs: Any = [(KEY, "value"), (KEY_1, "random_value")]
    with pytest.raises(InvalidArgumentError, match="mapping") as info:
        await cache.mset(pairs)
    assert info.value.argument == "items"


async def test_set_with_ttl(cache: Cache) -> None:  # test_set_with_ttl
    await cache.set(KEY, "value", ttl=1)
    left = await cache.ttl(KEY)
    assert left is not None
    assert 0 < left <= 1


async def test_set_float_ttl(cache: Cache) -> None:  # TestMemoryCache/TestValkeyCache float ttl
    await cache.set(KEY, "value", ttl=0.1)
    left = await cache.ttl(KEY)
    assert left is not None
    assert 0 < left <= 0.1


async def test_exists_missing(cache: Cache) -> None:  # test_exists_missing
    assert await cache.exists(KEY) is False


async def test_exists_existing(cache: Cache) -> None:  # test_exists_existing
    await cache.set(KEY, "value")
    assert await cache.exists(KEY) is True


@pytest.mark.parametrize("ttl", [0, 0.0, -1, math.nan, math.inf])
async def test_ttl_zero_or_negative_is_refused(cache: Cache, ttl: float) -> None:
    # aiocache treats ttl=0 as "no expiry" (and expire(key, 0) as "persist"); ours says
    # ttl=None for that and refuses 0 with an error naming the argument.
    with pytest.raises(InvalidArgumentError, match="None") as info:
        await cache.set(KEY, "value", ttl=ttl)
    assert info.value.argument == "ttl"
    assert await cache.exists(KEY) is False


async def test_none_value_is_stored(cache: Cache) -> None:
    # None values: aiocache's get returns None for both a stored None and a miss.
    await cache.set(KEY, None)
    assert await cache.get(KEY) is None
    assert await cache.exists(KEY) is True
    assert await cache.mget([KEY, KEY_1]) == [None, None]


@pytest.mark.parametrize("key", [1, 1.5, b"key", None, ("a", "b")])
async def test_non_str_keys_are_refused(cache: Cache, key: Any) -> None:
    # aiocache's key builder stringifies what it is given; ours refuses before any I/O.
    with pytest.raises(InvalidKeyError) as info:
        await cache.set(key, "value")
    assert info.value.argument == "key"


async def test_delete_many_counts_each_key_once(cache: Cache) -> None:
    await cache.mset({KEY: 1, KEY_1: 2})
    assert await cache.delete(KEY, KEY_1, KEY, "absent") == 2


async def test_multi_get_repeated_key(cache: Cache) -> None:
    await cache.set(KEY, "value")
    assert await cache.mget([KEY, KEY]) == ["value", "value"]


async def test_empty_multi_operations(cache: Cache) -> None:
    assert await cache.mget([]) == []
    await cache.mset({})
    assert await cache.delete() == 0


async def test_ttl_of_missing_key(cache: Cache) -> None:
    assert await cache.ttl(KEY) is None


# --------------------------------------------------------- expiry, on the fake's clock
async def test_fake_expiry_on_clock() -> None:
    # test_set_with_ttl / test_multi_set_with_ttl, with the expiry actually observed.
    clock = ManualClock()
    cache = FakeCache(clock=clock)
    await cache.set(KEY, "value", ttl=1)
    await cache.mset({KEY_1: "v"}, ttl=1)
    clock.advance(0.999)
    assert await cache.mget([KEY, KEY_1]) == ["value", "v"]
    clock.advance(0.001)
    assert await cache.mget([KEY, KEY_1]) == [None, None]
    assert await cache.exists(KEY) is False


# ---------------------------------------------------------------------- ut/test_base
@pytest.mark.parametrize(("namespace", "expected"), [("", "key"), ("test", "test:key")])
def test_build_key(namespace: str, expected: str) -> None:  # test_build_key
    client = Redis()
    assert RedisCache(client, namespace=namespace).key(KEY) == expected


@settings(max_examples=60, deadline=None)
@given(ttl=st.floats(min_value=1e-9, max_value=1e6, allow_nan=False))
async def test_any_positive_ttl_is_accepted_and_bounded(ttl: float) -> None:
    # A positive float TTL (aiocache accepts any) is stored and never outlives itself by
    # more than the millisecond rounding.
    cache = FakeCache(clock=ManualClock())
    await cache.set(KEY, "value", ttl=ttl)
    left = await cache.ttl(KEY)
    assert left is not None
    assert 0 < left <= max(ttl, 0.001) + 0.0005


@pytest.mark.redis
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ttl=st.floats(min_value=1e-9, max_value=MAX_TTL_S, allow_nan=False))
async def test_real_redis_accepts_every_ttl_we_accept(redis_client: Redis, ttl: float) -> None:
    # Every TTL our validation lets through is one the server takes (no server error
    # after validation passed) and ttl() never reports more than was asked for.
    cache = RedisCache(redis_client, namespace="prop")
    await cache.set(KEY, "value", ttl=ttl)
    left = await cache.ttl(KEY)
    if left is not None:  # a 1 ms TTL may have run out already
        assert left <= max(ttl, 0.001) + 0.0005

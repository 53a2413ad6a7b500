"""RedisCache refuses bad arguments with a typed error naming them, before any I/O.

The cache here points at a port nothing listens on (no connection is ever made): if a
check were missing, the call would reach the network and fail with a connection error
instead of the argument error asserted. A TTL is validated per call (``set`` and
``mset``) exactly like the documented ``ttl_to_ms`` rule, which the property test pins.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from infra.cache import RedisCache, ttl_to_ms
from infra.exceptions import CacheSerializationError
from infra.resilience import ResiliencePolicy

NOWHERE = "redis://127.0.0.1:9/0"  # the discard port: never connected to here

BAD_TTLS: list[tuple[Any, type[Exception]]] = [
    (0, ValueError),
    (0.0, ValueError),
    (-1, ValueError),
    (-0.001, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (-math.inf, ValueError),
    (True, TypeError),
    (False, TypeError),
    ("5", TypeError),
    (b"5", TypeError),
    ([5], TypeError),
]


@pytest.fixture
async def cache() -> AsyncIterator[RedisCache]:
    client = Redis.from_url(NOWHERE)
    try:
        yield RedisCache(client, policy=ResiliencePolicy.passthrough("redis"), namespace="app")
    finally:
        await client.aclose()


@pytest.mark.parametrize(("ttl", "error"), BAD_TTLS, ids=repr)
async def test_set_validates_the_ttl_of_each_call(
    cache: RedisCache, ttl: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="ttl must be"):
        await cache.set("k", 1, ttl=ttl)


@pytest.mark.parametrize(("ttl", "error"), BAD_TTLS, ids=repr)
async def test_mset_validates_the_ttl_of_each_call(
    cache: RedisCache, ttl: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="ttl must be"):
        await cache.mset({"k": 1}, ttl=ttl)


@pytest.mark.parametrize("key", [1, b"k", None, 1.5, ("k",)], ids=repr)
async def test_every_key_taking_method_refuses_a_key_that_is_not_str(
    cache: RedisCache, key: Any
) -> None:
    calls = [
        cache.get(key),
        cache.set(key, 1),
        cache.delete("ok", key),
        cache.mget(["ok", key]),
        cache.mset({key: 1}),
        cache.exists(key),
        cache.ttl(key),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="cache keys must be str, got"):
            await call
    with pytest.raises(TypeError, match="cache keys must be str"):
        cache.key(key)


@pytest.mark.parametrize("keys", ["abc", b"abc", {"a"}, 42, None], ids=repr)
async def test_mget_wants_a_list_or_tuple_of_keys(cache: RedisCache, keys: Any) -> None:
    with pytest.raises(TypeError, match="keys must be a list or tuple of str, got"):
        await cache.mget(keys)


@pytest.mark.parametrize("items", [[("a", 1)], "ab", None, 3], ids=repr)
async def test_mset_wants_a_mapping(cache: RedisCache, items: Any) -> None:
    with pytest.raises(TypeError, match="items must be a mapping of key to value, got"):
        await cache.mset(items)


async def test_values_are_encoded_before_any_io(cache: RedisCache) -> None:
    with pytest.raises(CacheSerializationError):
        await cache.set("k", object())
    with pytest.raises(CacheSerializationError):
        await cache.mset({"a": 1, "b": object()})
    with pytest.raises(CacheSerializationError):
        await cache.mset({"a": 1, "b": {1, 2}}, ttl=5)


async def test_empty_batches_make_no_round_trip(cache: RedisCache) -> None:
    assert await cache.delete() == 0
    assert await cache.mget([]) == []
    assert await cache.mget(()) == []
    await cache.mset({})  # returns None: nothing to write, no I/O
    await cache.mset({}, ttl=3)


@given(ttl=st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_ttl_to_ms_rounds_to_the_nearest_millisecond_and_at_least_one(ttl: float) -> None:
    ms = ttl_to_ms(ttl)
    assert ms == max(1, round(ttl * 1000))
    assert ms >= 1


@given(ttl=st.integers(min_value=1, max_value=10**9))
def test_whole_seconds_convert_exactly(ttl: int) -> None:
    assert ttl_to_ms(ttl) == ttl * 1000


def test_ttl_to_ms_edges() -> None:
    assert ttl_to_ms(None) is None
    assert ttl_to_ms(0.0001) == 1  # below a millisecond: still 1 ms (Redis refuses PX 0)
    assert ttl_to_ms(0.0016) == 2
    assert ttl_to_ms(1) == 1000
    assert ttl_to_ms(2.5) == 2500
    with pytest.raises(TypeError, match="got bool"):
        ttl_to_ms(True)
    with pytest.raises(ValueError, match="got 0"):
        ttl_to_ms(0)


async def test_the_repr_names_namespace_serializer_and_policy(cache: RedisCache) -> None:
    assert repr(cache) == (
        "RedisCache(namespace='app', serializer='json', policy='redis: passthrough')"
    )

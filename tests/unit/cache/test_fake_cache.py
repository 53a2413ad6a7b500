"""FakeCache's test controls: fault injection, virtual time, copies, call log.

What it shares with RedisCache is pinned by tests/contract/test_cache_contract.py.
"""

from __future__ import annotations

import pytest

from infra.cache import SignedPickleSerializer
from infra.exceptions import CacheConnectionError, CacheSerializationError
from infra.resilience import ManualClock
from infra.testing.fakes.cache import FakeCache


async def test_fail_next_fails_exactly_n_operations_then_recovers() -> None:
    """fail_next(exc, times=2): two calls raise that error, the third works."""
    cache = FakeCache()
    error = CacheConnectionError("redis down", component="redis")
    cache.fail_next(error, times=2)
    with pytest.raises(CacheConnectionError) as first:
        await cache.set("k", 1)
    assert first.value is error
    with pytest.raises(CacheConnectionError):
        await cache.get("k")
    assert await cache.get("k") is None  # the failed set stored nothing
    await cache.set("k", 1)
    assert await cache.get("k") == 1


async def test_fail_next_with_a_class_raises_a_fresh_instance_each_time() -> None:
    """An exception class is instantiated per failure."""
    cache = FakeCache()
    cache.fail_next(CacheConnectionError, times=2)
    errors = []
    for _ in range(2):
        with pytest.raises(CacheConnectionError) as info:
            await cache.get("k")
        errors.append(info.value)
    assert errors[0] is not errors[1]


async def test_fail_next_can_target_one_operation() -> None:
    """operation="set" leaves reads working and fails the next write."""
    cache = FakeCache()
    cache.fail_next(CacheConnectionError, operation="set")
    assert await cache.get("k") is None
    with pytest.raises(CacheConnectionError):
        await cache.set("k", 1)
    await cache.set("k", 1)
    assert cache.calls == ["get", "set", "set"]


async def test_validation_and_encoding_happen_before_an_injected_fault() -> None:
    """Like the real adapter, a bad value fails as such and does not use up a fault."""
    cache = FakeCache()
    cache.fail_next(CacheConnectionError)
    with pytest.raises(CacheSerializationError):
        await cache.set("k", {1, 2})
    with pytest.raises(CacheConnectionError):
        await cache.get("k")


async def test_a_pending_fault_makes_the_health_check_unhealthy() -> None:
    """health_check consumes a fault and reports it, never raising."""
    cache = FakeCache()
    cache.fail_next(CacheConnectionError("boom"))
    ok, details = await cache.health_check()
    assert ok is False
    assert details["status"] == "unhealthy"
    assert details["error"] == "CacheConnectionError"
    assert (await cache.health_check())[0] is True


def test_fail_next_rejects_bad_arguments() -> None:
    """Non-exceptions and non-positive counts are refused."""
    cache = FakeCache()
    with pytest.raises(TypeError, match="exception"):
        cache.fail_next("boom")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        cache.fail_next(CacheConnectionError, times=0)


async def test_expiry_follows_the_injected_clock_to_the_millisecond() -> None:
    """A 1.5 s TTL survives 1.499 s of virtual time and not 1.5 s."""
    clock = ManualClock()
    cache = FakeCache(clock=clock)
    await cache.set("k", "v", ttl=1.5)
    clock.advance(1.499)
    assert await cache.get("k") == "v"
    assert await cache.ttl("k") == pytest.approx(0.001)
    clock.advance(0.001)
    assert await cache.get("k") is None
    assert cache.keys() == []


async def test_reads_return_copies() -> None:
    """Mutating a value read back does not change the cached one (bytes are stored)."""
    cache = FakeCache()
    await cache.set("k", {"items": [1]})
    got = await cache.get("k")
    assert isinstance(got, dict)
    got["items"].append(2)
    assert await cache.get("k") == {"items": [1]}


async def test_a_custom_serializer_is_used() -> None:
    """The injected serializer encodes what is stored."""
    cache = FakeCache(serializer=SignedPickleSerializer(b"k" * 32))
    await cache.set("k", {1, 2})
    assert await cache.get("k") == {1, 2}


async def test_keys_len_and_clear() -> None:
    """keys()/len() show live keys; clear() empties data and pending faults."""
    clock = ManualClock()
    cache = FakeCache(clock=clock)
    await cache.mset({"a": 1, "b": 2})
    await cache.set("c", 3, ttl=1)
    assert sorted(cache.keys()) == ["a", "b", "c"]
    clock.advance(1)
    assert len(cache) == 2
    cache.fail_next(CacheConnectionError)
    cache.clear()
    assert len(cache) == 0
    assert await cache.get("a") is None

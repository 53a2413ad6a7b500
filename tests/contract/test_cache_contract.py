"""CacheStore contract: FakeCache and RedisCache (embedded Redis) behave the same.

Decisions pinned here for both: storing ``None`` is allowed and reads back as ``None``
(indistinguishable from a miss through ``get``; ``exists`` tells them apart); TTLs are
seconds with millisecond resolution; an unencodable value fails before anything is
stored; a SET without TTL clears an earlier TTL.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from config import Settings
from infra.cache import RedisCache
from infra.exceptions import (
    CacheSerializationError,
    CallerError,
    InvalidArgumentError,
    InvalidKeyError,
)
from infra.ports import CacheStore
from infra.resilience import ManualClock
from infra.testing.fakes.cache import FakeCache


@dataclass
class Harness:
    """The cache under test plus how to let time pass for it."""

    cache: RedisCache | FakeCache
    clock: ManualClock | None  # the fake's virtual clock; None = real time

    async def expire(self, key: str, ttl: float) -> None:
        """Let ``ttl`` seconds pass: instantly for the fake, by polling for the real one."""
        if self.clock is not None:
            self.clock.advance(ttl)
            return
        deadline = time.monotonic() + ttl + 0.5
        # Redis expires keys on its own clock; nothing to wait on but the key itself.
        while await self.cache.exists(key) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.redis)])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A fresh fake, or a RedisCache in a namespace of its own on the embedded server."""
    if request.param == "fake":
        clock = ManualClock()
        yield Harness(FakeCache(clock=clock), clock)
        return
    redis_url: str = request.getfixturevalue("redis_url")
    namespace = f"contract-{uuid.uuid4().hex}"
    cache = RedisCache.from_settings(Settings(redis_url=redis_url), namespace=namespace)
    try:
        yield Harness(cache, None)
    finally:
        keys = [k async for k in cache.client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await cache.client.delete(*keys)
        await cache.aclose()


async def test_satisfies_the_port(harness: Harness) -> None:
    """Both are CacheStores (and so HealthCheckable)."""
    assert isinstance(harness.cache, CacheStore)


async def test_get_of_a_missing_key_is_none(harness: Harness) -> None:
    """A miss reads as None."""
    assert await harness.cache.get("missing") is None


@pytest.mark.parametrize(
    "value",
    [
        {"name": "Ada", "tags": ["a", "b"], "n": 3, "ok": True, "x": None},
        [1, 2.5, "three"],
        "plain string ✓",
        42,
        3.25,
        False,
        b"\x00raw\xffbytes",
    ],
)
async def test_set_then_get_round_trips(harness: Harness, value: Any) -> None:
    """What was stored comes back equal."""
    await harness.cache.set("k", value)
    assert await harness.cache.get("k") == value


async def test_a_stored_none_reads_as_none_but_exists(harness: Harness) -> None:
    """None is storable; exists() tells it apart from a miss."""
    await harness.cache.set("nothing", None)
    assert await harness.cache.get("nothing") is None
    assert await harness.cache.exists("nothing") is True
    assert await harness.cache.exists("never-set") is False


async def test_set_overwrites(harness: Harness) -> None:
    """A second set replaces the value."""
    await harness.cache.set("k", 1)
    await harness.cache.set("k", {"v": 2})
    assert await harness.cache.get("k") == {"v": 2}


async def test_values_expire_after_their_ttl(harness: Harness) -> None:
    """A key set with a TTL is there at once and gone after the TTL."""
    await harness.cache.set("short", "v", ttl=0.1)
    assert await harness.cache.get("short") == "v"
    await harness.expire("short", 0.1)
    assert await harness.cache.get("short") is None
    assert await harness.cache.exists("short") is False


async def test_ttl_reports_remaining_seconds_infinity_or_none(harness: Harness) -> None:
    """ttl(): seconds left for an expiring key, inf for a persistent one, None if absent."""
    await harness.cache.set("expiring", 1, ttl=30)
    await harness.cache.set("forever", 1)
    left = await harness.cache.ttl("expiring")
    assert left is not None
    assert 29.0 < left <= 30.0
    assert await harness.cache.ttl("forever") == math.inf
    assert await harness.cache.ttl("absent") is None


async def test_set_without_ttl_clears_an_earlier_ttl(harness: Harness) -> None:
    """Like Redis SET: a plain overwrite makes the key persistent."""
    await harness.cache.set("k", 1, ttl=0.1)
    await harness.cache.set("k", 2)
    assert await harness.cache.ttl("k") == math.inf


async def test_delete_counts_keys_that_existed(harness: Harness) -> None:
    """delete returns how many of the keys existed; a repeated key counts once."""
    await harness.cache.mset({"a": 1, "b": 2})
    assert await harness.cache.delete("a", "b", "c", "a") == 2
    assert await harness.cache.get("a") is None
    assert await harness.cache.delete("a") == 0
    assert await harness.cache.delete() == 0


async def test_mget_keeps_order_and_marks_misses(harness: Harness) -> None:
    """mget answers in the order asked, None for misses."""
    await harness.cache.set("one", 1)
    await harness.cache.set("three", [3])
    assert await harness.cache.mget(["three", "two", "one", "three"]) == [[3], None, 1, [3]]
    assert await harness.cache.mget([]) == []


async def test_mset_without_ttl_stores_every_value(harness: Harness) -> None:
    """mset stores each pair, persistently when no TTL is given."""
    await harness.cache.mset({"x": {"a": 1}, "y": "b"})
    assert await harness.cache.mget(["x", "y"]) == [{"a": 1}, "b"]
    assert await harness.cache.ttl("x") == math.inf


async def test_mset_with_ttl_expires_every_value(harness: Harness) -> None:
    """mset with a TTL gives each key that TTL."""
    await harness.cache.mset({"p": 1, "q": 2}, ttl=0.1)
    assert await harness.cache.mget(["p", "q"]) == [1, 2]
    await harness.expire("p", 0.1)
    await harness.expire("q", 0.0)
    assert await harness.cache.mget(["p", "q"]) == [None, None]


async def test_unencodable_value_fails_and_stores_nothing(harness: Harness) -> None:
    """A set() of a non-JSON value raises CacheSerializationError naming the type."""
    with pytest.raises(CacheSerializationError, match="set"):
        await harness.cache.set("bad", {1, 2})
    assert await harness.cache.exists("bad") is False


async def test_mset_with_one_unencodable_value_stores_none_of_them(harness: Harness) -> None:
    """Every value is encoded before anything is written."""
    with pytest.raises(CacheSerializationError, match="object"):
        await harness.cache.mset({"good": 1, "bad": object()})
    assert await harness.cache.exists("good") is False


async def test_bad_arguments_are_type_and_value_errors(harness: Harness) -> None:
    """Non-str keys, a bare string as keys, and non-positive TTLs are refused."""
    cache = harness.cache
    with pytest.raises(TypeError, match="keys must be str"):
        await cache.get(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list or tuple"):
        await cache.mget("abc")
    with pytest.raises(ValueError, match="positive"):
        await cache.set("k", 1, ttl=0)
    with pytest.raises(ValueError, match="positive"):
        await cache.set("k", 1, ttl=float("inf"))
    with pytest.raises(TypeError, match="ttl"):
        await cache.mset({"k": 1}, ttl="10")  # type: ignore[arg-type]
    assert await cache.exists("k") is False


# ------------------------------------------------------------------ hostile input
SURROGATE = "user:\ud800"  # what json.loads makes of "user:\\ud800"
#: (id, call, expected type, argument named). Each is refused before any I/O.
HOSTILE: list[tuple[str, Any, type[CallerError], str]] = [
    ("surrogate-key", lambda c: c.get(SURROGATE), InvalidKeyError, "key"),
    ("empty-key", lambda c: c.get(""), InvalidKeyError, "key"),
    ("long-key", lambda c: c.get("k" * 1025), InvalidKeyError, "key"),
    ("bytes-key", lambda c: c.get(b"k"), InvalidKeyError, "key"),
    ("none-key", lambda c: c.get(None), InvalidKeyError, "key"),
    ("int-key", lambda c: c.exists(42), InvalidKeyError, "key"),
    ("set-surrogate", lambda c: c.set(SURROGATE, 1), InvalidKeyError, "key"),
    ("ttl-of-surrogate", lambda c: c.ttl(SURROGATE), InvalidKeyError, "key"),
    ("delete-one-bad", lambda c: c.delete("fine", SURROGATE), InvalidKeyError, "key"),
    ("mget-one-bad", lambda c: c.mget(["fine", SURROGATE]), InvalidKeyError, "key"),
    ("mget-a-str", lambda c: c.mget("abc"), InvalidArgumentError, "keys"),
    ("mset-one-bad", lambda c: c.mset({"fine": 1, SURROGATE: 2}), InvalidKeyError, "key"),
    ("mset-pairs", lambda c: c.mset([("fine", 1)]), InvalidArgumentError, "items"),
    ("ttl-huge", lambda c: c.set("fine", 1, ttl=1e13), InvalidArgumentError, "ttl"),
    ("ttl-nan", lambda c: c.mset({"fine": 1}, ttl=float("nan")), InvalidArgumentError, "ttl"),
    ("ttl-bool", lambda c: c.set("fine", 1, ttl=True), InvalidArgumentError, "ttl"),
]


@pytest.mark.parametrize(
    ("call", "expected", "argument"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
async def test_hostile_keys_and_arguments_are_refused_before_any_io(
    harness: Harness, call: Any, expected: type[CallerError], argument: str
) -> None:
    """The same caller error on both; nothing stored, nothing sent, no breaker count."""
    cache = harness.cache
    await cache.set("fine", "before")
    sent = list(cache.calls) if isinstance(cache, FakeCache) else None
    with pytest.raises(expected) as caught:
        await call(cache)
    assert caught.value.retryable is False
    assert caught.value.details["argument"] == argument
    if isinstance(cache, FakeCache):
        assert cache.calls == sent
    else:
        breaker = cache.policy.breaker
        assert breaker is not None
        assert (breaker.state.value, breaker.failure_count) == ("closed", 0)
    assert await cache.get("fine") == "before"


@pytest.mark.parametrize(
    "key",
    ["a\x00b", "ключ🔑", "k" * 1024, "\U0010ffff", " "],
    ids=["nul", "utf8", "max", "max-cp", "space"],
)
async def test_unusual_but_valid_keys_round_trip(harness: Harness, key: str) -> None:
    """NUL, non-ASCII, the longest allowed and a blank key are keys like any other."""
    await harness.cache.set(key, {"k": key})
    assert await harness.cache.get(key) == {"k": key}
    assert await harness.cache.mget([key]) == [{"k": key}]
    assert await harness.cache.delete(key) == 1


async def test_health_check_reports_healthy_with_latency(harness: Harness) -> None:
    """health_check -> (True, {"status": "healthy", "latency_ms": float, ...})."""
    ok, details = await harness.cache.health_check(latency_threshold_ms=1000.0)
    assert ok is True
    assert details["status"] == "healthy"
    assert isinstance(details["latency_ms"], float)
    assert 0.0 <= details["latency_ms"] < 1000.0
    assert "circuit_breaker" in details
    assert details["latency_threshold_ms"] == 1000.0

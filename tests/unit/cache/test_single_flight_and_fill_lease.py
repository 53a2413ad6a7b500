"""SingleFlight sharing rules and RedisFillLease on a real Redis.

SingleFlight: followers get the leader's result or the *same* exception object; a
failure is not remembered; ``coalesced``, ``len`` and ``in_flight`` report exactly the
flights running. RedisFillLease: one holder per key at a time, its lease expires on its
own, only the holder's token releases it or fills the value, and a writer deleting the
lock key ends the holder's claim.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from infra.cache.singleflight import (
    LEASE_GRANTED,
    LEASE_HELD_ELSEWHERE,
    LEASE_VALUE,
    RedisFillLease,
    SingleFlight,
)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_followers_get_the_same_exception_object_and_it_is_not_remembered() -> None:
    flights: SingleFlight[str] = SingleFlight()
    gate = asyncio.Event()
    failure = LookupError("backend said no")
    runs = 0

    async def work() -> str:
        nonlocal runs
        runs += 1
        await gate.wait()
        if runs == 1:
            raise failure
        return "second time lucky"

    tasks = [asyncio.create_task(flights.run("k", work)) for _ in range(4)]
    await settle()
    assert len(flights) == 1
    assert flights.in_flight("k")
    assert not flights.in_flight("other")
    assert flights.coalesced == 3
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(r is failure for r in results)
    assert runs == 1
    assert len(flights) == 0
    assert not flights.in_flight("k")
    assert await flights.run("k", work) == "second time lucky"  # the failure was not kept
    assert runs == 2
    assert flights.coalesced == 3


async def test_keys_fly_separately() -> None:
    flights: SingleFlight[str] = SingleFlight()
    gate = asyncio.Event()

    async def work(value: str) -> str:
        await gate.wait()
        return value

    a = asyncio.create_task(flights.run("a", lambda: work("A")))
    b = asyncio.create_task(flights.run("b", lambda: work("B")))
    await settle()
    assert len(flights) == 2
    assert flights.coalesced == 0
    gate.set()
    assert (await a, await b) == ("A", "B")
    assert len(flights) == 0


async def test_a_failed_flight_with_no_followers_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The shared exception is marked retrieved: no 'never retrieved' report at GC."""
    flights: SingleFlight[None] = SingleFlight()

    async def work() -> None:
        raise ValueError("alone")

    with pytest.raises(ValueError, match="alone"):
        await flights.run("k", work)
    await settle()
    import gc

    gc.collect()
    await settle()
    assert "never retrieved" not in caplog.text


# ------------------------------------------------------------------ RedisFillLease
async def test_one_holder_at_a_time_and_only_the_holder_releases(redis_client: Redis) -> None:
    lease = RedisFillLease(redis_client, lease_seconds=30)
    mine, other = RedisFillLease.new_token(), RedisFillLease.new_token()
    assert len(mine) == 16
    assert mine != other
    assert await lease.lease_or_read("v:k", "fill:k", mine) == (LEASE_GRANTED, None)
    assert await lease.lease_or_read("v:k", "fill:k", other) == (LEASE_HELD_ELSEWHERE, None)
    assert await lease.release([("fill:k", other)]) == 0
    assert await redis_client.get("fill:k") == mine.encode()  # a stranger's release did nothing
    assert await lease.release([("fill:k", mine)]) == 1
    assert await lease.release([("fill:k", mine)]) == 0  # already gone
    assert await lease.release([]) == 0
    assert await lease.lease_or_read("v:k", "fill:k", other) == (LEASE_GRANTED, None)
    await redis_client.set("v:k", b"stored")
    assert await lease.lease_or_read("v:k", "fill:k2", mine) == (LEASE_VALUE, b"stored")
    assert await redis_client.exists("fill:k2") == 0  # a stored value takes no lease


async def test_the_lease_expires_on_its_own(redis_client: Redis) -> None:
    lease = RedisFillLease(redis_client, lease_seconds=12.3456)
    token = RedisFillLease.new_token()
    assert await lease.lease_or_read("v:k", "fill:k", token) == (LEASE_GRANTED, None)
    pttl = await redis_client.pttl("fill:k")
    assert 12_000 < pttl <= 12_346  # rounded to the millisecond
    short = RedisFillLease(redis_client, lease_seconds=0.0001)  # at least 1 ms
    assert (await short.lease_or_read("v:s", "fill:short", token))[0] == LEASE_GRANTED
    assert await redis_client.pttl("fill:short") in {-2, 0, 1}


async def test_a_writer_deleting_the_lock_ends_the_holders_claim(redis_client: Redis) -> None:
    lease = RedisFillLease(redis_client, lease_seconds=30)
    token = RedisFillLease.new_token()
    assert await lease.lease_or_read("v:k", "fill:k", token) == (LEASE_GRANTED, None)
    await redis_client.delete("fill:k")  # what a set()/delete() of the key does
    fill: dict[str, Any] = {
        "payload": b"late",
        "ttl_ms": 60_000,
        "channel": "filled",
        "message": "k",
    }
    assert await lease.fill("v:k", "fill:k", token, **fill) is False
    assert await redis_client.exists("v:k") == 0  # nothing written
    assert await lease.release([("fill:k", token)]) == 0
    # while the claim holds, the fill writes the value and ends the lease in one step
    assert await lease.lease_or_read("v:k", "fill:k", token) == (LEASE_GRANTED, None)
    assert await lease.fill("v:k", "fill:k", token, **fill) is True
    assert await redis_client.get("v:k") == b"late"
    assert 0 < await redis_client.pttl("v:k") <= 60_000
    assert await redis_client.exists("fill:k") == 0


@pytest.mark.parametrize("bad", [0, -1, -0.5])
async def test_a_lease_must_be_positive(redis_client: Redis, bad: float) -> None:
    with pytest.raises(ValueError, match=f"lease_seconds must be > 0, got {bad}"):
        RedisFillLease(redis_client, lease_seconds=bad)

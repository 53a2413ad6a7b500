"""SingleFlight (shared results, shared errors, cancellation) and coherence messages."""

from __future__ import annotations

import asyncio

import pytest

from infra.cache.coherence import Message, decode_message, encode_message
from infra.cache.singleflight import SingleFlight


async def test_concurrent_callers_share_one_run() -> None:
    """Callers for the same key await one run; another key runs separately."""
    flight: SingleFlight[int] = SingleFlight()
    gate, runs = asyncio.Event(), []

    async def work(n: int) -> int:
        runs.append(n)
        await gate.wait()
        return n

    a = [asyncio.create_task(flight.run("a", lambda: work(1))) for _ in range(5)]
    b = asyncio.create_task(flight.run("b", lambda: work(2)))
    await asyncio.sleep(0)
    assert flight.in_flight("a")
    gate.set()
    assert await asyncio.gather(*a, b) == [1, 1, 1, 1, 1, 2]
    assert sorted(runs) == [1, 2]
    assert flight.coalesced == 4
    assert len(flight) == 0


async def test_a_new_call_after_completion_runs_again() -> None:
    """A finished flight is forgotten: results and errors are not remembered."""
    flight: SingleFlight[int] = SingleFlight()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first fails")
        return calls

    with pytest.raises(RuntimeError):
        await flight.run("k", work)
    assert await flight.run("k", work) == 2


async def test_a_cancelled_follower_leaves_the_flight_untouched() -> None:
    """Cancelling a follower ends only its wait; the work runs once for the others."""
    flight: SingleFlight[str] = SingleFlight()
    gate, runs = asyncio.Event(), 0

    async def work() -> str:
        nonlocal runs
        runs += 1
        await gate.wait()
        return "done"

    leader = asyncio.create_task(flight.run("k", work))
    follower = asyncio.create_task(flight.run("k", work))
    other = asyncio.create_task(flight.run("k", work))
    await asyncio.sleep(0)
    follower.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert [await leader, await other] == ["done", "done"]
    assert runs == 1
    with pytest.raises(asyncio.CancelledError):
        await follower


async def test_a_cancelled_leader_hands_the_work_to_a_follower() -> None:
    """The leader's cancellation is not the followers': one of them runs the work anew."""
    flight: SingleFlight[str] = SingleFlight()
    gate, runs = asyncio.Event(), 0

    async def work() -> str:
        nonlocal runs
        runs += 1
        await gate.wait()
        return f"run {runs}"

    leader = asyncio.create_task(flight.run("k", work))
    followers = [asyncio.create_task(flight.run("k", work)) for _ in range(3)]
    await asyncio.sleep(0)
    leader.cancel()
    for _ in range(5):
        await asyncio.sleep(0)
    assert runs == 2  # one follower took over; the others joined its flight
    gate.set()
    assert await asyncio.gather(*followers) == ["run 2"] * 3
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert not flight.in_flight("k")


@pytest.mark.parametrize(
    "message",
    [
        Message("o1", keys=("a", "b:c")),
        Message("o1", keys=()),
        Message("o2", prefix="user:"),
        Message("o2", prefix=""),
        Message("o3", filled="k"),
    ],
)
def test_messages_round_trip(message: Message) -> None:
    """Every message kind decodes to what was encoded."""
    assert decode_message(encode_message(message).encode()) == message


@pytest.mark.parametrize("data", [b"not json", b"{}", b'{"o": 1, "k": []}', b'{"o": "x", "k": 3}'])
def test_foreign_payloads_decode_to_none(data: bytes) -> None:
    """Anything that is not one of our messages decodes to None (the owner clears L1)."""
    assert decode_message(data) is None

"""Budget reservations over any sequence of call outcomes, on the real litellm path.

An outside checker drives the adapter through the loopback server with every way a call
can end -- answered, streamed, a stream abandoned or cancelled by its caller, 429, 500,
a malformed body, a stream cut mid-way, a filtered answer, a usage that cannot be token
counts -- and checks the bookkeeping after each: nothing stays reserved, the spend is
exactly what was recorded, and the server saw every answer end (no stream left open).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infra.exceptions import InfraError
from infra.llm import LiteLLMAdapter, LLMRateLimiter
from infra.observability.cost import CostBudget, CostTracker
from infra.ports import ChatMessage
from infra.resilience import ResiliencePolicy, RetryConfig
from infra.testing.openai_server import (
    ContentFiltered,
    Fault,
    Malformed,
    OpenAITestServer,
    SlowStream,
    Status,
    TruncatedStream,
)

pytestmark = pytest.mark.llm
USER = ChatMessage("user", "one two three four five")


class _Flat:
    """One micro-dollar per token."""

    def price(self, model: str, *, input_tokens: int, output_tokens: int) -> float | None:
        del model
        return (input_tokens + output_tokens) * 1e-6


class _Ledger(CostTracker):
    """A cost tracker that also keeps every recorded cost."""

    def __init__(self) -> None:
        super().__init__(pricer=_Flat(), budgets=[CostBudget(limit_usd=1.0)])
        self.recorded: list[float] = []

    def record(self, model: str, **kwargs: Any) -> float | None:
        cost = super().record(model, **kwargs)
        if cost is not None and not kwargs.get("cached", False):
            self.recorded.append(cost)
        return cost


def _negative_usage() -> str:
    choice = {"index": 0, "message": {"role": "assistant", "content": "a b"}}
    usage = {"prompt_tokens": -7, "completion_tokens": 2, "total_tokens": -5}
    body = {"id": "x", "object": "chat.completion", "created": 1, "model": "m"}
    return json.dumps({**body, "choices": [{**choice, "finish_reason": "stop"}], "usage": usage})


#: outcome -> (the fault scripted for its request, how the caller calls)
OUTCOMES: dict[str, tuple[Fault | None, str]] = {
    "answered": (None, "complete"),
    "streamed": (None, "stream"),
    "abandoned": (SlowStream(chunk_delay=30.0), "abandon"),
    "cancelled": (SlowStream(chunk_delay=30.0), "cancel"),
    "cancelled before the first chunk": (SlowStream(first_chunk_delay=30.0), "cancel early"),
    "429": (Status(429, headers={"Retry-After": "0"}), "complete"),
    "500": (Status(500), "complete"),
    "500 on a stream": (Status(500), "stream"),
    "malformed": (Malformed(), "complete"),
    "cut": (TruncatedStream(after_chunks=2), "stream"),
    "filtered": (ContentFiltered(), "complete"),
    "filtered stream": (ContentFiltered(), "stream"),
    "negative usage": (Malformed(_negative_usage()), "complete"),
}


@pytest.fixture
def server(openai_server: OpenAITestServer) -> Iterator[OpenAITestServer]:
    openai_server.reset()
    yield openai_server
    openai_server.reset()


async def _call(
    llm: LiteLLMAdapter, server: OpenAITestServer, how: str, *, max_tokens: int = 8
) -> None:
    if how == "complete":
        await llm.complete([USER], max_tokens=max_tokens)
    elif how == "stream":
        _ = [piece async for piece in llm.stream([USER], max_tokens=max_tokens)]
    elif how == "abandon":
        stream = llm.stream([USER], max_tokens=max_tokens)
        async for _piece in stream:
            break  # the caller stops reading after the first piece ...
        await stream.aclose()  # ... and closes it, as `async with aclosing(...)` does
    else:
        received = asyncio.Event()
        sent = len(server.requests)

        async def consume() -> None:
            async for _piece in llm.stream([USER], max_tokens=8):
                received.set()

        task = asyncio.create_task(consume())
        if how == "cancel":
            await received.wait()
        else:
            await asyncio.to_thread(server.wait_requests, sent + 1)  # it reached the server
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outcomes=st.lists(st.sampled_from(sorted(OUTCOMES)), min_size=1, max_size=6))
@example(outcomes=["negative usage", "answered"])
@example(outcomes=["cancelled", "cancelled before the first chunk", "abandoned", "streamed"])
async def test_after_any_outcomes_nothing_stays_reserved(
    server: OpenAITestServer, outcomes: list[str]
) -> None:
    """Property: after every call, whatever its outcome, the budget holds no reservation
    and the spend is the sum of what was recorded; the server saw every answer end."""
    server.reset()
    cost = _Ledger()
    llm = LiteLLMAdapter(
        model="openai/test-chat",
        api_base=server.base_url,
        api_key="not-a-real-key",
        policy=ResiliencePolicy.instant("llm", retry=RetryConfig(max_attempts=1)),
        request_timeout=60.0,
        cost=cost,
        limiter=LLMRateLimiter.in_process(rpm=60_000, tpm=10_000_000),
    )
    for outcome in outcomes:
        fault, how = OUTCOMES[outcome]
        if fault is not None:
            server.script(fault)
        # A typed failure is the outcome; the bookkeeping is what is checked.
        with contextlib.suppress(InfraError):
            await _call(llm, server, how)
        assert [row["reserved_usd"] for row in cost.budget_status()] == [0], outcome
        endings = await asyncio.to_thread(server.wait_answered)
        assert len(endings) == len(server.requests), f"{outcome}: an answer is still open"
    assert cost.spent() == pytest.approx(sum(cost.recorded))
    assert cost.budget_status()[0]["spent_usd"] == pytest.approx(sum(cost.recorded))


class _CountingBucket:
    """A token bucket that grants everything and adds up what it was charged."""

    def __init__(self) -> None:
        self.taken = 0.0

    async def acquire(self, tokens: float = 1, timeout: float | None = None) -> None:
        del timeout
        self.taken += tokens

    async def try_acquire(self, tokens: float = 1) -> bool:
        self.taken += tokens
        return True


class _TokenLedger(CostTracker):
    """A cost tracker that keeps the tokens of every recorded call."""

    def __init__(self) -> None:
        super().__init__(pricer=_Flat())
        self.tokens = 0

    def record(self, model: str, **kwargs: Any) -> float | None:
        self.tokens += kwargs["input_tokens"] + kwargs["output_tokens"]
        return super().record(model, **kwargs)


_LIMITED = {
    "answered": (None, "complete"),
    "streamed": (None, "stream"),
    "cut": (TruncatedStream(after_chunks=2), "stream"),
    "abandoned": (SlowStream(chunk_delay=30.0), "abandon"),
    "400": (Status(400, "max_tokens is too large"), "complete"),
    "429": (Status(429, headers={"Retry-After": "0"}), "complete"),
    "500": (Status(500), "complete"),
    "500 on a stream": (Status(500), "stream"),
    "malformed": (Malformed(), "complete"),
}


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    calls=st.lists(
        st.tuples(st.sampled_from(sorted(_LIMITED)), st.integers(1, 10**12)),
        min_size=1,
        max_size=6,
    )
)
@example(calls=[("400", 10**12), ("answered", 8)])
async def test_the_token_bucket_is_charged_exactly_what_the_answers_used(
    server: OpenAITestServer, calls: list[tuple[str, int]]
) -> None:
    """Property: after any calls -- with any ``max_tokens``, answered or failed -- what
    the token bucket took plus what it carries to the next request is exactly the tokens
    of the recorded answers. A failed attempt used to keep its whole estimate (prompt +
    ``max_tokens``) as carried debt: one call with a huge ``max_tokens`` refused by the
    provider made every later request pay a full minute's tokens, for good."""
    server.reset()
    bucket = _CountingBucket()
    limiter = LLMRateLimiter(requests=None, tokens=bucket, token_capacity=1_000.0)
    cost = _TokenLedger()
    llm = LiteLLMAdapter(
        model="openai/test-chat",
        api_base=server.base_url,
        api_key="not-a-real-key",
        policy=ResiliencePolicy.instant("llm", retry=RetryConfig(max_attempts=1)),
        request_timeout=60.0,
        cost=cost,
        limiter=limiter,
    )
    for outcome, max_tokens in calls:
        fault, how = _LIMITED[outcome]
        if fault is not None:
            server.script(fault)
        with contextlib.suppress(InfraError):
            await _call(llm, server, how, max_tokens=max_tokens)
    assert bucket.taken + limiter.carried_tokens == pytest.approx(cost.tokens)

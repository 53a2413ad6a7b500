"""Budgets hold for every kind of LLM call: chat and embeddings are reserved before they
are sent and reconciled after, so no sequence of calls spends past a budget."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.exceptions import BudgetExceededError
from infra.observability.cost import CostBudget, CostTracker
from infra.ports import ChatMessage
from infra.testing.fakes import FakeLLM

WORDS = ["sea", "sky", "stone", "river", "light", "wind"]


class CountingPricer:
    """One micro-dollar per token; counts how often it was asked."""

    def __init__(self) -> None:
        self.asked = 0

    def price(self, model: str, *, input_tokens: int, output_tokens: int) -> float | None:
        self.asked += 1
        return (input_tokens + output_tokens) * 1e-6


@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from(["chat", "stream", "embed"]),
            st.lists(st.sampled_from(WORDS), min_size=1, max_size=6),
        ),
        max_size=12,
    ),
    limit_tokens=st.integers(1, 60),
)
async def test_no_sequence_of_calls_spends_past_the_budget(
    calls: list[tuple[str, list[str]]], limit_tokens: int
) -> None:
    """Property: whatever mix of chat, streamed and embedding calls, the spend never passes
    the budget, a refused call reaches no provider, and nothing stays reserved after a
    call ends. (Embedding calls used to skip the reservation and spend past it.)"""
    limit = limit_tokens * 1e-6
    cost = CostTracker(pricer=CountingPricer(), budgets=[CostBudget(limit_usd=limit)])
    fake = FakeLLM(dimensions=8, cost=cost)
    for kind, words in calls:
        sent = len(fake.calls)
        try:
            if kind == "chat":
                await fake.complete([ChatMessage("user", " ".join(words))], max_tokens=3)
            elif kind == "stream":
                stream = fake.stream([ChatMessage("user", " ".join(words))], max_tokens=3)
                _ = [piece async for piece in stream]
            else:
                await fake.embed(words)
        except BudgetExceededError:
            assert len(fake.calls) == sent, "a refused call reached the provider"
        assert cost.spent() <= limit + 1e-12
        assert [row["reserved_usd"] for row in cost.budget_status()] == [0]


async def test_a_failed_embedding_call_gives_its_reservation_back() -> None:
    cost = CostTracker(pricer=CountingPricer(), budgets=[CostBudget(limit_usd=1e-5)])
    fake = FakeLLM(dimensions=8, cost=cost)
    fake.fail_next(ValueError("the provider broke"))
    with pytest.raises(Exception, match="broke"):
        await fake.embed(["sea sky"])
    assert [row["reserved_usd"] for row in cost.budget_status()] == [0]
    assert cost.spent() == 0


async def test_without_a_budget_for_the_caller_nothing_is_priced_before_the_call() -> None:
    """Reserving prices the worst case only when a budget holds it (a price-map lookup
    per call is saved otherwise); the call is still priced once, after."""
    pricer = CountingPricer()
    cost = CostTracker(pricer=pricer, budgets=[CostBudget(limit_usd=1.0, caller="tenant-a")])
    fake = FakeLLM(dimensions=8, cost=cost)
    await fake.complete([ChatMessage("user", "hello")], caller="tenant-b")
    await fake.embed(["hello"], caller="tenant-b")
    assert pricer.asked == 2  # the two records, no reservation
    await fake.embed(["hello"], caller="tenant-a")
    assert pricer.asked == 4  # reserved, then recorded
    assert cost.spent(caller="tenant-a") == pytest.approx(1e-6)

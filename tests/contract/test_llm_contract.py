"""LLMCompletion / EmbeddingModel contract: FakeLLM and LiteLLMAdapter (through litellm,
against the loopback OpenAI-compatible test server) behave the same.

Both answer from ``infra.testing.llm_answers``, so exact texts, usage and vectors are
pinned. Both run under ``ResiliencePolicy.instant("llm")`` (the design's breaker and
retry on a virtual clock): scripted provider failures are retried or not by the same
rules, counted as attempts the backend saw.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.exceptions import (
    BudgetExceededError,
    ConfigurationError,
    ContentFilteredError,
    ContextWindowExceededError,
    InvalidArgumentError,
    LLMAuthenticationError,
    ProviderUnavailableError,
    RateLimitedError,
)
from infra.llm import LiteLLMAdapter
from infra.observability.cost import CostBudget, CostTracker
from infra.ports import ChatMessage, EmbeddingModel, LLMCompletion
from infra.resilience import ResiliencePolicy
from infra.testing.fakes import FakeLLM
from infra.testing.llm_answers import answer, count_tokens, embedding
from infra.testing.openai_server import ContentFiltered, Fault, OpenAITestServer, Status

DIMENSIONS = 16
USER = ChatMessage("user", "tell me about the sea")


class FlatPricer:
    """One micro-dollar per token, for every model: costs are checkable by hand."""

    def price(self, model: str, *, input_tokens: int, output_tokens: int) -> float | None:
        return (input_tokens + output_tokens) * 1e-6


@dataclass
class Backend:
    """An LLM under test plus the means to script its provider and count its attempts."""

    llm: Any
    script: Callable[[str, int], None]
    attempts: Callable[[], int]
    build: Callable[..., Any]


def _fake_backend() -> Backend:
    made: list[FakeLLM] = []

    def build(**kwargs: Any) -> FakeLLM:
        fake = FakeLLM(dimensions=DIMENSIONS, policy=ResiliencePolicy.instant("llm"), **kwargs)
        made.append(fake)
        return fake

    errors: dict[str, Callable[[], Exception]] = {
        "rate_limited": lambda: RateLimitedError(retry_after=0.25),
        "unavailable": ProviderUnavailableError,
        "auth": LLMAuthenticationError,
        "context": ContextWindowExceededError,
    }

    def script(kind: str, times: int) -> None:
        for fake in made:
            if kind == "content_filter":
                fake.filter_next()
            else:
                fake.fail_next(errors[kind](), times=times)

    build()
    return Backend(made[0], script, lambda: sum(len(f.calls) for f in made), build)


def _server_backend(server: OpenAITestServer) -> Backend:
    def build(**kwargs: Any) -> LiteLLMAdapter:
        options: dict[str, Any] = {
            "model": "openai/test-chat",
            "api_base": server.base_url,
            "api_key": "test-key",
            "embedding_model": "openai/test-embedding",
            "embedding_dimensions": DIMENSIONS,  # the server's default size
            "send_dimensions": False,  # litellm refuses `dimensions` for unknown models
            "policy": ResiliencePolicy.instant("llm"),
            "request_timeout": 10.0,
        }
        options.update(kwargs)
        return LiteLLMAdapter(**options)

    faults: dict[str, Fault] = {
        "rate_limited": Status(429, "slow down", headers={"Retry-After": "0.25"}),
        "unavailable": Status(500, "upstream broke"),
        "auth": Status(401, "bad key"),
        "context": Status(
            400, "This model's maximum context length is 8 tokens", code="context_length_exceeded"
        ),
        "content_filter": ContentFiltered(),
    }

    def script(kind: str, times: int) -> None:
        server.script(faults[kind], times=times)

    return Backend(build(), script, lambda: len(server.requests), build)


@pytest.fixture(params=["fake", pytest.param("server", marks=pytest.mark.llm)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "fake":
        yield _fake_backend()
        return
    server: OpenAITestServer = request.getfixturevalue("openai_server")
    server.reset()
    yield _server_backend(server)
    assert server.pending_faults == 0, "a scripted fault was not used"
    server.reset()


# --------------------------------------------------------------------------- chat
async def test_satisfies_both_ports(backend: Backend) -> None:
    assert isinstance(backend.llm, LLMCompletion)
    assert isinstance(backend.llm, EmbeddingModel)


async def test_complete_answers_deterministically_with_usage(backend: Backend) -> None:
    messages = [ChatMessage("system", "be brief"), USER]
    completion = await backend.llm.complete(messages)
    text, tokens, finish = answer(USER.content, None)
    assert completion.text == text == "echo: tell me about the sea"
    assert completion.finish_reason == finish == "stop"
    assert completion.usage.prompt_tokens == count_tokens(["be brief", USER.content])
    assert completion.usage.completion_tokens == tokens
    assert completion.cost_usd is None  # no cost tracker given


async def test_max_tokens_cuts_the_answer(backend: Backend) -> None:
    completion = await backend.llm.complete([USER], max_tokens=2)
    assert completion.text == "echo: tell"
    assert (completion.finish_reason, completion.usage.completion_tokens) == ("length", 2)


async def test_stream_yields_the_same_text_in_pieces(backend: Backend) -> None:
    pieces = [piece async for piece in backend.llm.stream([USER])]
    assert len(pieces) > 1
    assert "".join(pieces) == (await backend.llm.complete([USER])).text


async def test_cost_is_recorded_per_caller_for_plain_and_streamed_calls(backend: Backend) -> None:
    cost = CostTracker(pricer=FlatPricer())
    llm = backend.build(cost=cost)
    completion = await llm.complete([USER], caller="tenant-a")
    assert completion.cost_usd == pytest.approx(completion.usage.total_tokens * 1e-6)
    _ = [piece async for piece in llm.stream([USER], caller="tenant-b")]
    assert cost.spent(caller="tenant-a") == pytest.approx(completion.cost_usd)
    assert cost.spent(caller="tenant-b") == pytest.approx(completion.cost_usd)
    assert all(row["reserved_usd"] == 0 for row in cost.budget_status())


async def test_budget_refuses_before_anything_is_sent(backend: Backend) -> None:
    cost = CostTracker(pricer=FlatPricer(), budgets=[CostBudget(limit_usd=1e-5)])
    llm = backend.build(cost=cost)
    before = backend.attempts()
    with pytest.raises(BudgetExceededError):
        await llm.complete([USER], max_tokens=100)  # worst case 106 tokens > 10 allowed
    with pytest.raises(BudgetExceededError):
        _ = [piece async for piece in llm.stream([USER], max_tokens=100)]
    assert backend.attempts() == before
    assert cost.spent() == 0


async def test_a_rate_limited_call_is_retried(backend: Backend) -> None:
    backend.script("rate_limited", 1)
    before = backend.attempts()
    completion = await backend.llm.complete([USER])
    assert completion.text.startswith("echo:")
    assert backend.attempts() - before == 2


async def test_an_unavailable_provider_fails_typed_after_the_retry_budget(
    backend: Backend,
) -> None:
    backend.script("unavailable", 3)
    before = backend.attempts()
    with pytest.raises(ProviderUnavailableError) as caught:
        await backend.llm.complete([USER])
    assert caught.value.retryable
    assert backend.attempts() - before == 3


@pytest.mark.parametrize(
    ("kind", "error"),
    [("auth", LLMAuthenticationError), ("context", ContextWindowExceededError)],
)
async def test_non_retryable_failures_are_tried_once(
    backend: Backend, kind: str, error: type[Exception]
) -> None:
    backend.script(kind, 1)
    before = backend.attempts()
    with pytest.raises(error):
        await backend.llm.complete([USER])
    assert backend.attempts() - before == 1


async def test_a_filtered_answer_raises_content_filtered(backend: Backend) -> None:
    backend.script("content_filter", 1)
    with pytest.raises(ContentFilteredError):
        await backend.llm.complete([USER])


async def test_a_stream_is_retried_before_its_first_chunk(backend: Backend) -> None:
    backend.script("unavailable", 1)
    before = backend.attempts()
    pieces = [piece async for piece in backend.llm.stream([USER])]
    assert "".join(pieces) == "echo: tell me about the sea"
    assert backend.attempts() - before == 2


async def test_no_chat_provider_is_a_configuration_error(backend: Backend) -> None:
    llm = backend.build(model=None)
    with pytest.raises(ConfigurationError, match="SEMANTICA_LLM_API_KEY"):
        await llm.complete([USER])
    with pytest.raises(ConfigurationError, match="SEMANTICA_LLM_API_BASE"):
        llm.stream([USER])


@pytest.mark.parametrize(
    "messages",
    [[], "hello", [("user", "hi")], [ChatMessage("robot", "hi")]],  # type: ignore[arg-type]
)
async def test_bad_messages_are_refused_before_any_call(backend: Backend, messages: Any) -> None:
    before = backend.attempts()
    with pytest.raises(InvalidArgumentError, match="messages"):
        await backend.llm.complete(messages)
    assert backend.attempts() == before


async def test_bad_max_tokens_is_refused(backend: Backend) -> None:
    with pytest.raises(InvalidArgumentError, match="max_tokens"):
        await backend.llm.complete([USER], max_tokens=0)


# --------------------------------------------------------------------- embeddings
async def test_embed_returns_one_unit_vector_per_text_in_order(backend: Backend) -> None:
    texts = ["alpha", "beta", "alpha", "gamma"]
    vectors = await backend.llm.embed(texts)
    assert vectors == [embedding(text, DIMENSIONS) for text in texts]
    assert backend.llm.dimensions == DIMENSIONS
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-9) for v in vectors)


async def test_embed_of_nothing_is_nothing_and_calls_nobody(backend: Backend) -> None:
    before = backend.attempts()
    assert await backend.llm.embed([]) == []
    assert backend.attempts() == before


@pytest.mark.parametrize("texts", ["one text", [1, 2], [b"bytes"]])
async def test_bad_texts_are_refused(backend: Backend, texts: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="texts"):
        await backend.llm.embed(texts)


async def test_embed_failures_are_typed_and_retried(backend: Backend) -> None:
    backend.script("unavailable", 1)
    before = backend.attempts()
    assert await backend.llm.embed(["x"]) == [embedding("x", DIMENSIONS)]
    assert backend.attempts() - before == 2


async def test_an_embedding_batch_is_reserved_against_the_budget_before_it_is_sent(
    backend: Backend,
) -> None:
    """The batch's estimated input tokens are held against the budget before the call and
    reconciled with the reported usage after: a batch estimated past the budget is
    refused unsent, one that fits is billed its real usage and holds nothing after."""
    cost = CostTracker(pricer=FlatPricer(), budgets=[CostBudget(limit_usd=5e-6)])
    llm = backend.build(cost=cost)
    before = backend.attempts()
    with pytest.raises(BudgetExceededError):
        await llm.embed(["one two three", "four five six"])  # ~6 tokens > 5 allowed
    assert backend.attempts() == before
    assert cost.spent() == 0
    await llm.embed(["one two"], caller="tenant-a")
    assert cost.spent(caller="tenant-a") == pytest.approx(2e-6)  # the reported usage
    assert [row["reserved_usd"] for row in cost.budget_status()] == [0]


async def test_concurrent_embedding_batches_cannot_overspend_together(backend: Backend) -> None:
    """Two batches that each fit but not both: the second is refused while the first is
    in flight (its estimate is reserved), so the budget is never passed."""
    cost = CostTracker(pricer=FlatPricer(), budgets=[CostBudget(limit_usd=5e-6)])
    llm = backend.build(cost=cost)
    outcomes = await asyncio.gather(
        llm.embed(["red green blue"]), llm.embed(["cyan magenta yellow"]), return_exceptions=True
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["BudgetExceededError", "list"]
    assert cost.spent() <= 5e-6


@given(texts=st.lists(st.text(min_size=1, max_size=30).filter(str.strip), min_size=1, max_size=8))
async def test_fake_embeddings_keep_order_for_any_batch(texts: list[str]) -> None:
    """Property (fake only: the server path is the same code): the i-th vector is the
    i-th text's, whatever the batch."""
    fake = FakeLLM(dimensions=8)
    assert await fake.embed(texts) == [embedding(text, 8) for text in texts]

"""LiteLLMAdapter against a provider that answers badly: what an outside checker sends
through the loopback OpenAI-compatible server (the real litellm code path).

* embedding answers that are not the vectors asked for (missing, duplicated or
  out-of-range indexes, empty, ragged, non-finite, of another size) are a typed
  ``ProviderUnavailableError``, never silently returned;
* a size learned from the first answer is never sent back as a ``dimensions`` request
  (it used to be: every later call then failed on providers without that argument);
* token counts a provider reports that cannot be counts are ignored, and whatever the
  provider answers, no reservation stays held after the call.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infra.exceptions import ProviderUnavailableError
from infra.llm import LiteLLMAdapter, import_litellm
from infra.llm.litellm_adapter import OFF_LOOP_CHARACTERS
from infra.observability.cost import CostBudget, CostTracker
from infra.ports import ChatMessage
from infra.resilience import ResiliencePolicy, RetryConfig
from infra.testing.openai_server import Malformed, MalformedChunk, OpenAITestServer

pytestmark = pytest.mark.llm
FIXTURES = [HealthCheck.function_scoped_fixture]


@pytest.fixture
def server(openai_server: OpenAITestServer) -> Iterator[OpenAITestServer]:
    openai_server.reset()
    yield openai_server
    openai_server.reset()


class _Flat:
    """One micro-dollar per token."""

    def price(self, model: str, *, input_tokens: int, output_tokens: int) -> float | None:
        del model
        return (input_tokens + output_tokens) * 1e-6


def adapter(server: OpenAITestServer, **kwargs: Any) -> LiteLLMAdapter:
    options: dict[str, Any] = {
        "model": "openai/test-chat",
        "embedding_model": "openai/test-embedding",
        "api_base": server.base_url,
        "api_key": "not-a-real-key",
        "policy": ResiliencePolicy.instant("llm", retry=RetryConfig(max_attempts=1)),
        "request_timeout": 5.0,
    }
    options.update(kwargs)
    return LiteLLMAdapter(**options)


def embedding_body(data: list[dict[str, Any]]) -> str:
    usage = {"prompt_tokens": 2, "total_tokens": 2}
    return json.dumps({"object": "list", "model": "test", "data": data, "usage": usage})


def item(index: Any, vector: Any) -> dict[str, Any]:
    return {"object": "embedding", "index": index, "embedding": vector}


# ------------------------------------------------------------------- dimensions
@settings(max_examples=8, suppress_health_check=FIXTURES)
@given(
    batches=st.lists(
        st.lists(st.text("abc ", min_size=1).filter(str.strip), min_size=1, max_size=3), min_size=2
    )
)
@example(batches=[["a"], ["b"]])
async def test_a_learned_size_is_never_requested(
    server: OpenAITestServer, batches: list[list[str]]
) -> None:
    """Property: without a configured size, no call sends ``dimensions`` and every call
    succeeds -- litellm refuses the argument for most models, so a learned size sent
    back made every call after the first fail."""
    server.reset()
    llm = adapter(server)
    for batch in batches:
        vectors = await llm.embed(batch)
        assert len(vectors) == len(batch)
    assert [r.body.get("dimensions") for r in server.requests] == [None] * len(batches)
    assert llm.dimensions == len(vectors[0])


async def test_a_configured_size_is_requested(server: OpenAITestServer) -> None:
    llm = adapter(server, embedding_model="openai/text-embedding-3-small", embedding_dimensions=8)
    [vector] = await llm.embed(["sea"])
    assert len(vector) == 8
    assert server.requests[-1].body.get("dimensions") == 8


# ------------------------------------------------------------ malformed vectors
_VECTOR = [1.0, 0.0]
_MALFORMED = st.one_of(
    # a vector missing, null, empty, ragged, non-numeric or of another size
    st.just([item(0, _VECTOR)]),
    st.just([item(0, None), item(1, _VECTOR)]),
    st.just([item(0, []), item(1, _VECTOR)]),
    st.just([item(0, _VECTOR), item(1, [0.0, 1.0, 2.0])]),
    st.just([item(0, [1.0, 0.0, 0.0]), item(1, [0.0, 1.0, 0.0])]),
    st.just([item(0, "AACAPw=="), item(1, _VECTOR)]),
    st.just([item(0, _VECTOR), item(1, _VECTOR), item(2, _VECTOR)]),
    # indexes that do not name each input once
    st.tuples(st.integers(-3, 5), st.integers(-3, 5))
    .filter(lambda ix: sorted(ix) != [0, 1])
    .map(lambda ix: [item(ix[0], _VECTOR), item(ix[1], _VECTOR)]),
    st.sampled_from(["0", 0.0, None, True])
    .map(lambda bad: [item(bad, _VECTOR), item(1, _VECTOR)])
    .filter(lambda rows: rows[0]["index"] is not None),
    # a number that is not finite (JSON has no NaN; Python's json writes it)
    st.sampled_from([float("nan"), float("inf"), float("-inf")]).map(
        lambda bad: [item(0, [bad, 0.0]), item(1, _VECTOR)]
    ),
)


@settings(max_examples=30, suppress_health_check=FIXTURES)
@given(data=_MALFORMED)
@example(data=[item(0, None), item(1, _VECTOR)])
@example(data=[item(0, _VECTOR), item(0, [0.0, 1.0])])
@example(data=[item(0, _VECTOR), item(1, [0.0, 1.0, 2.0])])
async def test_a_malformed_embedding_answer_is_provider_unavailable(
    server: OpenAITestServer, data: list[dict[str, Any]]
) -> None:
    """Property: an answer that is not two vectors of the configured size, indexed 0 and
    1, of finite numbers, is a typed ``ProviderUnavailableError`` (it used to come back
    as an empty, ragged, reordered or NaN vector -- or a bare ``ValueError``) and leaves
    no reservation behind."""
    server.reset()
    cost = CostTracker(pricer=_Flat(), budgets=[CostBudget(limit_usd=1.0)])
    llm = adapter(server, embedding_dimensions=2, send_dimensions=False, cost=cost)
    server.script(Malformed(embedding_body(data)))
    with pytest.raises(ProviderUnavailableError):
        await llm.embed(["first", "second"])
    assert [row["reserved_usd"] for row in cost.budget_status()] == [0]
    assert cost.spent() == 0


async def test_a_well_formed_answer_in_any_index_order_is_put_in_input_order(
    server: OpenAITestServer,
) -> None:
    llm = adapter(server, embedding_dimensions=2, send_dimensions=False)
    server.script(Malformed(embedding_body([item(1, [0.0, 1.0]), item(0, [1.0, 0.0])])))
    assert await llm.embed(["first", "second"]) == [[1.0, 0.0], [0.0, 1.0]]


# ---------------------------------------------------------------- odd usage
def chat_body(usage: dict[str, Any]) -> str:
    choice = {"index": 0, "message": {"role": "assistant", "content": "a b"}}
    return json.dumps(
        {
            "id": "chatcmpl-odd",
            "object": "chat.completion",
            "created": 1,
            "model": "test-chat",
            "choices": [{**choice, "finish_reason": "stop"}],
            "usage": usage,
        }
    )


# (litellm itself refuses fractional counts: its parsing warns, which tests make errors)
_COUNTS = st.one_of(st.integers(-(10**6), -1), st.just(None), st.just(0))


@settings(max_examples=15, suppress_health_check=FIXTURES)
@given(prompt=_COUNTS, completion=_COUNTS)
@example(prompt=-5, completion=2)
async def test_usage_that_cannot_be_token_counts_is_ignored(
    server: OpenAITestServer, prompt: Any, completion: Any
) -> None:
    """Property: a provider's usage with negative or missing counts is not trusted
    (the answer is costed from counted tokens) and the call still succeeds with nothing
    left reserved. A negative count used to raise a bare ``ValueError`` after the answer
    and keep the call's reservation held for the rest of the period."""
    server.reset()
    cost = CostTracker(pricer=_Flat(), budgets=[CostBudget(limit_usd=1.0)])
    llm = adapter(server, cost=cost)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 1}
    server.script(Malformed(chat_body(usage)))
    answer = await llm.complete([ChatMessage("user", "one two")], max_tokens=4)
    assert answer.text == "a b"
    assert answer.usage.prompt_tokens >= 0
    assert answer.usage.completion_tokens >= 0
    assert [row["reserved_usd"] for row in cost.budget_status()] == [0]


# ------------------------------------------------------------- broken trailers
def _frame(**fields: Any) -> str:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return "data: " + json.dumps({**chunk, **fields}) + "\n\n"


_GARBAGE = st.sampled_from(
    [
        'data: {"id": "chatcmpl-broken", "choices": [\n\n',
        "event: ping\n\n",
        "data: \n\n",
        'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n',
        _frame(choices="abc"),
        _frame(choices=[], usage={"prompt_tokens": "x", "completion_tokens": 1}),
    ]
)
WORDS = "one two three"
PIECES = len(WORDS.split()) + 1  # "echo:" and one chunk per word
# frames: the pieces, the finish chunk, the usage chunk, [DONE]


@settings(max_examples=12, suppress_health_check=FIXTURES)
@given(frame=_GARBAGE, trailer=st.sampled_from(["usage", "done"]))
@example(frame='data: {"id": "chatcmpl-broken", "choices": [\n\n', trailer="usage")
async def test_a_broken_trailer_after_the_finish_does_not_fail_a_complete_answer(
    server: OpenAITestServer, frame: str, trailer: str
) -> None:
    """Property: when the chunk with the finish reason has come, a malformed usage chunk
    or ``[DONE]`` ends the stream normally -- the whole text delivered, its counted usage
    billed, nothing reserved. It used to raise ``ProviderUnavailableError`` after the
    caller had every piece (and had been billed): a retry would pay twice."""
    server.reset()
    cost = CostTracker(pricer=_Flat(), budgets=[CostBudget(limit_usd=1.0)])
    llm = adapter(server, cost=cost)
    at = PIECES + 1 if trailer == "usage" else PIECES + 2
    server.script(MalformedChunk(at, frame))
    pieces = [piece async for piece in llm.stream([ChatMessage("user", WORDS)])]
    assert "".join(pieces) == f"echo: {WORDS}"
    assert cost.spent() > 0
    assert [row["reserved_usd"] for row in cost.budget_status()] == [0]


@settings(max_examples=8, suppress_health_check=FIXTURES)
@given(frame=_GARBAGE, at=st.integers(1, PIECES))
async def test_a_broken_chunk_before_the_finish_fails_typed(
    server: OpenAITestServer, frame: str, at: int
) -> None:
    """The other side: a broken chunk before the finish reason is a typed failure (the
    answer is incomplete), still billed for what came and leaving nothing reserved."""
    server.reset()
    cost = CostTracker(pricer=_Flat(), budgets=[CostBudget(limit_usd=1.0)])
    llm = adapter(server, cost=cost)
    server.script(MalformedChunk(at, frame))
    received: list[str] = []

    async def consume() -> None:
        async for piece in llm.stream([ChatMessage("user", WORDS)]):
            received.append(piece)  # noqa: PERF401 - keeps what came before the failure

    with pytest.raises(ProviderUnavailableError):
        await consume()
    assert len(received) <= at
    assert [row["reserved_usd"] for row in cost.budget_status()] == [0]


# ------------------------------------------------------------------ huge prompts
@settings(max_examples=6, suppress_health_check=FIXTURES)
@given(
    size=st.sampled_from([10, 1_000, OFF_LOOP_CHARACTERS - 1])
    | st.integers(OFF_LOOP_CHARACTERS, 3 * OFF_LOOP_CHARACTERS),
    operation=st.sampled_from(["chat", "stream", "embeddings"]),
)
@example(size=2 * OFF_LOOP_CHARACTERS, operation="chat")
async def test_a_large_input_is_counted_off_the_event_loop(
    server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch, size: int, operation: str
) -> None:
    """Property: with a budget (so tokens are counted before the call), an input of at
    least ``OFF_LOOP_CHARACTERS`` is counted in a worker thread, a smaller one on the
    loop. litellm's counter takes ~0.1 s per million characters; on the loop, one huge
    prompt stalled every other call of the process."""
    server.reset()
    litellm = import_litellm()
    loop_thread = threading.get_ident()
    threads: list[tuple[int, bool]] = []  # (characters counted, on the loop?)
    real_counter = litellm.token_counter

    def counter(*args: Any, **kwargs: Any) -> Any:
        counted = sum(len(m["content"]) for m in kwargs.get("messages") or [])
        counted += len(kwargs.get("text") or "")
        threads.append((counted, threading.get_ident() == loop_thread))
        return real_counter(*args, **kwargs)

    monkeypatch.setattr(litellm, "token_counter", counter)
    cost = CostTracker(pricer=_Flat(), budgets=[CostBudget(limit_usd=1e6)])
    llm = adapter(server, cost=cost, embedding_dimensions=16, send_dimensions=False)
    text = ("word " * (size // 5 + 1))[:size].strip() or "w"
    if operation == "chat":
        await llm.complete([ChatMessage("user", text)], max_tokens=4)
    elif operation == "stream":
        _ = [piece async for piece in llm.stream([ChatMessage("user", text)], max_tokens=4)]
    else:
        await llm.embed([text])
    assert threads, "nothing was counted before the call"
    for counted, on_loop in threads:
        assert on_loop == (counted < OFF_LOOP_CHARACTERS), (counted, on_loop)

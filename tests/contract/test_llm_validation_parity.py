"""One chat/embedding preamble: hostile calls raise the same typed error from FakeLLM and
from LiteLLMAdapter (against the loopback OpenAI-compatible server), before any request.

Both subclass ``infra.llm.base.LLMClientBase``. A Hypothesis stream of ``complete``,
``stream`` and ``embed`` calls -- odd messages, roles, token limits, texts and input
types, mixed with valid ones -- goes to both. Whenever either rejects the call with an
``InfraError`` raised before the provider is asked, the other rejects it with the same
type (and, for an invalid argument, naming the same argument); the provider never saw
the rejected call; and a call neither rejects succeeds on both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infra.exceptions import InfraError, InvalidArgumentError
from infra.llm import LiteLLMAdapter
from infra.ports import ChatMessage
from infra.resilience import ResiliencePolicy
from infra.testing.fakes import FakeLLM
from infra.testing.openai_server import OpenAITestServer

pytestmark = pytest.mark.llm

DIMENSIONS = 16

_wrong: st.SearchStrategy[Any] = st.sampled_from(
    [None, True, 1.5, b"bytes", "text", ("user", "hi"), {}, object]
)
_text = st.one_of(
    st.sampled_from(["hi", "", " ", "a\x00b", "\ud800", "x" * 2000]), st.text(max_size=5)
)
_message = st.one_of(
    st.builds(ChatMessage, st.sampled_from(["user", "system", "assistant", "robot", ""]), _text),
    _wrong,
)
_messages = st.one_of(st.lists(_message, max_size=3), _wrong)
_max_tokens = st.one_of(st.none(), st.sampled_from([0, -1, 1, 8, True, 2.0, "3"]))
_texts = st.one_of(st.lists(st.one_of(_text, _wrong), max_size=3), _wrong)
_input_type = st.sampled_from(["document", "query", "passage", None, 1])
_temperature = st.one_of(
    st.none(),
    st.sampled_from([0, 0.7, 2, -1.0, 2.5, True, "hot", float("nan"), float("inf")]),
)
_model = st.one_of(st.none(), st.sampled_from(["openai/test-chat", "", "  ", 5, b"m"]))
_caller = st.one_of(
    st.none(), st.sampled_from(["tenant-7", "", " ", 5, object(), "c" * 257, "c" * 256])
)

Call = tuple[str, tuple[Any, ...], dict[str, Any]]
_calls: st.SearchStrategy[Call] = st.one_of(
    st.tuples(
        st.just("complete"),
        st.tuples(_messages),
        st.fixed_dictionaries(
            {"max_tokens": _max_tokens},
            optional={"temperature": _temperature, "model": _model, "caller": _caller},
        ),
    ),
    st.tuples(
        st.just("stream"),
        st.tuples(_messages),
        st.fixed_dictionaries(
            {"max_tokens": _max_tokens}, optional={"model": _model, "caller": _caller}
        ),
    ),
    st.tuples(
        st.just("embed"),
        st.tuples(_texts),
        st.fixed_dictionaries({"input_type": _input_type}, optional={"caller": _caller}),
    ),
)


@pytest.fixture
async def clients(openai_server: OpenAITestServer) -> AsyncIterator[tuple[Any, Any]]:
    """The fake and the adapter on the loopback server, each under an instant policy."""
    openai_server.reset()
    fake = FakeLLM(dimensions=DIMENSIONS, policy=ResiliencePolicy.instant("llm"))
    real = LiteLLMAdapter(
        model="openai/test-chat",
        api_base=openai_server.base_url,
        api_key="test-key",
        embedding_model="openai/test-embedding",
        embedding_dimensions=DIMENSIONS,
        send_dimensions=False,
        policy=ResiliencePolicy.instant("llm"),
        request_timeout=10.0,
    )
    yield fake, real
    openai_server.reset()


async def _outcome(client: Any, call: Call) -> tuple[Any, ...]:
    """("ok",) or the error's type and, for a rejected argument, its name."""
    method, args, kwargs = call
    try:
        result = getattr(client, method)(*args, **kwargs)
        if method == "stream":
            async for _ in result:
                pass
        else:
            await result
    except InvalidArgumentError as exc:
        return (type(exc), exc.argument)
    except InfraError as exc:
        return (type(exc),)
    return ("ok",)


_HI = [ChatMessage("user", "hi")]


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=_calls)
@example(call=("complete", (_HI,), {"max_tokens": None, "temperature": float("nan")}))
@example(call=("complete", (_HI,), {"max_tokens": None, "temperature": -1.0}))
@example(call=("complete", (_HI,), {"max_tokens": None, "model": 5}))
@example(call=("embed", (["a"],), {"input_type": "document", "caller": object()}))
async def test_the_fake_and_the_adapter_reject_the_same_calls_the_same_way(
    clients: tuple[Any, Any], openai_server: OpenAITestServer, call: Call
) -> None:
    """Same error type and argument from both, and no request for a rejected call --
    messages, max_tokens, texts, input_type, and temperature, model and caller (which
    went unchecked: a NaN temperature was a retried ``ProviderUnavailableError`` from
    the adapter and fine from the fake, -1 went to the provider, a non-str model raised
    a bare ``AttributeError``, any object became a cost-metric label)."""
    fake, real = clients
    before = len(openai_server.requests)
    fake_outcome = await _outcome(fake, call)
    real_outcome = await _outcome(real, call)
    assert fake_outcome == real_outcome, call[0]
    if fake_outcome != ("ok",):
        assert len(openai_server.requests) == before


_words = st.text(st.characters(codec="utf-8"), max_size=30)
_conversations = st.lists(
    st.builds(ChatMessage, st.sampled_from(["system", "user", "assistant"]), _words),
    min_size=1,
    max_size=3,
)


async def _answer(client: Any, operation: str, messages: list[ChatMessage], limit: Any) -> Any:
    """What a valid call gives back, comparable across clients (errors by type)."""
    try:
        if operation == "complete":
            done = await client.complete(messages, max_tokens=limit)
            return ("ok", done.text, done.usage, done.finish_reason)
        if operation == "stream":
            return ("ok", [piece async for piece in client.stream(messages, max_tokens=limit)])
        texts = [m.content for m in messages if m.content.strip()]
        return ("ok", await client.embed(texts)) if texts else ("ok", [])
    except InfraError as exc:
        return (type(exc),)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    messages=_conversations,
    limit=st.one_of(st.none(), st.integers(1, 8)),
    operation=st.sampled_from(["complete", "stream", "embed"]),
)
async def test_the_fake_and_the_adapter_answer_valid_calls_alike(
    clients: tuple[Any, Any],
    messages: list[ChatMessage],
    limit: int | None,
    operation: str,
) -> None:
    """Differential property: for any valid conversation (any Unicode, any roles, any
    ``max_tokens``) the fake and the adapter on the loopback server give the same text,
    usage, finish reason, stream pieces and vectors -- so a test passing on the fake
    says something about the real path."""
    fake, real = clients
    assert await _answer(fake, operation, messages, limit) == await _answer(
        real, operation, messages, limit
    )

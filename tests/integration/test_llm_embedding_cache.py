"""CachedEmbeddings in front of the real adapter (litellm, loopback test server): partial
hits hold from the first call on, whatever the adapter learns about the model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.cache import ThreeTierCache
from infra.llm import LiteLLMAdapter
from infra.llm.embedding_cache import CachedEmbeddings
from infra.resilience import ManualClock, ResiliencePolicy
from infra.testing.fakes import FakeCache
from infra.testing.llm_answers import DEFAULT_DIMENSIONS, embedding
from infra.testing.openai_server import OpenAITestServer

pytestmark = pytest.mark.llm
TEXTS = [f"passage {i}" for i in range(100)]


def adapter(server: OpenAITestServer) -> LiteLLMAdapter:
    """No configured size: the adapter learns it from the first answer."""
    return LiteLLMAdapter(
        model=None,
        api_base=server.base_url,
        api_key="k",
        embedding_model="openai/test-embedding",
        send_dimensions=False,
        policy=ResiliencePolicy.instant("llm"),
    )


def embedded_texts(server: OpenAITestServer) -> list[list[str]]:
    return [list(r.body["input"]) for r in server.requests if r.path.endswith("/embeddings")]


@settings(max_examples=15)
@given(cached=st.integers(1, 99))
async def test_a_partly_cached_batch_sends_only_its_misses_from_the_first_call(
    openai_server: OpenAITestServer, cached: int
) -> None:
    """Property: N texts cached by the process's first call, then the batch of 100: the
    provider gets exactly the 100 - N others, and the answer is in order. (The key used
    the size the adapter had learned, so the first call's vectors were never found.)"""
    openai_server.reset()
    llm = adapter(openai_server)
    embeddings = CachedEmbeddings(
        llm,
        cache=ThreeTierCache(FakeCache(clock=ManualClock()), clock=ManualClock()),
        model="openai/test-embedding",
    )
    await embeddings.embed(TEXTS[:cached])
    vectors = await embeddings.embed(TEXTS)
    assert embedded_texts(openai_server) == [TEXTS[:cached], TEXTS[cached:]]
    assert vectors == [embedding(text, DEFAULT_DIMENSIONS) for text in TEXTS]
    openai_server.reset()

"""The provider key never shows, whatever it looks like and whatever the provider echoes.

Providers quote a wrong key back (``Incorrect API key provided: ...``) and litellm puts
that text into its exception; the adapter's typed error, its chained traceback and the
call path's log lines must not carry it. Keys of the ``sk-...`` shape were masked by
pattern; any other shape (Google's ``AIza...``, Azure's hex, Mistral's ...) leaked
until the adapter registered its keys with the redaction registry.
"""

from __future__ import annotations

import string
import traceback
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infra.exceptions import InfraError
from infra.llm import LiteLLMAdapter
from infra.ports import ChatMessage
from infra.resilience import ResiliencePolicy, RetryConfig
from infra.testing.openai_server import OpenAITestServer, Status

pytestmark = pytest.mark.llm
FIXTURES = [HealthCheck.function_scoped_fixture]

_KEYS = st.text(string.ascii_letters + string.digits + "-_", min_size=16, max_size=48).filter(
    lambda key: len(set(key)) > 4
)
_ECHOES = st.sampled_from(
    [
        (401, "Incorrect API key provided: {key}. You can find your API key at ..."),
        (403, "key {key} may not use this model"),
        (429, "rate limit reached for key {key}"),
        (500, "internal error while serving {key}"),
        (400, "bad request; api-key header was '{key}'"),
    ]
)


@pytest.fixture
def server(openai_server: OpenAITestServer) -> Iterator[OpenAITestServer]:
    openai_server.reset()
    yield openai_server
    openai_server.reset()


def _rendered(error: BaseException) -> str:
    details = repr(error.details) if isinstance(error, InfraError) else ""
    chain = "".join(traceback.format_exception(error))
    return "\n".join([str(error), repr(error), details, chain])


@settings(max_examples=25, suppress_health_check=FIXTURES)
@given(key=_KEYS, echo=_ECHOES, operation=st.sampled_from(["chat", "embeddings"]))
@example(
    key="AIzaSyD0123456789abcdefghijklmnopqrstu",
    echo=(401, "Incorrect API key provided: {key}."),
    operation="chat",
)
async def test_a_key_the_provider_echoes_is_masked_everywhere(
    server: OpenAITestServer,
    caplog: pytest.LogCaptureFixture,
    key: str,
    echo: tuple[int, str],
    operation: str,
) -> None:
    """Property: for any key shape and any status whose message quotes the key, the
    typed error's text, repr, details, chained traceback and the log lines hide it."""
    server.reset()
    caplog.clear()
    status, message = echo
    llm = LiteLLMAdapter(
        model="openai/test-chat",
        embedding_model="openai/test-embedding",
        api_base=server.base_url,
        api_key=key,
        policy=ResiliencePolicy.instant("llm", retry=RetryConfig(max_attempts=1)),
        request_timeout=5.0,
    )
    server.script(Status(status, message.format(key=key)))
    call = llm.complete([ChatMessage("user", "hi")]) if operation == "chat" else llm.embed(["hi"])
    with pytest.raises(InfraError) as caught:
        await call
    assert server.requests[-1].authorized  # the key was sent -- and only there
    assert key not in _rendered(caught.value)
    assert key not in repr(llm)
    assert key not in caplog.text

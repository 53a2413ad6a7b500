"""LiteLLMAdapter on the real litellm code path against the scripted loopback server:
timeouts, broken streams, malformed bodies, Retry-After, litellm's own retries off,
litellm's price map, telemetry, secrets, and the lazy import."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from infra.exceptions import (
    InfraError,
    LLMAuthenticationError,
    LLMTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
)
from infra.llm import LiteLLMAdapter, LLMRateLimiter, import_litellm
from infra.observability import (
    CostTracker,
    MetricsCollector,
    reset_metrics_collector,
    reset_tracing,
    set_metrics_collector,
    setup_tracing,
)
from infra.ports import ChatMessage
from infra.resilience import ResiliencePolicy, RetryConfig
from infra.testing.openai_server import (
    Delay,
    Malformed,
    OpenAITestServer,
    SlowStream,
    Status,
    TruncatedStream,
)

pytestmark = pytest.mark.llm
USER = ChatMessage("user", "one two three four five")
USER_DICT = {"role": "user", "content": USER.content}
SECRET = "sk-test-0123456789abcdef"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(openai_server: OpenAITestServer) -> Iterator[OpenAITestServer]:
    openai_server.reset()
    yield openai_server
    openai_server.reset()


@pytest.fixture
def collector() -> Iterator[MetricsCollector]:
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    yield fresh
    reset_metrics_collector()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    setup_tracing(service_name="llm-test", exporter=exporter)
    yield exporter
    reset_tracing()


def adapter(server: OpenAITestServer, *, attempts: int = 3, **kwargs: Any) -> LiteLLMAdapter:
    options: dict[str, Any] = {
        "model": "openai/test-chat",
        "api_base": server.base_url,
        "api_key": SECRET,
        "policy": ResiliencePolicy.instant("llm", retry=RetryConfig(max_attempts=attempts)),
        "request_timeout": 5.0,
    }
    options.update(kwargs)
    return LiteLLMAdapter(**options)


async def test_a_late_answer_is_an_llm_timeout(server: OpenAITestServer) -> None:
    server.script(Delay(2.0))
    with pytest.raises(LLMTimeoutError):
        await adapter(server, attempts=1, request_timeout=0.3).complete([USER])
    assert len(server.requests) == 1


async def test_a_slow_first_chunk_is_retried_within_the_first_token_timeout(
    server: OpenAITestServer,
) -> None:
    server.script(SlowStream(first_chunk_delay=2.0))
    llm = adapter(server, first_token_timeout=0.3)
    pieces = [piece async for piece in llm.stream([USER])]
    assert "".join(pieces) == "echo: one two three four five"
    assert len(server.requests) == 2


async def test_slow_later_chunks_are_not_a_first_token_timeout(server: OpenAITestServer) -> None:
    server.script(SlowStream(chunk_delay=0.1))
    llm = adapter(server, first_token_timeout=0.3)
    assert "".join([p async for p in llm.stream([USER])]) == "echo: one two three four five"
    assert len(server.requests) == 1


async def test_a_stream_cut_after_its_first_chunk_fails_typed_and_is_not_retried(
    server: OpenAITestServer,
) -> None:
    server.script(TruncatedStream(after_chunks=2))
    cost = CostTracker(pricer=_Flat())
    received: list[str] = []

    async def consume() -> None:
        async for piece in adapter(server, cost=cost).stream([USER]):
            received.append(piece)  # noqa: PERF401 - keeps what came before the failure

    with pytest.raises(ProviderUnavailableError):
        await consume()
    assert received == ["echo:", " one"]
    assert len(server.requests) == 1
    assert cost.spent() > 0  # what was produced is billed: counted tokens, not lost
    assert all(row["reserved_usd"] == 0 for row in cost.budget_status())


async def test_a_stream_past_its_total_timeout_fails_typed_and_is_not_retried(
    server: OpenAITestServer,
) -> None:
    """The first chunk comes in time, later ones too slowly: the stream's total deadline
    (``request_timeout`` from its start) ends it with an LLM timeout, without a retry."""
    server.script(SlowStream(chunk_delay=0.3))
    llm = adapter(server, request_timeout=0.5, first_token_timeout=0.4)
    received: list[str] = []

    async def consume() -> None:
        async for piece in llm.stream([USER]):
            received.append(piece)  # noqa: PERF401 - keeps what came before the failure

    with pytest.raises(LLMTimeoutError):
        await consume()
    assert received
    assert received[0] == "echo:"
    assert len(server.requests) == 1


async def test_a_first_chunk_late_on_every_attempt_is_an_llm_timeout(
    server: OpenAITestServer,
) -> None:
    server.script(SlowStream(first_chunk_delay=1.0), times=2)
    llm = adapter(server, attempts=2, first_token_timeout=0.2)
    with pytest.raises(LLMTimeoutError):
        _ = [piece async for piece in llm.stream([USER])]
    assert len(server.requests) == 2


async def test_a_malformed_body_is_provider_unavailable(server: OpenAITestServer) -> None:
    server.script(Malformed())
    with pytest.raises(ProviderUnavailableError):
        await adapter(server, attempts=1).complete([USER])


async def test_litellm_and_sdk_retries_are_off(server: OpenAITestServer) -> None:
    """Our policy is the one retry budget: one attempt of ours is one request."""
    server.script(Status(500), times=2)
    with pytest.raises(ProviderUnavailableError):
        await adapter(server, attempts=2).complete([USER])
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [408, 429, 500, 503])
@pytest.mark.parametrize("operation", ["chat", "stream", "embeddings"])
async def test_one_attempt_is_one_request_for_every_operation_and_retried_status(
    server: OpenAITestServer, operation: str, status: int
) -> None:
    """The statuses the openai SDK retries by itself, on every operation: with one
    attempt of ours, the provider sees one request (litellm's OpenAI embedding path
    turned an explicit ``max_retries=0`` into two SDK retries)."""
    server.script(Status(status), times=3)
    llm = adapter(server, attempts=1, embedding_model="openai/test-embedding")

    async def call() -> None:
        if operation == "chat":
            await llm.complete([USER])
        elif operation == "stream":
            _ = [piece async for piece in llm.stream([USER])]
        else:
            await llm.embed(["x"])

    with pytest.raises(InfraError):
        await call()
    assert len(server.requests) == 1
    server.reset()  # the two faults left unused


async def test_the_limiter_is_charged_the_estimate_and_reconciled_with_the_usage(
    server: OpenAITestServer,
) -> None:
    """Chat: charged litellm's prompt count + max_tokens before the call; embeddings: the
    batch's counted input tokens. After the call the difference to the reported usage
    is carried into the next charge."""
    litellm = import_litellm()
    chat_limiter = LLMRateLimiter.in_process(tpm=1_000_000)
    completion = await adapter(server, limiter=chat_limiter).complete([USER], max_tokens=50)
    prompt = litellm.token_counter(model="openai/test-chat", messages=[USER_DICT])
    assert chat_limiter.carried_tokens == completion.usage.total_tokens - (prompt + 50)
    embedding_limiter = LLMRateLimiter.in_process(tpm=1_000_000)
    texts = ["alpha beta", "gamma delta epsilon"]
    await adapter(
        server,
        limiter=embedding_limiter,
        embedding_model="openai/test-embedding",
        send_dimensions=False,
    ).embed(texts)
    counted = litellm.token_counter(
        model="openai/test-embedding", text="\n".join(texts), count_response_tokens=True
    )
    assert embedding_limiter.carried_tokens == 5 - counted  # the server reports 5 words


async def test_retry_after_is_reported_and_pauses_the_limiter(server: OpenAITestServer) -> None:
    server.script(Status(429, headers={"Retry-After": "7"}), times=2)
    limiter = LLMRateLimiter.in_process(rpm=6000)
    with pytest.raises(RateLimitedError) as caught:
        await adapter(server, attempts=2, limiter=limiter).complete([USER])
    assert caught.value.retry_after == 7.0
    assert 6.0 < limiter.paused_for <= 7.0


async def test_litellm_prices_a_known_model_into_llm_cost_usd_total(
    server: OpenAITestServer, collector: MetricsCollector
) -> None:
    cost = CostTracker(collector)
    llm = adapter(server, model="openai/gpt-4o-mini", cost=cost)
    completion = await llm.complete([USER], caller="tenant-1")
    assert completion.cost_usd is not None
    assert completion.cost_usd > 0
    assert collector.get_counter("llm_cost_usd_total") == pytest.approx(completion.cost_usd)
    assert collector.get_counter("llm_cost_usd_total", caller="tenant-1") > 0


async def test_an_unpriced_model_is_counted_not_zeroed(
    server: OpenAITestServer, collector: MetricsCollector
) -> None:
    cost = CostTracker(collector)
    completion = await adapter(server, model="openai/no-such-model-xyz", cost=cost).complete([USER])
    assert completion.cost_usd is None
    assert collector.get_counter("llm_unpriced_calls_total", model="openai/no-such-model-xyz") == 1
    assert collector.get_counter("llm_cost_usd_total") == 0


async def test_calls_are_recorded_with_gen_ai_series(
    server: OpenAITestServer, collector: MetricsCollector
) -> None:
    llm = adapter(server, embedding_model="openai/test-embedding", send_dimensions=False)
    await llm.complete([USER])
    await llm.embed(["a", "b"])
    calls = "backend_calls_total"
    assert collector.get_counter(calls, component="llm", operation="chat", outcome="ok") == 1
    assert collector.get_counter(calls, component="llm", operation="embeddings", outcome="ok") == 1
    tokens = collector.get_histogram_stats(
        "gen_ai_client_token_usage", gen_ai_request_model="openai/test-chat"
    )
    assert tokens.count == 2  # input and output of the chat call
    duration = collector.get_histogram_stats(
        "gen_ai_client_operation_duration_seconds", gen_ai_operation_name="embeddings"
    )
    assert duration.count == 1


@pytest.mark.parametrize("operation", ["chat", "stream", "embeddings"])
async def test_each_call_is_one_span_with_the_gen_ai_attributes(
    server: OpenAITestServer, spans: InMemorySpanExporter, operation: str
) -> None:
    llm = adapter(server, embedding_model="openai/test-embedding", send_dimensions=False)
    if operation == "chat":
        await llm.complete([USER])
    elif operation == "stream":
        _ = [piece async for piece in llm.stream([USER])]
    else:
        await llm.embed(["a b", "c"])
    model = "openai/test-embedding" if operation == "embeddings" else "openai/test-chat"
    (span,) = [s for s in spans.get_finished_spans() if s.name.endswith(model)]
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == (
        "embeddings" if operation == "embeddings" else "chat"
    )
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == model
    if operation != "stream":  # a stream's usage comes after its span (the first chunk)
        assert attributes["gen_ai.usage.input_tokens"] == (3 if operation == "embeddings" else 6)
        assert attributes["gen_ai.response.model"]


async def test_the_api_key_never_shows(server: OpenAITestServer) -> None:
    server.script(Status(401, f"bad key {SECRET}"))
    llm = adapter(server)
    with pytest.raises(LLMAuthenticationError) as caught:
        await llm.complete([USER])
    assert SECRET not in repr(llm)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value.details)
    assert server.requests[-1].authorized


def test_importing_the_packages_does_not_import_litellm() -> None:
    code = (
        "import sys, containers, infra, containers.application, containers.llm, infra.llm, "
        "infra.testing.fakes, infra.testing.openai_server\n"
        "assert 'litellm' not in sys.modules, 'litellm imported'\n"
        "assert 'openai' not in sys.modules, 'openai imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(  # noqa: S603 - our interpreter, fixed code
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


FIRST_CALL_IMPORT = """
import asyncio, sys, threading
on_main_thread = []
def hook(event, args):
    if event == "import" and args and str(args[0]).partition(".")[0] == "litellm":
        on_main_thread.append(threading.current_thread() is threading.main_thread())
sys.addaudithook(hook)
from infra.llm import LiteLLMAdapter
from infra.ports import ChatMessage
from infra.testing.openai_server import OpenAITestServer

async def main() -> None:
    with OpenAITestServer() as server:
        llm = LiteLLMAdapter(
            model="openai/test-chat", embedding_model="openai/test-embed",
            api_base=server.base_url, api_key="sk-test",
        )
        await asyncio.gather(llm.complete([ChatMessage("user", "hi")]), llm.embed(["a", "b"]))
asyncio.run(main())
# litellm itself loads in the worker; litellm imports a few small modules of its own
# lazily during the first request, on whatever thread makes it.
assert on_main_thread and on_main_thread[0] is False, on_main_thread[:5]
assert on_main_thread.count(False) > 10 * on_main_thread.count(True), on_main_thread
"""


def test_the_first_call_imports_litellm_off_the_event_loop() -> None:
    """Importing litellm takes seconds; on the event loop's thread it stalled every other
    task of the service during its first LLM call (7 s measured). Seen by an audit hook:
    the import runs in a worker thread."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(  # noqa: S603 - our interpreter, fixed code
        [sys.executable, "-c", FIRST_CALL_IMPORT],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


class _Flat:
    def price(self, model: str, *, input_tokens: int, output_tokens: int) -> float | None:
        return (input_tokens + output_tokens) * 1e-6

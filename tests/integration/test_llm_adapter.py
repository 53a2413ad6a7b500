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

from infra.exceptions import (
    LLMAuthenticationError,
    LLMTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
)
from infra.llm import LiteLLMAdapter, LLMRateLimiter
from infra.observability import (
    CostTracker,
    MetricsCollector,
    reset_metrics_collector,
    set_metrics_collector,
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


class _Flat:
    def price(self, model: str, *, input_tokens: int, output_tokens: int) -> float | None:
        return (input_tokens + output_tokens) * 1e-6

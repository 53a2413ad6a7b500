"""The LLM container inside the application container, its fakes, and configuration."""

from __future__ import annotations

import pytest
from dependency_injector import providers

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import resolve, start, stop
from containers.llm import LLMContainer, llm_policy
from containers.testing import use_fakes
from infra.exceptions import BudgetExceededError, ConfigurationError, ProviderUnavailableError
from infra.llm import LiteLLMAdapter
from infra.observability.cost import CostTracker
from infra.ports import ChatMessage, EmbeddingModel, LLMCompletion
from infra.testing.openai_server import OpenAITestServer


def app_with(settings: Settings) -> ApplicationContainer:
    app = ApplicationContainer()
    app.core.settings.override(providers.Object(settings))
    app.observability.tracing_global.override(providers.Object(False))
    return app


async def test_use_fakes_installs_the_fake_llm_under_the_containers_policy() -> None:
    app = app_with(Settings(log_level="WARNING"))
    with use_fakes(app) as fakes:
        await start(app)
        try:
            handed_out: object = app.llm.adapter()
            assert handed_out is fakes.llm
            llm = fakes.llm
            assert isinstance(llm, LLMCompletion)
            assert isinstance(llm, EmbeddingModel)
            fakes.llm.fail_next(ProviderUnavailableError())
            answer = await llm.complete([ChatMessage("user", "hi there")])
            assert answer.text == "echo: hi there"
            assert len(fakes.llm.calls) == 2  # retried by the llm policy, as the real one
            cached = app.llm.embeddings()
            first = await cached.embed(["a", "b"])
            assert await cached.embed(["b", "a"]) == first[::-1]
            assert [c.operation for c in fakes.llm.calls].count("embeddings") == 1
            report = await app.health().readiness()
            assert report.to_dict()["checks"]["llm"]["status"] == "healthy"
        finally:
            await stop(app)


async def test_without_a_chat_provider_completion_names_the_settings_to_set() -> None:
    adapter = LiteLLMAdapter.from_settings(Settings())
    assert adapter.model is None
    with pytest.raises(ConfigurationError) as caught:
        await adapter.complete([ChatMessage("user", "hi")])
    for variable in ("SEMANTICA_LLM_MODEL", "SEMANTICA_LLM_API_KEY", "SEMANTICA_LLM_API_BASE"):
        assert variable in str(caught.value)


def test_a_key_or_a_base_url_configures_chat_and_embeddings() -> None:
    assert not Settings().llm.chat_configured
    assert not Settings().llm.embedding_configured  # the local E5 default serves
    with_key = Settings(llm_api_key="sk-x")
    assert with_key.llm.chat_configured
    assert with_key.llm.embedding_configured
    only_embeddings = Settings(embedding_api_base="http://127.0.0.1:9/v1")
    assert (only_embeddings.llm.chat_configured, only_embeddings.llm.embedding_configured) == (
        False,
        True,
    )
    assert LiteLLMAdapter.from_settings(with_key).model == "gpt-4o-mini"


def test_the_llm_policy_gives_an_attempt_the_whole_request_timeout() -> None:
    policy = llm_policy(Settings(llm_request_timeout=90.0, attempt_timeout=10.0), component="llm")
    assert "90" in policy.describe()


@pytest.mark.llm
async def test_the_monthly_budget_of_the_environment_refuses_chat_and_embeddings_unsent(
    monkeypatch: pytest.MonkeyPatch, openai_server: OpenAITestServer
) -> None:
    """SEMANTICA_LLM_MONTHLY_BUDGET_USD becomes the container's monthly budget; a chat call
    (prompt + max_tokens) and an embedding batch (its input tokens) estimated past it are
    refused before anything is sent."""
    monkeypatch.setenv("SEMANTICA_LLM_MONTHLY_BUDGET_USD", "0.0000001")
    monkeypatch.setenv("SEMANTICA_LLM_API_BASE", openai_server.base_url)
    monkeypatch.setenv("SEMANTICA_LLM_MODEL", "openai/gpt-4o-mini")  # priced by litellm
    monkeypatch.setenv("SEMANTICA_EMBEDDING_MODEL", "openai/text-embedding-3-small")
    llm = LLMContainer(
        settings=providers.Object(Settings()),
        redis_client=providers.Object(None),
        three_tier=providers.Object(None),
    )
    await start(llm)
    try:
        cost: CostTracker = await resolve(llm.cost)
        assert [(b["period"], b["limit_usd"]) for b in cost.budget_status()] == [("month", 1e-7)]
        adapter: LiteLLMAdapter = await resolve(llm.adapter)
        before = len(openai_server.requests)
        with pytest.raises(BudgetExceededError):
            await adapter.complete([ChatMessage("user", "hi")])
        with pytest.raises(BudgetExceededError):
            await adapter.embed([f"passage number {i} of the corpus" for i in range(100)])
        assert len(openai_server.requests) == before
    finally:
        await stop(llm)

"""``FakeLLM``: a deterministic :class:`~infra.ports.LLMCompletion` and
:class:`~infra.ports.EmbeddingModel` for tests, with the real adapter's rules.

::

    llm = FakeLLM(policy=ResiliencePolicy.instant("llm"))
    answer = await llm.complete([ChatMessage("user", "hello world")])
    assert answer.text == "echo: hello world"
    llm.fail_next(RateLimitedError(retry_after=1.0))   # the next attempt is throttled

Answers come from :mod:`infra.testing.llm_answers`, the model the loopback
:class:`~infra.testing.openai_server.OpenAITestServer` serves too, so the contract suite
(``tests/contract/test_llm_contract.py``) runs the same assertions on this fake and on
:class:`~infra.llm.LiteLLMAdapter` against that server.

What behaves like the real adapter: every call runs on the one call path
(:class:`~infra.calls.BackendCalls`, component ``"llm"``, ``gen_ai.*`` telemetry) under
the injected policy, so scripted failures are retried, counted by the breaker and
recorded exactly as provider failures would be; streams are retried only before their
first chunk; argument checks and their errors; ``ConfigurationError`` without a chat
model; ``ContentFilteredError`` for a filtered answer (script it with
:meth:`FakeLLM.filter_next`); with a :class:`~infra.observability.cost.CostTracker`, the
same reserve-then-record of the worst case and the real usage.

No litellm, no network, no clock: nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from infra.calls import BackendCalls
from infra.exceptions import ConfigurationError, InfraError, InvalidArgumentError
from infra.llm import costing
from infra.llm.responses import (
    CONTENT_FILTER,
    check_messages,
    check_texts,
    content_filtered,
)
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.ports import ChatMessage, Completion, TokenUsage
from infra.resilience import ResiliencePolicy
from infra.testing.llm_answers import (
    DEFAULT_DIMENSIONS,
    answer,
    answer_chunks,
    count_tokens,
    embedding,
)
from infra.translation import translate_exception
from infra.validation import check_latency_threshold

if TYPE_CHECKING:
    from infra.observability.cost import CostTracker

__all__ = ["FakeLLM", "FakeLLMCall"]

Fault = InfraError | Exception | type[Exception]


class FakeLLMCall(NamedTuple):
    """One attempt the fake saw: ``"chat"`` or ``"embeddings"``, the model, the inputs."""

    operation: str
    model: str
    inputs: tuple[str, ...]


@dataclass(slots=True)
class _Scripted:
    error: Fault | None  # None: a content-filtered answer
    remaining: int


class FakeLLM:
    """Deterministic chat and embeddings; see the module docstring.

    Args:
        model: Chat model name reported back (``None``: no chat provider configured).
        embedding_model: Embedding model name (``None``: no embedding provider).
        dimensions: Embedding length.
        policy: Resilience policy of every call (tests pass ``ResiliencePolicy.instant``).
        cost: Cost tracker (``None``: nothing costed, ``cost_usd`` is ``None``).
        default_max_tokens: ``max_tokens`` when a call gives none.
    """

    def __init__(
        self,
        *,
        model: str | None = "fake-chat",
        embedding_model: str | None = "fake-embedding",
        dimensions: int = DEFAULT_DIMENSIONS,
        policy: ResiliencePolicy | None = None,
        cost: CostTracker | None = None,
        default_max_tokens: int = 1024,
    ) -> None:
        if dimensions < 1:
            raise InvalidArgumentError(
                f"dimensions must be >= 1, got {dimensions!r}", details={"argument": "dimensions"}
            )
        self._model = model
        self._embedding_model = embedding_model
        self._dimensions = dimensions
        self._policy = policy if policy is not None else ResiliencePolicy.passthrough("llm")
        self._collector: MetricsCollector | None = None
        self._tracing: TracingState | None = None
        self._cost = cost
        self._default_max_tokens = default_max_tokens
        self._scripts: list[_Scripted] = []
        self._backends: dict[str, BackendCalls] = {}
        #: Every attempt, oldest first.
        self.calls: list[FakeLLMCall] = []

    # ---------------------------------------------------------------- scripting
    def fail_next(self, error: Fault, *, times: int = 1) -> None:
        """The next ``times`` attempts raise ``error`` (translated like a provider's
        exception when it is not already one of ours)."""
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times!r}")
        self._scripts.append(_Scripted(error, times))

    def filter_next(self) -> None:
        """The next chat answer is stopped by the content filter."""
        self._scripts.append(_Scripted(None, 1))

    # -------------------------------------------------------------------- chat
    @property
    def model(self) -> str | None:
        """The chat model (``None``: no chat provider configured)."""
        return self._model

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        caller: str | None = None,
    ) -> Completion:
        """The deterministic answer to the last user message (``temperature`` is
        accepted and has no effect: the answer is deterministic)."""
        del temperature
        name, limit, who = self._chat_call(messages, model, max_tokens, caller)
        prompt_tokens = count_tokens([m.content for m in messages])
        reservation = costing.reserve(self._cost, name, prompt_tokens, limit, who)
        try:
            text, tokens, finish = await self._calls(name).run(
                "chat", self._chat_attempt, name, messages, limit
            )
        except BaseException:
            costing.release(self._cost, reservation)
            raise
        usage = TokenUsage(prompt_tokens, tokens)
        cost = costing.spend(self._cost, name, usage, who, reservation)
        if finish == CONTENT_FILTER:
            raise content_filtered(name)
        return Completion(text=text, model=name, usage=usage, cost_usd=cost, finish_reason=finish)

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        caller: str | None = None,
    ) -> AsyncIterator[str]:
        """The same answer as :meth:`complete`, one word per chunk."""
        name, limit, who = self._chat_call(messages, model, max_tokens, caller)
        return self._stream(messages, name, limit, who)

    async def _stream(
        self, messages: Sequence[ChatMessage], name: str, limit: int, who: str
    ) -> AsyncIterator[str]:
        prompt_tokens = count_tokens([m.content for m in messages])
        reservation = costing.reserve(self._cost, name, prompt_tokens, limit, who)
        try:  # the attempt (retried by the policy) ends with the first chunk
            text, tokens, finish = await self._calls(name).run(
                "chat", self._chat_attempt, name, messages, limit
            )
        except BaseException:
            costing.release(self._cost, reservation)
            raise
        sent = 0
        try:
            for piece in answer_chunks(text) if text else []:
                sent += 1
                yield piece
        finally:
            used = tokens if sent == len(answer_chunks(text) if text else []) else sent
            costing.spend(self._cost, name, TokenUsage(prompt_tokens, used), who, reservation)
        if finish == CONTENT_FILTER:
            raise content_filtered(name)

    # -------------------------------------------------------------- embeddings
    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        return self._dimensions

    async def embed(
        self,
        texts: Sequence[str],
        *,
        input_type: Literal["document", "query"] = "document",
        caller: str | None = None,
    ) -> list[list[float]]:
        """One deterministic unit vector per text, in order."""
        batch = check_texts(texts)
        if input_type not in ("document", "query"):
            raise InvalidArgumentError(
                f"input_type must be 'document' or 'query', got {input_type!r}",
                details={"argument": "input_type"},
            )
        if not batch:
            return []
        name = self._embedding_model
        if name is None:
            raise ConfigurationError("no embedding provider is configured", component="llm")
        vectors: list[list[float]] = await self._calls(name).run(
            "embeddings", self._embed_attempt, name, batch
        )
        if self._cost is not None:
            tokens = count_tokens(batch) - len(batch)
            self._cost.record(
                name, input_tokens=tokens, output_tokens=0, caller=caller or "default"
            )
        return vectors

    async def health_check(
        self, latency_threshold_ms: float = 100.0
    ) -> tuple[bool, dict[str, Any]]:
        """Always healthy, in the adapter's shape."""
        check_latency_threshold(latency_threshold_ms)
        return True, {
            "status": "healthy",
            "latency_ms": 0.0,
            "chat_configured": self._model is not None,
            "model": self._model,
            "embedding_model": self._embedding_model,
        }

    # ---------------------------------------------------------------- attempts
    async def _chat_attempt(
        self, name: str, messages: Sequence[ChatMessage], limit: int
    ) -> tuple[str, int, str]:
        self.calls.append(FakeLLMCall("chat", name, tuple(m.content for m in messages)))
        if self._fault("chat"):
            return "", 0, CONTENT_FILTER
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        return answer(last_user, limit)

    async def _embed_attempt(self, name: str, batch: list[str]) -> list[list[float]]:
        self.calls.append(FakeLLMCall("embeddings", name, tuple(batch)))
        self._fault("embeddings")
        return [embedding(text, self._dimensions) for text in batch]

    def _fault(self, operation: str) -> bool:
        """Raise the next scripted error; ``True`` when a content filter is scripted."""
        if not self._scripts:
            return False
        script = self._scripts[0]
        if script.error is None and operation != "chat":
            return False
        script.remaining -= 1
        if script.remaining <= 0:
            self._scripts.pop(0)
        error = script.error
        if error is None:
            return True
        if isinstance(error, type):
            error = error()
        if isinstance(error, InfraError):
            raise error
        raise translate_exception(error, component="llm", family="llm", operation=operation)

    # ----------------------------------------------------------------- helpers
    def _chat_call(
        self,
        messages: Sequence[ChatMessage],
        model: str | None,
        max_tokens: int | None,
        caller: str | None,
    ) -> tuple[str, int, str]:
        if self._model is None:
            raise ConfigurationError(
                "no chat model provider is configured: set SEMANTICA_LLM_MODEL and "
                "SEMANTICA_LLM_API_KEY, or SEMANTICA_LLM_API_BASE",
                component="llm",
            )
        check_messages(messages)
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise InvalidArgumentError(
                f"max_tokens must be an int >= 1, got {max_tokens!r}",
                details={"argument": "max_tokens"},
            )
        return model or self._model, max_tokens or self._default_max_tokens, caller or "default"

    def attach(
        self,
        *,
        policy: ResiliencePolicy | None,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        """Run later calls under ``policy`` and record them into ``collector`` (what
        ``containers.testing.use_fakes`` does with the container's own providers); scripted
        answers and faults are kept."""
        self._policy = policy if policy is not None else ResiliencePolicy.passthrough("llm")
        self._collector = collector
        self._tracing = tracing
        self._backends.clear()

    def _calls(self, model: str) -> BackendCalls:
        calls = self._backends.get(model)
        if calls is None:
            calls = BackendCalls(
                "llm",
                family="llm",
                system="fake",
                model=model,
                policy=self._policy,
                collector=self._collector,
                tracing=self._tracing,
            )
            if len(self._backends) < 64:
                self._backends[model] = calls
        return calls

    def __repr__(self) -> str:
        return f"FakeLLM(model={self._model!r}, policy={self._policy.describe()!r})"

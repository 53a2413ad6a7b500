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
first chunk; and -- because both subclass :class:`~infra.llm.base.LLMClientBase` -- the
same argument checks and errors, ``ConfigurationError`` without a chat model,
``ContentFilteredError`` for a filtered answer (script it with
:meth:`FakeLLM.filter_next`), the same health shape and, with a
:class:`~infra.observability.cost.CostTracker`, the same reserve-then-record of the
worst case and the real usage.

No litellm, no network, no clock: nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from infra.calls import BackendCalls
from infra.exceptions import InfraError, InvalidArgumentError
from infra.llm.base import COMPONENT, ChatAnswer, ChatRequest, LLMClientBase
from infra.llm.responses import CONTENT_FILTER
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.ports import ChatMessage, TokenUsage
from infra.resilience import ResiliencePolicy
from infra.testing.llm_answers import (
    DEFAULT_DIMENSIONS,
    answer,
    answer_chunks,
    count_tokens,
    embedding,
)
from infra.translation import translate_exception

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


class FakeLLM(LLMClientBase):
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
        super().__init__(
            model=model,
            embedding_model=embedding_model,
            policy=policy,
            cost=cost,
            default_max_tokens=default_max_tokens,
        )
        self._dimensions = dimensions
        self._collector: MetricsCollector | None = None
        self._tracing: TracingState | None = None
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

    # -------------------------------------------------------------- primitives
    async def _prepare(self) -> None:
        """Nothing to load: the fake imports no client."""
        return

    async def _prompt_tokens(self, request: ChatRequest) -> int:
        return count_tokens([m.content for m in request.messages])

    async def _complete(
        self, request: ChatRequest, prompt_tokens: int, temperature: float | None
    ) -> ChatAnswer:
        """The deterministic answer to the last user message (``temperature`` is
        accepted and has no effect: the answer is deterministic)."""
        del temperature
        text, tokens, finish = await self._calls(request.model).run(
            "chat", self._chat_attempt, request.model, request.messages, request.max_tokens
        )
        return ChatAnswer(text, request.model, TokenUsage(prompt_tokens, tokens), finish)

    async def _open_stream(self, request: ChatRequest, prompt_tokens: int) -> _FakeStream:
        """The same answer as :meth:`complete`, one word per chunk; the attempt (retried
        by the policy) ends with the first chunk."""
        text, tokens, finish = await self._calls(request.model).run(
            "chat", self._chat_attempt, request.model, request.messages, request.max_tokens
        )
        return _FakeStream(text, TokenUsage(prompt_tokens, tokens), finish)

    async def _input_tokens(self, model: str, texts: list[str]) -> int:
        """The words of the batch: the usage the fake then reports (an exact estimate)."""
        del model
        return count_tokens(texts) - len(texts)

    async def _embed(
        self, model: str, texts: list[str], estimate: int
    ) -> tuple[list[list[float]], int]:
        """One deterministic unit vector per text, in order."""
        vectors: list[list[float]] = await self._calls(model).run(
            "embeddings", self._embed_attempt, model, texts
        )
        return vectors, estimate

    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        return self._dimensions

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
        self._policy = policy if policy is not None else ResiliencePolicy.passthrough(COMPONENT)
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


class _FakeStream:
    """An opened fake stream (see :class:`~infra.llm.base.ChatStream`): a stream closed
    early used only the pieces it sent."""

    def __init__(self, text: str, usage: TokenUsage, finish: str | None) -> None:
        self._chunks = answer_chunks(text) if text else []
        self._usage, self._finish, self._sent = usage, finish, 0

    @property
    def finish_reason(self) -> str | None:
        return self._finish

    async def pieces(self) -> AsyncIterator[str]:
        for piece in self._chunks:
            self._sent += 1
            yield piece

    async def close(self) -> TokenUsage:
        if self._sent == len(self._chunks):
            return self._usage
        return TokenUsage(self._usage.prompt_tokens, self._sent)

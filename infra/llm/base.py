"""What every LLM client does the same way; the litellm adapter and the fake supply the
provider calls.

:class:`LLMClientBase` implements the public methods once -- the chat preamble (a chat
model must be configured, messages and ``max_tokens`` are checked, the model, limit and
caller resolved), the budget (reserve the worst case before the call, release it when
the call fails, record the real usage after -- for embeddings too, from the batch's
estimated input tokens), the content-filter outcome, the embedding preamble (texts and
``input_type`` checked, an embedding model configured) and the health shape -- and
calls the client's primitives (``_complete``, ``_open_stream``, ``_input_tokens``,
``_embed``) with checked arguments only. :class:`~infra.llm.LiteLLMAdapter` and
:class:`~infra.testing.fakes.llm.FakeLLM` differ only in those, so the same bad call
raises the same typed error from both and is costed the same way.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from infra.exceptions import ConfigurationError, InvalidArgumentError
from infra.llm import costing
from infra.llm.responses import CONTENT_FILTER, check_messages, check_texts, content_filtered
from infra.ports import ChatMessage, Completion, TokenUsage
from infra.resilience import BreakerState, ResiliencePolicy
from infra.validation import check_latency_threshold

if TYPE_CHECKING:
    from infra.observability.cost import CostTracker

__all__ = ["ChatAnswer", "ChatRequest", "ChatStream", "InputType", "LLMClientBase", "check_caller"]

COMPONENT: Final = "llm"
InputType = Literal["document", "query"]
NO_CHAT: Final = (
    "no chat model provider is configured: set SEMANTICA_LLM_MODEL (a litellm model name, "
    "e.g. 'openai/gpt-4o-mini') and SEMANTICA_LLM_API_KEY, or SEMANTICA_LLM_API_BASE for "
    "an OpenAI-compatible server"
)
NO_EMBEDDINGS: Final = (
    "no embedding provider is configured: set SEMANTICA_EMBEDDING_MODEL and "
    "SEMANTICA_EMBEDDING_API_BASE (or SEMANTICA_LLM_API_KEY)"
)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A checked chat call: the messages, the model, the completion-token limit, and the
    caller its cost is attributed to."""

    messages: Sequence[ChatMessage]
    model: str
    max_tokens: int
    caller: str


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    """What one completion produced."""

    text: str
    model: str
    usage: TokenUsage
    finish_reason: str | None


class ChatStream(Protocol):
    """An opened stream: its text pieces, then (from :meth:`close`) its usage."""

    @property
    def finish_reason(self) -> str | None:
        """Why the provider stopped (``None`` until the stream says)."""
        ...

    def pieces(self) -> AsyncIterator[str]:
        """The text pieces, in order."""
        ...

    async def close(self) -> TokenUsage:
        """Release the stream (also when it was not read to its end); its usage."""
        ...


def _check_max_tokens(value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidArgumentError(
            f"max_tokens must be an int >= 1, got {value!r}", argument="max_tokens"
        )


#: Highest sampling temperature providers accept (OpenAI's range is 0-2).
MAX_TEMPERATURE: Final = 2.0
#: Longest ``caller`` name: it labels the cost metrics (a tenant or service id).
MAX_CALLER_LENGTH: Final = 256


def _check_temperature(value: object) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0.0 <= value <= MAX_TEMPERATURE  # also refuses NaN
    ):
        raise InvalidArgumentError(
            f"temperature must be None or a number from 0 to {MAX_TEMPERATURE}, got {value!r}",
            argument="temperature",
        )


def _check_model(value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise InvalidArgumentError(
            f"model must be None (the configured model) or a litellm model name such as "
            f"'openai/gpt-4o-mini', got {value!r}",
            argument="model",
        )


def check_caller(value: object) -> str:
    """The caller's name (``"default"`` for ``None``); it labels the cost metrics, so it
    must be a short string -- an object would add a label series per call."""
    if value is None:
        return "default"
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_CALLER_LENGTH:
        shown = value[:40] + "..." if isinstance(value, str) and len(value) > 40 else value
        raise InvalidArgumentError(
            f"caller must be None or a non-blank str of at most {MAX_CALLER_LENGTH} "
            f"characters naming the tenant or service, got {shown!r}",
            argument="caller",
        )
    return value


class LLMClientBase(ABC):
    """The shared behaviour; see the module docstring.

    Args:
        model: Default chat model (``None``: no chat provider configured).
        embedding_model: Model documents are embedded with (``None``: no embeddings).
        query_model: Model queries are embedded with (default: ``embedding_model``).
        policy: Resilience policy of chat calls (default: passthrough).
        cost: Cost tracker (``None``: nothing is costed, ``cost_usd`` is ``None``).
        default_max_tokens: ``max_tokens`` when a call gives none (bounds the budget's
            worst case).
    """

    def __init__(
        self,
        *,
        model: str | None,
        embedding_model: str | None,
        query_model: str | None = None,
        policy: ResiliencePolicy | None,
        cost: CostTracker | None,
        default_max_tokens: int,
    ) -> None:
        if isinstance(default_max_tokens, bool) or not (
            isinstance(default_max_tokens, int) and default_max_tokens >= 1
        ):
            raise InvalidArgumentError(
                f"default_max_tokens must be an int >= 1, got {default_max_tokens!r}",
                argument="default_max_tokens",
            )
        self._model = model or None
        self._embedding_model = embedding_model
        self._query_model = query_model or embedding_model
        self._policy = policy if policy is not None else ResiliencePolicy.passthrough(COMPONENT)
        self._cost = cost
        self._default_max_tokens = default_max_tokens

    # ------------------------------------------------------------ client primitives
    @abstractmethod
    async def _prepare(self) -> None:
        """Called at the start of every call, after its arguments are checked: the client
        loads what it needs without blocking the event loop (the litellm adapter imports
        litellm in a worker thread on first use)."""

    @abstractmethod
    async def _prompt_tokens(self, request: ChatRequest) -> int:
        """Prompt tokens for the budget's worst case."""

    @abstractmethod
    async def _complete(
        self, request: ChatRequest, prompt_tokens: int, temperature: float | None
    ) -> ChatAnswer:
        """One completion through the call path."""

    @abstractmethod
    async def _open_stream(self, request: ChatRequest, prompt_tokens: int) -> ChatStream:
        """Open a stream through the call path (the attempt ends with its first chunk)."""

    @abstractmethod
    async def _input_tokens(self, model: str, texts: list[str]) -> int:
        """Input tokens of an embedding batch, estimated before the call (the budget's
        reservation and the TPM bucket's charge)."""

    @abstractmethod
    async def _embed(
        self, model: str, texts: list[str], estimate: int
    ) -> tuple[list[list[float]], int]:
        """One vector per text, and the input tokens they used (``estimate``: the count
        made before the call)."""

    # ------------------------------------------------------------------------- chat
    @property
    def model(self) -> str | None:
        """The default chat model (``None``: no chat provider configured)."""
        return self._model

    def _chat_request(
        self,
        messages: Sequence[ChatMessage],
        model: str | None,
        max_tokens: int | None,
        caller: str | None,
    ) -> ChatRequest:
        if self._model is None:
            raise ConfigurationError(NO_CHAT, component=COMPONENT)
        check_messages(messages)
        _check_max_tokens(max_tokens)
        _check_model(model)
        who = check_caller(caller)
        return ChatRequest(
            messages, model or self._model, max_tokens or self._default_max_tokens, who
        )

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        caller: str | None = None,
    ) -> Completion:
        """One completion; ``caller`` attributes its cost to a tenant/caller.

        Raises:
            ConfigurationError: no chat provider is configured.
            BudgetExceededError: the worst-case cost would pass a budget.
            ContentFilteredError: the provider's filter stopped the answer.
            LLMError: the provider's failure, typed (rate limited, context window ...).
        """
        request = self._chat_request(messages, model, max_tokens, caller)
        _check_temperature(temperature)
        await self._prepare()
        prompt_tokens = await self._prompt_tokens(request)
        reservation = costing.reserve(
            self._cost, request.model, prompt_tokens, request.max_tokens, request.caller
        )
        try:
            answer = await self._complete(request, prompt_tokens, temperature)
        except BaseException:
            costing.release(self._cost, reservation)
            raise
        cost = costing.spend(self._cost, request.model, answer.usage, request.caller, reservation)
        if answer.finish_reason == CONTENT_FILTER:
            raise content_filtered(request.model)
        return Completion(
            text=answer.text,
            model=answer.model,
            usage=answer.usage,
            cost_usd=cost,
            finish_reason=answer.finish_reason,
        )

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        caller: str | None = None,
    ) -> AsyncGenerator[str, None]:
        """Text chunks as the model produces them; usage and cost are recorded when the
        stream ends or is closed. Arguments are checked here, before iteration.

        A caller that stops reading early should close it (``await stream.aclose()``, or
        ``async with contextlib.aclosing(llm.stream(...)) as stream``): that ends the
        provider's answer and records what it produced at once rather than when the
        generator is garbage-collected. (Typed as an async generator so ``aclose`` and
        ``aclosing`` type-check.)"""
        return self._stream(self._chat_request(messages, model, max_tokens, caller))

    async def _stream(self, request: ChatRequest) -> AsyncGenerator[str, None]:
        await self._prepare()
        prompt_tokens = await self._prompt_tokens(request)
        reservation = costing.reserve(
            self._cost, request.model, prompt_tokens, request.max_tokens, request.caller
        )
        try:
            opened = await self._open_stream(request, prompt_tokens)
        except BaseException:
            costing.release(self._cost, reservation)
            raise
        try:
            async for piece in opened.pieces():
                yield piece
        finally:
            try:
                usage = await opened.close()
            except BaseException:
                costing.release(self._cost, reservation)  # never held past the call
                raise
            costing.spend(self._cost, request.model, usage, request.caller, reservation)
        if opened.finish_reason == CONTENT_FILTER:
            raise content_filtered(request.model)

    # ------------------------------------------------------------------- embeddings
    @property
    def embedding_model(self) -> str | None:
        """The model documents are embedded with (``None``: no embedding provider)."""
        return self._embedding_model

    async def embed(
        self, texts: Sequence[str], *, input_type: InputType = "document", caller: str | None = None
    ) -> list[list[float]]:
        """One vector per text, in order. ``input_type="query"`` uses the query model
        (E5-style models embed questions and passages differently).

        Like a chat call, the batch's estimated input tokens are reserved against the
        budgets before anything is sent and reconciled with the reported usage after.

        Raises:
            ConfigurationError: no embedding provider is configured.
            BudgetExceededError: the estimated cost would pass a budget.
        """
        batch = check_texts(texts)
        if input_type not in ("document", "query"):
            raise InvalidArgumentError(
                f"input_type must be 'document' or 'query', got {input_type!r}",
                argument="input_type",
            )
        who = check_caller(caller)
        if not batch:
            return []
        name = self._query_model if input_type == "query" else self._embedding_model
        if name is None:
            raise ConfigurationError(NO_EMBEDDINGS, component=COMPONENT)
        await self._prepare()
        estimate = await self._input_tokens(name, batch)
        reservation = costing.reserve(self._cost, name, estimate, 0, who)
        try:
            vectors, tokens = await self._embed(name, batch, estimate)
        except BaseException:
            costing.release(self._cost, reservation)
            raise
        costing.spend(self._cost, name, TokenUsage(tokens, 0), who, reservation)
        return vectors

    # ----------------------------------------------------------------------- health
    async def health_check(
        self, latency_threshold_ms: float = 100.0
    ) -> tuple[bool, dict[str, Any]]:
        """Configuration and breaker state only: a provider round trip would cost money.
        Healthy unless the chat breaker is open."""
        check_latency_threshold(latency_threshold_ms)
        started = time.perf_counter()
        breaker = self._policy.breaker
        state = None if breaker is None else breaker.state
        open_breaker = state is BreakerState.OPEN
        details: dict[str, Any] = {
            "status": "unhealthy" if open_breaker else "healthy",
            "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
            "chat_configured": self._model is not None,
            "model": self._model,
            "embedding_model": self._embedding_model,
            "breaker": None if state is None else state.value,
        }
        return not open_breaker, details

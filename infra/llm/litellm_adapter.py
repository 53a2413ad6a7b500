"""``LiteLLMAdapter``: chat completions (plain and streamed) and embeddings through litellm.

::

    adapter = LiteLLMAdapter.from_settings(settings, policy=policy, cost=CostTracker())
    answer = await adapter.complete([ChatMessage("user", "Hi")], caller="tenant-7")
    async for piece in adapter.stream([ChatMessage("user", "Tell me more")]):
        ...
    vectors = await adapter.embed(["a passage"])                 # documents
    [query] = await adapter.embed(["a question"], input_type="query")

It satisfies :class:`~infra.ports.LLMCompletion` and :class:`~infra.ports.EmbeddingModel`.
Every provider call takes the adapters' one call path, :class:`~infra.calls.BackendCalls`
(component ``"llm"``, one per model, with the ``gen_ai.*`` span attributes and histograms:
``gen_ai.operation.name`` ``chat``/``embeddings``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` /
``output_tokens``), so it is timed, traced, counted, retried by the injected policy and
translated into :mod:`infra.exceptions` exactly like a database call.

Decisions:

* **One retry budget: ours.** litellm's own retries (``num_retries``) and the provider
  SDK's (``max_retries``) are switched off on every call; the injected
  :class:`~infra.resilience.ResiliencePolicy` decides. A 429 is retried after the
  provider's ``Retry-After`` (the retry layer honours ``RateLimitedError.retry_after``).
* **A complete stream is not failed by its trailer.** Once a chunk has carried the
  finish reason, the answer is whole: a malformed usage chunk or ``[DONE]`` after it
  (or a drop before them) ends the stream normally with counted usage and a warning.
  Raising would hand the caller an error for an answer it has received and that was
  billed -- and invite a retry that pays twice.
* **Streams are retried only before the first chunk.** Opening the stream and receiving
  its first chunk is one attempt under the policy, bounded by ``first_token_timeout``;
  after that a failure ends the stream with its typed error (a retry would repeat text
  the caller has already consumed). Every later chunk must arrive before the stream's
  total deadline (``request_timeout`` from the start).
* **Typed errors.** Provider failures are translated at the one seam
  (:mod:`infra.translation`): ``RateLimitedError`` (with ``retry_after``),
  ``ContextWindowExceededError``, ``LLMAuthenticationError``, ``ProviderUnavailableError``
  (5xx, dropped connections, malformed bodies), ``LLMTimeoutError``. An answer stopped by
  the provider's content filter (``finish_reason="content_filter"``) raises
  ``ContentFilteredError`` after its cost is recorded; a budget refusal is the cost
  tracker's ``BudgetExceededError``, raised before anything is sent.
* **Cost and budgets.** With a :class:`~infra.observability.cost.CostTracker`, a call
  first reserves its worst case (prompt tokens counted by litellm + ``max_tokens``; for
  embeddings, the batch's input tokens), then records the real usage (for a stream: the
  usage of its final chunk, or tokens counted from the text when the provider sends
  none), per model and per ``caller``. Tokens are counted before a call only when a
  budget or a TPM bucket needs them.
* **Rate limits.** With an :class:`~infra.llm.rate_limiter.LLMRateLimiter`, each attempt
  waits for a request and its estimated tokens, settles the estimate with the real usage
  and pauses the limiter for a provider's ``Retry-After``.
* **One preamble.** Argument checks, the budget's reserve/release/record and the
  content-filter outcome live in :class:`~infra.llm.base.LLMClientBase`, which the fake
  shares; this module supplies the litellm calls.
* **No chat provider, no call.** Without ``SEMANTICA_LLM_API_KEY`` or
  ``SEMANTICA_LLM_API_BASE`` (``from_settings``), :meth:`complete` and :meth:`stream`
  raise :class:`~infra.exceptions.ConfigurationError` naming them: a stray provider key in
  the environment never makes an application spend money it was not configured to spend.
* litellm is imported on the first call (it takes seconds), never at construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from opentelemetry import trace
from pydantic import SecretStr

from infra._litellm import import_litellm, load_litellm
from infra.calls import BackendCalls
from infra.exceptions import ConfigurationError, InvalidArgumentError, RateLimitedError
from infra.llm.base import COMPONENT, ChatAnswer, ChatRequest, LLMClientBase
from infra.llm.local_embeddings import LOCAL_DOCUMENT_MODEL, LOCAL_QUERY_MODEL
from infra.llm.responses import embedding_vectors, first_choice, message_dicts, usage_of
from infra.observability import attributes as attr
from infra.observability.instrument import CallSite
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.ports import TokenUsage
from infra.redaction import redact_text, register_secret
from infra.resilience import ResiliencePolicy, litellm_no_retry_kwargs
from infra.translation import translate_exception

if TYPE_CHECKING:
    from config import Settings
    from infra.llm.rate_limiter import LLMRateLimiter
    from infra.observability.cost import CostTracker

__all__ = ["EmbeddingEndpoint", "LiteLLMAdapter"]

_log = logging.getLogger("infra.llm.litellm_adapter")


class EmbeddingEndpoint(Protocol):
    """A local embedding server started on first use (see :mod:`infra.llm.local_embeddings`)."""

    async def ensure_started(self) -> str:
        """Start it if needed; returns its ``api_base``."""
        ...


def _secret(value: SecretStr | str | None) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value


def provider_of(model: str) -> str:
    """``gen_ai.provider.name`` for a litellm model name (its prefix; bare names: openai)."""
    prefix, sep, _ = model.partition("/")
    return prefix if sep else "openai"


class LiteLLMAdapter(LLMClientBase):
    """Chat and embeddings through litellm; see the module docstring.

    Args:
        model: Default chat model (litellm name); ``None`` = no chat provider configured.
        api_base: Base URL of an OpenAI-compatible chat endpoint.
        api_key: The chat provider's key (never logged).
        embedding_model: Model for documents (``None``: no embedding provider).
        embedding_query_model: Model for queries (default: ``embedding_model``); E5-style
            models need a distinct one (``openai/e5-query`` vs ``openai/e5-passage``).
        embedding_api_base: Base URL of the embedding endpoint (default: ``api_base``).
        embedding_api_key: Its key (default: ``api_key``).
        embedding_endpoint: A local server started on first embed; its URL wins.
        embedding_dimensions: Vector length; sent to the provider when ``send_dimensions``.
        send_dimensions: Whether the provider takes a ``dimensions`` argument.
        request_timeout: Seconds for one request (a whole stream included).
        first_token_timeout: Seconds until a stream's first chunk (default:
            ``request_timeout``).
        default_max_tokens: ``max_tokens`` when a call gives none (bounds the budget's
            worst case).
        policy: Resilience policy of chat calls (default: passthrough).
        embedding_policy: Policy of embedding calls (default: ``policy``).
        cost: Cost tracker (default: none, nothing is costed).
        limiter: Rate limiter (default: none).
        record: ``False`` turns telemetry off (benchmarks).
        collector: Where calls are recorded (the application container injects its own);
            default: ``get_metrics_collector()`` at call time.
        tracing: The tracing state spans start from (the application container injects
            its own); default: ``current_tracing()`` at call time.
    """

    def __init__(
        self,
        *,
        model: str | None,
        api_base: str | None = None,
        api_key: SecretStr | str | None = None,
        embedding_model: str | None = None,
        embedding_query_model: str | None = None,
        embedding_api_base: str | None = None,
        embedding_api_key: SecretStr | str | None = None,
        embedding_endpoint: EmbeddingEndpoint | None = None,
        embedding_dimensions: int | None = None,
        send_dimensions: bool = True,
        request_timeout: float = 60.0,
        first_token_timeout: float | None = None,
        default_max_tokens: int = 1024,
        policy: ResiliencePolicy | None = None,
        embedding_policy: ResiliencePolicy | None = None,
        cost: CostTracker | None = None,
        limiter: LLMRateLimiter | None = None,
        record: bool = True,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        if not request_timeout > 0:
            raise InvalidArgumentError(
                f"request_timeout must be seconds > 0, got {request_timeout!r}",
                details={"argument": "request_timeout"},
            )
        if first_token_timeout is not None and not first_token_timeout > 0:
            raise InvalidArgumentError(
                f"first_token_timeout must be None or seconds > 0, got {first_token_timeout!r}",
                details={"argument": "first_token_timeout"},
            )
        super().__init__(
            model=model,
            embedding_model=embedding_model,
            query_model=embedding_query_model,
            policy=policy,
            cost=cost,
            default_max_tokens=default_max_tokens,
        )
        self._api_base = api_base
        self._api_key = SecretStr(_secret(api_key) or "") if api_key else None
        self._embedding_api_base = embedding_api_base or api_base
        embedding_key = embedding_api_key if embedding_api_key is not None else api_key
        self._embedding_api_key = SecretStr(_secret(embedding_key) or "") if embedding_key else None
        # A provider may quote the key in an error message (``Incorrect API key provided:
        # ...``), and litellm passes that text on: registered, it is masked in every
        # message, repr, chained traceback and log line for as long as this adapter
        # lives -- whatever the key looks like, not only ``sk-...``.
        register_secret(self._api_key, owner=self)
        register_secret(self._embedding_api_key, owner=self)
        self._endpoint = embedding_endpoint
        if embedding_dimensions is not None and (
            isinstance(embedding_dimensions, bool)
            or not isinstance(embedding_dimensions, int)
            or embedding_dimensions < 1
        ):
            raise InvalidArgumentError(
                f"embedding_dimensions must be None or an int >= 1, got {embedding_dimensions!r}",
                argument="embedding_dimensions",
            )
        # Asked of the provider (only when configured and it takes the argument) ...
        self._requested_dimensions = embedding_dimensions if send_dimensions else None
        # ... and the length every vector must have (configured, or learned from the
        # first answer -- never sent: a learned size is not a request).
        self._dimensions = embedding_dimensions
        self._timeout = float(request_timeout)
        self._first_token_timeout = float(first_token_timeout or request_timeout)
        self._embedding_policy = embedding_policy if embedding_policy is not None else self._policy
        self._limiter = limiter
        self._record = record
        self._collector = collector
        self._tracing = tracing
        self._calls: dict[tuple[str, str], BackendCalls] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        policy: ResiliencePolicy | None = None,
        embedding_policy: ResiliencePolicy | None = None,
        cost: CostTracker | None = None,
        limiter: LLMRateLimiter | None = None,
        embedding_endpoint: EmbeddingEndpoint | None = None,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> LiteLLMAdapter:
        """The adapter ``settings.llm`` describes. With an ``embedding_endpoint`` (the
        local E5 server) embeddings go there as ``openai/e5-passage`` / ``openai/e5-query``."""
        llm = settings.llm
        chat_configured = llm.api_key is not None or llm.api_base is not None
        local = embedding_endpoint is not None
        return cls(
            model=llm.model if chat_configured else None,
            api_base=llm.api_base,
            api_key=llm.api_key,
            embedding_model=LOCAL_DOCUMENT_MODEL if local else llm.embedding_model,
            embedding_query_model=LOCAL_QUERY_MODEL if local else None,
            embedding_api_base=llm.embedding_api_base,
            embedding_api_key=llm.embedding_api_key,
            embedding_endpoint=embedding_endpoint,
            embedding_dimensions=LOCAL_E5_DIMENSIONS if local else llm.embedding_dimensions,
            send_dimensions=not local,
            request_timeout=llm.request_timeout,
            first_token_timeout=llm.first_token_timeout,
            default_max_tokens=llm.default_max_tokens,
            policy=policy,
            embedding_policy=embedding_policy,
            cost=cost,
            limiter=limiter,
            collector=collector,
            tracing=tracing,
        )

    # -------------------------------------------------------------- primitives
    async def _prepare(self) -> None:
        """litellm is imported in a worker thread on first use (seconds on the loop
        would stall every other task; see :mod:`infra._litellm`)."""
        await load_litellm()

    def _counts_tokens(self) -> bool:
        """Whether a call's tokens are counted before it is sent: a budget reserves their
        cost and a TPM bucket charges them. Nothing else needs the count, and litellm's
        counter costs about a millisecond per chat prompt, so it is skipped otherwise."""
        budgets = self._cost is not None and self._cost.has_budgets
        return budgets or (self._limiter is not None and self._limiter.limits_tokens)

    async def _prompt_tokens(self, request: ChatRequest) -> int:
        """Prompt tokens for the budget and the TPM bucket (0 when neither needs them);
        a large prompt is counted in a worker thread (see :data:`OFF_LOOP_CHARACTERS`)."""
        if not self._counts_tokens():
            return 0
        payload = message_dicts(request.messages)
        size = sum(len(message["content"]) for message in payload)
        return await _counted(size, _count_prompt, import_litellm(), request.model, payload)

    async def _input_tokens(self, model: str, texts: list[str]) -> int:
        """An embedding batch's input tokens for the budget and the TPM bucket (0 when
        neither needs them); a large batch is counted in a worker thread."""
        if not self._counts_tokens():
            return 0
        size = sum(len(text) for text in texts)
        return await _counted(size, _count_inputs, import_litellm(), model, texts)

    async def _complete(
        self, request: ChatRequest, prompt_tokens: int, temperature: float | None
    ) -> ChatAnswer:
        litellm = import_litellm()
        payload = message_dicts(request.messages)
        kwargs = self._chat_kwargs(request.model, payload, request.max_tokens)
        if temperature is not None:
            kwargs["temperature"] = temperature
        response = await self._chat(request.model).run(
            "chat",
            self._complete_attempt,
            litellm,
            kwargs,
            prompt_tokens + request.max_tokens,
            timeout=self._timeout,
        )
        text, finish = first_choice(response)
        usage = usage_of(response) or await _counted_usage(litellm, request.model, payload, text)
        model = str(getattr(response, "model", None) or request.model)
        return ChatAnswer(text, model, usage, finish)

    async def _open_stream(self, request: ChatRequest, prompt_tokens: int) -> _LiteLLMStream:
        litellm = import_litellm()
        payload = message_dicts(request.messages)
        kwargs = self._chat_kwargs(request.model, payload, request.max_tokens)
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
        deadline = asyncio.get_running_loop().time() + self._timeout
        estimate = prompt_tokens + request.max_tokens
        opened = await self._chat(request.model).run(
            "chat",
            self._open_stream_attempt,
            litellm,
            kwargs,
            estimate,
            timeout=self._first_token_timeout,
        )
        return _LiteLLMStream(
            litellm=litellm,
            request=request,
            payload=payload,
            opened=opened,
            deadline=deadline,
            timeout=self._timeout,
            settle=lambda usage: self._settle(float(estimate), usage),
        )

    async def _embed(
        self, model: str, texts: list[str], estimate: int
    ) -> tuple[list[list[float]], int]:
        litellm = import_litellm()
        api_base = self._embedding_api_base
        if self._endpoint is not None:
            api_base = await self._endpoint.ensure_started()
        kwargs: dict[str, Any] = {
            "model": model,
            "input": texts,
            "timeout": self._timeout,
            **litellm_no_retry_kwargs(),
        }
        if api_base is not None:
            kwargs["api_base"] = api_base
        key = self._embedding_api_key
        kwargs["api_key"] = key.get_secret_value() if key is not None else "not-needed"
        if self._requested_dimensions is not None:
            kwargs["dimensions"] = self._requested_dimensions
        response, vectors = await self._embeddings(model).run(
            "embeddings", self._embed_attempt, litellm, kwargs, estimate, timeout=self._timeout
        )
        if self._dimensions is None:
            self._dimensions = len(vectors[0])
        usage = usage_of(response)
        if usage is not None:
            return vectors, usage.prompt_tokens
        return vectors, estimate or _count_inputs(litellm, model, texts)

    # -------------------------------------------------------------- embeddings
    @property
    def dimensions(self) -> int:
        """Length of every returned vector (configured, or learned from the first call).

        Raises:
            ConfigurationError: unknown before the first :meth:`embed` and not configured.
        """
        if self._dimensions is None:
            raise ConfigurationError(
                "the embedding size is not known yet: set SEMANTICA_EMBEDDING_DIMENSIONS "
                "or call embed() once",
                component=COMPONENT,
            )
        return self._dimensions

    # ---------------------------------------------------------------- attempts
    async def _complete_attempt(self, litellm: Any, kwargs: dict[str, Any], estimate: int) -> Any:
        charged = await self._acquire(estimate)
        try:
            response = await litellm.acompletion(**kwargs)
        except BaseException as exc:
            self._settle(charged, _NOTHING)  # no answer: nothing of the charge was used
            if not isinstance(exc, Exception):
                raise
            raise self._failed(exc, "chat") from exc
        usage = usage_of(response)
        if usage is None and self._limiter is not None and self._limiter.limits_tokens:
            self._settle(charged, await _counted_answer(litellm, kwargs, response))
        else:
            self._settle(charged, usage)
        _record_usage(self._chat(kwargs["model"]), "chat", response, usage)
        return response

    async def _open_stream_attempt(
        self, litellm: Any, kwargs: dict[str, Any], estimate: int
    ) -> tuple[AsyncIterator[Any], Any]:
        charged = await self._acquire(estimate)  # settled when the stream ends (close)
        chunks: AsyncIterator[Any] | None = None
        try:
            response = await litellm.acompletion(**kwargs)
            chunks = aiter(response)
            async with asyncio.timeout(self._first_token_timeout):
                first = await anext(chunks)
        except StopAsyncIteration:
            self._settle(charged, _NOTHING)
            raise self._failed(
                ConnectionResetError("the stream ended before its first chunk"), "chat"
            ) from None
        except BaseException as exc:
            self._settle(charged, _NOTHING)  # no chunk: nothing of the charge was used
            if chunks is not None:
                await _close_stream(chunks)
            if not isinstance(exc, Exception):
                raise
            raise self._failed(exc, "chat") from exc
        return chunks, first

    async def _embed_attempt(
        self, litellm: Any, kwargs: dict[str, Any], estimate: int
    ) -> tuple[Any, list[list[float]]]:
        """One request; a malformed answer (vectors missing, ragged, of the wrong size,
        not finite) fails the attempt like a malformed body, so the policy may retry it."""
        charged = await self._acquire(estimate)
        try:
            response = await litellm.aembedding(**kwargs)
        except BaseException as exc:
            self._settle(charged, _NOTHING)  # no answer: nothing of the charge was used
            if not isinstance(exc, Exception):
                raise
            raise self._failed(exc, "embeddings") from exc
        usage = usage_of(response)
        self._settle(charged, usage or TokenUsage(estimate, 0))
        _record_usage(self._embeddings(kwargs["model"]), "embeddings", response, usage)
        vectors = embedding_vectors(
            response, count=len(kwargs["input"]), dimensions=self._dimensions
        )
        return response, vectors

    # ----------------------------------------------------------------- helpers
    def _chat_kwargs(self, name: str, payload: list[dict[str, str]], limit: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": name,
            "messages": payload,
            "max_tokens": limit,
            "timeout": self._timeout,
            **litellm_no_retry_kwargs(),
        }
        if self._api_base is not None:
            kwargs["api_base"] = self._api_base
        if self._api_key is not None:
            kwargs["api_key"] = self._api_key.get_secret_value()
        elif self._api_base is not None:
            kwargs["api_key"] = "not-needed"  # OpenAI-compatible servers without auth
        return kwargs

    def _chat(self, model: str) -> BackendCalls:
        return self._backend("chat", model, self._policy)

    def _embeddings(self, model: str) -> BackendCalls:
        return self._backend("embeddings", model, self._embedding_policy)

    def _backend(self, kind: str, model: str, policy: ResiliencePolicy) -> BackendCalls:
        calls = self._calls.get((kind, model))
        if calls is None:
            calls = BackendCalls(
                COMPONENT,
                family="llm",
                system=provider_of(model),
                model=model,
                policy=policy,
                record=self._record,
                collector=self._collector,
                tracing=self._tracing,
            )
            if len(self._calls) < 64:  # models are few; never grow without bound
                self._calls[(kind, model)] = calls
        return calls

    def _failed(self, exc: Exception, operation: str) -> Exception:
        mask_provider_error(exc)
        error = translate_exception(
            exc, component=COMPONENT, family="llm", operation=operation, timeout=self._timeout
        )
        if isinstance(error, RateLimitedError) and self._limiter is not None:
            self._limiter.pause(error.retry_after)
        return error

    async def _acquire(self, estimate: int) -> float:
        if self._limiter is None:
            return float(estimate)
        return await self._limiter.acquire(estimate)

    def _settle(self, charged: float, usage: TokenUsage | None) -> None:
        """Settle a rate-limiter charge with the real usage (no limiter: nothing)."""
        if self._limiter is not None and usage is not None:
            self._limiter.settle(charged, used=usage.total_tokens)

    def __repr__(self) -> str:
        return (
            f"LiteLLMAdapter(model={self._model!r}, embedding_model={self._embedding_model!r}, "
            f"policy={self._policy.describe()!r})"
        )


#: The usage of an attempt that got no answer (settles its rate-limiter charge).
_NOTHING: Final = TokenUsage(0, 0)

#: Vector length of the local multilingual-e5-small model.
LOCAL_E5_DIMENSIONS: Final = 384


class _StreamState:
    """What a stream has produced so far: text pieces, usage, finish reason."""

    __slots__ = ("finish", "text", "usage")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.usage: TokenUsage | None = None
        self.finish: str | None = None

    def take(self, chunk: Any) -> str:
        usage = usage_of(chunk)
        if usage is not None and (usage.prompt_tokens or usage.completion_tokens):
            self.usage = usage
        choices = getattr(chunk, "choices", None) or []
        if not choices:
            return ""
        choice = choices[0]
        if getattr(choice, "finish_reason", None):
            self.finish = choice.finish_reason
        piece = getattr(getattr(choice, "delta", None), "content", None) or ""
        if piece:
            self.text.append(piece)
        return str(piece)


class _LiteLLMStream:
    """An opened provider stream (see :class:`~infra.llm.base.ChatStream`): later chunks
    must arrive before the stream's total deadline; a failure ends it with its typed
    error (no retry: the caller already has the text before it)."""

    def __init__(
        self,
        *,
        litellm: Any,
        request: ChatRequest,
        payload: list[dict[str, str]],
        opened: tuple[AsyncIterator[Any], Any],
        deadline: float,
        timeout: float,
        settle: Callable[[TokenUsage], None],
    ) -> None:
        self._litellm, self._model, self._payload = litellm, request.model, payload
        self._chunks, self._first = opened
        self._deadline, self._timeout, self._settle = deadline, timeout, settle
        self._state = _StreamState()

    @property
    def finish_reason(self) -> str | None:
        return self._state.finish

    async def pieces(self) -> AsyncIterator[str]:
        chunk: Any = self._first
        while True:
            piece = self._state.take(chunk)
            if piece:
                yield piece
            try:
                async with asyncio.timeout_at(self._deadline):
                    chunk = await anext(self._chunks)
            except StopAsyncIteration:
                return
            except Exception as exc:
                mask_provider_error(exc)
                if self._state.finish is not None:
                    # The answer is complete (its finish reason came): a broken trailer
                    # -- a malformed usage chunk, a garbled [DONE], a drop before it --
                    # must not turn a delivered, billed answer into an error the caller
                    # would retry and pay for twice. Its usage is counted instead.
                    _log.warning(
                        "ignored a broken stream trailer after the answer finished: %s",
                        type(exc).__name__,
                        extra={"component": COMPONENT, "model": self._model},
                    )
                    return
                raise translate_exception(
                    exc,
                    component=COMPONENT,
                    family="llm",
                    operation="chat",
                    timeout=self._timeout,
                ) from exc

    async def close(self) -> TokenUsage:
        await _close_stream(self._chunks)
        text = "".join(self._state.text)
        usage = self._state.usage or await _counted_usage(
            self._litellm, self._model, self._payload, text
        )
        self._settle(usage)
        return usage


def mask_provider_error(exc: BaseException) -> None:
    """Mask secrets, in place, in ``exc`` and the exceptions chained below it.

    litellm's and the openai SDK's exceptions render from a ``message`` attribute, not
    from ``args`` (which :func:`~infra.redaction.redact_chained` masks when our error is
    rendered), and a provider quotes a wrong key back in that message: it would print
    in the traceback under our typed error.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        link = pending.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        message = getattr(link, "message", None)
        if isinstance(message, str):
            masked = redact_text(message)
            if masked != message:
                with contextlib.suppress(Exception):  # a read-only attribute: args still go
                    link.message = masked  # type: ignore[attr-defined]
        masked_args = tuple(redact_text(a) if isinstance(a, str) else a for a in link.args)
        if masked_args != link.args:
            link.args = masked_args
        pending += [link.__cause__, link.__context__]


async def _close_stream(chunks: AsyncIterator[Any]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        try:
            await close()
        # Closing a half-read provider stream may fail in many ways; the caller already
        # has the outcome that matters (the chunks, or the error that ended them).
        except Exception:  # noqa: BLE001
            return


#: Characters above which a count runs in a worker thread. litellm's counter takes about
#: 0.1 s per million characters (measured: 4 M characters, 0.35-0.5 s): a hostile or
#: merely huge prompt counted on the event loop stalled every other call for as long.
#: Below this (~20 ms at most) a thread hop would cost more than it saves.
OFF_LOOP_CHARACTERS: Final = 200_000


async def _counted(size: int, count: Callable[..., int], *args: Any) -> int:
    """``count(*args)``: on the loop for small inputs, in a worker thread for large ones."""
    if size < OFF_LOOP_CHARACTERS:
        return count(*args)
    return await asyncio.to_thread(count, *args)


def _count_prompt(litellm: Any, model: str, payload: list[dict[str, str]]) -> int:
    try:
        return int(litellm.token_counter(model=model, messages=payload))
    # An unknown tokenizer must not fail the call: estimate ~4 characters per token.
    except Exception:  # noqa: BLE001
        return sum(len(m["content"]) // 4 + 4 for m in payload)


def _count_inputs(litellm: Any, model: str, texts: list[str]) -> int:
    """Input tokens of an embedding batch: one counter pass over the texts joined by
    newlines (about the sum of the texts' counts, the newlines a slight surplus; a pass
    per text costs ~50 us each)."""
    try:
        return int(
            litellm.token_counter(model=model, text="\n".join(texts), count_response_tokens=True)
        )
    except Exception:  # noqa: BLE001 - see _count_prompt
        return sum(len(text) // 4 + 1 for text in texts)


async def _counted_usage(
    litellm: Any, model: str, payload: list[dict[str, str]], text: str
) -> TokenUsage:
    """Usage counted locally, for a provider that reported none."""
    size = sum(len(message["content"]) for message in payload)
    prompt = await _counted(size, _count_prompt, litellm, model, payload)
    return TokenUsage(prompt, await _counted(len(text), _count_text, litellm, model, text))


async def _counted_answer(litellm: Any, kwargs: dict[str, Any], response: Any) -> TokenUsage:
    """Usage of an answer that reported none, counted locally (only when a TPM bucket or
    a budget needs it: the charge is then settled with real counts, not left at the
    estimate)."""
    text, _ = first_choice(response)
    return await _counted_usage(litellm, kwargs["model"], kwargs["messages"], text)


def _count_text(litellm: Any, model: str, text: str) -> int:
    if not text:
        return 0
    try:
        return int(litellm.token_counter(model=model, text=text, count_response_tokens=True))
    except Exception:  # noqa: BLE001 - see _count_prompt
        return len(text) // 4 + 1


def _record_usage(
    calls: BackendCalls, operation: str, response: Any, usage: TokenUsage | None
) -> None:
    """Token histogram and ``gen_ai.response.model``/usage span attributes of one call."""
    if usage is None or not calls.record:
        return
    series = CallSite(
        COMPONENT, operation, system=calls.system, model=calls.model, collector=calls.collector
    ).series()
    tokens = series.tokens
    if tokens is not None:
        tokens.labels(*series.token_prefix, "input").observe(usage.prompt_tokens)
        if operation == "chat":
            tokens.labels(*series.token_prefix, "output").observe(usage.completion_tokens)
    span = trace.get_current_span()
    # Only the call's own span (the call path makes it current when it is sampled).
    if span.is_recording() and getattr(span, "name", None) == series.span_name:
        span.set_attribute(attr.GEN_AI_USAGE_INPUT_TOKENS, usage.prompt_tokens)
        span.set_attribute(attr.GEN_AI_USAGE_OUTPUT_TOKENS, usage.completion_tokens)
        model = getattr(response, "model", None)
        if model:
            span.set_attribute(attr.GEN_AI_RESPONSE_MODEL, str(model))

"""LLM providers: openai's exception classes and litellm's subclasses of them.

litellm's exceptions subclass openai's (``litellm.ContextWindowExceededError`` ->
``litellm.BadRequestError`` -> ``openai.BadRequestError`` ...). Both tables are loaded for
a litellm exception (its MRO reaches into ``openai``), and the MRO walk picks the most
derived row: litellm's specific classes first, openai's rows for anything litellm did not
specialise, then ``openai.APIStatusError`` by status code. Some litellm classes
(``ServiceUnavailableError``, ``BadGatewayError``) have no openai counterpart and are
listed explicitly.

Facts: ``status_code``, ``llm_provider``, ``model`` and ``retry_after`` (seconds, from
litellm's explicit ``headers`` or the response's ``retry-after``/``retry-after-ms``).
litellm's ``ContentPolicyViolationError`` -> ``ContentFilteredError`` (a caller error: the
same prompt is refused again). litellm's ``BudgetExceededError`` (its own spend limit) ->
our ``BudgetExceededError`` with ``current_cost`` and ``max_budget``.

Neither module is imported here except inside the loaders, which only run once an
exception from them exists (``import litellm`` takes seconds).
"""

from __future__ import annotations

from typing import Any

from infra.exceptions import (
    BudgetExceededError,
    ContentFilteredError,
    ContextWindowExceededError,
    InfraError,
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMError,
    LLMTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
)
from infra.translation._context import DriverTable, TranslationContext, Translator, to
from infra.translation._http import from_status, parse_retry_after

__all__ = ["load_litellm", "load_openai"]


def _retry_after(exc: BaseException) -> float | None:
    explicit = getattr(exc, "headers", None)
    if isinstance(explicit, dict):
        found = parse_retry_after(explicit)
        if found is not None:
            return found
    try:
        response = getattr(exc, "response", None)
    except Exception:  # noqa: BLE001 -- openai raises when a response was never set
        return None
    return parse_retry_after(getattr(response, "headers", None))


def _facts(exc: BaseException) -> dict[str, Any]:
    status = getattr(exc, "status_code", None)
    return {
        "status_code": status if isinstance(status, int) else None,
        "llm_provider": getattr(exc, "llm_provider", None) or None,
        "model": getattr(exc, "model", None) or None,
    }


def _rate_limited(exc: BaseException, ctx: TranslationContext) -> InfraError:
    facts = _facts(exc) | {"retry_after": _retry_after(exc)}
    return ctx.error(RateLimitedError, exc, details=facts)


def _budget(exc: BaseException, ctx: TranslationContext) -> InfraError:
    facts = _facts(exc) | {
        "current_cost": getattr(exc, "current_cost", None),
        "max_budget": getattr(exc, "max_budget", None),
    }
    return ctx.error(BudgetExceededError, exc, details=facts)


def _by_status(exc: BaseException, ctx: TranslationContext) -> InfraError:
    ctx = ctx.with_default_family("llm")
    status = getattr(exc, "status_code", None)
    try:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    except Exception:  # noqa: BLE001 -- see _retry_after
        headers = None
    facts = _facts(exc)
    return from_status(
        status if isinstance(status, int) else None, exc, ctx, headers=headers, details=facts
    )


def _llm(cls: type[InfraError]) -> Translator:
    return to(cls, facts=_facts)


def load_openai() -> DriverTable:
    """Rows for ``openai`` exceptions (also reached through litellm's subclasses)."""
    import openai  # noqa: PLC0415 -- lazy by design

    bad_request = _llm(LLMBadRequestError)
    return [
        (openai.RateLimitError, _rate_limited),
        (openai.AuthenticationError, _llm(LLMAuthenticationError)),
        (openai.PermissionDeniedError, _llm(LLMAuthenticationError)),
        (openai.BadRequestError, bad_request),
        (openai.NotFoundError, bad_request),
        (openai.UnprocessableEntityError, bad_request),
        (openai.ConflictError, bad_request),
        (openai.APITimeoutError, _llm(LLMTimeoutError)),
        (openai.APIConnectionError, _llm(ProviderUnavailableError)),
        (openai.InternalServerError, _llm(ProviderUnavailableError)),
        (openai.APIStatusError, _by_status),
        (openai.OpenAIError, _llm(LLMError)),
    ]


def load_litellm() -> DriverTable:
    """Rows for ``litellm.exceptions`` where litellm specialises or adds a class."""
    from litellm import exceptions as lx  # noqa: PLC0415 -- lazy by design

    bad_request = _llm(LLMBadRequestError)
    unavailable = _llm(ProviderUnavailableError)
    return [
        (lx.ContextWindowExceededError, _llm(ContextWindowExceededError)),
        (lx.ContentPolicyViolationError, _llm(ContentFilteredError)),
        (lx.RateLimitError, _rate_limited),
        (lx.AuthenticationError, _llm(LLMAuthenticationError)),
        (lx.BadRequestError, bad_request),
        (lx.NotFoundError, bad_request),
        (lx.UnprocessableEntityError, bad_request),
        (lx.Timeout, _llm(LLMTimeoutError)),
        (lx.ServiceUnavailableError, unavailable),
        (lx.BadGatewayError, unavailable),
        (lx.InternalServerError, unavailable),
        (lx.APIConnectionError, unavailable),
        (lx.APIError, _by_status),
        (lx.BudgetExceededError, _budget),
    ]

"""HTTP: the httpx (and httpx2) table, plus status-code and ``Retry-After`` helpers shared by the
qdrant-client (REST) and LLM tables.

Status codes map by what a caller can do about them:

* 401/403 -> authentication (fix credentials; not retryable);
* 408/504 -> the family's timeout (retryable);
* 429     -> throttled: ``RateLimitedError`` for LLM calls, else the family's base error
  marked retryable; ``details["retry_after"]`` when the server said;
* 502/503 -> the family's connection error (the server or its upstream is away);
* other 5xx -> the family's base error, retryable;
* other 4xx -> the family's base error, not retryable (the request is wrong).

Vector stores refine 404 and 400 (missing collection, wrong dimension) in ``_vector``.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from infra.exceptions import (
    BackendAuthenticationError,
    InfraError,
    LLMAuthenticationError,
    LLMBadRequestError,
    PoolExhaustedError,
    RateLimitedError,
)
from infra.translation._context import DriverTable, TranslationContext, to

__all__ = ["from_status", "load_httpx", "load_httpx2", "parse_retry_after"]


def parse_retry_after(headers: Mapping[str, str] | Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` headers, when present.

    ``Retry-After`` is either delta-seconds or an HTTP date (RFC 9110 section 10.2.3); a
    date in the past means "now" (0.0). Unparseable values are ignored rather than
    guessed at. ``headers`` is any mapping with ``get`` (``httpx.Headers`` is
    case-insensitive; a plain dict is tried in both spellings).
    """
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    millis = getter("retry-after-ms") or getter("Retry-After-Ms")
    if millis is not None:
        value = _number(millis)
        if value is not None:
            return value / 1000.0
    raw = getter("retry-after") or getter("Retry-After")
    if raw is None:
        return None
    value = _number(raw)
    if value is not None:
        return value
    try:
        when = email.utils.parsedate_to_datetime(str(raw))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _number(raw: object) -> float | None:
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def from_status(
    status: int | None,
    exc: BaseException,
    ctx: TranslationContext,
    *,
    headers: Mapping[str, str] | Any = None,
    text: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> InfraError:
    """The error for an HTTP status, following the table in this module's docstring."""
    facts: dict[str, Any] = {"status_code": status, **(details or {})}
    cls, retryable = _status_target(status, ctx)
    if status == 429:
        facts["retry_after"] = parse_retry_after(headers)
    return ctx.error(cls, exc, text=text, retryable=retryable, details=facts)


def _status_target(status: int | None, ctx: TranslationContext) -> tuple[type[InfraError], bool]:
    llm = ctx.family == "llm"
    code = status or 0
    if code in (401, 403):
        return (LLMAuthenticationError if llm else BackendAuthenticationError), False
    if code in (408, 504):
        return ctx.role_class("timeout"), True
    if code == 429:
        return (RateLimitedError if llm else ctx.role_class("base")), True
    if code in (502, 503) or (llm and code >= 500):
        return ctx.role_class("connection"), True
    if llm and 400 <= code < 500:
        return LLMBadRequestError, False
    return ctx.role_class("base"), code >= 500


def _status_error(exc: BaseException, ctx: TranslationContext) -> InfraError:
    response = getattr(exc, "response", None)
    return from_status(
        getattr(response, "status_code", None),
        exc,
        ctx,
        headers=getattr(response, "headers", None),
    )


def _rows(http: ModuleType) -> DriverTable:
    return [
        (http.PoolTimeout, to(PoolExhaustedError)),
        (http.TimeoutException, to("timeout")),
        (http.NetworkError, to("connection")),  # ConnectError, ReadError, WriteError ...
        (http.RemoteProtocolError, to("connection")),
        (http.HTTPStatusError, _status_error),
        (http.HTTPError, to("base", retryable=False)),
    ]


def load_httpx() -> DriverTable:
    """Rows for httpx transport and status errors (raw, or wrapped by qdrant-client)."""
    import httpx  # noqa: PLC0415 -- lazy by design: see infra.translation

    return _rows(httpx)


def load_httpx2() -> DriverTable:
    """The same rows for httpx2, the client openai uses; its classes mirror httpx's."""
    import httpx2  # noqa: PLC0415 -- lazy by design: see infra.translation

    return _rows(httpx2)

"""qdrant-client: REST (``UnexpectedResponse``), transport wrappers, gRPC, local mode.

* REST errors carry an HTTP status: 404 -> ``CollectionNotFoundError``; 400/422 whose
  text mentions a vector dimension -> ``DimensionMismatchError``; the rest follow the
  shared status table in ``_http`` (429 and 5xx retryable).
* ``ResponseHandlingException`` wraps whatever the transport raised (``.source``); the
  source is translated instead (an httpx timeout stays a timeout), recorded as
  ``details["source_error"]``.
* ``ResourceExhaustedResponse`` (429 with ``Retry-After``) -> retryable
  ``VectorStoreError`` with ``details["retry_after"]``.
* gRPC (``prefer_grpc=True``) errors map by status code (table below).
* **Local mode heuristic.** ``AsyncQdrantClient(location=":memory:")`` raises plain
  ``ValueError``: ``"Collection x not found"`` for a missing collection and ``"Wrong
  input: Vector dimension error: expected dim: 3, got 2"`` (upsert) or numpy's ``"shapes
  (0,3) and (2,) not aligned"`` (query) for a wrong vector size. A ``ValueError`` only
  gets this reading when the caller says ``family="vector"``; elsewhere it stays generic.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from infra.exceptions import (
    BackendAuthenticationError,
    CollectionNotFoundError,
    DimensionMismatchError,
    InfraError,
)
from infra.translation._context import DriverTable, Role, TranslationContext, qualified_name, to
from infra.translation._http import from_status
from infra.translation._registry import dispatch

__all__ = ["load_grpc", "load_qdrant", "local_mode_error"]

_NOT_FOUND: Final = re.compile(r"collection\b.*\b(not found|doesn't exist|does not exist)", re.I)
_DIMENSION: Final = re.compile(r"dimension|vector size|not aligned", re.I)
_EXPECTED_GOT: Final = re.compile(r"expected dim:\s*(\d+),\s*got\s*(\d+)", re.I)


def _dimension_facts(text: str) -> dict[str, Any]:
    match = _EXPECTED_GOT.search(text)
    return {"expected_dim": int(match[1]), "got_dim": int(match[2])} if match else {}


def local_mode_error(exc: BaseException, ctx: TranslationContext) -> InfraError | None:
    """Read qdrant local mode's ``ValueError`` messages; ``None`` when not recognised."""
    text = str(exc)
    if _NOT_FOUND.search(text):
        return ctx.error(CollectionNotFoundError, exc)
    if _DIMENSION.search(text):
        return ctx.error(DimensionMismatchError, exc, details=_dimension_facts(text))
    return None


def _response_text(exc: BaseException) -> str:
    """``status.error`` from Qdrant's JSON body when it parses, else the driver text."""
    content = getattr(exc, "content", b"")
    try:
        body = json.loads(content)
        error = body["status"]["error"]
    except (TypeError, ValueError, KeyError):
        return str(exc)
    return str(error)


def _unexpected_response(exc: BaseException, ctx: TranslationContext) -> InfraError:
    ctx = ctx.with_default_family("vector")
    status = getattr(exc, "status_code", None)
    text = _response_text(exc)
    facts = {"status_code": status}
    if ctx.family == "vector":
        if status == 404:
            return ctx.error(CollectionNotFoundError, exc, text=text, details=facts)
        if status in (400, 422) and _DIMENSION.search(text):
            facts |= _dimension_facts(text)
            return ctx.error(DimensionMismatchError, exc, text=text, details=facts)
    return from_status(status, exc, ctx, headers=getattr(exc, "headers", None), text=text)


def _response_handling(exc: BaseException, ctx: TranslationContext) -> InfraError:
    source = getattr(exc, "source", None)
    ctx = ctx.with_default_family("vector")
    if not isinstance(source, Exception):
        return ctx.error(ctx.role_class("connection"), exc)
    result = dispatch(source, ctx)
    result.details.setdefault("source_error", qualified_name(type(source)))
    return result


def _resource_exhausted(exc: BaseException, ctx: TranslationContext) -> InfraError:
    ctx = ctx.with_default_family("vector")
    facts = {"retry_after": getattr(exc, "retry_after_s", None), "status_code": 429}
    return ctx.error(ctx.role_class("base"), exc, retryable=True, details=facts)


def load_qdrant() -> DriverTable:
    """Rows for ``qdrant_client`` exceptions."""
    from qdrant_client.common.client_exceptions import (  # noqa: PLC0415 -- lazy by design
        QdrantException,
        ResourceExhaustedResponse,
    )
    from qdrant_client.http.exceptions import (  # noqa: PLC0415 -- lazy by design
        ApiException,
        ResponseHandlingException,
        UnexpectedResponse,
    )

    return [
        (UnexpectedResponse, _unexpected_response),
        (ResponseHandlingException, _response_handling),
        (ResourceExhaustedResponse, _resource_exhausted),
        (ApiException, to("base", family="vector")),
        (QdrantException, to("base", family="vector")),
    ]


# gRPC status name -> (role or class, retryable). Names, not enum members, so this table
# needs no grpc import. NOT_FOUND/INVALID_ARGUMENT get vector refinements in _grpc_error.
_GRPC: Final[dict[str, tuple[Role | type[InfraError], bool | None]]] = {
    "UNAVAILABLE": ("connection", None),
    "DEADLINE_EXCEEDED": ("timeout", None),
    "RESOURCE_EXHAUSTED": ("base", True),
    "ABORTED": ("base", True),
    "UNAUTHENTICATED": (BackendAuthenticationError, None),
    "PERMISSION_DENIED": (BackendAuthenticationError, None),
}


def _grpc_error(exc: BaseException, ctx: TranslationContext) -> InfraError:
    ctx = ctx.with_default_family("vector")
    code = getattr(exc, "code", None)
    status = getattr(code(), "name", None) if callable(code) else None
    details = getattr(exc, "details", None)
    text = str(details()) if callable(details) and details() else str(exc)
    facts = {"grpc_status": status}
    if ctx.family == "vector" and status == "NOT_FOUND":
        return ctx.error(CollectionNotFoundError, exc, text=text, details=facts)
    if ctx.family == "vector" and status == "INVALID_ARGUMENT" and _DIMENSION.search(text):
        facts |= _dimension_facts(text)
        return ctx.error(DimensionMismatchError, exc, text=text, details=facts)
    default: tuple[Role | type[InfraError], bool | None] = ("base", False)
    target, retryable = _GRPC.get(status or "", default)
    cls = ctx.role_class(target) if isinstance(target, str) else target
    return ctx.error(cls, exc, text=text, retryable=retryable, details=facts)


def load_grpc() -> DriverTable:
    """Rows for ``grpc`` errors (``grpc.aio.AioRpcError`` and sync ``RpcError``)."""
    # grpcio ships no type information; lazy by design like every loader.
    import grpc  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    rpc_error: type[BaseException] = grpc.RpcError
    return [(rpc_error, _grpc_error)]

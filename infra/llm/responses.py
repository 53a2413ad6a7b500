"""Reading litellm's responses into our port types, and the request messages out of them.

litellm's response objects are attribute-style (``response.choices[0].message.content``)
but some fields may be missing or ``None`` depending on the provider; every read here is
defensive and total, so a partial response gives zeros rather than an ``AttributeError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.exceptions import ContentFilteredError, InvalidArgumentError
from infra.ports import ChatMessage, TokenUsage

__all__ = [
    "CONTENT_FILTER",
    "check_messages",
    "check_texts",
    "content_filtered",
    "embedding_vectors",
    "first_choice",
    "message_dicts",
    "usage_of",
]

#: The finish reason a provider reports when its content filter stopped the answer.
CONTENT_FILTER = "content_filter"
_ROLES = frozenset({"system", "user", "assistant", "tool"})


def check_messages(messages: Sequence[ChatMessage]) -> None:
    """Refuse an empty or ill-typed conversation before any I/O."""
    candidate: object = messages
    if isinstance(candidate, str | bytes) or not isinstance(candidate, Sequence) or not candidate:
        raise InvalidArgumentError(
            "messages must be a non-empty sequence of ChatMessage, e.g. "
            "[ChatMessage('user', 'hello')]",
            details={"argument": "messages"},
        )
    for index, message in enumerate(messages):
        if not isinstance(message, ChatMessage):
            raise InvalidArgumentError(
                f"messages[{index}] must be a ChatMessage, got {type(message).__name__}",
                details={"argument": "messages"},
            )
        if message.role not in _ROLES or not isinstance(message.content, str):
            raise InvalidArgumentError(
                f"messages[{index}] needs a role in {sorted(_ROLES)} and str content",
                details={"argument": "messages"},
            )
        _check_encodable(message.content, f"messages[{index}].content", "messages")


def _check_encodable(text: str, where: str, argument: str) -> None:
    """Text the request body cannot carry (a lone surrogate is not UTF-8) is the caller's
    error, refused here; sent, it would fail as a provider error and be retried."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            f"{where} cannot be encoded as UTF-8 ({exc.reason} at {exc.start}); remove or "
            "replace the lone surrogate",
            argument=argument,
        ) from None


def check_texts(texts: Sequence[str]) -> list[str]:
    """Refuse a non-list or non-string batch to embed; returns it as a list."""
    if isinstance(texts, str | bytes) or not isinstance(texts, Sequence):
        raise InvalidArgumentError(
            "texts must be a sequence of str (wrap a single text in a list)",
            details={"argument": "texts"},
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidArgumentError(
                f"texts[{index}] must be a str, got {type(text).__name__}",
                details={"argument": "texts"},
            )
        _check_encodable(text, f"texts[{index}]", "texts")
    return list(texts)


def message_dicts(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """The messages as the OpenAI-style dicts litellm takes."""
    return [{"role": m.role, "content": m.content} for m in messages]


def first_choice(response: Any) -> tuple[str, str | None]:
    """``(text, finish_reason)`` of the first choice ("" / ``None`` when absent)."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        return "", None
    choice = choices[0]
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None) or ""
    return str(text), getattr(choice, "finish_reason", None)


def usage_of(response: Any) -> TokenUsage | None:
    """The response's token usage, or ``None`` when the provider reported none."""
    usage = getattr(response, "usage", None)
    if usage is None:
        return None
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    if prompt is None and completion is None:
        return None
    return TokenUsage(prompt_tokens=int(prompt or 0), completion_tokens=int(completion or 0))


def embedding_vectors(response: Any) -> list[list[float]]:
    """The vectors of an embedding response, in input order (by ``index``)."""
    data = getattr(response, "data", None) or []
    rows: list[tuple[int, list[float]]] = []
    for position, item in enumerate(data):
        if isinstance(item, dict):
            index, vector = item.get("index", position), item.get("embedding")
        else:
            index, vector = getattr(item, "index", position), getattr(item, "embedding", None)
        rows.append((int(index), [float(v) for v in vector or []]))
    rows.sort(key=lambda row: row[0])
    return [vector for _, vector in rows]


def content_filtered(model: str, *, component: str = "llm") -> ContentFilteredError:
    """The error for an answer the provider's content filter stopped."""
    return ContentFilteredError(
        f"the provider's content filter stopped the answer of {model!r}",
        component=component,
        details={"model": model, "finish_reason": CONTENT_FILTER},
    )

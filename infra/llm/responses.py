"""Reading litellm's responses into our port types, and the request messages out of them.

litellm's response objects are attribute-style (``response.choices[0].message.content``)
but some fields may be missing or ``None`` depending on the provider; every read here is
defensive and total, so a partial response gives zeros rather than an ``AttributeError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from infra.exceptions import ContentFilteredError, InvalidArgumentError, ProviderUnavailableError
from infra.ports import ChatMessage, TokenUsage

__all__ = [
    "CONTENT_FILTER",
    "check_messages",
    "check_texts",
    "content_filtered",
    "embedding_vectors",
    "first_choice",
    "malformed_embeddings",
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
    """Refuse a non-list batch, a non-string or blank text, or one UTF-8 cannot carry;
    returns the batch as a list."""
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
        if not text.strip():
            # OpenAI refuses a batch holding one with "'$.input' is invalid", naming no
            # item; the cache's normalisation would give them all one key.
            raise InvalidArgumentError(
                f"texts[{index}] is empty or only whitespace; such a text has no "
                "embedding -- leave it out of the batch",
                argument="texts",
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
    """The response's token usage, or ``None`` when the provider reported none -- or
    reported counts that cannot be token counts (negative, fractional, not a number,
    ``bool``): those are ignored and the call is costed from counted tokens, never priced
    from a provider's garbage or made to fail after it was answered."""
    usage = getattr(response, "usage", None)
    if usage is None:
        return None
    prompt = _count(getattr(usage, "prompt_tokens", None))
    completion = _count(getattr(usage, "completion_tokens", None))
    if prompt is None and completion is None:
        return None
    return TokenUsage(prompt_tokens=prompt or 0, completion_tokens=completion or 0)


def _count(value: object) -> int | None:
    """``value`` as a token count, or ``None`` when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def embedding_vectors(
    response: Any, *, count: int, dimensions: int | None = None
) -> list[list[float]]:
    """The ``count`` vectors of an embedding response, in input order (by ``index``).

    Raises:
        ProviderUnavailableError: the response is not ``count`` vectors of one length
            (``dimensions`` when known) of finite numbers, indexed ``0 .. count-1`` once
            each -- a malformed body, treated like any other (retryable).
    """
    data = getattr(response, "data", None) or []
    if isinstance(data, str | bytes) or not isinstance(data, Sequence):
        raise malformed_embeddings(f"'data' is a {type(data).__name__}, not a list")
    if len(data) != count:
        raise malformed_embeddings(f"{len(data)} vectors for {count} texts")
    rows: dict[int, list[float]] = {}
    for position, item in enumerate(data):
        if isinstance(item, dict):
            index, vector = item.get("index", position), item.get("embedding")
        else:
            index, vector = getattr(item, "index", position), getattr(item, "embedding", None)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise malformed_embeddings(f"data[{position}].index is {index!r}")
        if index in rows:
            raise malformed_embeddings(f"index {index} appears twice")
        rows[index] = _vector(vector, position)
    vectors = [rows[index] for index in range(count)]
    expected = dimensions if dimensions is not None else len(vectors[0]) if vectors else 0
    for position, vector in enumerate(vectors):
        if len(vector) != expected:
            raise malformed_embeddings(
                f"vector {position} has {len(vector)} dimensions, expected {expected}"
            )
    return vectors


def _vector(value: object, position: int) -> list[float]:
    """``value`` as a list of finite floats (checked with C-level ``map``: a Python loop
    per element cost ~5 ms per 100 vectors of 384 dimensions)."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise malformed_embeddings(f"data[{position}].embedding is not a non-empty list")
    kinds = set(map(type, value))
    if not kinds <= _NUMBER_TYPES:  # bool is its own type: refused too
        odd = sorted(kind.__name__ for kind in kinds - _NUMBER_TYPES)
        raise malformed_embeddings(f"data[{position}].embedding holds {', '.join(odd)}")
    numbers = list(map(float, value))
    if not all(map(math.isfinite, numbers)):
        raise malformed_embeddings(f"data[{position}].embedding holds a non-finite number")
    return numbers


_NUMBER_TYPES = frozenset({float, int})


def malformed_embeddings(problem: str, *, component: str = "llm") -> ProviderUnavailableError:
    """The error for an embedding response that is not what was asked for."""
    return ProviderUnavailableError(
        f"malformed embedding response: {problem}",
        component=component,
        details={"operation": "embeddings", "problem": problem},
    )


def content_filtered(model: str, *, component: str = "llm") -> ContentFilteredError:
    """The error for an answer the provider's content filter stopped."""
    return ContentFilteredError(
        f"the provider's content filter stopped the answer of {model!r}",
        component=component,
        details={"model": model, "finish_reason": CONTENT_FILTER},
    )

"""Secret redaction shared by errors, reprs and logs.

One place decides what a secret looks like, so an exception message, a log line and a
settings ``repr`` cannot disagree. Two rules:

* **by key** -- a mapping value whose key names a secret (``password``, ``api_key``,
  ``token``, ``secret``, ``authorization``, ``dsn`` credentials ...) becomes ``"***"``;
* **by value** -- inside any string, the password part of a URL
  (``scheme://user:PASSWORD@host``) and bearer/API-key-looking tokens are masked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["REDACTED", "is_secret_key", "redact_mapping", "redact_text", "redact_value"]

REDACTED: Final = "***"

_SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|apikey|authorization|auth|credential|"
    r"private[_-]?key|cookie|session[_-]?id)",
    re.IGNORECASE,
)
# scheme://user:password@host  -> scheme://user:***@host
_URL_PASSWORD = re.compile(r"(?P<prefix>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)@")
# Provider keys (sk-..., sk-proj-..., xai-..., Bearer ...).
_TOKENS = re.compile(
    r"(?P<prefix>\b(?:Bearer|Token)\s+|\b)(?P<tok>(?:sk|rk|pk|xai|gsk|hf)[-_][A-Za-z0-9_\-]{12,})"
)
_BEARER = re.compile(r"(?P<prefix>\bBearer\s+)(?P<tok>[A-Za-z0-9._\-]{8,})")


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (``redis_password``, ``api_key``, ...)."""
    return bool(_SECRET_KEY.search(key))


def redact_text(text: str) -> str:
    """Mask URL passwords and token-looking substrings inside ``text``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('prefix')}{REDACTED}@", text)
    text = _TOKENS.sub(lambda m: f"{m.group('prefix')}{REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group('prefix')}{REDACTED}", text)


def redact_value(key: str, value: Any) -> Any:
    """Redact one value given the key it is stored under."""
    if is_secret_key(key) and value not in (None, ""):
        return REDACTED
    return _redact_any(value)


def redact_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with secrets masked, recursively."""
    return {str(k): redact_value(str(k), v) for k, v in data.items()}


def _redact_any(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return redact_mapping(value)
    if isinstance(value, list | tuple):
        return type(value)(_redact_any(v) for v in value)
    # pydantic SecretStr / SecretBytes render as '**********' already; anything else is
    # left alone (numbers, booleans, None).
    return value

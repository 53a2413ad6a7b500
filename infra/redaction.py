"""Secret redaction shared by settings, errors, reprs and logs.

One place decides what a secret looks like, so an exception message, a log line and a
settings ``repr`` cannot disagree. :func:`redact_text` masks, inside any string:

* **URL passwords** -- in ``scheme://user:PASSWORD@host`` everything from the first ``:``
  of the user info to the **last** ``@`` on the same line. A password may contain ``@``,
  ``/``, ``:``, ``?``, ``#`` or spaces (written raw or percent-encoded): a URL parser
  would split such a URL elsewhere, so we stop at the last ``@`` instead of the first
  delimiter. That over-masks a line that carries a later ``@`` (an e-mail address after
  a URL) -- deliberately: hiding too much is a nuisance, showing a password's tail is a
  leak;
* **secret parameters** -- ``key=value`` where the key names a secret (``password``,
  ``sslpassword``, ``passwd``, ``pwd``, ``*token``, ``*secret``, ``api_key`` ...,
  case-insensitive) in the three places it occurs: URL query strings (the value runs to
  the next ``&name=`` or the end of the line), libpq ``key=value`` strings (a value is a
  non-blank run, or ``'quoted'`` with ``\\'``/``\\\\`` escapes; quoted inside an
  escaped string -- a repr of such a DSN -- it runs to the end of the line), and
  reprs/JSON (``password='x'``, ``"token": "x"``);
* **tokens** -- provider API keys (``sk-...``) and ``Bearer``/``Basic`` credentials;
* **registered secret values** -- wherever they occur, whatever surrounds them
  (:func:`register_secret`): the plain value and its percent-encoded, ``repr``- and
  JSON-escaped forms. ``config.Settings`` registers every secret it holds; adapters
  given a DSN or password register it too. This catches what no pattern can: a driver
  quoting part of a connection string, a password printed on its own.

Mapping values are masked **by key** as well (:func:`redact_value`, :func:`redact_mapping`).

Design decisions:

* **Written by hand.** Log scrubbers on PyPI match fixed patterns (credit cards, e-mail
  addresses) or a fixed list of values; none handles URL user info conservatively, libpq
  quoting and a registry of values with their encodings together.
* **Cost only when rendering.** Nothing is redacted when an error is created or a log
  call is filtered out: callers redact when they turn a value into text (``__str__``,
  ``__repr__``, the log processor). Each pass starts with a substring test, so text
  without ``://``, ``=``, ``:`` or a registered value costs a few ``in`` checks.
* **Registered values live as long as their owner.** A value registered with an
  ``owner`` (the ``Settings`` or store holding it) is forgotten when the last owner is
  garbage-collected, so a process that builds many settings (tests do) does not
  accumulate them. Values shorter than :data:`MIN_SECRET_LENGTH` are masked by position
  only: masking every ``ab`` in every log line would destroy the logs and protect
  nothing a guesser could not find anyway.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import quote, quote_plus, unquote

from pydantic import SecretBytes, SecretStr

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "find_secrets",
    "fresh_secret_registry",
    "is_secret_key",
    "redact_chained",
    "redact_mapping",
    "redact_text",
    "redact_value",
    "register_secret",
    "register_secrets_in",
    "secret_forms",
    "userinfo_problem",
]

REDACTED: Final = "***"
#: Shorter registered values are not masked by value (see the module docstring).
MIN_SECRET_LENGTH: Final = 4

_SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|authorization|auth|"
    r"credential|private[_-]?key|cookie|session[_-]?id)",
    re.IGNORECASE,
)

# The characters a URL scheme is made of (``postgresql``, ``bolt+s``, ``redis``).
_SCHEME_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-"
)
# A URL's user info never starts with these, prose after a scheme name often does.
_NO_URL: Final = frozenset(" \t\n\"'`;,)]}>")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")

# The end of a key naming a secret, then its separator: ``sslpassword=``,
# ``PGPASSWORD=``, ``"client_secret": ``, ``x-api-key=``. The rest of the key (letters,
# digits, ``_.-``) is found by walking back; see _key_value_spans.
_KEY_WORDS: Final = (
    "password|passwd|passphrase|pwd|pass|secret|token|api[_\\-]?key|apikey|"
    "access[_\\-]?key|private[_\\-]?key|credentials?|authorization"
)
_KEY_END = re.compile(
    rf"(?:{_KEY_WORDS})(?P<q>[\"']?)(?P<sep>[ \t]*(?P<op>[:=])[ \t]*)", re.IGNORECASE
)
# What may follow a value masked earlier (``password=***'`` inside a repr).
_AFTER_MASK: Final = frozenset(("", " ", "\t", "\n", "'", '"', ",", ";", ")", "]", "}", "&"))
# Cheap pre-check (lower-cased substrings) before the regex above runs at all.
_KEY_HINTS: Final = ("pass", "pwd", "secret", "token", "key", "credential", "authorization")
_KEY_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
# The value alternatives, in order: a URL query value (after ? or &) runs to the next
# ``&name=`` or the end of the line; a quoted value ends at its first unescaped closing
# quote (or the end of the line); a bare value is a non-blank run.
_QUOTED = {
    "'": re.compile(r"'(?:[^'\\\n]|\\.)*(?P<close>')?"),
    '"': re.compile(r'"(?:[^"\\\n]|\\.)*(?P<close>")?'),
}
_BARE = re.compile(r"\S*")
# A query value runs on over an '&' that starts no ``name=`` (``password=a&b``,
# ``password=&@=0``): a parameter name is a word.
_QUERY_VALUE = re.compile(r"(?:[^&\n]|&(?![A-Za-z_][\w.\-]*=))*")
# Provider keys (sk-..., sk-proj-..., xai-...), Bearer/Basic/Token credentials.
_TOKENS = re.compile(r"\b(?:sk|rk|pk|xai|gsk|hf)[-_][A-Za-z0-9_\-]{12,}")
_SCHEME_AUTH = re.compile(r"\b(?:Bearer|Basic|Token)\s+(?P<tok>[A-Za-z0-9._~+/=\-]{8,})")

# An hex escape written by hand may be lower case (%2f); quote() writes upper case.
_PCT = re.compile(r"%[0-9A-F]{2}")


# ------------------------------------------------------------------------------ spans
def _userinfo_spans(text: str) -> list[tuple[int, int]]:
    """Password spans of ``scheme://user:password@host`` URLs (see the module doc)."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while (sep := text.find("://", pos)) != -1:
        start = sep + 3
        pos = start
        if sep == 0 or text[sep - 1] not in _SCHEME_CHARS or text[start : start + 1] in _NO_URL:
            continue  # "://" without a scheme before it, or prose ("postgresql:// or ...")
        line_end = text.find("\n", start)
        line_end = len(text) if line_end == -1 else line_end
        at = text.rfind("@", start, line_end)
        colon = text.find(":", start, at) if at != -1 else -1
        if colon != -1 and colon + 1 < at:
            spans.append((colon + 1, at))
            pos = at + 1
    return spans


def _key_value_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    while (match := _KEY_END.search(text, pos)) is not None:
        pos = match.end()
        key_start = match.start()
        while key_start > 0 and text[key_start - 1] in _KEY_CHARS:
            key_start -= 1
        before = text[key_start - 1] if key_start else ""
        quote_char = match.group("q")
        if quote_char and before != quote_char:
            continue  # a closing quote without its opening one: not a key
        if not quote_char and match.group("op") != "=":
            continue  # ``password: x`` is prose; only a quoted key may use ':'
        start = end = match.end()
        if text.startswith(REDACTED, start) and text[start + 3 : start + 4] in _AFTER_MASK:
            continue  # masked already (text rendered twice): leave what follows alone
        if before in ("?", "&"):
            end = _QUERY_VALUE.match(text, start).end()  # type: ignore[union-attr]
        elif start < len(text) and text[start] in _QUOTED:
            quoted = _QUOTED[text[start]].match(text, start)
            assert quoted is not None  # noqa: S101 - it starts with the quote it matches
            end = quoted.end()
            after = text[end : end + 1]
            if quoted.group("close") and (after not in _AFTER_MASK or after == text[start]):
                # The quotes do not enclose the whole value (``password=""00``,
                # ``password=""""``: libpq takes a double quote as an ordinary
                # character): mask the whole non-blank run.
                end = max(end, _BARE.match(text, start).end())  # type: ignore[union-attr]
            elif quoted.group("close"):  # keep the quotes around the mask: password='***'
                start, end = start + 1, end - 1
        elif text.startswith(("\\'", '\\"'), start):
            # A quoted value inside an escaped string (a repr of a libpq DSN): its end
            # cannot be told from an escaped quote inside it, so mask the rest of the line.
            end = text.find("\n", start)
            end = len(text) if end == -1 else end
        else:
            end = _BARE.match(text, start).end()  # type: ignore[union-attr]
        if end > start:
            spans.append((start, end))
        pos = max(end, pos)
    return spans


def _token_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    if "-" in text or "_" in text:
        spans.extend(m.span() for m in _TOKENS.finditer(text))
    if "Bearer" in text or "Basic" in text or "Token" in text:
        spans.extend(m.span("tok") for m in _SCHEME_AUTH.finditer(text))
    return spans


def _position_spans(text: str) -> list[tuple[int, int]]:
    """Merged, sorted spans that hold a secret by their position in ``text``."""
    spans: list[tuple[int, int]] = []
    if "@" in text and "://" in text:
        spans.extend(_userinfo_spans(text))
    if ("=" in text or ":" in text) and _has_key_hint(text):
        spans.extend(_key_value_spans(text))
    spans.extend(_token_spans(text))
    return _merged(spans)


def _has_key_hint(text: str) -> bool:
    lowered = text.lower()
    return any(hint in lowered for hint in _KEY_HINTS)


def _merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _unescape(value: str) -> str:
    """A libpq/repr-quoted value's text without its backslash escapes."""
    return re.sub(r"\\(.)", r"\1", value)


def find_secrets(text: str) -> list[str]:
    """The secrets ``text`` holds by position (URL password, secret parameters, tokens).

    Each is returned as written and, when it differs, percent-decoded / unquoted.
    """
    found: list[str] = []
    for start, end in _position_spans(text):
        written = text[start:end]
        for value in (written, _unescape(written), unquote(written)):
            if value and value not in found:
                found.append(value)
    return found


# --------------------------------------------------------------------------- registry
def secret_forms(secret: str) -> set[str]:
    """``secret`` as it may appear in text: plain, percent-encoded, repr/JSON-escaped."""
    forms = {secret}
    for encoded in (quote(secret, safe=""), quote(secret), quote_plus(secret, safe="")):
        forms.add(encoded)
        forms.add(_PCT.sub(lambda m: m.group().lower(), encoded))
    forms.add(repr(secret)[1:-1])
    forms.add(secret.replace("\\", "\\\\").replace("'", "\\'"))
    forms.add(secret.replace("\\", "\\\\").replace('"', '\\"'))
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class _Registry:
    """Secret values with the number of live owners holding each (permanent: no owner).

    The matching pattern is rebuilt lazily on the first redaction after a change.
    """

    def __init__(self) -> None:
        # Re-entrant: a finalizer may run on this thread while it holds the lock.
        self._lock = threading.RLock()
        self._owners: dict[str, int] = {}
        self._permanent: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._stale = False

    def add(self, secret: str, owner: object | None) -> None:
        with self._lock:
            if owner is None:
                self._permanent.add(secret)
            else:
                try:
                    finalizer = weakref.finalize(owner, self._release, secret)
                except TypeError:  # the owner cannot be weakly referenced: keep it
                    self._permanent.add(secret)
                else:
                    finalizer.atexit = False
                    self._owners[secret] = self._owners.get(secret, 0) + 1
            self._stale = True

    def _release(self, secret: str) -> None:
        with self._lock:
            left = self._owners.get(secret, 0) - 1
            if left > 0:
                self._owners[secret] = left
            else:
                self._owners.pop(secret, None)
                self._stale = True

    def pattern(self) -> re.Pattern[str] | None:
        if self._stale:
            with self._lock:
                # Cleared first: a finalizer running during the build marks it again.
                self._stale = False
                forms: set[str] = set()
                for secret in (*self._owners, *self._permanent):
                    forms |= secret_forms(secret)
                # Longest first, so a form containing another is masked whole.
                ordered = sorted(forms, key=lambda f: (-len(f), f))
                self._pattern = re.compile("|".join(map(re.escape, ordered))) if forms else None
        return self._pattern


_REGISTRY = _Registry()


@contextmanager
def fresh_secret_registry() -> Iterator[None]:
    """Within the block, only secrets registered inside it are masked by value.

    For tests that check masking by value: a value registered earlier in the process
    (an object another test, or an earlier hypothesis example, keeps alive) would
    otherwise mask the secret under test and hide a leak. At exit the registry of before
    is back and the values registered inside are forgotten. Masking by position (URL
    passwords, secret parameters, tokens) is unaffected. The registry is process-wide:
    do not enter this while other threads register or render secrets they rely on.
    """
    global _REGISTRY  # noqa: PLW0603 - the one process-wide registry, swapped for a block
    previous, _REGISTRY = _REGISTRY, _Registry()
    try:
        yield
    finally:
        _REGISTRY = previous


def register_secret(
    value: str | SecretStr | SecretBytes | None, *, owner: object | None = None
) -> None:
    """Mask ``value`` (and its encodings) wherever it appears in rendered text.

    Args:
        value: The secret; ``None``, empty and short values (< :data:`MIN_SECRET_LENGTH`)
            are ignored (they stay masked by position).
        owner: The object holding the secret; the registration ends when the last owner
            is garbage-collected. ``None`` registers for the life of the process.
    """
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    elif isinstance(value, SecretBytes):
        value = value.get_secret_value().decode("utf-8", "replace")
    if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
        _REGISTRY.add(value, owner)


def register_secrets_in(text: str | None, *, owner: object | None = None) -> None:
    """Register every secret ``text`` holds by position (a DSN's password, ...)."""
    if text:
        for secret in find_secrets(text):
            register_secret(secret, owner=owner)


# -------------------------------------------------------------------------- redaction
def redact_text(text: str) -> str:
    """``text`` with every secret (registered value, then by position) replaced by ``***``.

    Registered values go first: they are matched in the text as given, before a
    positional mask can cut one in two (a password ending in ``@`` printed after a URL).
    """
    pattern = _REGISTRY.pattern()
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    spans = _position_spans(text)
    if not spans:
        return text
    parts: list[str] = []
    last = 0
    for start, end in spans:
        parts.append(text[last:start])
        parts.append(REDACTED)
        last = end
    parts.append(text[last:])
    return "".join(parts)


def redact_chained(exc: BaseException) -> None:
    """Mask, in place, the messages and notes of the exceptions chained below ``exc``.

    A traceback prints every exception of a chain with its own ``str()``; a driver
    error chained under ours may quote a DSN. Our errors call this when they are
    rendered -- a traceback renders the outer error first -- so the driver's text is
    masked before it is printed. Only string ``args`` and notes change.
    """
    seen = {id(exc)}
    queue = [exc.__cause__, exc.__context__]
    while queue:
        link = queue.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        masked = tuple(redact_text(a) if isinstance(a, str) else a for a in link.args)
        if masked != link.args:
            link.args = masked
        notes = getattr(link, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [redact_text(n) if isinstance(n, str) else n for n in notes]
        queue += [link.__cause__, link.__context__]


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (``redis_password``, ``api_key``, ``pwd`` ...)."""
    return bool(_SECRET_KEY.search(key))


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


# ------------------------------------------------------------------ URL credentials
def userinfo_problem(url: str, *, single_at: bool = False) -> str | None:
    """Why a URL parser would read ``url``'s user name or password wrongly, or ``None``.

    A raw ``/``, ``?`` or ``#`` in a password ends the host part early, so the password
    is read as a host, port or path (and drivers then quote pieces of it in their
    errors). With ``single_at`` a second ``@`` is refused too: asyncpg splits the user
    info at the first ``@``, not the last. The answer names the fix and quotes nothing.
    """
    scheme = _SCHEME.match(url)
    if scheme is None:
        return None
    rest = url[scheme.end() :]
    cut = [i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i != -1]
    authority, tail = (rest[: min(cut)], rest[min(cut) :]) if cut else (rest, "")
    # The answers avoid a literal at sign: a message shows the masked URL after them.
    if "@" in tail:
        return (
            "a '/', '?' or '#' in the user name or password ends the host part early; "
            "percent-encode the user name and password (urllib.parse.quote(password, "
            "safe=''): '/' is %2F, '?' %3F, '#' %23, the at sign %40)"
        )
    if single_at and authority.count("@") > 1:
        return (
            "the user name or password holds an at sign, which asyncpg takes for the end "
            "of the user info; percent-encode it as %40 (urllib.parse.quote(password, "
            "safe=''))"
        )
    return None

"""The context a translator sees, the family tables, and the ``to`` translator factory.

Knows no driver and no registry: table modules build on this alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, TypeVar, get_args

from infra.exceptions import (
    BackendConnectionError,
    CacheConnectionError,
    CacheError,
    DatabaseConnectionError,
    DatabaseError,
    GraphConnectionError,
    GraphError,
    InfraError,
    InfraTimeoutError,
    InvalidArgumentError,
    InvalidKeyError,
    LLMError,
    LLMTimeoutError,
    OperationTimeoutError,
    ProviderUnavailableError,
    QueryArgumentError,
    QueryTimeoutError,
    VectorStoreConnectionError,
    VectorStoreError,
)
from infra.redaction import redact_mapping, redact_text

__all__ = [
    "DriverTable",
    "Family",
    "Role",
    "TableLoader",
    "TranslationContext",
    "Translator",
    "clean_text",
    "driver_text",
    "qualified_name",
    "to",
]

Family = Literal["database", "cache", "vector", "graph", "llm", "generic"]
"""Which backend family a call belongs to; picks e.g. the connection/timeout error type."""

Role = Literal["connection", "timeout", "argument", "base"]
"""A family-relative target for :func:`to`: resolved against the call's family.

``argument`` is the caller-error role: the driver refused an argument before sending it
(wrong type, not encodable) -- ``QueryArgumentError`` for a database call,
``InvalidKeyError`` for a cache call, ``InvalidArgumentError`` otherwise."""

_FAMILIES: Final[frozenset[str]] = frozenset(get_args(Family))
_ROLES: Final[frozenset[str]] = frozenset(get_args(Role))
_E = TypeVar("_E", bound=InfraError)

_CONNECTION: Final[Mapping[str, type[InfraError]]] = {
    "database": DatabaseConnectionError,
    "cache": CacheConnectionError,
    "vector": VectorStoreConnectionError,
    "graph": GraphConnectionError,
    "llm": ProviderUnavailableError,
    "generic": BackendConnectionError,
}
_TIMEOUT: Final[Mapping[str, type[InfraError]]] = {
    "database": QueryTimeoutError,
    "llm": LLMTimeoutError,
}
_ARGUMENT: Final[Mapping[str, type[InfraError]]] = {
    "database": QueryArgumentError,
    "cache": InvalidKeyError,
}
_BASE: Final[Mapping[str, type[InfraError]]] = {
    "database": DatabaseError,
    "cache": CacheError,
    "vector": VectorStoreError,
    "graph": GraphError,
    "llm": LLMError,
    "generic": InfraError,
}
_MAX_TEXT: Final = 300
_MAX_REDACTED: Final = 4096


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class, as stored in ``details["driver_error"]``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def clean_text(text: str) -> str:
    """One line, secrets masked, then cut to a readable length.

    Redaction runs before truncation so a cut cannot split a URL password out of reach
    of the redaction pattern. Only the first :data:`_MAX_REDACTED` characters are
    redacted: the result keeps 300 of them, and redaction time grows with the length (a
    driver message quoting a caller's 300,000-character token took minutes); a secret
    would have to start inside the kept text and run past that bound to be cut.
    """
    flat = " ".join(redact_text(text[:_MAX_REDACTED]).split())
    return flat if len(flat) <= _MAX_TEXT else flat[: _MAX_TEXT - 3] + "..."


def driver_text(exc: BaseException) -> str:
    """The driver's own message, cleaned; the class name when the message is empty."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 -- a broken __str__ must not hide the real error
        text = ""
    return clean_text(text) if text.strip() else type(exc).__name__


@dataclass(frozen=True, slots=True)
class TranslationContext:
    """What the seam knows about the failed call; translators build errors through it."""

    component: str
    family: Family = "generic"
    operation: str | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.component, str) or not self.component.strip():
            raise ValueError(
                f"component must be a non-empty name such as 'postgres', got {self.component!r}"
            )
        if self.family not in _FAMILIES:
            raise ValueError(
                f"family must be one of {sorted(_FAMILIES)}, got {self.family!r}",
            )
        if self.timeout is not None and (
            isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float)
        ):
            raise TypeError(f"timeout must be a number of seconds or None, got {self.timeout!r}")
        if self.timeout is not None and not self.timeout >= 0:
            raise ValueError(f"timeout must be None or >= 0 seconds, got {self.timeout!r}")

    def with_default_family(self, family: Family) -> TranslationContext:
        """This context, with ``family`` filled in when the caller left it generic."""
        return replace(self, family=family) if self.family == "generic" else self

    def error(
        self,
        cls: type[_E],
        exc: BaseException,
        *,
        text: str | None = None,
        retryable: bool | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> _E:
        """Build ``cls`` for ``exc``: message from the driver text, facts redacted.

        ``None``-valued facts are dropped; a known timeout is added for timeout types.
        """
        body = driver_text(exc) if text is None else clean_text(text)
        facts = {k: v for k, v in (details or {}).items() if v is not None}
        if issubclass(cls, InfraTimeoutError) and self.timeout is not None:
            facts.setdefault("timeout", self.timeout)
        return cls(
            f"{cls.default_message}: {body}" if body else None,
            component=self.component,
            details=redact_mapping(facts),
            retryable=retryable,
        )

    def role_class(self, role: Role) -> type[InfraError]:
        """The error class ``role`` resolves to for this context's family."""
        if role == "connection":
            return _CONNECTION[self.family]
        if role == "timeout":
            return _TIMEOUT.get(self.family, OperationTimeoutError)
        if role == "argument":
            return _ARGUMENT.get(self.family, InvalidArgumentError)
        return _BASE[self.family]


Translator = Callable[[BaseException, TranslationContext], InfraError | None]
"""Maps one driver exception to an error, or returns ``None`` to decline (walk on)."""
DriverTable = Sequence[tuple[type[BaseException], Translator]]
TableLoader = Callable[[], DriverTable]


def to(
    target: type[InfraError] | Role,
    *,
    family: Family | None = None,
    retryable: bool | Callable[[BaseException], bool | None] | None = None,
    facts: Callable[[BaseException], Mapping[str, Any]] | None = None,
    text: Callable[[BaseException], str] | None = None,
) -> Translator:
    """A translator that always answers ``target``.

    Args:
        target: An error class, or a role (``"connection"``, ``"timeout"``,
            ``"argument"``, ``"base"``) resolved against the call's family.
        family: The driver's natural family, used when the caller passed ``"generic"``.
        retryable: Overrides the class default; a callable decides per exception.
        facts: Extracts driver facts for ``details``.
        text: Extracts the message text (default ``str(exc)``).

    Raises:
        ValueError: ``target`` is a string but not a role.
        TypeError: ``target`` is neither a role nor an ``InfraError`` subclass.
    """
    if isinstance(target, str):
        if target not in _ROLES:
            raise ValueError(f"target must be one of {sorted(_ROLES)}, got {target!r}")
    elif not (isinstance(target, type) and issubclass(target, InfraError)):
        raise TypeError(f"target must be an InfraError subclass or a role, got {target!r}")

    def translate(exc: BaseException, ctx: TranslationContext) -> InfraError:
        if family is not None:
            ctx = ctx.with_default_family(family)
        cls = ctx.role_class(target) if isinstance(target, str) else target
        return ctx.error(
            cls,
            exc,
            text=text(exc) if text is not None else None,
            retryable=retryable(exc) if callable(retryable) else retryable,
            details=facts(exc) if facts is not None else None,
        )

    return translate

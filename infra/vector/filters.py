"""Payload filters: one small language, read the same way by every vector store.

A filter is a mapping of payload field to condition; all conditions must hold::

    {"lang": "en"}                       # equal to a str, int or bool
    {"tag": ["news", "sport"]}           # equal to any of these
    {"year": {"gte": 2020, "lt": 2025}}  # a numeric range (gt, gte, lt, lte)
    {"author.name": "ada"}               # a dotted path into nested objects

Semantics, as Qdrant defines them (the fake and pgvector follow): a field holding an
array matches when *one element* matches (for a range: one element inside the whole
range); a missing field never matches; equality is typed (``1`` does not equal ``True``
or ``"1"``, and an int never equals a float: ``{"n": 1}`` does not match ``{"n": 1.0}``), and
ranges compare numbers only. Floats are matched with ranges, not equality (exact float
equality is not a stable notion across engines).

What every engine can express, checked here (``InvalidArgumentError`` naming the field):

* a field name part is any non-empty text without ``"`` (Qdrant addresses a field by a
  path in which a part with other characters than ``A-Z a-z 0-9 _ -`` is double-quoted,
  and a quoted part cannot hold a ``"``), nor U+0000 or a lone surrogate (PostgreSQL's
  ``jsonb`` and any UTF-8 wire refuse them) -- the same rule as for stored text
  (:mod:`infra.vector.points`), so a refused value could never have been stored;
* equality values: ``str`` (same rule), ``bool``, ``int`` in the signed 64-bit range
  (Qdrant's integers);
* range bounds: finite ``int`` or ``float`` (an infinite or overflowing bound has no JSON
  form; leave the bound out instead).

:func:`parse_filter` checks a filter before any I/O (``InvalidArgumentError`` naming the
field) and returns :class:`Condition` values; the engines render them (Qdrant models,
a PostgreSQL ``jsonpath``), and :func:`matches` evaluates them in Python for the fake.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from infra.exceptions import InvalidArgumentError
from infra.validation import shown

__all__ = ["Condition", "Scalar", "matches", "parse_filter", "text_problem"]

Scalar = str | int | bool
_RANGE_KEYS: Final = frozenset({"gt", "gte", "lt", "lte"})
_MISSING: Final = object()
#: Largest finite float: an int beyond it has no float (nor JSON number) to compare as.
_FLOAT_MAX: Final = int(1.7976931348623157e308)


@dataclass(frozen=True, slots=True)
class Condition:
    """One field's condition: ``values`` (any-of equality) or range bounds."""

    path: tuple[str, ...]
    values: tuple[Scalar, ...] = ()
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    @property
    def key(self) -> str:
        """The dotted field path."""
        return ".".join(self.path)

    @property
    def is_range(self) -> bool:
        return not self.values

    def bounds(self) -> dict[str, float]:
        """The range bounds that are set."""
        found = {"gt": self.gt, "gte": self.gte, "lt": self.lt, "lte": self.lte}
        return {name: value for name, value in found.items() if value is not None}


def _error(field: str, message: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"filter[{field!r}] {message}", argument="filter", details={"field": field}
    )


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored by every engine (``None`` when it can): U+0000, which
    PostgreSQL text and ``jsonb`` cannot hold, or a lone surrogate, which is no character
    and has no UTF-8 form (a Qdrant server's JSON, PostgreSQL)."""
    if "\x00" in text:
        return "contains U+0000 (NUL), which PostgreSQL cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not a character: it has no UTF-8 form)"
    return None


def _scalar(field: str, value: object) -> Scalar:
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise _error(field, f"value {problem}; no stored payload can hold it")
        return value
    if isinstance(value, bool) or (isinstance(value, int) and -(2**63) <= value < 2**63):
        return value
    raise _error(
        field,
        f"must be a str, int or bool (or a list of them, or a range mapping), got "
        f"{shown(value)}; compare floats with a range such as {{'gte': x, 'lte': x}}",
    )


def _number(field: str, name: str, value: object) -> float:
    """A finite bound; an ``int`` is kept exact (pgvector compares it exactly)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) <= _FLOAT_MAX:
            return value
    elif isinstance(value, float) and math.isfinite(value):
        return value
    raise _error(
        field,
        f"range bound {name!r} must be a finite number, got {shown(value)}; leave a bound "
        "out for no limit on that side",
    )


def _condition(field: object, rule: object) -> Condition:
    if not isinstance(field, str) or not field or any(not part for part in field.split(".")):
        raise InvalidArgumentError(
            f"filter keys must be payload field names (dotted for nested), got {shown(field)}",
            argument="filter",
        )
    problem = text_problem(field) or ("contains '\"'" if '"' in field else None)
    if problem is not None:
        raise _error(
            field,
            f"field name {problem}: no engine can address such a field (Qdrant quotes "
            "unusual names with '\"'); rename the payload field",
        )
    path = tuple(field.split("."))
    if isinstance(rule, Mapping):
        unknown = set(rule) - _RANGE_KEYS
        if unknown or not rule:
            raise _error(field, f"range must use keys {sorted(_RANGE_KEYS)}, got {shown(rule)}")
        bounds = {str(name): _number(field, name, value) for name, value in rule.items()}
        return Condition(
            path,
            gt=bounds.get("gt"),
            gte=bounds.get("gte"),
            lt=bounds.get("lt"),
            lte=bounds.get("lte"),
        )
    if isinstance(rule, Sequence) and not isinstance(rule, str | bytes):
        if not rule:
            raise _error(field, "must list at least one value")
        return Condition(path, tuple(_scalar(field, value) for value in rule))
    return Condition(path, (_scalar(field, rule),))


def parse_filter(filter: object) -> tuple[Condition, ...]:  # noqa: A002 - the port's word
    """The conditions of ``filter`` (``None`` or empty: no condition)."""
    if filter is None:
        return ()
    if not isinstance(filter, Mapping):
        raise InvalidArgumentError(
            f"filter must be a mapping of payload field to condition, got {shown(filter)}",
            argument="filter",
        )
    return tuple(_condition(field, rule) for field, rule in filter.items())


def _lookup(payload: Any, path: tuple[str, ...]) -> Any:
    value = payload
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _same(stored: object, wanted: Scalar) -> bool:
    return type(stored) is type(wanted) and stored == wanted


def _in_range(stored: object, condition: Condition) -> bool:
    if isinstance(stored, bool) or not isinstance(stored, int | float):
        return False
    return (
        (condition.gt is None or stored > condition.gt)
        and (condition.gte is None or stored >= condition.gte)
        and (condition.lt is None or stored < condition.lt)
        and (condition.lte is None or stored <= condition.lte)
    )


def _holds(payload: Mapping[str, Any], condition: Condition) -> bool:
    stored = _lookup(payload, condition.path)
    if stored is _MISSING:
        return False
    elements = stored if isinstance(stored, list) else [stored]
    if condition.is_range:
        return any(_in_range(element, condition) for element in elements)
    return any(_same(element, wanted) for element in elements for wanted in condition.values)


def matches(payload: Mapping[str, Any], conditions: Sequence[Condition]) -> bool:
    """Whether ``payload`` satisfies every condition (the fake's evaluation)."""
    return all(_holds(payload, condition) for condition in conditions)

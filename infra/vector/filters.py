"""Payload filters: one small language, read the same way by every vector store.

A filter is a mapping of payload field to condition; all conditions must hold::

    {"lang": "en"}                       # equal to a str, int or bool
    {"tag": ["news", "sport"]}           # equal to any of these
    {"year": {"gte": 2020, "lt": 2025}}  # a numeric range (gt, gte, lt, lte)
    {"author.name": "ada"}               # a dotted path into nested objects

Semantics, as Qdrant defines them (the fake and pgvector follow): a field holding an
array matches when *one element* matches (for a range: one element inside the whole
range); a missing field never matches; equality is typed (``1`` does not equal ``True``
or ``"1"``), and ranges compare numbers only. Floats are matched with ranges, not
equality (exact float equality is not a stable notion across engines).

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

__all__ = ["Condition", "Scalar", "matches", "parse_filter"]

Scalar = str | int | bool
_RANGE_KEYS: Final = frozenset({"gt", "gte", "lt", "lte"})
_MISSING: Final = object()


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


def _scalar(field: str, value: object) -> Scalar:
    if isinstance(value, str | bool) or (isinstance(value, int) and -(2**63) <= value < 2**63):
        return value
    raise _error(
        field,
        f"must be a str, int or bool (or a list of them, or a range mapping), got "
        f"{shown(value)}; compare floats with a range such as {{'gte': x, 'lte': x}}",
    )


def _number(field: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise _error(field, f"range bound {name!r} must be a number, got {shown(value)}")
    return float(value)


def _condition(field: object, rule: object) -> Condition:
    if not isinstance(field, str) or not field or any(not part for part in field.split(".")):
        raise InvalidArgumentError(
            f"filter keys must be payload field names (dotted for nested), got {shown(field)}",
            argument="filter",
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

"""A small PromQL evaluator: enough of the language to unit-test our alert rules in Python.

``promtool test rules`` is the reference tool, but it is a Go binary that pip cannot
install, and the test suite must run with pip alone. No maintained pure-Python PromQL
*evaluator* exists (the PyPI packages build queries or call a Prometheus server), so the
parsing is left to ``promql-parser`` (the Rust parser of GreptimeDB, with Python
bindings) and this module evaluates the resulting tree over in-memory samples.

Supported, with Prometheus's semantics (the references below are to its engine):

* instant vector selectors with ``=``, ``!=``, ``=~``, ``!~`` matchers (anchored
  regular expressions) and ``offset``; the 5-minute lookback and staleness markers;
* range vectors as function arguments, covering ``(t - range, t]`` (Prometheus 3);
* functions ``rate``, ``increase`` (with counter-reset handling and the engine's
  extrapolation), ``max_over_time``, ``min_over_time``, ``avg_over_time``,
  ``sum_over_time``, ``count_over_time`` and ``histogram_quantile`` (classic buckets);
* aggregations ``sum``, ``min``, ``max``, ``avg``, ``count`` with ``by``/``without``;
* binary operators ``+ - * / % ^``, comparisons (with ``bool``), ``and``/``or``/
  ``unless``, between scalars, vectors and a vector and a scalar, with one-to-one
  matching (``on``/``ignoring``); unary minus and parentheses.

Anything else (``group_left``, subqueries, ``@``, other functions) raises
:class:`UnsupportedQueryError` naming the construct, so a rule that outgrows the subset
fails its test loudly instead of being evaluated wrongly.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Final

import promql_parser as pp

__all__ = [
    "LOOKBACK_S",
    "STALE",
    "Evaluator",
    "Labels",
    "Samples",
    "UnsupportedQueryError",
    "Vector",
    "labels_of",
]

#: How far back an instant selector looks for a sample (Prometheus's default), seconds.
LOOKBACK_S: Final = 300.0
#: A staleness marker in a series (the series ended there).
STALE: Final = None

#: A series' identity: sorted ``(name, value)`` pairs; the metric name is ``__name__``.
Labels = tuple[tuple[str, str], ...]
#: One series' samples, ``(seconds, value or STALE)``, in time order.
Samples = Sequence[tuple[float, float | None]]
#: An instant vector: one value per label set.
Vector = dict[Labels, float]
_Matrix = dict[Labels, list[tuple[float, float]]]
_NAME: Final = "__name__"


class UnsupportedQueryError(ValueError):
    """The expression uses PromQL this evaluator does not implement (named in the text)."""


def labels_of(name: str | None = None, /, **labels: str) -> Labels:
    """A :data:`Labels` key: ``labels_of("up", job="api")``."""
    pairs = dict(labels)
    if name is not None:
        pairs[_NAME] = name
    return tuple(sorted(pairs.items()))


def _without(labels: Labels, drop: Iterable[str]) -> Labels:
    dropped = set(drop)
    return tuple(pair for pair in labels if pair[0] not in dropped)


def _keep(labels: Labels, keep: Iterable[str]) -> Labels:
    kept = set(keep)
    return tuple(pair for pair in labels if pair[0] in kept)


def _drop_name(labels: Labels) -> Labels:
    return _without(labels, (_NAME,))


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(f"(?:{pattern})\\Z")  # PromQL regexes are fully anchored


def _matches(matcher: pp.Matcher, value: str) -> bool:
    op = matcher.op
    if op == pp.MatchOp.Equal:
        return value == matcher.value
    if op == pp.MatchOp.NotEqual:
        return value != matcher.value
    found = _regex(matcher.value).match(value) is not None
    return found if op == pp.MatchOp.Re else not found


@dataclass(frozen=True)
class Evaluator:
    """Evaluates PromQL over fixed samples: ``Evaluator(series).instant(expr, at)``.

    Args:
        series: Samples per series (times in seconds, ascending; ``STALE`` ends a series).
        lookback: Lookback of instant selectors, seconds.
    """

    series: Mapping[Labels, Samples]
    lookback: float = LOOKBACK_S
    _parsed: dict[str, pp.Expr] = field(default_factory=dict, repr=False, compare=False)

    def instant(self, expr: str | pp.Expr, at: float) -> Vector | float:
        """The value of ``expr`` at ``at`` seconds: an instant vector or a scalar."""
        if isinstance(expr, str):
            parsed = self._parsed.get(expr)
            if parsed is None:
                parsed = self._parsed[expr] = pp.parse(expr)
            expr = parsed
        return self._eval(expr, at)

    # ----------------------------------------------------------------- the tree
    def _eval(self, node: pp.Expr, at: float) -> Vector | float:  # noqa: PLR0911
        if isinstance(node, pp.NumberLiteral):
            return float(node.val)
        if isinstance(node, pp.ParenExpr):
            return self._eval(node.expr, at)
        if isinstance(node, pp.UnaryExpr):
            inner = self._eval(node.expr, at)
            if isinstance(inner, float):
                return -inner
            return {_drop_name(k): -v for k, v in inner.items()}
        if isinstance(node, pp.VectorSelector):
            return self._select(node, at)
        if isinstance(node, pp.Call):
            return self._call(node, at)
        if isinstance(node, pp.AggregateExpr):
            return self._aggregate(node, at)
        if isinstance(node, pp.BinaryExpr):
            return self._binary(node, at)
        raise UnsupportedQueryError(f"{type(node).__name__} is not supported: {node}")

    def _selected(self, selector: pp.VectorSelector) -> Iterable[tuple[Labels, Samples]]:
        if selector.at is not None:
            raise UnsupportedQueryError(f"the @ modifier is not supported: {selector}")
        matchers = selector.matchers.matchers
        if selector.matchers.or_matchers:
            raise UnsupportedQueryError(f"'or' inside a selector is not supported: {selector}")
        for labels, samples in self.series.items():
            values = dict(labels)
            if selector.name is not None and values.get(_NAME) != selector.name:
                continue
            if all(_matches(m, values.get(m.name, "")) for m in matchers):
                yield labels, samples

    def _select(self, selector: pp.VectorSelector, at: float) -> Vector:
        at -= _seconds(selector.offset)
        result: Vector = {}
        for labels, samples in self._selected(selector):
            latest: tuple[float, float | None] | None = None
            for sample in samples:
                if sample[0] > at:
                    break
                latest = sample
            if latest is None or at - latest[0] >= self.lookback or latest[1] is STALE:
                continue
            result[labels] = latest[1]
        return result

    def _range(self, node: pp.Expr, at: float) -> tuple[_Matrix, float, float]:
        """Samples in ``(at - range, at]`` per series, with the range's start and end."""
        if not isinstance(node, pp.MatrixSelector):
            raise UnsupportedQueryError(f"expected a range vector such as x[5m], got {node}")
        selector = node.vector_selector
        end = at - _seconds(selector.offset)
        start = end - node.range.total_seconds()
        matrix: _Matrix = {}
        for labels, samples in self._selected(selector):
            points = [(t, v) for t, v in samples if start < t <= end and v is not None]
            if points:
                matrix[labels] = points
        return matrix, start, end

    def _call(self, node: pp.Call, at: float) -> Vector:
        name = node.func.name
        if name == "histogram_quantile":
            q = self._eval(node.args[0], at)
            buckets = self._eval(node.args[1], at)
            if not isinstance(q, float) or isinstance(buckets, float):
                raise UnsupportedQueryError(f"histogram_quantile(scalar, vector) expected: {node}")
            return _histogram_quantile(q, buckets)
        over_time = _OVER_TIME.get(name)
        if name in ("rate", "increase"):
            matrix, start, end = self._range(node.args[0], at)
            result: Vector = {}
            for labels, points in matrix.items():
                value = _extrapolated(points, start, end, is_rate=name == "rate")
                if value is not None:
                    result[_drop_name(labels)] = value
            return result
        if over_time is not None:
            matrix, _, _ = self._range(node.args[0], at)
            return {_drop_name(k): over_time([v for _, v in p]) for k, p in matrix.items()}
        raise UnsupportedQueryError(f"function {name}() is not supported")

    def _aggregate(self, node: pp.AggregateExpr, at: float) -> Vector:
        op = str(node.op)
        reduce = _AGGREGATIONS.get(op)
        if reduce is None or node.param is not None:
            raise UnsupportedQueryError(f"aggregation {op} is not supported: {node}")
        inner = self._eval(node.expr, at)
        if isinstance(inner, float):
            raise UnsupportedQueryError(f"{op}() needs an instant vector: {node}")
        modifier = node.modifier
        groups: dict[Labels, list[float]] = defaultdict(list)
        for labels, value in inner.items():
            if modifier is None:
                key: Labels = ()
            elif modifier.type == pp.AggModifierType.By:
                key = _keep(labels, modifier.labels)
            else:
                key = _drop_name(_without(labels, modifier.labels))
            groups[key].append(value)
        return {key: reduce(values) for key, values in groups.items()}

    def _binary(self, node: pp.BinaryExpr, at: float) -> Vector | float:
        op = str(node.op)
        modifier = node.modifier
        lhs, rhs = self._eval(node.lhs, at), self._eval(node.rhs, at)
        return_bool = modifier is not None and modifier.return_bool
        if op in ("and", "or", "unless"):
            if isinstance(lhs, float) or isinstance(rhs, float):
                raise UnsupportedQueryError(f"'{op}' needs vectors on both sides: {node}")
            return _set_operation(op, lhs, rhs, _signature(modifier))
        apply = _OPERATORS.get(op)
        if apply is None:
            raise UnsupportedQueryError(f"operator {op} is not supported: {node}")
        comparison = op in _COMPARISONS
        if isinstance(lhs, float) and isinstance(rhs, float):
            return float(apply(lhs, rhs))
        if isinstance(lhs, float) or isinstance(rhs, float):
            return _with_scalar(apply, lhs, rhs, comparison=comparison, bool_=return_bool)
        if modifier is not None and (
            modifier.card not in (pp.VectorMatchCardinality.OneToOne, None) or modifier.group_labels
        ):
            raise UnsupportedQueryError(f"group_left/group_right are not supported: {node}")
        return _one_to_one(op, apply, lhs, rhs, modifier, comparison=comparison, bool_=return_bool)


def _seconds(delta: object) -> float:
    if delta is None:
        return 0.0
    total = getattr(delta, "total_seconds", None)
    if total is None:  # promql-parser may wrap a negative offset; not used by our rules
        raise UnsupportedQueryError(f"unsupported offset {delta!r}")
    seconds: float = total()
    return seconds


def _signature(modifier: pp.BinModifier | None) -> Callable[[Labels], Labels]:
    matching = modifier.matching if modifier is not None else None
    if matching is None:
        return _drop_name
    names = list(matching.labels)
    if matching.type == pp.LabelModifierType.Include:  # on(...)
        return lambda labels: _keep(labels, names)
    return lambda labels: _drop_name(_without(labels, names))  # ignoring(...)


def _set_operation(
    op: str, lhs: Vector, rhs: Vector, signature: Callable[[Labels], Labels]
) -> Vector:
    right = {signature(k) for k in rhs}
    if op == "and":
        return {k: v for k, v in lhs.items() if signature(k) in right}
    if op == "unless":
        return {k: v for k, v in lhs.items() if signature(k) not in right}
    left = {signature(k) for k in lhs}
    result = dict(lhs)
    result.update({k: v for k, v in rhs.items() if signature(k) not in left})
    return result


def _with_scalar(
    apply: Callable[[float, float], float | bool],
    lhs: Vector | float,
    rhs: Vector | float,
    *,
    comparison: bool,
    bool_: bool,
) -> Vector:
    vector_left = not isinstance(lhs, float)
    vector, scalar = (lhs, rhs) if vector_left else (rhs, lhs)
    if isinstance(vector, float) or not isinstance(scalar, float):
        raise UnsupportedQueryError("expected a vector and a scalar")
    result: Vector = {}
    for labels, value in vector.items():
        outcome = apply(value, scalar) if vector_left else apply(scalar, value)
        if not comparison:
            result[_drop_name(labels)] = float(outcome)
        elif bool_:
            result[_drop_name(labels)] = 1.0 if outcome else 0.0
        elif outcome:
            result[labels] = value  # a filter keeps the vector's own sample
    return result


def _one_to_one(
    op: str,
    apply: Callable[[float, float], float | bool],
    lhs: Vector,
    rhs: Vector,
    modifier: pp.BinModifier | None,
    *,
    comparison: bool,
    bool_: bool,
) -> Vector:
    signature = _signature(modifier)
    right: dict[Labels, float] = {}
    for labels, value in rhs.items():
        key = signature(labels)
        if key in right:
            raise UnsupportedQueryError(f"many-to-one matching needs group_left ({op})")
        right[key] = value
    seen: set[Labels] = set()
    result: Vector = {}
    matching = modifier.matching if modifier is not None else None
    for labels, value in lhs.items():
        key = signature(labels)
        if key in seen:
            raise UnsupportedQueryError(f"many-to-one matching needs group_right ({op})")
        seen.add(key)
        if key not in right:
            continue
        outcome = apply(value, right[key])
        out = labels if comparison and not bool_ else _drop_name(labels)
        if matching is not None:  # the engine's resultMetric for one-to-one matching
            if matching.type == pp.LabelModifierType.Include:
                out = _keep(out, matching.labels)
            else:
                out = _without(out, matching.labels)
        if not comparison:
            result[out] = float(outcome)
        elif bool_:
            result[out] = 1.0 if outcome else 0.0
        elif outcome:
            result[out] = value
    return result


def _extrapolated(
    points: list[tuple[float, float]], start: float, end: float, *, is_rate: bool
) -> float | None:
    """``rate``/``increase`` of one counter series, extrapolated as the engine does
    (``extrapolatedRate`` in Prometheus's ``promql/functions.go``)."""
    if len(points) < 2:
        return None
    first_t, first_v = points[0]
    last_t, last_v = points[-1]
    delta = last_v - first_v
    previous = first_v
    for _, value in points[1:]:
        if value < previous:  # a counter reset: the counter restarted from zero
            delta += previous
        previous = value
    sampled = last_t - first_t
    to_start, to_end = first_t - start, end - last_t
    average = sampled / (len(points) - 1)
    if delta > 0 and first_v >= 0:
        to_zero = sampled * (first_v / delta)  # a counter does not extrapolate below zero
        to_start = min(to_start, to_zero)
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    value = delta * (interval / sampled)
    return value / (end - start) if is_rate else value


def _histogram_quantile(q: float, buckets: Vector) -> Vector:
    """Classic-bucket quantiles (``bucketQuantile`` in Prometheus's ``promql/quantile.go``)."""
    groups: dict[Labels, list[tuple[float, float]]] = defaultdict(list)
    for labels, count in buckets.items():
        le = dict(labels).get("le")
        if le is None:
            continue
        groups[_drop_name(_without(labels, ("le",)))].append((float(le), count))
    result: Vector = {}
    for key, group in groups.items():
        group.sort()
        if q < 0:
            result[key] = -math.inf
            continue
        if q > 1:
            result[key] = math.inf
            continue
        if len(group) < 2 or not math.isinf(group[-1][0]):
            result[key] = math.nan
            continue
        monotonic, highest = [], 0.0  # the engine's ensureMonotonic
        for bound, count in group:
            highest = max(highest, count)
            monotonic.append((bound, highest))
        total = monotonic[-1][1]
        if total == 0:
            result[key] = math.nan
            continue
        rank = q * total
        index = next(i for i, (_, count) in enumerate(monotonic) if count >= rank)
        if index == len(monotonic) - 1:
            result[key] = monotonic[-2][0]
            continue
        if index == 0 and monotonic[0][0] <= 0:
            result[key] = monotonic[0][0]
            continue
        lower, below = (monotonic[index - 1][0], monotonic[index - 1][1]) if index else (0.0, 0.0)
        upper, count = monotonic[index]
        result[key] = lower + (upper - lower) * ((rank - below) / (count - below))
    return result


def _power(a: float, b: float) -> float:
    try:
        return float(a**b)
    except (OverflowError, ZeroDivisionError):
        return math.inf


def _divide(a: float, b: float) -> float:
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


def _modulo(a: float, b: float) -> float:
    return math.nan if b == 0 else math.fmod(a, b)


_OPERATORS: Final[dict[str, Callable[[float, float], float | bool]]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _divide,
    "%": _modulo,
    "^": _power,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}
_COMPARISONS: Final = frozenset({"==", "!=", ">", "<", ">=", "<="})
_AGGREGATIONS: Final[dict[str, Callable[[list[float]], float]]] = {
    "sum": lambda values: float(sum(values)),
    "min": min,
    "max": max,
    "avg": lambda values: sum(values) / len(values),
    "count": lambda values: float(len(values)),
}
_OVER_TIME: Final[dict[str, Callable[[list[float]], float]]] = {
    "max_over_time": max,
    "min_over_time": min,
    "avg_over_time": lambda values: sum(values) / len(values),
    "sum_over_time": lambda values: float(sum(values)),
    "count_over_time": lambda values: float(len(values)),
}

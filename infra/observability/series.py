"""Metric families and their series: the storage under :class:`MetricsCollector`.

Split from :mod:`infra.observability.metrics` so each module stays small. See that
module's docstring for why storage is ours and exposition is prometheus-client's.

* A *family* (:class:`Counter`, :class:`Gauge`, :class:`Histogram`) has a name, a fixed
  tuple of label names and one *series* per distinct label-value tuple.
* ``family.labels(*values)`` is a single dict lookup when the series exists; callers on a
  hot path keep the returned series and call ``inc``/``set``/``observe`` on it directly.
* Label names are checked once, at definition: names that would carry unbounded values
  (:data:`~infra.observability.attributes.FORBIDDEN_LABEL_NAMES`) are refused. Label
  values are bounded at run time: each label keeps at most ``max_label_values`` distinct
  values, and a value longer than 64 characters or past the cap becomes ``"other"``. A
  folded key is never cached, so a flood of distinct values cannot grow memory.
* The series themselves (values, thread ownership, buffering) are in
  :mod:`infra.observability.recording`, re-exported here.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, Literal, TypeVar

from infra.observability.attributes import FORBIDDEN_LABEL_NAMES
from infra.observability.recording import (
    CounterSeries,
    DurationRecorder,
    GaugeSeries,
    HistogramSeries,
    HistogramSnapshot,
)

__all__ = [
    "OTHER",
    "Counter",
    "CounterSeries",
    "DurationRecorder",
    "Gauge",
    "GaugeSeries",
    "Histogram",
    "HistogramSeries",
    "HistogramSnapshot",
    "check_metric_names",
]

OTHER = "other"
_MAX_VALUE_LENGTH = 64
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


S = TypeVar("S", CounterSeries, GaugeSeries, HistogramSeries)


class _Family(Generic[S]):
    kind: Literal["counter", "gauge", "histogram"]

    def __init__(
        self,
        name: str,
        description: str,
        label_names: tuple[str, ...],
        max_label_values: int,
        factory: Callable[[], S],
    ) -> None:
        self.name = name
        self.description = description
        self.label_names = label_names
        self._max_label_values = max_label_values
        self._factory: Callable[[], S] = factory
        self._series: dict[tuple[str, ...], S] = {}
        self._seen: tuple[set[str], ...] = tuple(set() for _ in label_names)
        self._lock = threading.Lock()

    def labels(self, *values: str) -> S:
        """The series for ``values`` (in ``label_names`` order), created on first use."""
        series = self._series.get(values)
        if series is None:
            series = self._create(values)
        return series

    def labels_from(self, labels: Mapping[str, Any]) -> S:
        """Like :meth:`labels`, from a mapping that must name exactly ``label_names``."""
        if set(labels) != set(self.label_names):
            raise ValueError(
                f"metric {self.name!r} takes labels {list(self.label_names)}, got {sorted(labels)}"
            )
        return self.labels(*(str(labels[n]) for n in self.label_names))

    def series(self) -> list[tuple[tuple[str, ...], S]]:
        """A snapshot of every (label values, series) pair."""
        with self._lock:
            return list(self._series.items())

    def clear(self) -> None:
        """Forget every series (tests)."""
        with self._lock:
            self._series.clear()
            for seen in self._seen:
                seen.clear()

    def _create(self, raw: tuple[str, ...]) -> S:
        if len(raw) != len(self.label_names):
            raise ValueError(
                f"metric {self.name!r} takes {len(self.label_names)} label values "
                f"{list(self.label_names)}, got {len(raw)}"
            )
        with self._lock:
            values = tuple(self._fold(i, str(v)) for i, v in enumerate(raw))
            series = self._series.get(values)
            if series is None:
                series = self._factory()
                self._series[values] = series
            # Cache the raw key only when nothing was folded, so unbounded input cannot
            # grow this dict; folded keys take this slow path every time.
            if values == raw:
                self._series[raw] = series
            return series

    def _fold(self, index: int, value: str) -> str:
        seen = self._seen[index]
        if value in seen:
            return value
        if len(value) > _MAX_VALUE_LENGTH or len(seen) >= self._max_label_values:
            return OTHER
        seen.add(value)
        return value

    def matching(self, labels: Mapping[str, str]) -> Iterator[S]:
        """Series whose labels include every ``labels`` item."""
        unknown = set(labels) - set(self.label_names)
        if unknown:
            raise ValueError(f"metric {self.name!r} has no label(s) {sorted(unknown)}")
        wanted = [(self.label_names.index(k), v) for k, v in labels.items()]
        for values, series in self.series():
            if all(values[i] == v for i, v in wanted):
                yield series


class Counter(_Family[CounterSeries]):
    """A counter family; ``labels(...).inc()``."""

    kind = "counter"


class Gauge(_Family[GaugeSeries]):
    """A gauge family; ``labels(...).set(v)``."""

    kind = "gauge"


class Histogram(_Family[HistogramSeries]):
    """A histogram family; ``labels(...).observe(v)``."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        description: str,
        label_names: tuple[str, ...],
        max_label_values: int,
        buckets: tuple[float, ...],
    ) -> None:
        self.buckets = buckets
        super().__init__(
            name, description, label_names, max_label_values, lambda: HistogramSeries(buckets)
        )


def check_metric_names(name: str, label_names: tuple[str, ...]) -> None:
    """Raise ``ValueError`` for an invalid metric name or a bad/unbounded label name."""
    if not _NAME.match(name):
        raise ValueError(f"invalid metric name {name!r}: use [a-zA-Z_:][a-zA-Z0-9_:]*")
    if len(set(label_names)) != len(label_names):
        raise ValueError(f"metric {name!r}: duplicate label names {list(label_names)}")
    for label in label_names:
        if not _LABEL.match(label) or label.startswith("__"):
            raise ValueError(f"metric {name!r}: invalid label name {label!r}")
        if label in FORBIDDEN_LABEL_NAMES:
            raise ValueError(
                f"metric {name!r}: label {label!r} would carry unbounded values (raw keys, "
                f"statements, user ids); record a bounded category such as 'operation' "
                f"and put the detail on the span or log line"
            )

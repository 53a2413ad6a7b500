"""The metrics collector: counters, gauges and histograms, readable in-process and exported
for Prometheus through prometheus-client.

Design decisions:

* **Storage is ours, exposition is prometheus-client's.** Values live in small slotted
  series objects; a custom collector on a *private* ``CollectorRegistry`` turns them into
  prometheus-client metric families, so ``generate_latest`` and ``make_asgi_app`` do the
  text format and HTTP. Why not prometheus-client's own ``Histogram``: it scans buckets
  linearly (1.3 µs per observe with 81 buckets, 3.4 µs with ``labels()``; ``bisect`` here
  costs 0.5 µs), keeps no min/max and has no public way to read bucket counts back. The
  in-process quantiles (:mod:`~infra.observability.quantiles`) must come from the exported
  buckets, so both are read from the same store. Nothing touches the global default
  registry, so two collectors (or a test's and the app's) never collide.
* **Cheap hot path.** ``family.labels(*values)`` is one dict lookup on a tuple; callers
  that record the same series repeatedly (the instrument helper) keep the series object
  and call ``observe``/``inc`` directly: no per-call dict or label work. Such a cache is
  valid while the module's epoch token is unchanged (it changes when the current
  collector is replaced or a collector is reset). Series writes take no lock on the
  thread that owns the series (see :mod:`~infra.observability.series` for why that is
  safe and what a scrape from another thread may see).
* **Bounded labels.** Each metric declares its label names up front; names that would
  carry unbounded values (:data:`~infra.observability.attributes.FORBIDDEN_LABEL_NAMES`:
  ``sql``, ``key``, ``user_id`` ...) are refused at definition. At run time each label
  keeps at most ``max_label_values`` distinct values; further values, and any value
  longer than 64 characters, are folded into ``"other"`` (never cached, so a flood of
  distinct values cannot grow memory).
* **Views: the design's millisecond names read the one duration histogram.** Every
  backend call is recorded once, into the semantic-convention duration histogram in
  seconds (``db_client_operation_duration_seconds``, labelled by ``component``). A
  :class:`HistogramView` registered under a name such as ``postgres_query_latency_ms``
  makes ``get_histogram_stats`` read that histogram's series of one component, in
  milliseconds, with ``operation`` meaning ``db_operation_name``. Views are never
  exported: Prometheus sees each call once.
* **Counters end in ``_total``** in-process and on the wire (prometheus-client strips and
  re-adds the suffix), so ``get_counter("llm_cost_usd_total")`` names what Prometheus shows.
* **One collector per application, injected.** The observability container builds one
  collector per application and passes it to every adapter, policy observer and pool
  gauge it wires (constructor arguments), so two applications in one process never share
  a series. :func:`get_metrics_collector` is the accessor for code that is not wired: it
  returns the collector of the *active* application -- the most recently started one
  still running (:func:`activate_metrics_collector`, which the container calls on start
  and undoes on stop, in any order) -- or else the process default: the one
  :func:`set_metrics_collector` installed, or one created on first call (and kept) so
  scripts and REPL use work; tests call :func:`reset_metrics_collector`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from infra.observability.quantiles import (
    DEFAULT_BUCKETS_MS,
    HistogramStats,
    stats_from_buckets,
    validate_buckets,
)
from infra.observability.series import (
    OTHER,
    Counter,
    CounterSeries,
    Gauge,
    GaugeSeries,
    Histogram,
    HistogramSeries,
    check_metric_names,
)

__all__ = [
    "OTHER",
    "Counter",
    "CounterSeries",
    "Gauge",
    "GaugeSample",
    "GaugeSeries",
    "Histogram",
    "HistogramSeries",
    "HistogramView",
    "MetricSource",
    "MetricsCollector",
    "activate_metrics_collector",
    "get_metrics_collector",
    "reset_metrics_collector",
    "set_metrics_collector",
]

# prometheus-client's own bound formatting ("0.125", "+Inf"); it ships without annotations.
_format_bound = cast("Callable[[float], str]", floatToGoString)
F = TypeVar("F", Counter, Gauge, Histogram)


@dataclass(frozen=True, slots=True)
class GaugeSample:
    """One gauge value produced on demand by a :class:`MetricSource`.

    ``exported=False`` makes it an in-process read only (``get_gauge``), left out of the
    Prometheus exposition: another name for a value that is exported once under its
    own family (the design's ``postgres_pool_utilization`` next to the semantic-convention
    pool gauges).
    """

    name: str
    description: str
    labels: Mapping[str, str]
    value: float
    exported: bool = True


@dataclass(frozen=True, slots=True)
class HistogramView:
    """Another name for part of a histogram, read by :meth:`MetricsCollector.get_histogram_stats`.

    Args:
        source: The histogram family read.
        fixed: Labels every series read must carry (``{"component": "postgres"}``).
        rename: The view's label names to the source's (``{"operation":
            "db_operation_name"}``); other names are passed through.
        scale: Multiplies bounds, sum, min and max (``1000.0``: seconds read as ms).
    """

    source: str
    fixed: Mapping[str, str]
    rename: Mapping[str, str]
    scale: float = 1.0


@runtime_checkable
class MetricSource(Protocol):
    """Something sampled at scrape (and ``get_gauge``) time, e.g. connection pools."""

    def collect_samples(self) -> Iterable[GaugeSample]:
        """Current values; called once per scrape."""
        ...


class _PrometheusBridge:
    """prometheus-client ``Collector`` that renders a :class:`MetricsCollector`."""

    def __init__(self, owner: MetricsCollector) -> None:
        self._owner = owner

    def collect(self) -> Iterable[Metric]:
        for family in self._owner.families():
            yield _to_prometheus(family)
        grouped: dict[str, GaugeMetricFamily] = {}
        for sample in self._owner.sampled():
            if not sample.exported:
                continue
            metric = grouped.get(sample.name)
            if metric is None:
                metric = GaugeMetricFamily(
                    sample.name, sample.description, labels=list(sample.labels)
                )
                grouped[sample.name] = metric
            metric.add_metric(list(sample.labels.values()), sample.value)
        yield from grouped.values()


def _to_prometheus(family: Counter | Gauge | Histogram) -> Metric:
    labels = list(family.label_names)
    if isinstance(family, Histogram):
        hist = HistogramMetricFamily(family.name, family.description, labels=labels)
        for values, h in family.series():
            snap = h.snapshot()
            cumulative, buckets = 0, []
            for bound, count in zip(family.buckets, snap.counts, strict=False):
                cumulative += count
                buckets.append((_format_bound(bound), float(cumulative)))
            # +Inf is the total of the same counts, so a scrape never sees it disagree.
            buckets.append(("+Inf", float(cumulative + snap.counts[-1])))
            hist.add_metric(list(values), buckets, snap.sum)
        return hist
    cls = CounterMetricFamily if isinstance(family, Counter) else GaugeMetricFamily
    metric = cls(family.name, family.description, labels=labels)
    for values, series in family.series():
        metric.add_metric(list(values), series.get())
    return metric


class MetricsCollector:
    """Counters, gauges and histograms with in-process reads and Prometheus export.

    Args:
        max_label_values: Distinct values kept per label before folding into ``"other"``.
        include_process_metrics: Also export prometheus-client's process/platform/GC
            collectors on this collector's private registry.
    """

    def __init__(self, *, max_label_values: int = 100, include_process_metrics: bool = False):
        if max_label_values < 1:
            raise ValueError(f"max_label_values must be >= 1, got {max_label_values!r}")
        self._max_label_values = max_label_values
        self._families: dict[str, Counter | Gauge | Histogram] = {}
        self._sources: list[MetricSource] = []
        self._views: dict[str, HistogramView] = {}
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_PrometheusBridge(self))
        if include_process_metrics:
            from prometheus_client import (  # noqa: PLC0415 - only when asked for
                GCCollector,
                PlatformCollector,
                ProcessCollector,
            )

            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    # ----------------------------------------------------------------- definitions
    def counter(self, name: str, description: str = "", labels: Sequence[str] = ()) -> Counter:
        """Define (or fetch the identical) counter ``name``; it must end with ``_total``."""
        if not name.endswith("_total"):
            raise ValueError(f"counter names end with '_total' (got {name!r})")
        label_names = tuple(labels)
        return self._define(
            Counter,
            name,
            label_names,
            lambda: Counter(name, description, label_names, self._max_label_values, CounterSeries),
        )

    def gauge(self, name: str, description: str = "", labels: Sequence[str] = ()) -> Gauge:
        """Define (or fetch the identical) gauge ``name``."""
        label_names = tuple(labels)
        return self._define(
            Gauge,
            name,
            label_names,
            lambda: Gauge(name, description, label_names, self._max_label_values, GaugeSeries),
        )

    def histogram(
        self,
        name: str,
        description: str = "",
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS_MS,
    ) -> Histogram:
        """Define (or fetch the identical) histogram ``name`` with ``buckets`` bounds."""
        label_names, bounds = tuple(labels), validate_buckets(buckets)
        family = self._define(
            Histogram,
            name,
            label_names,
            lambda: Histogram(name, description, label_names, self._max_label_values, bounds),
        )
        if family.buckets != bounds:
            raise ValueError(f"histogram {name!r} already exists with different buckets")
        return family

    def _define(
        self, cls: type[F], name: str, label_names: tuple[str, ...], build: Callable[[], F]
    ) -> F:
        existing = self._families.get(name)
        if existing is None:
            check_metric_names(name, label_names)
            with self._lock:
                existing = self._families.get(name)
                if existing is None:
                    existing = self._families[name] = build()
        if not isinstance(existing, cls) or existing.label_names != label_names:
            raise ValueError(
                f"metric {name!r} is already a {existing.kind} with labels "
                f"{list(existing.label_names)}; cannot redefine it as a {cls.kind} with "
                f"labels {list(label_names)}"
            )
        return existing

    def add_view(self, name: str, view: HistogramView) -> None:
        """Let :meth:`get_histogram_stats` read ``view`` under ``name`` (a family of that
        name, if one is defined, takes precedence); never exported."""
        with self._lock:
            self._views[name] = view

    def families(self) -> list[Counter | Gauge | Histogram]:
        """Every defined family."""
        with self._lock:
            return list(self._families.values())

    def add_source(self, source: MetricSource) -> None:
        """Sample ``source`` at every scrape and ``get_gauge`` call."""
        with self._lock:
            self._sources.append(source)

    def sources(self) -> list[MetricSource]:
        """The registered sources."""
        with self._lock:
            return list(self._sources)

    def sampled(self) -> Iterator[GaugeSample]:
        """Samples of every source, taken now."""
        for source in self.sources():
            yield from source.collect_samples()

    # ------------------------------------------------------------- convenience writes
    def increment(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to counter ``name`` (defined on first use with these label names)."""
        self.counter(name, labels=tuple(labels)).labels_from(labels).inc(amount)

    def set_gauge(self, name: str, value: float, **labels: str) -> None:
        """Set gauge ``name`` (defined on first use with these label names)."""
        self.gauge(name, labels=tuple(labels)).labels_from(labels).set(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record into histogram ``name`` (latency buckets; defined on first use)."""
        self.histogram(name, labels=tuple(labels)).labels_from(labels).observe(value)

    # -------------------------------------------------------------- the design's read API
    def get_counter(self, name: str, **labels: str) -> float:
        """Sum of counter ``name`` over series matching ``labels``; 0.0 if none yet."""
        family = self._families.get(name)
        if family is None:
            return 0.0
        if not isinstance(family, Counter):
            raise TypeError(f"metric {name!r} is a {family.kind}, not a counter")
        return sum(s.get() for s in family.matching(labels))

    def get_gauge(self, name: str, **labels: str) -> float:
        """Sum of gauge ``name`` over matching series, including sampled sources (pools)
        read now; 0.0 if none."""
        family = self._families.get(name)
        if family is not None:
            if not isinstance(family, Gauge):
                raise TypeError(f"metric {name!r} is a {family.kind}, not a gauge")
            return sum(s.value for s in family.matching(labels))
        return sum(
            s.value
            for s in self.sampled()
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def get_histogram_stats(self, name: str, **labels: str) -> HistogramStats:
        """count/sum/min/max/mean and p50/p95/p99 of histogram ``name`` (or of the
        :class:`HistogramView` registered under it), merged over the series matching
        ``labels``; all zero if nothing was recorded yet."""
        family = self._families.get(name)
        scale = 1.0
        if family is None:
            view = self._views.get(name)
            if view is None:
                return stats_from_buckets((), [0], 0.0, 0.0, 0.0)
            family = self._families.get(view.source)
            if family is None:
                return stats_from_buckets((), [0], 0.0, 0.0, 0.0)
            labels = {view.rename.get(k, k): v for k, v in labels.items()} | dict(view.fixed)
            scale = view.scale
        if not isinstance(family, Histogram):
            raise TypeError(f"metric {name!r} is a {family.kind}, not a histogram")
        counts = [0] * (len(family.buckets) + 1)
        total, low, high = 0.0, float("inf"), float("-inf")
        for series in family.matching(labels):
            snap = series.snapshot()
            counts = [a + b for a, b in zip(counts, snap.counts, strict=True)]
            total += snap.sum
            low, high = min(low, snap.min), max(high, snap.max)
        bounds = family.buckets if scale == 1.0 else tuple(b * scale for b in family.buckets)
        return stats_from_buckets(bounds, counts, total * scale, low * scale, high * scale)

    # ---------------------------------------------------------------------- export
    def render(self) -> tuple[bytes, str]:
        """Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def asgi_app(self) -> Callable[..., Any]:
        """A tiny ASGI app serving this collector at any path (mount it at ``/metrics``)."""
        from prometheus_client import make_asgi_app  # noqa: PLC0415 - only servers need it

        return make_asgi_app(registry=self.registry)

    def reset(self) -> None:
        """Zero everything (series are dropped; definitions and sources are kept)."""
        for family in self.families():
            family.clear()
        _new_epoch()  # series cached by call sites were dropped with their families' maps


# ------------------------------------------------------------------ the container slot
#: What get_metrics_collector() returns: the last active collector, else the default.
_current: MetricsCollector | None = None
#: The process default (set_metrics_collector, or made on first use).
_default: MetricsCollector | None = None
#: Collectors of running applications, in activation order, each with its own token (one
#: collector may be activated twice).
_activations: list[tuple[object, MetricsCollector]] = []
_slot_lock = threading.Lock()

#: Replaced whenever the current collector changes or any collector is reset. Hot paths
#: cache series objects (the instrument helper, the resilience observer) and compare this
#: token by identity, one ``is`` per call, to know their cache is still good.
_epoch: object = object()


def _new_epoch() -> None:
    global _epoch  # noqa: PLW0603 - the cache-validity token documented above
    _epoch = object()


def get_metrics_collector() -> MetricsCollector:
    """The active application's collector (see :func:`activate_metrics_collector`), else
    the process default: the one :func:`set_metrics_collector` installed, or one created
    on first call (so scripts work) and kept until :func:`reset_metrics_collector`."""
    current = _current
    if current is None:
        with _slot_lock:
            current = _current
            if current is None:
                _set_default(MetricsCollector())
                current = _current
    assert current is not None  # noqa: S101 -- _set_default just resolved it
    return current


def activate_metrics_collector(collector: MetricsCollector) -> Callable[[], None]:
    """Make ``collector`` the one :func:`get_metrics_collector` returns while it is the
    most recently activated one still active; returns the function that deactivates it
    (idempotent; applications may stop in any order). The observability container calls
    this when its ``metrics`` resource starts and deactivates on shutdown; adapters it
    wires get the collector passed in and do not depend on it being active."""
    if not isinstance(collector, MetricsCollector):
        raise TypeError(f"expected a MetricsCollector, got {type(collector).__name__}")
    token = object()
    entry = (token, collector)
    with _slot_lock:
        _activations.append(entry)
        _resolve()

    def deactivate() -> None:
        with _slot_lock:
            if entry in _activations:
                _activations.remove(entry)
                _resolve()

    return deactivate


def set_metrics_collector(collector: MetricsCollector) -> None:
    """Install ``collector`` as the process default: what :func:`get_metrics_collector`
    returns while no application's collector is active (scripts, tests)."""
    if not isinstance(collector, MetricsCollector):
        raise TypeError(f"expected a MetricsCollector, got {type(collector).__name__}")
    with _slot_lock:
        _set_default(collector)


def reset_metrics_collector() -> None:
    """Forget the process default; the next :func:`get_metrics_collector` without an
    active application makes a fresh one (tests). Active applications are not affected."""
    with _slot_lock:
        _set_default(None)


def _set_default(collector: MetricsCollector | None) -> None:
    global _default  # noqa: PLW0603 - the process default documented above
    _default = collector
    _resolve()


def _resolve() -> None:
    """Recompute the current collector (call with ``_slot_lock`` held)."""
    global _current  # noqa: PLW0603 - the one documented slot (docs/design.md)
    current = _activations[-1][1] if _activations else _default
    if current is not _current:
        _current = current
        _new_epoch()

"""The one helper every adapter uses to record a backend call.

::

    async with record_call("postgres", "fetch", system="postgresql",
                           server_address="db", server_port=5432) as call:
        rows = await pool.fetch(sql, *args)

records, in one place:

* a CLIENT span named after the operation, with semantic-convention attributes
  (``db.system.name``, ``db.operation.name``, ``server.address``/``port``, or ``gen_ai.*``
  when ``model=`` is given), ``error.type`` and an ``exception`` event on failure
  (message redacted; no stack trace, which could quote secrets);
* The design's millisecond latency histogram (``postgres_query_latency_ms{operation}``) and the
  semantic-convention duration histogram in seconds (``db_client_operation_duration_seconds``
  or ``gen_ai_client_operation_duration_seconds``, labelled with ``error_type`` on
  failure);
* ``backend_calls_total{component,operation,outcome}`` (``outcome``: ok, error,
  caller_error, rejected, cancelled -- see :mod:`~.outcomes`) and, on failure,
  ``backend_errors_total{component,operation,error_type}``;
* a structured line on failure, WARNING (DEBUG for a caller error), through stdlib
  logging so :mod:`~.logging` renders it as JSON with the trace id; sampled per
  (component, operation, error type) by :mod:`~.log_sampling`, and built only when
  it is written.

Cost. Everything that depends only on (component, operation, system, ...) -- span name,
attribute dict, the series of the success path -- is built once per collector and cached
in a :class:`CallSeries`; a successful call then does one ``perf_counter`` pair and one
:class:`~infra.observability.series.DurationRecorder` write (two ``bisect`` observes and
one increment, lock-free on the event-loop thread). Caches are checked against the
metrics epoch (one ``is`` per call), so installing or resetting a collector redirects
recording at once. Adapters go through a :class:`CallSite` (bound once, see
:mod:`infra.calls`), which records exactly what ``record_call`` does without its
per-call lookup, record object and two coroutines.

Spans: the SDK's ``start_span`` costs ~5 µs even when it drops the span, so the helper
skips it when the answer is known (tracing off, root ratio 0, or a parent that is not
sampled -- see :mod:`~.tracing`). A span that may be sampled gets its attributes at
creation and the already-read current context as its parent (the SDK then neither
re-reads the context nor sets attributes one by one). A recording span is made current
(so logs and child spans inside the block see it, across ``asyncio`` tasks created
there, since tasks copy ``contextvars``); a skipped span leaves the caller's context
current. The SDK's own span creation and end dominate a sampled call (~21-25 µs measured
on this project's 2-core dev machine, against ~3-5 µs for everything of ours around it).
Cancellation is recorded as ``outcome="cancelled"``, not as an error.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from time import perf_counter
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from infra.observability import attributes as attr
from infra.observability import metrics as _metrics
from infra.observability import tracing as _tracing
from infra.observability.call_series import CallKey, CallSeries, sampling_context
from infra.observability.metrics import MetricsCollector, get_metrics_collector
from infra.observability.tracing import current_tracing

__all__ = ["CallRecord", "CallSeries", "CallSite", "Instrumenter", "instrumented", "record_call"]

P = ParamSpec("P")
T = TypeVar("T")


class CallRecord:
    """One call being recorded; use as ``async with`` (or ``with``). Made by
    :func:`record_call` and :meth:`CallSite.record`."""

    __slots__ = ("_series", "_span", "_start", "_token", "duration_s")

    def __init__(self, series: CallSeries) -> None:
        self._series = series
        self._span: trace.Span | None = None
        self._token: object | None = None
        self._start = 0.0
        #: Seconds the call took; set when the block exits.
        self.duration_s: float | None = None

    @property
    def span(self) -> trace.Span | None:
        """The recording span, or ``None`` when this call is not traced."""
        return self._span

    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        """Add a span attribute (no-op when not traced); use names from ``attributes``."""
        if self._span is not None:
            self._span.set_attribute(key, value)

    def record_usage(self, *, input_tokens: int, output_tokens: int) -> None:
        """GenAI calls: record token usage (span attributes and the semconv histogram)."""
        tokens = self._series.tokens
        if tokens is None:
            raise TypeError("record_usage() needs a GenAI call: pass model= to record_call()")
        prefix = self._series.duration_prefix
        tokens.labels(*prefix, "input").observe(input_tokens)
        tokens.labels(*prefix, "output").observe(output_tokens)
        if self._span is not None:
            self._span.set_attribute(attr.GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
            self._span.set_attribute(attr.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)

    # -------------------------------------------------------------- context manager
    def __enter__(self) -> CallRecord:
        state = _tracing._state  # current_tracing()'s fast case, without the call
        if state is None:
            state = current_tracing()
        if state.tracer is not None:
            ctx = sampling_context(state)
            if ctx is not None:
                s = self._series
                # Attributes go in at creation (one BoundedAttributes build, no per-key
                # set_attribute calls); the parent is the span of ``ctx``, the current
                # context, passed so the SDK does not look it up again.
                span = state.tracer.start_span(s.span_name, ctx, SpanKind.CLIENT, s.attributes)
                if span.is_recording():
                    self._span = span
                    self._token = otel_context.attach(trace.set_span_in_context(span, ctx))
        self._start = perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = perf_counter() - self._start
        self.duration_s = elapsed
        span = self._span
        if exc is None:
            self._series.succeeded(elapsed)
            if span is not None:
                span.end()
        else:
            self._series.failed(exc, elapsed, span)
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]

    async def __aenter__(self) -> CallRecord:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class Instrumenter:
    """Builds :class:`CallRecord` s against one collector, caching per-call-kind series."""

    def __init__(self, collector: MetricsCollector, epoch: object | None = None) -> None:
        self.collector = collector
        #: The metrics epoch the cached series belong to.
        self.epoch = _metrics._epoch if epoch is None else epoch
        #: Cached per call kind; read directly by :func:`record_call`'s fast path.
        self.bindings: dict[CallKey, CallSeries] = {}
        self._lock = threading.Lock()

    def series(self, key: CallKey) -> CallSeries:
        """The (cached) series of the call kind ``key``
        (component, operation, system, model, target, server_address, server_port)."""
        binding = self.bindings.get(key)
        if binding is None:
            component, operation, system, model, target, address, port = key
            if not component or not operation:
                raise ValueError("component and operation must be non-empty strings")
            with self._lock:
                binding = self.bindings.get(key)
                if binding is None:
                    binding = CallSeries(
                        self.collector,
                        component=component,
                        operation=operation,
                        system=system or component,
                        model=model,
                        target=target,
                        server_address=address,
                        server_port=port,
                        epoch=self.epoch,
                    )
                    self.bindings[key] = binding
        return binding

    def record_call(
        self,
        component: str,
        operation: str,
        *,
        system: str | None = None,
        model: str | None = None,
        target: str | None = None,
        server_address: str | None = None,
        server_port: int | None = None,
    ) -> CallRecord:
        """See :func:`record_call`."""
        key = (component, operation, system, model, target, server_address, server_port)
        return CallRecord(self.series(key))


_current: Instrumenter | None = None
# Instrumenters of collectors injected into call sites (an application container's own
# collector), one per collector; weak, so a stopped application's collector is freed.
_injected: weakref.WeakKeyDictionary[MetricsCollector, Instrumenter] = weakref.WeakKeyDictionary()


def _instrumenter(collector: MetricsCollector | None = None) -> Instrumenter:
    """The instrumenter of ``collector`` (default: the current one, see
    :func:`~infra.observability.get_metrics_collector`), rebuilt when the metrics epoch
    moved."""
    global _current  # noqa: PLW0603 - per-collector cache, rebuilt when the collector changes
    epoch = _metrics._epoch  # read before the collector: a race costs a rebuild, never a mixup
    if collector is not None:
        bound = _injected.get(collector)
        if bound is None or bound.epoch is not epoch:
            bound = _injected[collector] = Instrumenter(collector, epoch)
        return bound
    current = _current
    if current is None or current.epoch is not epoch:
        current = _current = Instrumenter(get_metrics_collector(), epoch)
    return current


def record_call(
    component: str,
    operation: str,
    *,
    system: str | None = None,
    model: str | None = None,
    target: str | None = None,
    server_address: str | None = None,
    server_port: int | None = None,
) -> CallRecord:
    """Record one backend call: span, latency histograms, call/error counters, failure log.

    Args:
        component: Our component name (``"postgres"``, ``"redis"``, ``"qdrant"``,
            ``"graph"``, ``"llm"``); picks the design's latency metric.
        operation: A bounded operation name (``"fetch"``, ``"get"``, ``"chat"``) -- never
            the statement or key itself.
        system: ``db.system.name`` (``"postgresql"``) or, with ``model``, the GenAI
            provider (``"openai"``). Defaults to ``component``.
        model: The requested model; switches to the GenAI conventions.
        target: Collection/table the operation addresses (bounded), for the span name.
        server_address: ``server.address`` span attribute.
        server_port: ``server.port`` span attribute.
    """
    instrumenter = _current
    if instrumenter is None or instrumenter.epoch is not _metrics._epoch:
        instrumenter = _instrumenter()
    key = (component, operation, system, model, target, server_address, server_port)
    binding = instrumenter.bindings.get(key)
    if binding is None:
        binding = instrumenter.series(key)
    return CallRecord(binding)


class CallSite:
    """The telemetry of one kind of call, bound once (an adapter keeps one per operation).

    :func:`record_call` looks the call kind up on every call; a site does it once, so its
    hot path is :meth:`untraced` (one identity check of the metrics epoch, one tracing
    decision) followed by ``series.succeeded(elapsed)`` or ``series.failed(exc,
    elapsed)``. Calls that may be traced go through :meth:`record`, which records exactly
    what :func:`record_call` would. Arguments as for :func:`record_call`, plus
    ``collector``: the collector to record into (an application container passes its
    own, so two applications in one process never share series); ``None`` records into
    whatever :func:`~infra.observability.get_metrics_collector` returns at call time.

    ::

        site = CallSite("postgres", "fetch", system="postgresql")
        series = site.untraced()
        if series is None:                   # this call may be traced
            with site.record():
                rows = await pool.fetch(sql)
        else:
            start = perf_counter()
            try:
                rows = await pool.fetch(sql)
            except BaseException as exc:
                series.failed(exc, perf_counter() - start)
                raise
            series.succeeded(perf_counter() - start)
    """

    __slots__ = ("_collector", "_key", "_series")

    def __init__(
        self,
        component: str,
        operation: str,
        *,
        system: str | None = None,
        model: str | None = None,
        target: str | None = None,
        server_address: str | None = None,
        server_port: int | None = None,
        collector: MetricsCollector | None = None,
    ) -> None:
        if not component or not operation:
            raise ValueError("component and operation must be non-empty strings")
        self._key: CallKey = (
            component,
            operation,
            system,
            model,
            target,
            server_address,
            server_port,
        )
        self._series: CallSeries | None = None
        self._collector = collector

    @property
    def component(self) -> str:
        """The component name."""
        return self._key[0]

    @property
    def operation(self) -> str:
        """The bounded operation name."""
        return self._key[1]

    def series(self) -> CallSeries:
        """The series of the current collector (re-resolved after it changed)."""
        series = self._series
        if series is None or series.epoch is not _metrics._epoch:
            series = self._series = _instrumenter(self._collector).series(self._key)
        return series

    def untraced(self) -> CallSeries | None:
        """The series to record into when this call needs no span (tracing off, or the
        known sampler would drop it); ``None`` when it may be traced: use :meth:`record`."""
        series = self._series
        if series is None or series.epoch is not _metrics._epoch:
            series = self.series()
        state = _tracing._state  # current_tracing()'s fast case, without the call
        if state is None:
            state = current_tracing()
        if state.tracer is None:
            return series
        if state.root_sample_ratio == 0.0 and not otel_context.get_current():
            return series  # sampled out by the root ratio, no parent: sampling_context inlined
        return None if sampling_context(state) is not None else series

    def record(self) -> CallRecord:
        """A :class:`CallRecord` for one call of this kind (``with``/``async with``)."""
        return CallRecord(self.series())

    def __repr__(self) -> str:
        return f"CallSite({self._key[0]!r}, {self._key[1]!r})"


def instrumented(
    component: str,
    operation: str | None = None,
    *,
    system: str | None = None,
    model: str | None = None,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Decorator form of :func:`record_call` for a coroutine function (operation defaults
    to the function's name)."""

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        op = operation or fn.__name__

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            async with record_call(component, op, system=system, model=model):
                return await fn(*args, **kwargs)

        return wrapper

    return decorate

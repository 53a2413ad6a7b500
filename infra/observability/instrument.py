"""Recording one backend call: the span, the duration histogram, the outcome counters and
the failure log, in one place.

::

    async with record_call("postgres", "fetch", system="postgresql",
                           server_address="db", server_port=5432) as call:
        rows = await pool.fetch(sql, *args)

records, once per call:

* a CLIENT span named after the operation, with semantic-convention attributes
  (``db.system.name``, ``db.operation.name``, ``server.address``/``port``, or ``gen_ai.*``
  when ``model=`` is given), ``error.type`` and an ``exception`` event on failure
  (message redacted; no stack trace, which could quote secrets);
* one sample of the semantic-convention duration histogram in seconds,
  ``db_client_operation_duration_seconds{component,db_system_name,db_operation_name,
  error_type}`` (``gen_ai_client_operation_duration_seconds`` with ``model=``), with
  :data:`~infra.observability.quantiles.CALL_DURATION_BUCKETS_S`. One family per concept:
  a new component adds label values, not a family. The design's millisecond names
  (``postgres_query_latency_ms{operation}``, see
  :func:`~infra.observability.attributes.latency_metric_for`) are views of it for
  ``get_histogram_stats`` (:class:`~infra.observability.metrics.HistogramView`), not
  exported series;
* ``backend_calls_total{component,operation,outcome}`` (``outcome``: ok, error,
  caller_error, rejected, cancelled -- see :mod:`~.outcomes`) and, on failure,
  ``backend_errors_total{component,operation,error_type}``;
* a structured line on failure, WARNING (DEBUG for a caller error), through stdlib
  logging so :mod:`~.logging` renders it as JSON with the trace id; sampled per
  (component, operation, error type) by :mod:`~.log_sampling`, and built only when
  it is written.

**One implementation.** :class:`CallSeries` holds what one kind of call writes -- span
name, attributes, the series of the success path -- resolved once per collector and
metrics epoch (one ``is`` per call, so installing or resetting a collector redirects
recording at once); ``succeeded``/``failed`` are the only writers. Two ways reach it:
:class:`CallRecord` (``with``/``async with``, made by :func:`record_call` or
:meth:`CallSite.record`), and :meth:`CallSite.untraced`, which an adapter's call path
(:mod:`infra.calls`) uses when the call needs no span: it then times the call itself and
calls ``succeeded``/``failed`` directly, without the record object and its enter/exit
calls. Both make the same writes (a differential test runs them on the same inputs).

Spans: the SDK's ``start_span`` costs ~5 µs even when it drops the span, so the span is
skipped when the answer is known (tracing off, root ratio 0, or a parent that is not
sampled -- see :mod:`~.tracing`). A span that may be sampled gets its attributes at
creation and the already-read current context as its parent. A recording span is made
current (so logs and child spans inside the block see it); a skipped span leaves the
caller's context current. Cancellation is recorded as ``outcome="cancelled"``, not as
an error.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from time import perf_counter
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from infra.exceptions import InfraError
from infra.observability import attributes as attr
from infra.observability import metrics as _metrics
from infra.observability import tracing as _tracing
from infra.observability.log_sampling import log_sampler
from infra.observability.metrics import HistogramView, MetricsCollector, get_metrics_collector
from infra.observability.outcomes import failure_outcome
from infra.observability.quantiles import CALL_DURATION_BUCKETS_S, TOKEN_BUCKETS
from infra.observability.series import CounterSeries, HistogramSeries
from infra.observability.tracing import TracingState, current_tracing
from infra.redaction import redact_text

__all__ = [
    "CallKey",
    "CallRecord",
    "CallSeries",
    "CallSite",
    "Instrumenter",
    "instrumented",
    "record_call",
    "sampling_context",
]

P = ParamSpec("P")
T = TypeVar("T")

_log = logging.getLogger("infra.observability.calls")
_DB_LABELS = ("component", "db_system_name", "db_operation_name", "error_type")
_GEN_AI_LABELS = (
    "component",
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "error_type",
)
_MAX_MESSAGE = 500
_MAX_FAILURE_KINDS = 64
#: error type name, duration series, outcome counter, error counter (None: cancelled).
_Failure = tuple[str, HistogramSeries, CounterSeries, CounterSeries | None]


class CallSeries:
    """The series one kind of call records into, resolved once per collector.

    Everything about a kind of call that does not change between calls -- span name,
    attribute dict, the series of the success path -- lives here, so recording a success
    is ``succeeded(elapsed_s)``: one observe and one increment. Made by :class:`CallSite`
    and :func:`record_call` (cached per collector; never build one). Building one
    registers the component's millisecond view (``postgres_query_latency_ms``).
    """

    __slots__ = (
        "attributes",
        "calls",
        "calls_ok",
        "component",
        "duration",
        "duration_ok",
        "duration_prefix",
        "epoch",
        "errors",
        "failures",
        "operation",
        "span_name",
        "system",
        "token_prefix",
        "tokens",
    )

    def __init__(
        self,
        collector: MetricsCollector,
        *,
        component: str,
        operation: str,
        system: str,
        model: str | None,
        target: str | None,
        server_address: str | None,
        server_port: int | None,
        epoch: object,
    ) -> None:
        self.component, self.operation, self.system = component, operation, system
        #: The metrics epoch these series belong to (see ``metrics._epoch``).
        self.epoch = epoch
        attributes: dict[str, str | int] = {}
        if model is None:
            attributes[attr.DB_SYSTEM_NAME] = system
            attributes[attr.DB_OPERATION_NAME] = operation
            if target:
                attributes[attr.DB_COLLECTION_NAME] = target
            self.duration = collector.histogram(
                attr.PROM_DB_CLIENT_OPERATION_DURATION,
                "Duration of database client operations (semconv), seconds.",
                _DB_LABELS,
                CALL_DURATION_BUCKETS_S,
            )
            self.duration_prefix: tuple[str, ...] = (component, system, operation)
            operation_label = "db_operation_name"
            self.span_name = f"{operation} {target}" if target else operation
            self.tokens = None
            self.token_prefix: tuple[str, ...] = ()
        else:
            attributes[attr.GEN_AI_OPERATION_NAME] = operation
            attributes[attr.GEN_AI_PROVIDER_NAME] = system
            attributes[attr.GEN_AI_REQUEST_MODEL] = model
            self.duration = collector.histogram(
                attr.PROM_GEN_AI_CLIENT_OPERATION_DURATION,
                "Duration of GenAI client operations (semconv), seconds.",
                _GEN_AI_LABELS,
                CALL_DURATION_BUCKETS_S,
            )
            self.duration_prefix = (component, operation, system, model)
            operation_label = "gen_ai_operation_name"
            self.span_name = f"{operation} {model}"
            self.tokens = collector.histogram(
                attr.PROM_GEN_AI_CLIENT_TOKEN_USAGE,
                "Tokens used per GenAI operation, by token type (semconv).",
                (*_GEN_AI_LABELS[1:4], "gen_ai_token_type"),
                TOKEN_BUCKETS,
            )
            self.token_prefix = (operation, system, model)
        if server_address:
            attributes[attr.SERVER_ADDRESS] = server_address
        if server_port is not None:
            attributes[attr.SERVER_PORT] = server_port
        self.attributes = attributes
        collector.add_view(
            attr.latency_metric_for(component),
            HistogramView(
                self.duration.name,
                fixed={"component": component},
                rename={"operation": operation_label},
                scale=1000.0,
            ),
        )
        self.calls = collector.counter(
            attr.BACKEND_CALLS_TOTAL,
            "Backend calls by component, operation and outcome (ok/error/cancelled).",
            ("component", "operation", "outcome"),
        )
        self.errors = collector.counter(
            attr.BACKEND_ERRORS_TOTAL,
            "Failed backend calls by component, operation and error type.",
            ("component", "operation", "error_type"),
        )
        #: (error class, outcome) -> what a failure writes; see ``_failure_series``.
        self.failures: dict[tuple[type[BaseException], str], _Failure] = {}
        self.duration_ok = self.duration.labels(*self.duration_prefix, "")
        self.calls_ok = self.calls.labels(component, operation, "ok")

    def succeeded(self, elapsed: float) -> None:
        """Record a call that returned after ``elapsed`` seconds."""
        self.duration_ok.observe(elapsed)
        self.calls_ok.inc()

    def failed(self, exc: BaseException, elapsed: float, span: trace.Span | None = None) -> None:
        """Record a call that raised ``exc`` after ``elapsed`` seconds; ends ``span`` if given.

        The outcome label says whose failure it was (see :mod:`~.outcomes`): ``error``,
        ``caller_error``, ``rejected``, or ``cancelled`` (not an error: no error count,
        no log line). Metrics count every call; the log line is sampled per (component,
        operation, error type) (see :mod:`~.log_sampling`) and nothing is formatted or
        redacted unless it is written, or a recording span needs the message.
        """
        outcome = failure_outcome(exc)
        failure = self.failures.get((type(exc), outcome))
        if failure is None:
            failure = self._failure_series(type(exc), outcome)
        error_type, duration, calls, errors = failure
        duration.observe(elapsed)
        calls.inc()
        if span is not None:
            span.set_attribute(attr.ERROR_TYPE, error_type)
            span.add_event(
                "exception",
                {attr.EXCEPTION_TYPE: _qualified(exc), attr.EXCEPTION_MESSAGE: _message(exc)},
            )
            span.set_status(Status(StatusCode.ERROR, error_type))
            span.end()
        if errors is None:  # cancelled: not an error, not logged
            return
        errors.inc()
        # Caller errors are the application's to handle (a unique violation answered as
        # 409): DEBUG. Backend errors and rejections: WARNING. Both sampled.
        level = logging.DEBUG if outcome == "caller_error" else logging.WARNING
        if not _log.isEnabledFor(level) or not log_sampler().admit(
            _log, level, (self.component, self.operation, error_type)
        ):
            return
        _log.log(
            level,
            "%s %s failed: %s",
            self.component,
            self.operation,
            error_type,
            extra={
                "component": self.component,
                "operation": self.operation,
                "system": self.system,
                "error_type": error_type,
                "outcome": outcome,
                "error": _message(exc),
                "retryable": exc.retryable if isinstance(exc, InfraError) else None,
                "duration_ms": round(elapsed * 1000.0, 3),
            },
        )

    def _failure_series(self, cls: type[BaseException], outcome: str) -> _Failure:
        """The series a failure of class ``cls`` with ``outcome`` writes, resolved once
        (error classes are a small fixed set; past the cap they are resolved per call)."""
        error_type = cls.__qualname__
        failure: _Failure = (
            error_type,
            self.duration.labels(*self.duration_prefix, error_type),
            self.calls.labels(self.component, self.operation, outcome),
            None
            if outcome == "cancelled"
            else self.errors.labels(self.component, self.operation, error_type),
        )
        if len(self.failures) < _MAX_FAILURE_KINDS:
            self.failures[cls, outcome] = failure
        return failure


def _message(exc: BaseException) -> str:
    """The error's text, secrets masked and cut to a bounded length."""
    return redact_text(str(exc))[:_MAX_MESSAGE]


def sampling_context(state: TracingState) -> Context | None:
    """The current context when this call must go through the SDK (it may be sampled),
    ``None`` when it needs no span.

    ``None`` when tracing is off, or when the known root ratio and the parent in the
    current context say the SDK would drop the span anyway (see :mod:`~.tracing`). The
    context is returned so the caller hands it to ``start_span`` and
    ``set_span_in_context`` instead of each of them reading it again.
    """
    if state.tracer is None:
        return None
    ctx = otel_context.get_current()
    ratio = state.root_sample_ratio
    if ratio is None:
        return ctx  # unknown sampler: let the SDK decide
    if not ctx:  # an empty context has no parent span: the root ratio decides
        return ctx if ratio > 0.0 else None
    parent = trace.get_current_span(ctx).get_span_context()
    sampled = parent.trace_flags.sampled if parent.is_valid else ratio > 0.0
    return ctx if sampled else None


def _qualified(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


#: (component, operation, system, model, target, server_address, server_port)
CallKey = tuple[str, str, str | None, str | None, str | None, str | None, int | None]


class CallRecord:
    """One call being recorded; use as ``async with`` (or ``with``). Made by
    :func:`record_call` and :meth:`CallSite.record`."""

    __slots__ = ("_series", "_span", "_start", "_token", "_tracing", "duration_s")

    def __init__(self, series: CallSeries, tracing: TracingState | None = None) -> None:
        self._series = series
        self._tracing = tracing  # injected by the call site; None: current_tracing()
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
        prefix = self._series.token_prefix
        tokens.labels(*prefix, "input").observe(input_tokens)
        tokens.labels(*prefix, "output").observe(output_tokens)
        if self._span is not None:
            self._span.set_attribute(attr.GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
            self._span.set_attribute(attr.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)

    # -------------------------------------------------------------- context manager
    def __enter__(self) -> CallRecord:
        state = self._tracing
        if state is None:
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
    """The :class:`CallSeries` of one collector, cached per call kind (``record_call`` and
    :class:`CallSite` resolve through it)."""

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
    ``tracing``: the tracing state spans start from (an application container passes
    its own, :func:`~infra.observability.tracing_state_of` its provider, so its spans go
    to its own exporter); ``None`` uses :func:`~infra.observability.tracing.current_tracing`
    at call time.

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

    __slots__ = ("_collector", "_key", "_series", "_tracing")

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
        tracing: TracingState | None = None,
    ) -> None:
        if not component or not operation:
            raise ValueError("component and operation must be non-empty strings")
        if tracing is not None and not isinstance(tracing, TracingState):
            raise TypeError(
                f"tracing must be a TracingState (tracing_state_of(provider)) or None, "
                f"got {tracing!r}"
            )
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
        self._tracing = tracing

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
        state = self._tracing
        if state is None:
            state = _tracing._state  # current_tracing()'s fast case, without the call
            if state is None:
                state = current_tracing()
        if state.tracer is None:
            return series
        return None if sampling_context(state) is not None else series

    def record(self) -> CallRecord:
        """A :class:`CallRecord` for one call of this kind (``with``/``async with``)."""
        return CallRecord(self.series(), self._tracing)

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

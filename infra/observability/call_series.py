"""What one kind of backend call records into, resolved once per collector.

Split from :mod:`infra.observability.instrument` (which holds the public ways to record:
:func:`~infra.observability.instrument.record_call`, ``CallRecord``, ``CallSite``); see
its docstring for what is recorded and why it is cheap.

* :class:`CallSeries` holds everything about a kind of call -- (component, operation,
  system, model, target, server address/port) -- that does not change between calls:
  the span name and attributes, and the metric series. ``succeeded`` and ``failed``
  write one call's outcome.
* They are cached per call kind, collector and metrics epoch by
  :class:`~infra.observability.instrument.Instrumenter`.
* :func:`sampling_context` is the tracing decision the helpers share: whether the SDK
  must be asked for a span at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode

from infra.exceptions import InfraError
from infra.observability import attributes as attr
from infra.observability.log_sampling import log_sampler
from infra.observability.metrics import MetricsCollector
from infra.observability.outcomes import failure_outcome
from infra.observability.quantiles import SEMCONV_DURATION_BUCKETS_S, TOKEN_BUCKETS
from infra.observability.recording import CounterSeries, DurationRecorder, HistogramSeries
from infra.observability.tracing import TracingState
from infra.redaction import redact_text

__all__ = ["CallKey", "CallSeries", "sampling_context"]

_log = logging.getLogger("infra.observability.calls")
_DB_LABELS = ("db_system_name", "db_operation_name", "error_type")
_GEN_AI_LABELS = (
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
    is one call, ``succeeded(elapsed_s)`` (a
    :class:`~infra.observability.series.DurationRecorder`: both histograms and the ok
    counter). Made by :class:`CallSite` and :func:`record_call` (cached per collector;
    never build one).
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
        "latency",
        "operation",
        "span_name",
        "succeeded",
        "system",
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
                SEMCONV_DURATION_BUCKETS_S,
            )
            self.duration_prefix: tuple[str, ...] = (system, operation)
            self.span_name = f"{operation} {target}" if target else operation
            self.tokens = None
        else:
            attributes[attr.GEN_AI_OPERATION_NAME] = operation
            attributes[attr.GEN_AI_PROVIDER_NAME] = system
            attributes[attr.GEN_AI_REQUEST_MODEL] = model
            self.duration = collector.histogram(
                attr.PROM_GEN_AI_CLIENT_OPERATION_DURATION,
                "Duration of GenAI client operations (semconv), seconds.",
                _GEN_AI_LABELS,
                SEMCONV_DURATION_BUCKETS_S,
            )
            self.duration_prefix = (operation, system, model)
            self.span_name = f"{operation} {model}"
            self.tokens = collector.histogram(
                attr.PROM_GEN_AI_CLIENT_TOKEN_USAGE,
                "Tokens used per GenAI operation, by token type (semconv).",
                (*_GEN_AI_LABELS[:3], "gen_ai_token_type"),
                TOKEN_BUCKETS,
            )
        if server_address:
            attributes[attr.SERVER_ADDRESS] = server_address
        if server_port is not None:
            attributes[attr.SERVER_PORT] = server_port
        self.attributes = attributes
        self.latency = collector.histogram(
            attr.latency_metric_for(component),
            f"Latency of {component} calls, milliseconds.",
            ("operation",),
        ).labels(operation)
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
        #: ``succeeded(elapsed_s)``: record a call that returned after ``elapsed_s``.
        self.succeeded: Callable[[float], None] = DurationRecorder(
            self.latency, self.duration_ok, self.calls_ok
        ).record

    def failed(self, exc: BaseException, elapsed: float, span: trace.Span | None = None) -> None:
        """Record a call that raised ``exc`` after ``elapsed`` seconds; ends ``span`` if given.

        The outcome label says whose failure it was (see :mod:`~.outcomes`): ``error``,
        ``caller_error``, ``rejected``, or ``cancelled`` (not an error: no error count,
        no log line). Metrics count every call; the log line is sampled per (component,
        operation, error type) (see :mod:`~.log_sampling`) and nothing is formatted or
        redacted unless it is written, or a recording span needs the message.
        """
        self.latency.observe(elapsed * 1000.0)
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

"""The one helper every adapter uses to record a backend call.

::

    async with record_call("postgres", "fetch", system="postgresql",
                           server_address="db", server_port=5432) as call:
        rows = await pool.fetch(sql, *args)

records, in one place (CONVENTIONS #11):

* a CLIENT span named after the operation, with semantic-convention attributes
  (``db.system.name``, ``db.operation.name``, ``server.address``/``port``, or ``gen_ai.*``
  when ``model=`` is given), ``error.type`` and an ``exception`` event on failure
  (message redacted; no stack trace, which could quote secrets);
* SPEC's millisecond latency histogram (``postgres_query_latency_ms{operation}``) and the
  semantic-convention duration histogram in seconds (``db_client_operation_duration_seconds``
  or ``gen_ai_client_operation_duration_seconds``, labelled with ``error_type`` on
  failure);
* ``backend_calls_total{component,operation,outcome}`` and, on failure,
  ``backend_errors_total{component,operation,error_type}``;
* a structured warning on failure (stdlib logging, so :mod:`~.logging` renders it as JSON
  with the trace id).

Cost. Everything that depends only on (component, operation, system, ...) -- span name,
attribute dict, the three series objects of the success path -- is built once and cached
in a :class:`_Binding`; a call then allocates one small record and does two ``bisect``
observes and one counter increment. Spans: the SDK's ``start_span`` costs ~5 µs even when
it drops the span, so the helper skips it when the answer is known (tracing off, root
ratio 0, or a parent that is not sampled -- see :mod:`~.tracing`). A recording span is
made current (so logs and child spans inside the block see it, across ``asyncio`` tasks
created there, since tasks copy ``contextvars``); a skipped span leaves the caller's
context current. Cancellation is recorded as ``outcome="cancelled"``, not as an error.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from time import perf_counter
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from infra.exceptions import InfraError
from infra.observability import attributes as attr
from infra.observability.metrics import MetricsCollector, get_metrics_collector
from infra.observability.quantiles import SEMCONV_DURATION_BUCKETS_S, TOKEN_BUCKETS
from infra.observability.tracing import current_tracing
from infra.redaction import redact_text

__all__ = ["CallRecord", "Instrumenter", "instrumented", "record_call"]

P = ParamSpec("P")
T = TypeVar("T")

_log = logging.getLogger("infra.observability.calls")
_DB_LABELS = ("db_system_name", "db_operation_name", "error_type")
_GEN_AI_LABELS = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "error_type",
)
_MAX_MESSAGE = 500


class _Binding:
    """Everything about one kind of call that does not change between calls."""

    __slots__ = (
        "attributes",
        "calls",
        "calls_ok",
        "component",
        "duration",
        "duration_ok",
        "duration_prefix",
        "errors",
        "latency",
        "operation",
        "span_name",
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
    ) -> None:
        self.component, self.operation, self.system = component, operation, system
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
        self.duration_ok = self.duration.labels(*self.duration_prefix, "")
        self.calls_ok = self.calls.labels(component, operation, "ok")


class CallRecord:
    """One call being recorded; use as ``async with`` (or ``with``). Made by
    :func:`record_call`."""

    __slots__ = ("_binding", "_span", "_start", "_token", "duration_s")

    def __init__(self, binding: _Binding) -> None:
        self._binding = binding
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
        tokens = self._binding.tokens
        if tokens is None:
            raise TypeError("record_usage() needs a GenAI call: pass model= to record_call()")
        prefix = self._binding.duration_prefix
        tokens.labels(*prefix, "input").observe(input_tokens)
        tokens.labels(*prefix, "output").observe(output_tokens)
        if self._span is not None:
            self._span.set_attribute(attr.GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
            self._span.set_attribute(attr.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)

    # -------------------------------------------------------------- context manager
    def __enter__(self) -> CallRecord:
        state = current_tracing()
        tracer = state.tracer
        if tracer is not None:
            ratio = state.root_sample_ratio
            if ratio is None:
                sampled = True  # unknown sampler: let the SDK decide
            else:
                parent = trace.get_current_span().get_span_context()
                sampled = parent.trace_flags.sampled if parent.is_valid else ratio > 0.0
            if sampled:
                b = self._binding
                span = tracer.start_span(b.span_name, kind=SpanKind.CLIENT, attributes=b.attributes)
                if span.is_recording():
                    self._span = span
                    self._token = otel_context.attach(trace.set_span_in_context(span))
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
        b = self._binding
        b.latency.observe(elapsed * 1000.0)
        span = self._span
        if exc is None:
            b.duration_ok.observe(elapsed)
            b.calls_ok.inc()
            if span is not None:
                span.end()
        else:
            self._failed(exc, elapsed, span)
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

    def _failed(self, exc: BaseException, elapsed: float, span: trace.Span | None) -> None:
        b = self._binding
        error_type = type(exc).__qualname__
        cancelled = isinstance(exc, asyncio.CancelledError)
        b.duration.labels(*b.duration_prefix, error_type).observe(elapsed)
        b.calls.labels(b.component, b.operation, "cancelled" if cancelled else "error").inc()
        message = redact_text(str(exc))[:_MAX_MESSAGE]
        if span is not None:
            span.set_attribute(attr.ERROR_TYPE, error_type)
            span.add_event(
                "exception",
                {attr.EXCEPTION_TYPE: _qualified(exc), attr.EXCEPTION_MESSAGE: message},
            )
            span.set_status(Status(StatusCode.ERROR, error_type))
            span.end()
        if cancelled:
            return
        b.errors.labels(b.component, b.operation, error_type).inc()
        _log.warning(
            "%s %s failed: %s",
            b.component,
            b.operation,
            error_type,
            extra={
                "component": b.component,
                "operation": b.operation,
                "system": b.system,
                "error_type": error_type,
                "error": message,
                "retryable": exc.retryable if isinstance(exc, InfraError) else None,
                "duration_ms": round(elapsed * 1000.0, 3),
            },
        )


def _qualified(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


class Instrumenter:
    """Builds :class:`CallRecord` s against one collector, caching per-call-kind bindings."""

    def __init__(self, collector: MetricsCollector) -> None:
        self.collector = collector
        #: Cached per call kind; read directly by :func:`record_call`'s fast path.
        self.bindings: dict[tuple[Any, ...], _Binding] = {}
        self._lock = threading.Lock()

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
        binding = self.bindings.get(key)
        if binding is None:
            if not component or not operation:
                raise ValueError("component and operation must be non-empty strings")
            with self._lock:
                binding = self.bindings.get(key)
                if binding is None:
                    binding = _Binding(
                        self.collector,
                        component=component,
                        operation=operation,
                        system=system or component,
                        model=model,
                        target=target,
                        server_address=server_address,
                        server_port=server_port,
                    )
                    self.bindings[key] = binding
        return CallRecord(binding)


_current: Instrumenter | None = None


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
            ``"graph"``, ``"llm"``); picks SPEC's latency metric.
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
    if instrumenter is None or instrumenter.collector is not get_metrics_collector():
        instrumenter = _new_instrumenter()
    binding = instrumenter.bindings.get(
        (component, operation, system, model, target, server_address, server_port)
    )
    if binding is not None:
        return CallRecord(binding)
    return instrumenter.record_call(
        component,
        operation,
        system=system,
        model=model,
        target=target,
        server_address=server_address,
        server_port=server_port,
    )


def _new_instrumenter() -> Instrumenter:
    global _current  # noqa: PLW0603 - per-collector cache, rebuilt when the collector changes
    _current = Instrumenter(get_metrics_collector())
    return _current


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

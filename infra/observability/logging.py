"""Structured logging: one JSON object per line (or a console format), secrets redacted,
trace and span ids attached.

Design decisions:

* **Library code logs through stdlib ``logging``** (``logging.getLogger("infra...")``,
  structured fields in ``extra=``). A library must not decide where output goes, and
  stdlib logging is what every application already configures. :func:`configure_logging`
  routes stdlib records through structlog's ``ProcessorFormatter``, so library and
  application lines share one format. Application code may use :func:`get_logger`
  (structlog) and bind context (``component=``, ``operation=``).
* **One processor chain for both.** Timestamp (ISO 8601, UTC), level, logger name, bound
  context vars, ``extra`` fields, the current ``trace_id``/``span_id`` (hex, as in W3C
  traceparent) when a span is active, the formatted exception, and last **redaction**
  through :mod:`infra.redaction`: by key (``password=...``), by position (URL passwords
  whatever they contain, ``?password=``/libpq ``password='...'``, API-key-looking tokens)
  and by registered value (the secrets of live settings, stores and clients), so an
  exception text or traceback that quotes a DSN or a password is masked too. Objects that
  are not JSON-native are rendered with ``repr`` *before* redaction, so a secret hidden in
  an object's repr is masked as well.
* **Process-wide by nature.** Logging configuration belongs to the process (stdlib has a
  single root logger); :func:`configure_logging` replaces only the handler it installed
  earlier, so calling it again (tests, reconfiguration) never duplicates lines.
  ``cache_logger_on_first_use`` stays off so a reconfiguration reaches existing loggers.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal, TextIO

import structlog
from opentelemetry import trace

from config import Settings
from infra.observability.log_sampling import (
    DEFAULT_BURST,
    DEFAULT_WINDOW,
    configure_log_sampling,
)
from infra.redaction import redact_text, redact_value

__all__ = [
    "add_trace_context",
    "configure_logging",
    "configure_logging_from_settings",
    "get_logger",
    "redact_event",
]

_HANDLER_MARK = "_semantica_handler"
_PLAIN = (str, int, float, bool, type(None))


def add_trace_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add ``trace_id``/``span_id`` of the active span, if any."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


def redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets by key and by value, recursively."""
    for key, value in event_dict.items():
        event_dict[key] = redact_value(key, _plain(value))
    return event_dict


def _plain(value: Any) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return redact_text(repr(value))


def _shared_processors(static: Mapping[str, str]) -> list[Any]:
    def add_static(
        _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in static.items():
            event_dict.setdefault(key, value)
        return event_dict

    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_static,
        add_trace_context,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_event,
    ]


def configure_logging(
    *,
    level: str | int = "INFO",
    fmt: Literal["json", "console"] = "json",
    stream: TextIO | None = None,
    service_name: str | None = None,
    environment: str | None = None,
    sample_burst: int = DEFAULT_BURST,
    sample_window: float = DEFAULT_WINDOW,
) -> logging.Handler:
    """Route stdlib logging and structlog through one redacting, trace-aware formatter,
    and start failure-log sampling afresh (see :mod:`~infra.observability.log_sampling`).

    Args:
        level: Root level (name or number).
        fmt: ``"json"`` (one object per line) or ``"console"`` (human-readable).
        stream: Where lines go (default ``sys.stderr``).
        service_name: Added to every line as ``service`` when given.
        environment: Added to every line as ``environment`` when given.
        sample_burst: Failure/retry lines written per (component, operation, error type)
            and window; the rest are summed up in one line.
        sample_window: Length of a sampling window, seconds.

    Returns:
        The installed handler (replaced, not duplicated, on the next call).
    """
    if fmt not in ("json", "console"):
        raise ValueError(f"fmt must be 'json' or 'console', got {fmt!r}")
    numeric = logging.getLevelNamesMapping().get(level.upper()) if isinstance(level, str) else level
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    configure_log_sampling(sample_burst, sample_window)  # validates before any change
    out = stream if stream is not None else sys.stderr
    static = {k: v for k, v in (("service", service_name), ("environment", environment)) if v}
    shared = _shared_processors(static)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return handler


def configure_logging_from_settings(
    settings: Settings, *, stream: TextIO | None = None
) -> logging.Handler:
    """:func:`configure_logging` from ``settings.observability`` (level, format, service
    name, environment), and the failure-log sampling (``log_sample_burst`` lines per
    ``log_sample_window`` seconds and key; see :mod:`~infra.observability.log_sampling`)."""
    obs = settings.observability
    fmt: Literal["json", "console"] = "console" if str(obs.log_format) == "console" else "json"
    return configure_logging(
        level=str(obs.log_level),
        fmt=fmt,
        stream=stream,
        service_name=obs.service_name,
        environment=obs.environment,
        sample_burst=obs.log_sample_burst,
        sample_window=obs.log_sample_window,
    )


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger (stdlib-backed) with ``initial`` context bound."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name, **initial)
    return logger

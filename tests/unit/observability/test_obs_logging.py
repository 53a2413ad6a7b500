"""Structured logging: JSON fields, stdlib routing, redaction, trace ids."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from config import Settings
from infra.observability import configure_logging, configure_logging_from_settings, get_logger
from infra.observability.tracing import current_tracing

if TYPE_CHECKING:
    from .conftest import LogCapture

SECRET = "hunter2-very-secret"


def test_json_line_has_timestamp_level_logger_event_and_bound_context(logs: LogCapture) -> None:
    """One JSON object per line with ISO UTC timestamp and the bound context."""
    get_logger("infra.test", component="postgres").info("query done", operation="fetch")
    (record,) = logs.records()
    assert record["event"] == "query done"
    assert record["level"] == "info"
    assert record["logger"] == "infra.test"
    assert (record["component"], record["operation"]) == ("postgres", "fetch")
    assert record["service"] == "test-svc"
    stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() is not None
    assert stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_stdlib_logging_is_routed_through_the_same_format(logs: LogCapture) -> None:
    """A plain logging.getLogger() call becomes a JSON line with its extra fields."""
    logging.getLogger("thirdparty").warning("disk %s", "full", extra={"component": "redis"})
    (record,) = logs.records()
    assert record["event"] == "disk full"
    assert record["level"] == "warning"
    assert record["logger"] == "thirdparty"
    assert record["component"] == "redis"


def test_secrets_are_redacted_by_key_and_by_value(logs: LogCapture) -> None:
    """The known secret appears nowhere in the output: not by key, DSN, message or traceback."""
    log = get_logger("infra.test")
    log.info("connecting", password=SECRET, dsn=f"postgresql://app:{SECRET}@db:5432/x")
    log.info("using key", settings={"api_key": SECRET, "nested": [{"token": SECRET}]})
    logging.getLogger("x").error("url redis://:%s@cache:6379/0 refused", SECRET)
    error = RuntimeError(f"cannot reach postgresql://app:{SECRET}@db/x")
    logging.getLogger("x").error("failed", exc_info=error)
    log.info("provider key", header=f"Bearer sk-{SECRET}abcdef")
    assert len(logs.records()) == 5
    assert SECRET not in logs.text
    assert "cannot reach postgresql://app:***@db/x" in logs.text  # the exception is rendered


def test_non_json_objects_are_rendered_and_redacted(logs: LogCapture) -> None:
    """An object whose repr quotes a DSN is masked too."""

    class Conn:
        def __repr__(self) -> str:
            return f"Conn(postgresql://u:{SECRET}@h/db)"

    get_logger("infra.test").info("obj", conn=Conn())
    assert SECRET not in logs.text
    assert logs.records()[0]["conn"] == "Conn(postgresql://u:***@h/db)"


def test_trace_and_span_ids_are_added_inside_a_span(
    logs: LogCapture, spans: InMemorySpanExporter
) -> None:
    """Inside a span the line carries its ids (hex); outside it carries none."""
    tracer = current_tracing().tracer
    assert tracer is not None
    with tracer.start_as_current_span("work") as span:
        get_logger("infra.test").info("inside")
        logging.getLogger("std").info("inside-std")
    get_logger("infra.test").info("outside")
    inside, inside_std, outside = logs.records()
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert inside_std["trace_id"] == inside["trace_id"]
    assert "trace_id" not in outside


def test_console_format_is_human_readable() -> None:
    """fmt='console' renders a non-JSON line holding the event and fields."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging(fmt="console", stream=stream)
    try:
        get_logger("infra.test").warning("pool low", component="postgres")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()
    line = stream.getvalue()
    assert "pool low" in line
    assert "component" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_reconfiguring_replaces_the_handler_instead_of_duplicating_lines() -> None:
    """Calling configure_logging twice writes each line once."""
    root = logging.getLogger()
    level = root.level
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first)
    handler = configure_logging(stream=second)
    try:
        logging.getLogger("x").warning("once")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1


def test_level_filters_lines(logs: LogCapture) -> None:
    """Records below the configured level are dropped."""
    logging.getLogger().setLevel(logging.WARNING)
    get_logger("infra.test").info("hidden")
    logging.getLogger("x").debug("hidden too")
    get_logger("infra.test").error("shown")
    assert [r["event"] for r in logs.records()] == ["shown"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"level": "LOUD"}, "unknown log level"), ({"fmt": "xml"}, "fmt must be")],
)
def test_invalid_arguments_are_rejected(kwargs: dict[str, str], message: str) -> None:
    """Bad level or format names raise ValueError naming the fix."""
    with pytest.raises(ValueError, match=message):
        configure_logging(**kwargs)  # type: ignore[arg-type]


def test_configure_from_settings_uses_format_level_and_service() -> None:
    """settings.observability picks the format, level and static fields."""
    settings = Settings(
        log_format="json", log_level="WARNING", service_name="orders", environment="prod"
    )
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging_from_settings(settings, stream=stream)
    try:
        logging.getLogger("x").info("dropped")
        logging.getLogger("x").warning("kept")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()
    (record,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert (record["event"], record["service"], record["environment"]) == ("kept", "orders", "prod")

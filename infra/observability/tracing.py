"""OpenTelemetry tracing, set up from settings, lazily.

Design decisions:

* **Nothing happens at import.** :func:`setup_tracing` builds a ``TracerProvider`` (the SDK
  is imported inside it) with a resource (``service.name``,
  ``deployment.environment.name``), a parent-based trace-id-ratio sampler and an exporter:
  an explicit one if given (tests pass ``InMemorySpanExporter``), else OTLP/HTTP when
  ``otlp_endpoint`` is set, else the console exporter when asked.
* **No exporter, no spans.** With none of the three configured, a span would go nowhere,
  yet building one costs ~20-65 µs per backend call (the SDK's span, attributes, context
  switch), the largest cost of a call at the default ratio of 1.0. So tracing stays off:
  the provider is returned but not installed, neither for the instrument helper nor as
  the global provider (where other instrumentation would build spans for nothing), and
  calls pay the sampled-out cost. (A global SDK provider the application installed
  itself is still used, as below: it has the application's exporter.) Log lines still
  carry the trace id of a context the application propagates (an incoming
  ``traceparent`` read by its own instrumentation).
* **Injected first.** An application container passes its own provider's state
  (:func:`tracing_state_of`) to its adapters' call sites, like its collector, so each
  application's calls are traced into its own exporter. A call site given none (an
  adapter built by hand) falls back to :func:`current_tracing`, below.
* **Our own slot, then the global one.** The instrument helper asks :func:`current_tracing`
  for a tracer. :func:`setup_tracing`, :func:`use_tracer_provider` and
  :func:`use_tracing_state` fill a module slot; if nobody did, the global OpenTelemetry
  provider is used when the application installed an SDK one before the first recorded
  call, and tracing is off otherwise (no span objects at all). The slot exists because
  OpenTelemetry's global provider can be set only once per process: tests install a fresh
  in-memory provider per test here, and :func:`reset_tracing` clears it.
* **One provider per application, shut down on its own.** Each observability container
  builds its own provider (:func:`setup_tracing`) and shuts exactly that one down
  (``shutdown_tracing(provider)``); the instrument helper uses the most recently set-up
  provider still running, so stopping one application leaves another's tracing on.
  OpenTelemetry's *global* provider can be set once per process: ``set_global=True``
  installs ours only when no SDK provider was installed yet, and otherwise leaves the
  global alone (no "Overriding of current TracerProvider" warning; the first one wins,
  as OpenTelemetry requires).
* **The root sampling ratio is remembered** when we built the provider, so the hot path
  can skip the SDK entirely for a call that would be sampled out (ratio 0, or a parent
  span that is not sampled). The SDK's own ``start_span`` costs ~5 µs even when it drops
  the span (measured on this project's dev machine); skipping it keeps an unsampled call
  within the 5 µs budget. A provider whose ratio we do not know always goes through the
  SDK, so its sampler stays authoritative.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import trace

from config import Settings
from infra.exceptions import ConfigurationError
from infra.observability.attributes import DEPLOYMENT_ENVIRONMENT_NAME, SERVICE_NAME

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "TRACER_NAME",
    "TracingState",
    "current_tracing",
    "reset_tracing",
    "setup_tracing",
    "setup_tracing_from_settings",
    "shutdown_tracing",
    "tracing_state_of",
    "use_tracer_provider",
    "use_tracing_state",
]

TRACER_NAME = "infra"
_OTLP_PACKAGE = "opentelemetry-exporter-otlp-proto-http"


@dataclass(frozen=True, slots=True)
class TracingState:
    """What the instrument helper needs to start spans.

    Attributes:
        tracer: The tracer, or ``None`` when tracing is off (no spans are made).
        root_sample_ratio: The known ratio for root spans, or ``None`` when unknown
            (then every call goes through the SDK's sampler).
    """

    tracer: trace.Tracer | None
    root_sample_ratio: float | None


_OFF = TracingState(None, None)
_state: TracingState | None = None
#: Providers setup_tracing() built and did not shut down yet, oldest first, each with
#: the state the instrument helper uses while it is the newest.
_owned: list[tuple[TracerProvider, TracingState]] = []
_lock = threading.Lock()


def current_tracing() -> TracingState:
    """The tracing state to use now (our slot, else the global SDK provider, else off)."""
    state = _state
    if state is not None:
        return state
    provider = trace.get_tracer_provider()
    # The API's default is a proxy (or no-op) provider: nobody installed an SDK. The
    # answer is cached (reading the global costs an environment lookup per call), so an
    # application installs its global provider before the first backend call, or calls
    # reset_tracing() after installing it.
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return _install(_OFF)
    return _install(TracingState(provider.get_tracer(TRACER_NAME), None))


def tracing_state_of(provider: TracerProvider) -> TracingState | None:
    """The state :func:`setup_tracing` made for ``provider`` while it runs, to inject into
    call sites (an application container passes its own, so its calls trace into its own
    exporter whichever application started last); ``None`` when the provider exports
    nowhere (or was shut down): call sites then use :func:`current_tracing`."""
    with _lock:
        for owned, state in _owned:
            if owned is provider:
                return state
    return None


def _install(state: TracingState) -> TracingState:
    global _state  # noqa: PLW0603 - the documented tracing slot
    with _lock:
        _state = state
    return state


def use_tracer_provider(
    provider: trace.TracerProvider, *, root_sample_ratio: float | None = None
) -> None:
    """Make the instrument helper use ``provider`` (e.g. one with an in-memory exporter).

    Pass ``root_sample_ratio`` only when it matches the provider's sampler for root spans;
    it lets unsampled calls skip the SDK.
    """
    if root_sample_ratio is not None:
        _check_ratio(root_sample_ratio)
    _install(TracingState(provider.get_tracer(TRACER_NAME), root_sample_ratio))


def use_tracing_state(state: TracingState) -> TracingState:
    """Make the instrument helper use ``state``; return the state it used until now.

    Swaps tracing between phases of one process -- a benchmark switching between the
    container's tracing, a sampled-in provider and no tracing at all -- and back::

        captured = current_tracing()
        use_tracing_state(TracingState(None, None))  # no tracer: no spans at all
        ...
        use_tracing_state(captured)

    Providers set up by :func:`setup_tracing` are not shut down by a swap.
    """
    if not isinstance(state, TracingState):
        raise TypeError(
            "state must be a TracingState (e.g. one captured with current_tracing()), "
            f"got {type(state).__name__}"
        )
    previous = current_tracing()
    _install(state)
    return previous


def setup_tracing(
    *,
    service_name: str = "semantica",
    environment: str = "development",
    sample_ratio: float = 1.0,
    otlp_endpoint: str | None = None,
    console: bool = False,
    exporter: SpanExporter | None = None,
    set_global: bool = False,
) -> TracerProvider:
    """Build an SDK ``TracerProvider`` and make the instrument helper use it -- when it has
    an exporter (``exporter``, ``otlp_endpoint`` or ``console``). Without one, tracing is
    off (no span objects are made; see the module docstring): the provider is returned
    but neither used nor installed globally.

    Args:
        service_name: ``service.name`` of the resource.
        environment: ``deployment.environment.name`` of the resource.
        sample_ratio: Fraction of root traces kept (0..1); children follow their parent.
        otlp_endpoint: OTLP/HTTP traces endpoint (``http://collector:4318/v1/traces``).
        console: Print spans to stdout when no other exporter is configured.
        exporter: An explicit exporter (exported synchronously; tests use in-memory).
        set_global: Also install the provider as OpenTelemetry's global one (allowed
            once per process), so other instrumentation shares it (only when it exports).
    """
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - lazy SDK import
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )
    from opentelemetry.sdk.trace.sampling import (  # noqa: PLC0415
        ALWAYS_OFF,
        ALWAYS_ON,
        ParentBased,
        Sampler,
        TraceIdRatioBased,
    )

    _check_ratio(sample_ratio)
    if not service_name:
        raise ValueError("service_name must not be empty (it names this service in traces)")
    resource = Resource.create(
        {SERVICE_NAME: service_name, DEPLOYMENT_ENVIRONMENT_NAME: environment}
    )
    # The constant samplers decide without hashing the trace id; same decisions.
    root: Sampler
    if sample_ratio >= 1.0:
        root = ALWAYS_ON
    elif sample_ratio <= 0.0:
        root = ALWAYS_OFF
    else:
        root = TraceIdRatioBased(sample_ratio)
    provider = TracerProvider(resource=resource, sampler=ParentBased(root))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif otlp_endpoint:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(otlp_endpoint)))
    elif console:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:  # nothing would receive our spans: off (unless the app installed a global SDK one)
        with _lock:
            running = bool(_owned)
        if not running:  # another application's exporting provider stays in use
            reset_tracing()
        return provider
    if set_global:
        _install_global(provider)
    state = TracingState(provider.get_tracer(TRACER_NAME), sample_ratio)
    with _lock:
        _owned.append((provider, state))
    _install(state)
    return provider


def _install_global(provider: TracerProvider) -> None:
    """Make ``provider`` OpenTelemetry's global one unless an SDK provider already is
    (allowed once per process; a second attempt would only log a warning)."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)


def setup_tracing_from_settings(
    settings: Settings,
    *,
    console: bool = False,
    exporter: SpanExporter | None = None,
    set_global: bool = True,
) -> TracerProvider:
    """:func:`setup_tracing` from ``settings.observability`` (service name, environment,
    ``trace_sample_ratio``, ``otlp_endpoint``), installed globally by default."""
    obs = settings.observability
    return setup_tracing(
        service_name=obs.service_name,
        environment=obs.environment,
        sample_ratio=obs.trace_sample_ratio,
        otlp_endpoint=obs.otlp_endpoint,
        console=console,
        exporter=exporter,
        set_global=set_global,
    )


def shutdown_tracing(provider: TracerProvider | None = None) -> None:
    """Flush and shut down ``provider`` (one :func:`setup_tracing` built; the container
    passes its own on shutdown): the instrument helper goes back to the newest provider
    still running, or tracing is off. Without ``provider``, every provider
    :func:`setup_tracing` built is shut down and tracing is turned off."""
    with _lock:
        if provider is None:
            ending = [owned for owned, _ in _owned]
            _owned.clear()
        else:
            ending = [owned for owned, _ in _owned if owned is provider]
            _owned[:] = [(owned, state) for owned, state in _owned if owned is not provider]
        newest = _owned[-1][1] if _owned else _OFF
    for owned in ending:
        owned.shutdown()
    if provider is None or ending:
        _install(newest)


def reset_tracing() -> None:
    """Forget the slot (tests): the next call re-reads the global provider."""
    global _state  # noqa: PLW0603 - the documented tracing slot
    shutdown_tracing()
    with _lock:
        _state = None


def _check_ratio(ratio: float) -> None:
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"sample_ratio must be within [0, 1], got {ratio!r}")


def _otlp_exporter(endpoint: str) -> SpanExporter:
    try:
        # Optional dependency, imported only when an endpoint is configured.
        from opentelemetry.exporter.otlp.proto.http import (  # type: ignore[import-not-found]  # noqa: PLC0415
            trace_exporter,
        )
    except ImportError as exc:
        raise ConfigurationError(
            f"otlp_endpoint is set but {_OTLP_PACKAGE} is not installed",
            component="observability",
            details={"otlp_endpoint": endpoint, "install": f"pip install {_OTLP_PACKAGE}"},
        ) from exc
    exporter: SpanExporter = trace_exporter.OTLPSpanExporter(endpoint=endpoint)
    return exporter

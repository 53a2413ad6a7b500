"""The one path every adapter call takes: telemetry → resilience policy → translation → driver.

Adapters never combine these three by hand (one translation seam, one policy, one
telemetry path: docs/design.md). They hold a :class:`BackendCalls` and either name the
operation per call::

    rows = await self._calls.run("fetch", pool.fetch, query, *args)

or, on hot paths, bind the operation once at construction and run through the handle::

    self._fetch = self._calls.operation("fetch")
    ...
    rows = await self._fetch.run(pool.fetch, query, *args)

Both record and behave identically: ``calls.run`` looks the handle up in a dict, and both
``run`` methods are plain methods returning the coroutine of
:meth:`BackendOperation.call`, so the arguments are packed once and no wrapper frame is
added.
What happens, outermost first:

1. **Telemetry** (:class:`infra.observability.instrument.CallSite`, the same records as
   :func:`~infra.observability.record_call`, written by the same ``CallSeries``): one
   span, one duration sample, one outcome counter and (on failure) one sampled log line
   per *logical* call -- retries included in its duration, breaker rejections recorded
   with their ``error.type``.
   Retries and breaker transitions are counted by the policy's observer hooks, not here.
2. **Policy** (:class:`infra.resilience.ResiliencePolicy`): overall timeout, retry
   (only when ``idempotent``), breaker, bulkhead, attempt timeout.
3. **Translation** (:func:`infra.translation.translate_exception`), *inside* each attempt:
   the policy must see our error types -- their ``retryable`` flag decides retries and
   their class decides whether the breaker counts them.

**Why the handle, and why it is written out flat.** This path runs on every backend call,
next to loopback round trips of ~100 µs, and its cost shows up directly in the adapter
benchmarks (goal: within 10-15 % of the raw client). A handle resolves everything that
depends only on (component, operation) once: the telemetry site and its series, the
policy's bound ``execute``, whether the policy is a passthrough. A call then costs one
coroutine frame of its own: telemetry is inlined as ``start = perf_counter(); try: ...``
around the awaited call instead of an ``async with`` (which would add a record object and
two coroutines per call), and a passthrough policy (one with no layers: ``layers()`` is
empty) is skipped altogether (its ``execute`` would only add a frame: translation is then
inlined too). Calls that may be traced (a
sampled span is wanted) take :meth:`BackendOperation._traced`, which records through a
:class:`~infra.observability.CallRecord` exactly as ``record_call`` does. The untraced
path is the one fast path of call recording: it saves the record object and its
enter/exit calls (``benchmarks/bench_observability.py`` measures both), and
``tests/unit/observability/test_obs_call_recording.py`` runs it against ``record_call``
on the same inputs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from time import perf_counter
from typing import Any, TypeVar

from infra.exceptions import InfraError
from infra.observability.instrument import CallSite
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.resilience import ResiliencePolicy
from infra.translation import Family, translate_exception

__all__ = ["BackendCalls", "BackendOperation"]

T = TypeVar("T")

#: Handles cached per BackendCalls; operation names are bounded by contract, but a caller
#: passing unbounded ones must not grow memory, so past this many they are not cached.
_MAX_CACHED_OPERATIONS = 256


class BackendCalls:
    """Runs one adapter's driver calls through telemetry, its policy and translation.

    Args:
        component: Our component name (``"postgres"``, ``"redis"``, ...); labels metrics,
            names errors.
        family: Which error family generic driver errors translate into.
        system: ``db.system.name`` for spans (``"postgresql"``, ``"redis"``, ...).
        policy: The injected resilience policy; ``None`` = passthrough.
        server_address: Span attribute ``server.address`` (never includes credentials).
        server_port: Span attribute ``server.port``.
        model: GenAI calls: the requested model; spans and histograms then follow the
            ``gen_ai.*`` conventions (``system`` is the provider, e.g. ``"openai"``).
        record: ``False`` disables telemetry for this adapter (benchmarks of the raw path).
        collector: The collector calls are recorded into -- the application container
            injects its own; ``None`` = whatever ``get_metrics_collector()`` returns.
        tracing: The tracing state spans start from -- the application container
            injects its own provider's (``tracing_state_of``); ``None`` =
            ``current_tracing()`` at call time.
    """

    __slots__ = (
        "_collector",
        "_component",
        "_family",
        "_model",
        "_operations",
        "_policy",
        "_record",
        "_server_address",
        "_server_port",
        "_system",
        "_tracing",
    )

    def __init__(
        self,
        component: str,
        *,
        family: Family,
        system: str | None = None,
        policy: ResiliencePolicy | None = None,
        server_address: str | None = None,
        server_port: int | None = None,
        model: str | None = None,
        record: bool = True,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        if not component:
            raise ValueError("component must be a non-empty string, e.g. 'postgres'")
        self._component = component
        self._family: Family = family
        self._system = system or component
        self._policy = policy if policy is not None else ResiliencePolicy.passthrough(component)
        self._server_address = server_address
        self._server_port = server_port
        self._model = model
        self._record = record
        self._collector = collector
        self._tracing = tracing
        self._operations: dict[str, BackendOperation] = {}

    # Read-only: operation handles bind these when they are built.
    @property
    def component(self) -> str:
        """Our component name (metrics label, ``component`` of errors)."""
        return self._component

    @property
    def family(self) -> Family:
        """The error family generic driver errors translate into."""
        return self._family

    @property
    def system(self) -> str:
        """``db.system.name`` of the spans."""
        return self._system

    @property
    def server_address(self) -> str | None:
        """``server.address`` of the spans."""
        return self._server_address

    @property
    def server_port(self) -> int | None:
        """``server.port`` of the spans."""
        return self._server_port

    @property
    def model(self) -> str | None:
        """The GenAI model of the spans (``None`` for database calls)."""
        return self._model

    @property
    def record(self) -> bool:
        """Whether calls are recorded (telemetry on)."""
        return self._record

    @property
    def collector(self) -> MetricsCollector | None:
        """The injected collector (``None``: the current one at call time)."""
        return self._collector

    @property
    def tracing(self) -> TracingState | None:
        """The injected tracing state (``None``: the current one at call time)."""
        return self._tracing

    @property
    def policy(self) -> ResiliencePolicy:
        """The resilience policy calls run under."""
        return self._policy

    def operation(self, name: str) -> BackendOperation:
        """The handle for the bounded operation ``name`` (``"fetch"``, ``"get"``), built
        once and cached: keep it and call ``await handle.run(fn, *args)``.

        Raises:
            ValueError: ``name`` is empty.
        """
        handle = self._operations.get(name)
        if handle is None:
            handle = BackendOperation(self, name)
            if len(self._operations) < _MAX_CACHED_OPERATIONS:
                self._operations[name] = handle
        return handle

    def run(
        self,
        operation: str,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> Coroutine[Any, Any, T]:
        """Run ``fn(*args)`` as the bounded-name ``operation``; await the result.

        A plain method returning the handle's coroutine (no coroutine frame of its own).

        Args:
            operation: A bounded name (``"fetch"``, ``"get"``); never the query or key.
            fn: The driver coroutine function (or any callable returning an awaitable).
            idempotent: ``False`` disables retries (a write that may have been applied).
            timeout: The driver-side timeout in effect, copied into timeout errors.
        """
        handle = self._operations.get(operation)
        if handle is None:
            handle = self.operation(operation)
        return handle.call(fn, args, idempotent, timeout)

    def __repr__(self) -> str:
        return f"BackendCalls({self._component!r}, policy={self._policy.describe()!r})"


class BackendOperation:
    """One operation of a :class:`BackendCalls`, with everything per-call resolved once.

    Made by :meth:`BackendCalls.operation`. ``await op.run(fn, *args)`` is exactly
    ``await calls.run(op.name, fn, *args)``, minus a dict lookup. Both ``run`` methods are
    plain methods returning the coroutine of :meth:`call`, the one coroutine frame a call
    pays for.
    """

    __slots__ = ("_component", "_direct", "_execute", "_family", "_site", "name")

    def __init__(self, calls: BackendCalls, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"operation must be a non-empty string such as 'get', got {name!r}")
        policy = calls.policy
        self.name = name
        self._component = calls.component
        self._family: Family = calls.family
        self._execute = policy.execute
        # A policy with no layers (and its own execute) would only await the attempt:
        # call the driver directly instead, one coroutine frame fewer.
        self._direct = not policy.layers() and type(policy).execute is ResiliencePolicy.execute
        self._site: CallSite | None = None
        if calls.record:
            self._site = CallSite(
                calls.component,
                name,
                system=calls.system,
                server_address=calls.server_address,
                server_port=calls.server_port,
                collector=calls.collector,
                tracing=calls.tracing,
                model=calls.model,
            )

    def run(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> Coroutine[Any, Any, T]:
        """Run ``fn(*args)`` as this operation (arguments as for :meth:`BackendCalls.run`);
        await the result. A plain method returning the call's coroutine."""
        return self.call(fn, args, idempotent, timeout)

    # One function on purpose: every helper split out of it would be another call or
    # coroutine frame on each backend call (see the module docstring).
    async def call(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> T:
        """:meth:`run` with the arguments as a tuple and options positional (no repacking:
        what :meth:`BackendCalls.run` uses)."""
        site = self._site
        if site is None:  # telemetry off
            if not self._direct:
                return await self._execute(self._attempt, fn, args, timeout, idempotent=idempotent)
            series = None
        else:
            series = site.untraced()
            if series is None:  # this call may be sampled: the span path
                return await self._traced(site, fn, args, idempotent, timeout)
        start = perf_counter()
        try:
            if self._direct:
                try:
                    result: T = await fn(*args)
                except InfraError:
                    raise
                except Exception as exc:
                    # CancelledError is a BaseException: it is never caught here.
                    raise self._translated(exc, timeout) from exc
            else:
                result = await self._execute(
                    self._attempt, fn, args, timeout, idempotent=idempotent
                )
        except BaseException as exc:
            if series is not None:
                series.failed(exc, perf_counter() - start)
            raise
        if series is not None:
            series.succeeded(perf_counter() - start)
        return result

    async def _traced(
        self,
        site: CallSite,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        idempotent: bool,
        timeout: float | None,
    ) -> T:
        """A call that may be sampled: recorded through a CallRecord (span current inside)."""
        with site.record():
            if self._direct:
                return await self._attempt(fn, args, timeout)
            return await self._execute(self._attempt, fn, args, timeout, idempotent=idempotent)

    async def _attempt(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], timeout: float | None
    ) -> T:
        """One attempt under the policy: the driver call, its errors translated."""
        try:
            return await fn(*args)
        except InfraError:
            raise
        except Exception as exc:
            raise self._translated(exc, timeout) from exc

    def _translated(self, exc: Exception, timeout: float | None) -> InfraError:
        return translate_exception(
            exc,
            component=self._component,
            family=self._family,
            operation=self.name,
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return f"BackendOperation({self._component!r}, {self.name!r})"

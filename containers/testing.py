"""Run an application's own tests without servers: every backend replaced by its fake.

::

    app = ApplicationContainer()
    with use_fakes(app) as fakes:                 # or: async with use_fakes(app)
        await start(app)
        fakes.cache.fail_next(ConnectionError())  # one dropped connection ...
        await handler(...)                        # ... retried by redis.policy, as on Redis
        await stop(app)
    # the container is back to its real providers, exactly as found

**The seam: fakes under the adapters' own policies and telemetry.** A fake replaces the
server and its driver, not the path a call takes: each fake runs its operations through
:class:`~infra.calls.BackendCalls`, like the real adapter, with

* **the policy of the same container provider** (``app.postgres.policy``,
  ``app.redis.policy``, ``app.redis.lock_policy``): ``app.postgres.policy.override(...)``
  changes the fake's behaviour exactly as it changes the real store's (before the
  adapter is first resolved, the same rule as for real adapters);
* **the application's own collector** (``app.observability.metrics``): calls, latencies
  and breaker/retry metrics are recorded under fakes exactly as under real servers.

The fakes get both when the container first resolves them -- at ``start()``, or at the
first injection -- so script faults on ``fakes.relational`` / ``fakes.cache`` /
``fakes.lock`` at any time, but call them through the container (or after ``start()``):
used directly before that, a fake runs without the policy.

**Virtual time.** A policy provider nobody overrode is replaced for the block by the
same policy -- same settings, same hooks -- on the fakes' :class:`ManualClock`
(``fakes.clock``): the same retry and breaker decisions, but backoff never sleeps and an
open breaker recovers when the test advances the clock. A policy the test overrode
itself (before or inside the block) is left alone: the test's policy wins.

**Faults** are scripted where the driver would fail, inside each attempt (see
:mod:`infra.testing.fakes`): ``fail_next(ConnectionError())`` is one dropped connection,
translated, retried and counted exactly as on a real server.

**Safe around the lifecycle.** ``use_fakes`` works before or after
:func:`containers.lifecycle.start`, is re-entrant (an inner block installs its own
fakes; leaving it brings the outer ones back) and on exit leaves every provider as it
found it, async mode included (see :func:`containers._handout.restore_modes`): singletons
built on the fakes during the block are reset (built again on the real backends on first
use); resources started on the fakes during the block are shut down by ``async with``
(a plain ``with`` warns instead: it cannot await). Entered after ``start()``, the health
registry checks the fakes for the block and the real adapters again after it.

``use_fakes`` warns (:class:`FakesWarning`) when an override cannot take effect: a
started singleton or resource built on the real adapters that the block cannot rebuild,
a policy not built by :func:`containers.core.resilience_policy` (it stays on real time),
or a ``start()`` inside the block still running at its end (what it built keeps the
fakes until ``stop()``).

**Adding a backend** is one registration (:func:`register_fake_backend`): a function
that builds the fakes and says which providers they replace, which policies to put on
the virtual clock and which health checks to point at them; each fake takes its policy
from the same container provider and records through ``BackendCalls`` (build the
override with :func:`attached`).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, TypeAlias, TypeVar

from dependency_injector import containers, providers

from containers import _handout
from containers.application import ApplicationContainer
from containers.core import resilience_policy
from infra.cache import ThreeTierCache
from infra.graph.cached_store import CachedGraphStore
from infra.observability import HealthRegistry, MetricsCollector, TracingState
from infra.ports import HealthCheckable
from infra.resilience import ManualClock, ResiliencePolicy
from infra.testing.fakes import FakeCache, FakeDistributedLock, FakeLLM, FakeRelationalStore
from infra.testing.fakes.graph import FakeGraphStore
from infra.testing.fakes.vector import FakeVectorStore

__all__ = [
    "FakeSwap",
    "Fakes",
    "FakesWarning",
    "attached",
    "register_fake_backend",
    "use_fakes",
]

AnyProvider: TypeAlias = "providers.Provider[Any]"
T = TypeVar("T")


class FakesWarning(UserWarning):
    """An override ``use_fakes`` made cannot take effect somewhere; the message names
    the provider and what to do."""


class Attachable(Protocol):
    """A fake that takes its policy and collector from the container (every fake in
    :mod:`infra.testing.fakes`)."""

    def attach(
        self,
        *,
        policy: ResiliencePolicy | None,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        """Run later calls under ``policy``, record them into ``collector`` and trace
        them with ``tracing``."""


def _attach(
    fake: Attachable,
    policy: ResiliencePolicy,
    collector: MetricsCollector,
    tracing: TracingState | None,
) -> Any:
    fake.attach(policy=policy, collector=collector, tracing=tracing)
    return fake


def attached(
    fake: Attachable, policy: AnyProvider, app: ApplicationContainer
) -> providers.Singleton[Any]:
    """The provider that hands out ``fake`` attached to the policy of the container
    provider ``policy`` and to ``app``'s collector and tracing state -- resolved when the
    container first resolves the adapter, so a policy override made before then reaches
    the fake."""
    return providers.Singleton(
        _attach, fake, policy, app.observability.metrics, app.observability.tracing_state
    )


@dataclass(slots=True)
class FakeSwap:
    """What ``use_fakes`` does for one backend; returned by a registered installer.

    Attributes:
        fakes: The fake objects, by the name ``Fakes`` exposes them under.
        adapters: Container provider -> the provider overriding it for the block.
        policies: Policy providers to put on the virtual clock (unless overridden).
        health: Health-check name -> the fake a started registry checks instead.
        resolved: Names ``Fakes`` resolves through the container (built on the fakes
            when the container resolves them), by name -> provider.
    """

    fakes: Mapping[str, object] = field(default_factory=dict)
    adapters: Mapping[AnyProvider, AnyProvider] = field(default_factory=dict)
    policies: Sequence[AnyProvider] = ()
    health: Mapping[str, HealthCheckable] = field(default_factory=dict)
    resolved: Mapping[str, AnyProvider] = field(default_factory=dict)


#: Builds one backend's fakes for ``app`` on the block's clock.
FakeInstaller: TypeAlias = Callable[[ApplicationContainer, ManualClock], FakeSwap]
_INSTALLERS: dict[str, FakeInstaller] = {}


def register_fake_backend(name: str, installer: FakeInstaller) -> None:
    """Make every later ``use_fakes`` call ``installer`` (one per backend; registering
    ``name`` again replaces it)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string such as 'postgres', got {name!r}")
    if not callable(installer):
        raise TypeError(f"installer must be callable (app, clock) -> FakeSwap, got {installer!r}")
    _INSTALLERS[name] = installer


class Fakes:
    """The fakes ``use_fakes`` installed, for scripting failures and inspecting calls.

    ``fakes.relational``, ``fakes.cache``, ``fakes.lock`` are the fakes themselves;
    ``fakes.three_tier`` is the :class:`ThreeTierCache` the container hands out over the
    fake cache (available once the container is started); ``fakes["name"]`` reaches
    what another registered backend installed; ``fakes.clock`` is the virtual clock.
    """

    __slots__ = ("_objects", "_resolved", "clock")

    def __init__(
        self,
        clock: ManualClock,
        objects: Mapping[str, object],
        resolved: Mapping[str, AnyProvider],
    ) -> None:
        self.clock = clock
        self._objects = dict(objects)
        self._resolved = dict(resolved)

    @property
    def relational(self) -> FakeRelationalStore:
        """The fake behind ``postgres.store``."""
        return self._typed("relational", FakeRelationalStore)

    @property
    def cache(self) -> FakeCache:
        """The fake behind ``redis.cache``."""
        return self._typed("cache", FakeCache)

    @property
    def lock(self) -> FakeDistributedLock:
        """The fake behind ``redis.lock``."""
        return self._typed("lock", FakeDistributedLock)

    @property
    def graph(self) -> FakeGraphStore:
        """The fake behind ``graph.store``."""
        return self._typed("graph", FakeGraphStore)

    @property
    def vector(self) -> FakeVectorStore:
        """The fake behind ``vector.store``."""
        return self._typed("vector", FakeVectorStore)

    @property
    def llm(self) -> FakeLLM:
        """The fake behind ``llm.adapter``."""
        return self._typed("llm", FakeLLM)

    @property
    def three_tier(self) -> ThreeTierCache:
        """The 3-tier cache ``redis.three_tier`` hands out (over the fake cache)."""
        return self._typed("three_tier", ThreeTierCache)

    def __getitem__(self, name: str) -> object:
        if name in self._objects:
            return self._objects[name]
        provider = self._resolved.get(name)
        if provider is None:
            known = sorted({*self._objects, *self._resolved})
            raise KeyError(f"no fake named {name!r}; installed: {known}")
        if _handout.mode_of(provider) != "disabled":
            raise RuntimeError(
                f"fakes.{name} is built by the container on its collector: start it "
                f"first (lifecycle.start), or use `await resolve(<its provider>)`"
            )
        return provider()

    def _typed(self, name: str, kind: type[T]) -> T:
        value = self[name]
        if not isinstance(value, kind):  # a registration replaced the backend's fakes
            raise TypeError(f"fakes.{name} is a {type(value).__name__}, not a {kind.__name__}")
        return value

    def __repr__(self) -> str:
        return f"Fakes({sorted({*self._objects, *self._resolved})})"


class _NoRedisClient:
    """What ``redis.client`` hands out under the fakes: no server, so any use of the raw
    client fails at once with the reason (an ``AttributeError``, so probing for optional
    methods with ``getattr(client, name, None)`` still works)."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"redis.client.{name}: under use_fakes there is no Redis server; use "
            "redis.cache / redis.lock (faked), or the embedded servers for raw commands"
        )

    def __repr__(self) -> str:
        return "<no Redis client under use_fakes>"


_NO_REDIS_CLIENT = _NoRedisClient()


def _postgres(app: ApplicationContainer, clock: ManualClock) -> FakeSwap:
    del clock  # the store has no time of its own; its policy is on the clock
    store = FakeRelationalStore(component="postgres")
    return FakeSwap(
        fakes={"relational": store},
        adapters={app.postgres.store: attached(store, app.postgres.policy, app)},
        policies=(app.postgres.policy,),
        health={"postgres": store},
    )


def _three_tier(l2: FakeCache, clock: ManualClock, collector: MetricsCollector) -> ThreeTierCache:
    # Single-process: no Redis pub/sub or leases under the fakes.
    return ThreeTierCache(l2, clock=clock, metrics=collector)


def _redis(app: ApplicationContainer, clock: ManualClock) -> FakeSwap:
    serializer = app.redis.serializer()  # a plain singleton: the app's own, if overridden
    cache = FakeCache(clock=clock, serializer=serializer, component="redis")
    lock = FakeDistributedLock(clock=clock, component="redis_lock")
    cache_provider = attached(cache, app.redis.policy, app)
    three_tier = providers.Singleton(_three_tier, cache_provider, clock, app.observability.metrics)
    return FakeSwap(
        fakes={"cache": cache, "lock": lock},
        adapters={
            app.redis.cache: cache_provider,
            app.redis.lock: attached(lock, app.redis.lock_policy, app),
            app.redis.three_tier: three_tier,
            app.redis.client: providers.Object(_NO_REDIS_CLIENT),
        },
        policies=(app.redis.policy, app.redis.lock_policy),
        health={"redis": cache},
        resolved={"three_tier": three_tier},
    )


def _graph(app: ApplicationContainer, clock: ManualClock) -> FakeSwap:
    # The fake is there whether or not the settings configure a graph; the cached graph
    # store reads it through the fakes' 3-tier cache.
    del clock  # the store has no time of its own; its policy is on the clock
    store = FakeGraphStore()
    store_provider = attached(store, app.graph.policy, app)
    return FakeSwap(
        fakes={"graph": store},
        adapters={
            app.graph.store: store_provider,
            app.graph.driver: providers.Object(None),
            app.graph.cached_store: providers.Singleton(
                CachedGraphStore, store_provider, app.redis.three_tier, ttl=app.graph.cache_ttl
            ),
        },
        policies=(app.graph.policy,),
        health={"graph": store},
    )


def _vector(app: ApplicationContainer, clock: ManualClock) -> FakeSwap:
    del clock  # the store has no time of its own; its policy is on the clock
    store = FakeVectorStore()
    return FakeSwap(
        fakes={"vector": store},
        adapters={app.vector.store: attached(store, app.vector.policy, app)},
        policies=(app.vector.policy,),
        health={"vector": store},
    )


def _rebuilt(provider: providers.Singleton[T]) -> providers.Singleton[T]:
    """A fresh singleton declared as ``provider`` is: built on whatever its dependencies
    are overridden with when it is first used."""
    return providers.Singleton(provider.provides, *provider.args, **provider.kwargs)


def _llm(app: ApplicationContainer, clock: ManualClock) -> FakeSwap:
    # The local embedding server is never started under the fakes: only the real adapter
    # would start it. ``llm.embeddings`` is built by the container over the fake adapter
    # and the fakes' 3-tier cache.
    del clock  # the fake has no time of its own; its policy is on the clock
    llm = FakeLLM()
    return FakeSwap(
        fakes={"llm": llm},
        adapters={
            app.llm.adapter: attached(llm, app.llm.policy, app),
            # Built again for the block, on the fakes (start() builds them on the real
            # adapter and Redis client).
            app.llm.embeddings: _rebuilt(app.llm.embeddings),
            app.llm.limiter: _rebuilt(app.llm.limiter),
        },
        policies=(app.llm.policy, app.llm.embedding_policy),
        health={"llm": llm},
    )


register_fake_backend("postgres", _postgres)
register_fake_backend("redis", _redis)
register_fake_backend("graph", _graph)
register_fake_backend("vector", _vector)
register_fake_backend("llm", _llm)

# The overriding providers of the active use_fakes blocks: an inner block re-twins a
# policy an outer block put on its clock (it is not the test's own override). Each block
# removes its own on exit.
_ours: set[AnyProvider] = set()


def _overridden_below(provider: AnyProvider) -> AnyProvider | None:
    """The override just under ``provider``'s last one (an outer block's), if any."""
    stack: tuple[AnyProvider, ...] = tuple(provider.overridden)
    return stack[-2] if len(stack) > 1 else None


class use_fakes:  # noqa: N801 - used as a function: ``with use_fakes(app) as fakes``
    """Override every backend of ``app`` with its fake for a ``with`` (or ``async
    with``) block; see the module docstring."""

    def __init__(self, app: ApplicationContainer) -> None:
        if not isinstance(app, containers.Container):
            raise TypeError(f"use_fakes needs an application container, got {app!r}")
        self._app = app
        self._entered = False
        self._overridden: list[AnyProvider] = []
        self._replacements: list[AnyProvider] = []
        self._health: list[tuple[HealthRegistry, str, Any]] = []
        self._modes: _handout.ModeSnapshot | None = None
        self._initialized: set[AnyProvider] = set()

    # ------------------------------------------------------------------ entering
    def __enter__(self) -> Fakes:
        if self._entered:
            raise RuntimeError("this use_fakes(...) block is already active; call use_fakes again")
        self._entered = True
        app = self._app
        self._modes = _handout.snapshot(app)
        self._initialized = {r for r in app.traverse(types=[providers.Resource]) if r.initialized}
        clock = ManualClock()
        swaps = [install(app, clock) for install in _INSTALLERS.values()]
        objects: dict[str, object] = {}
        resolved: dict[str, AnyProvider] = {}
        try:
            for swap in swaps:
                objects.update(swap.fakes)
                resolved.update(swap.resolved)
                for provider, replacement in swap.adapters.items():
                    self._override(provider, replacement)
                for policy in swap.policies:
                    twin = self._virtual(policy, clock)
                    if twin is not None:
                        self._override(policy, twin)
            self._warn_about_started_dependants()
            for swap in swaps:
                self._point_health_at(swap.health)
        except BaseException:
            self._undo()
            raise
        return Fakes(clock, objects, resolved)

    async def __aenter__(self) -> Fakes:
        return self.__enter__()

    def _override(self, provider: AnyProvider, replacement: AnyProvider) -> None:
        provider.override(replacement)
        _ours.add(replacement)
        self._overridden.append(provider)
        self._replacements.append(replacement)

    def _virtual(self, policy: AnyProvider, clock: ManualClock) -> AnyProvider | None:
        """``policy`` on ``clock`` (same settings and hooks), unless the test overrode it."""
        last = policy.last_overriding
        if last is not None and last not in _ours:
            return None  # the test's own policy wins
        if last is not None:
            policy = last  # an outer block's twin: re-twin the same declaration
        if isinstance(policy, providers.Singleton) and _takes_clock(policy.provides):
            return providers.Singleton(
                resilience_policy, *policy.args, **{**policy.kwargs, "clock": clock}
            )
        warnings.warn(
            f"{self._name(policy)} is not built by containers.core.resilience_policy: the "
            "fakes run under it on real time (backoff sleeps); override it with a policy "
            "of your own, e.g. ResiliencePolicy.instant(...)",
            FakesWarning,
            stacklevel=3,
        )
        return None

    def _warn_about_started_dependants(self) -> None:
        """Started values built on a real adapter the block cannot rebuild."""
        targets = set(self._overridden)
        # What the started values hold: an outer block's fakes, or the real adapters.
        held = (
            "the fakes of an outer use_fakes block"
            if any(_overridden_below(p) in _ours for p in targets)
            else "the real backends"
        )
        for provider in _handout.handed_out(self._app):
            if provider in targets or provider in _ours or provider is self._app.health:
                continue
            if isinstance(provider, providers.Resource) and provider() is None:
                continue  # an optional backend the settings leave off: nothing to keep
            if _depends_on(provider, targets):
                warnings.warn(
                    f"{self._name(provider)} was started before this use_fakes block, "
                    f"on {held}, and keeps them for the block; enter use_fakes before "
                    "lifecycle.start() to inject this block's fakes into it",
                    FakesWarning,
                    stacklevel=3,
                )

    def _point_health_at(self, checks: Mapping[str, HealthCheckable]) -> None:
        """Entered after start: the started registry checks the fakes for the block."""
        app = self._app
        if not app.health.initialized or not checks:
            return
        registry_provider = app.observability.health
        if _handout.mode_of(registry_provider) != "disabled":
            warnings.warn(
                "the health registry was built lazily, before use_fakes, on the real "
                "adapters and keeps checking them; enter use_fakes before resolving "
                "`health`, or start the container first",
                FakesWarning,
                stacklevel=3,
            )
            return
        registry = registry_provider()
        for name, fake in checks.items():
            if name in registry.names():
                self._health.append((registry, name, registry.replace(name, fake)))

    # ------------------------------------------------------------------- leaving
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for resource in self._started_on_fakes():
            warnings.warn(
                f"{self._name(resource)} was started on the fakes inside use_fakes and is "
                "still open: `async with use_fakes(app)` shuts it down, or stop the "
                "container inside the block",
                FakesWarning,
                stacklevel=2,
            )
        self._undo()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for resource in reversed(self._started_on_fakes()):
                result = resource.shutdown()
                if inspect.isawaitable(result):
                    await result
        finally:
            self._undo()

    def _started_on_fakes(self) -> list[providers.Resource[Any]]:
        """Resources initialised on the fakes during the block, lazily (not by a start()
        still running, whose stop() closes them)."""
        running = set(_handout.handed_out(self._app))
        targets = set(self._overridden)
        return [
            r
            for r in self._app.traverse(types=[providers.Resource])
            if r.initialized
            and r not in self._initialized
            and r not in running
            and _depends_on(r, targets)
        ]

    def _undo(self) -> None:
        """Put everything back as found (also after a failed enter)."""
        if not self._entered:
            return
        self._entered = False
        app = self._app
        running = set(_handout.handed_out(app))
        started_inside = self._modes is not None and _handout.started_since(app, self._modes)
        if started_inside:
            warnings.warn(
                "lifecycle.start() ran inside use_fakes and the container is still running "
                "at its end: what it started on the fakes (health, singletons) keeps them "
                "until stop(); stop the container inside the block",
                FakesWarning,
                stacklevel=3,
            )
        targets = set(self._overridden)
        for registry, name, previous in reversed(self._health):
            if name in registry.names():
                registry.replace(name, previous)
        self._health.clear()
        pairs = list(zip(self._overridden, self._replacements, strict=True))
        for provider, replacement in reversed(pairs):
            _remove_override(provider, replacement)
        self._overridden.clear()
        _ours.difference_update(self._replacements)
        self._replacements.clear()
        for provider in app.traverse(types=[providers.Singleton]):
            if provider in targets or not _depends_on(provider, targets):
                continue
            if provider in running:
                continue
            provider.reset()  # built on the fakes, or on what they replaced: rebuilt lazily
        if self._modes is not None:
            _handout.restore_modes(app, self._modes, targets)
            self._modes = None

    def _name(self, provider: AnyProvider) -> str:
        for path, candidate in _paths(self._app):
            if candidate is provider:
                return path
        return repr(provider)

    def __repr__(self) -> str:
        return f"use_fakes({type(self._app).__name__}, active={self._entered})"


def _takes_clock(factory: object) -> bool:
    """Whether a policy factory is :func:`containers.core.resilience_policy` or one built
    on it that forwards a ``clock=`` (e.g. :func:`containers.llm.llm_policy`)."""
    if factory is resilience_policy:
        return True
    try:
        return "clock" in inspect.signature(factory).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _remove_override(provider: AnyProvider, replacement: AnyProvider) -> None:
    """Remove ``replacement`` from ``provider``'s overrides, keeping any override the
    test made on top of it (dependency-injector can only drop the last one or all)."""
    stack = list(provider.overridden)
    if stack and stack[-1] is replacement:
        provider.reset_last_overriding()
    elif replacement in stack:
        provider.reset_override()
        for other in stack:
            if other is not replacement:
                provider.override(other)


def _depends_on(provider: AnyProvider, targets: set[AnyProvider]) -> bool:
    """Whether ``provider`` reaches one of ``targets`` through its dependencies."""
    seen: set[int] = set()
    stack = list(provider.related)
    while stack:
        current = stack.pop()
        if current in targets:
            return True
        if id(current) in seen:
            continue
        seen.add(id(current))
        stack.extend(current.related)
    return False


def _paths(container: Any, prefix: str = "") -> list[tuple[str, AnyProvider]]:
    """(dotted path, provider) for every provider of ``container``, nested ones included."""
    found: list[tuple[str, AnyProvider]] = []
    for name, provider in container.providers.items():
        path = f"{prefix}{name}"
        found.append((path, provider))
        if isinstance(provider, providers.Container):
            found.extend(_paths(provider, f"{path}."))
    return found

"""Start and stop a container's resources safely, with one awaitable each.

::

    await start(app)                  # validated, started in dependency order, or nothing is
    store = app.postgres.store()      # started values are handed out synchronously
    await stop(app)                   # reverse order, every resource attempted

    async with running(app, ping=True):   # the same, as a context manager
        ...

**Validation, before any resource starts** (:func:`validate`, which ``start`` calls):

* a dependency cycle among the providers raises :class:`~infra.exceptions.StartupError`
  naming the cycle as a provider path (``a -> b -> a``), not a bare ``RecursionError``;
* every ``Provide[...]`` / ``Provider[...]`` / ``Closing[...]`` marker in the modules and
  packages the container is wired to must name one of its providers: a typo such as
  ``Provide["postgres.stor"]`` raises ``StartupError`` with the bad name and the closest
  existing names (``postgres.store``), instead of failing at the first request with
  ``'Provide' object has no attribute ...``;
* every ``providers.Dependency`` must be defined (dependency-injector's
  ``check_dependencies()``).

**Start order.** A resource depends on another when it reaches it through the provider
graph -- transitively, through any provider kind: ``Factory``, ``Singleton``,
``Callable``, ``List``/``Dict``, nested ``Container``, ``Dependency`` and overrides
(dependency-injector's ``related``). Resources start one at a time, each after everything
it depends on, each within ``timeout`` seconds (default :data:`DEFAULT_TIMEOUT`; the limit
applies to asynchronous initialisers -- synchronous code cannot be interrupted). The
observability container's resources (metrics, logging, tracing) start first, so every
later resource records into them, and therefore stop last. Then the started asynchronous
resources and the singletons built on them are handed out synchronously (see
:mod:`containers._handout`): after ``start()``, ``app.postgres.store()`` is the store
itself, not an awaitable.

**A failed start leaves nothing started.** If a resource raises or times out (or a
singleton built on the started resources does, or the optional ping fails), every
resource initialised so far -- including any initialised lazily before ``start()`` -- is
shut down in reverse order, the providers are put back as ``start()`` found them, and one
``StartupError`` is raised naming the provider (``details["resource"]``), its dependency
path (``details["dependency_path"]``: from a resource that needs it down to it, e.g.
``health -> postgres.store``) and the cause (chained as ``__cause__``).
A cancellation (Ctrl-C during startup) rolls back the same way and propagates as is.

**Ping (optional).** ``start(app, ping=True)`` then calls ``health_check()`` on every
started adapter that has one, concurrently, within ``ping_timeout`` seconds; if any is
unhealthy, raises or misses the deadline, the start is rolled back and one
``StartupError`` lists every failing provider (``details["unhealthy"]``).

**Stop.** ``await stop(app)`` shuts every initialised resource down in reverse dependency
order (a resource built through ``Factory(Repo, db=db)`` closes before ``db``), each within
``timeout`` seconds. Every resource is attempted even when some fail; each failure is
logged and, at the end, all of them are raised together as one ``ExceptionGroup``. It
resets every singleton built on an asynchronous resource, also one built lazily without
a ``start()`` (a later use or ``start()`` builds it on the new resources), and restores
every provider's async mode. It is idempotent and safe after a failed start or without
any start (it closes whatever was initialised lazily). Stop with this
function, not ``shutdown_resources()``: while started, the resources are in sync mode
and dependency-injector would not await their asynchronous cleanup.

Before ``start()`` (or after ``stop()``) resources stay lazy: ``await
app.postgres.store()`` initialises one on first use, as dependency-injector always does.
Code that runs in both phases (a script, a test helper) uses :func:`resolve`::

    store = await resolve(app.postgres.store)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import pkgutil
import sys
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from graphlib import CycleError, TopologicalSorter
from types import ModuleType
from typing import Annotated, Any, Protocol, TypeAlias, TypeVar, cast, get_args, get_origin

from dependency_injector import containers, errors, providers, wiring

from containers import _handout
from containers.observability import ObservabilityContainer
from infra.exceptions import ConfigurationError, StartupError

__all__ = [
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "resolve",
    "running",
    "start",
    "stop",
    "validate",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Providing(Protocol[T_co]):
    """What :func:`resolve` takes: a provider, seen only as "calling it gives a ``T``".

    A protocol rather than ``providers.Provider[T]``: dependency-injector's ``Provider`` is
    invariant in ``T``, so ``isinstance(await resolve(container.repo), Sub)`` would make
    mypy infer ``T = object`` and reject a ``Factory[Repo]``; a call-only protocol is
    covariant and infers ``T = Repo``.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> T_co: ...


AnyProvider: TypeAlias = "providers.Provider[Any]"
Resource: TypeAlias = "providers.BaseResource[Any]"

#: Seconds one resource may take to start, or to stop.
DEFAULT_TIMEOUT = 30.0
#: Seconds every backend together may take to answer the startup ping.
DEFAULT_PING_TIMEOUT = 5.0

_log = logging.getLogger("containers.lifecycle")

# The containers start() completed for, with the event loop they started on: a second
# start() on that loop is a no-op until stop(); on another loop it is refused.
_running: weakref.WeakKeyDictionary[containers.Container, asyncio.AbstractEventLoop] = (
    weakref.WeakKeyDictionary()
)


# ------------------------------------------------------------------------ entry points
async def start(
    container: containers.Container,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    ping: bool = False,
    ping_timeout: float = DEFAULT_PING_TIMEOUT,
) -> None:
    """Validate ``container``, start its resources in dependency order (each within
    ``timeout`` seconds), hand the started values out synchronously and, with ``ping``,
    check every started adapter's health within ``ping_timeout`` seconds. On any failure
    everything is closed again and one :class:`StartupError` is raised; see the module
    docstring."""
    _check_timeout("timeout", timeout)
    _check_timeout("ping_timeout", ping_timeout)
    loop = asyncio.get_running_loop()
    started_on = _running.get(container)
    if started_on is not None:
        if started_on is not loop:
            raise StartupError(_other_loop(container, "start"), component="containers")
        return
    graph = _Graph(container)
    graph.validate()
    _handout.record(container)
    current: AnyProvider | None = None
    try:
        for resource in graph.start_order():
            current = resource
            await _bounded(resource.init(), timeout)
        current = None
        await _handout.pin(container, timeout=timeout)
        if ping:
            await _ping(container, graph, ping_timeout)
    except BaseException as exc:
        rolled_back = [graph.name(r) for r in graph.start_order() if r.initialized]
        failures = await _stop(container, graph, timeout)
        if not isinstance(exc, Exception):  # a cancellation or Ctrl-C: rolled back, as is
            raise
        raise _startup_error(
            graph,
            exc=exc,
            failed=current,
            rolled_back=rolled_back,
            failures=failures,
            timeout=timeout,
        ) from _cause(exc)
    _running[container] = loop


async def stop(container: containers.Container, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Shut every initialised resource down in reverse dependency order, each within
    ``timeout`` seconds, all attempted; failures are logged, then raised together as an
    ``ExceptionGroup``. Idempotent; providers are left as ``start()`` found them."""
    _check_timeout("timeout", timeout)
    started_on = _running.get(container)
    if (
        started_on is not None
        and started_on is not asyncio.get_running_loop()
        and not started_on.is_closed()
    ):
        raise ConfigurationError(_other_loop(container, "stop"), component="containers")
    _running.pop(container, None)
    failures = await _stop(container, _Graph(container), timeout)
    if failures:
        raise ExceptionGroup(f"{len(failures)} resource(s) failed to shut down", failures)


@asynccontextmanager
async def running(
    container: containers.Container,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    ping: bool = False,
    ping_timeout: float = DEFAULT_PING_TIMEOUT,
) -> AsyncIterator[containers.Container]:
    """``start()`` on entry, ``stop()`` on exit (also when the block raises)."""
    await start(container, timeout=timeout, ping=ping, ping_timeout=ping_timeout)
    try:
        yield container
    finally:
        await stop(container, timeout=timeout)


def _other_loop(container: containers.Container, action: str) -> str:
    started_on = _running.get(container)
    state = "has closed (stop it first)" if started_on and started_on.is_closed() else "runs"
    return (
        f"cannot {action} {_kind(container)}: it was started on another event loop, which "
        f"{state}, and its clients and tasks belong to that loop. Two usual causes: "
        "FastAPI's TestClient runs the app on a loop of its own (give it a container its "
        "lifespan starts -- the test kit's semantica_unstarted_container -- or call the app "
        "on this loop with httpx.AsyncClient(transport=httpx.ASGITransport(app=app))); "
        "pytest-asyncio runs fixtures on another loop than the test (set "
        "asyncio_default_fixture_loop_scope to the test's loop scope)"
    )


def validate(container: containers.Container) -> None:
    """Raise :class:`StartupError` for a dependency cycle, a ``Provide[...]`` marker of a
    wired module that names no provider, or an undefined ``Dependency``; start nothing."""
    _Graph(container).validate()


async def resolve(provider: Providing[T]) -> T:
    """The provider's value, whether the container is started (a plain value) or not (an
    awaitable that initialises the resources it needs on first use)."""
    value: Any = provider()
    if inspect.isawaitable(value):
        value = await value
    return cast("T", value)


# ------------------------------------------------------------------------ the graph
class _Graph:
    """The provider graph of one container: names, dependencies, the start order."""

    def __init__(self, container: containers.Container) -> None:
        self.container = container
        self.names: dict[AnyProvider, str] = {}
        self.telemetry: set[AnyProvider] = set()
        self._name_tree(container, "", telemetry=_is_observability(container))
        self.providers: list[AnyProvider] = list(container.traverse())
        self.edges: dict[AnyProvider, list[AnyProvider]] = {
            p: [d for d in p.related if isinstance(d, providers.Provider)] for p in self.providers
        }
        for dependencies in list(self.edges.values()):
            for dependency in dependencies:  # ``traverse`` already reaches them; be safe
                self.edges.setdefault(dependency, [])
        self._order: list[Resource] | None = None

    def _name_tree(self, container: containers.Container, prefix: str, *, telemetry: bool) -> None:
        for attribute, provider in container.providers.items():
            self.names.setdefault(provider, prefix + attribute)
            if telemetry and isinstance(provider, providers.BaseResource):
                self.telemetry.add(provider)
            if isinstance(provider, providers.Container):
                nested = provider.container
                self._name_tree(
                    nested,
                    f"{prefix}{attribute}.",
                    telemetry=telemetry or _is_observability(nested),
                )

    def name(self, provider: AnyProvider) -> str:
        """The provider's dotted path in the container, or a description of it."""
        known = self.names.get(provider)
        if known is not None:
            return known
        provides = getattr(provider, "provides", None)
        label = getattr(provides, "__qualname__", None)
        return f"{type(provider).__name__}({label})" if label else type(provider).__name__

    # ------------------------------------------------------------------- validation
    def validate(self) -> None:
        self._check_cycles()
        check_wiring_is_not_shared(self.container, _wired_modules(self.container))
        self._check_markers()
        try:
            self.container.check_dependencies()
        except errors.Error as exc:
            raise StartupError(str(exc), component="containers") from exc

    def _check_cycles(self) -> None:
        try:
            TopologicalSorter(self.edges).prepare()
        except CycleError as exc:
            cycle: list[AnyProvider] = exc.args[1]
            # graphlib lists the cycle from a dependency to its dependant; show "needs".
            path = " -> ".join(self.name(p) for p in reversed(cycle))
            raise StartupError(
                f"dependency cycle among the providers: {path}",
                component="containers",
                details={"cycle": path},
            ) from None

    def _check_markers(self) -> None:
        markers = list(_markers(_wired_modules(self.container)))
        if not markers:
            return
        # dependency-injector's own resolver, the one wire() binds with: what it cannot
        # resolve is exactly what wire() silently left as a marker.
        mapping = wiring.ProvidersMap(self.container)
        known = sorted(self.names.values())
        problems: list[str] = []
        for where, marker in markers:
            try:
                found = mapping.resolve_provider(marker.provider, marker.modifier)
            except Exception:  # noqa: BLE001 - a modifier that cannot apply: unresolved too
                found = None
            if found is not None:
                continue
            wanted = (
                marker.provider if isinstance(marker.provider, str) else self.name(marker.provider)
            )
            import difflib  # noqa: PLC0415 - only on this error path

            close = difflib.get_close_matches(wanted, known, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(f"{where}: {type(marker).__name__}[{wanted!r}]{hint}")
        if problems:
            raise StartupError(
                "wired markers name no provider of the container: " + "; ".join(problems),
                component="containers",
                details={"unresolved": problems},
            )

    # ------------------------------------------------------------------- ordering
    def depends_on(self, provider: AnyProvider) -> set[AnyProvider]:
        """Every provider ``provider`` reaches through the graph (not itself)."""
        seen: set[AnyProvider] = set()
        stack = list(self.edges.get(provider, ()))
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(self.edges.get(node, ()))
        seen.discard(provider)
        return seen

    def start_order(self) -> list[Resource]:
        """Every resource, each after all the resources it depends on; observability's
        (and what they depend on) first. Deterministic: ties keep the traversal order."""
        if self._order is not None:
            return self._order
        resources: list[Resource] = [
            p for p in self.providers if isinstance(p, providers.BaseResource)
        ]
        needs: dict[Resource, set[Resource]] = {
            r: {d for d in self.depends_on(r) if isinstance(d, providers.BaseResource)}
            for r in resources
        }
        early: set[AnyProvider] = set(self.telemetry)
        for resource in resources:
            if resource in self.telemetry:
                early |= needs[resource]
        position = {r: i for i, r in enumerate(resources)}
        # graphlib orders; picking among the ready ones is ours: telemetry first, then the
        # traversal order, so the order is the same on every run.
        sorter = TopologicalSorter(needs)
        sorter.prepare()
        ready: list[Resource] = []
        order: list[Resource] = []
        while sorter.is_active():
            ready.extend(sorter.get_ready())
            ready.sort(key=lambda r: (r not in early, position[r]))
            chosen = ready.pop(0)
            order.append(chosen)
            sorter.done(chosen)
        self._order = order
        return order

    def path_to(self, target: AnyProvider) -> list[AnyProvider]:
        """The longest of the shortest paths from a resource that needs ``target`` down to
        it (``[target]`` when no resource needs it)."""
        best = [target]
        for resource in self.start_order():
            if resource is target:
                continue
            path = self._shortest_path(resource, target)
            if path is not None and len(path) > len(best):
                best = path
        return best

    def _shortest_path(self, source: AnyProvider, target: AnyProvider) -> list[AnyProvider] | None:
        previous: dict[AnyProvider, AnyProvider | None] = {source: None}
        queue = deque([source])
        while queue:
            node = queue.popleft()
            if node is target:
                path = [node]
                while (before := previous[path[-1]]) is not None:
                    path.append(before)
                return path[::-1]
            for dependency in self.edges.get(node, ()):
                if dependency not in previous:
                    previous[dependency] = node
                    queue.append(dependency)
        return None


def _is_observability(container: containers.Container) -> bool:
    parent = getattr(container, "declarative_parent", None) or type(container)
    return isinstance(parent, type) and issubclass(parent, ObservabilityContainer)


# ------------------------------------------------------------------------ wiring markers
# Classes at runtime; dependency-injector types them as marker instances for checkers.
_MARKERS: tuple[type[Any], ...] = cast(
    "tuple[type[Any], ...]", (wiring.Provide, wiring.Provider, wiring.Closing)
)
_CLOSING: type[Any] = cast("type[Any]", wiring.Closing)


def check_wiring_is_not_shared(
    container: containers.Container, modules: Iterable[ModuleType | str]
) -> None:
    """Raise :class:`StartupError` if one of ``modules`` is wired to another container that
    is running (started, not stopped, its event loop not closed).

    ``@inject`` markers belong to the module, not to a container: the last ``wire()``
    wins, so the running container's handlers would silently read this one's adapters,
    and this one's ``unwire()`` would leave them with bare ``Provide`` markers
    (``'Provide' object has no attribute ...`` at the next request). ``start`` and the web
    integrations' ``serving`` (before it wires) call this.
    """
    names = {m if isinstance(m, str) else m.__name__ for m in modules}
    if not names:
        return
    for other, loop in list(_running.items()):
        if other is container or loop.is_closed():
            continue  # a container whose loop has closed serves nothing any more
        shared = sorted(names & {m.__name__ for m in _wired_modules(other)})
        if shared:
            raise StartupError(
                f"module(s) {', '.join(shared)} are wired to another running container "
                f"({_kind(other)} at {id(other):#x}); @inject markers belong to the "
                "module, so its handlers would use this container from now on, and lose "
                "their dependencies when it unwires. Wire a module to one running container "
                "at a time (stop the other first), or resolve from each app's own container "
                "(FastAPI: provided(...) aliases; aiohttp: request.app[CONTAINER])",
                component="containers",
                details={"modules": shared},
            )


def _kind(container: containers.Container) -> str:
    """The container's declarative class name (an instance is a ``DynamicContainer``)."""
    parent = getattr(container, "declarative_parent", None)
    return getattr(parent, "__name__", type(container).__name__)


def _wired_modules(container: containers.Container) -> list[ModuleType]:
    modules: list[ModuleType] = list(getattr(container, "wired_to_modules", ()))
    for package in getattr(container, "wired_to_packages", ()):
        modules.append(package)
        prefix = package.__name__ + "."
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), prefix):
            module = sys.modules.get(info.name)  # wire() imported each one
            if module is not None:
                modules.append(module)
    return modules


def _markers(modules: Iterable[ModuleType]) -> Iterator[tuple[str, Any]]:
    """``(where, marker)`` for every marker wire() looks at in ``modules``: parameters of
    functions and methods (default or ``Annotated``) and module or class attributes."""
    for module in modules:
        for name, member in list(vars(module).items()):
            where = f"{module.__name__}.{name}"
            if isinstance(member, _MARKERS):
                yield where, _unwrap(member)
            elif inspect.isclass(member) and member.__module__ == module.__name__:
                for attribute, value in list(vars(member).items()):
                    if isinstance(value, _MARKERS):
                        yield f"{where}.{attribute}", _unwrap(value)
                    elif isinstance(value, (staticmethod, classmethod)):
                        yield from _parameter_markers(f"{where}.{attribute}", value.__func__)
                    elif inspect.isfunction(value):
                        yield from _parameter_markers(f"{where}.{attribute}", value)
            elif callable(member) and getattr(member, "__module__", None) == module.__name__:
                yield from _parameter_markers(where, member)


def _parameter_markers(where: str, function: Any) -> Iterator[tuple[str, Any]]:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return
    for parameter in signature.parameters.values():
        candidates = [parameter.default]
        if get_origin(parameter.annotation) is Annotated:
            candidates.extend(get_args(parameter.annotation)[1:])
        for candidate in candidates:
            if isinstance(candidate, _MARKERS):
                yield f"{where}({parameter.name})", _unwrap(candidate)


def _unwrap(marker: Any) -> Any:
    """``Closing[Provide[...]]`` names the provider of the marker it wraps."""
    while isinstance(marker, _CLOSING) and isinstance(marker.provider, _MARKERS):
        marker = marker.provider
    return marker


# ------------------------------------------------------------------------ start and stop
async def _bounded(result: Any, timeout: float) -> None:
    """Await ``result`` (a resource's init or shutdown) within ``timeout`` seconds; a
    synchronous resource returned its value already."""
    if inspect.isawaitable(result):
        async with asyncio.timeout(timeout):
            await result


async def _stop(container: containers.Container, graph: _Graph, timeout: float) -> list[Exception]:
    failures: list[Exception] = []

    async def shutdown_all() -> None:
        failures.extend(await _shutdown_in_reverse(graph, timeout))

    await _handout.unpin(container, shutdown_all)
    return failures


async def _shutdown_in_reverse(graph: _Graph, timeout: float) -> list[Exception]:
    # Written here rather than dependency-injector's shutdown_resources(): that orders by
    # direct dependencies only (a resource reached through a Factory closes in the same
    # round as what it is built on) and stops at the first failing cleanup. The order is
    # the start order reversed; every resource is attempted, each failure collected.
    failures: list[Exception] = []
    for resource in reversed(graph.start_order()):
        if not resource.initialized:
            continue
        try:
            await _bounded(resource.shutdown(), timeout)
        except Exception as exc:  # noqa: BLE001 - collected, logged, raised together
            if isinstance(exc, TimeoutError):
                exc = TimeoutError(f"{graph.name(resource)} did not stop within {timeout}s")
            exc.add_note(f"while shutting down {graph.name(resource)}")
            _log.warning("shutting down %s failed", graph.name(resource), exc_info=exc)
            failures.append(exc)
    return failures


async def _ping(container: containers.Container, graph: _Graph, deadline: float) -> None:
    """Every started adapter with a ``health_check``, at once, within ``deadline``."""
    adapters: dict[int, tuple[str, Any]] = {}
    for provider in [*graph.start_order(), *_handout.handed_out(container)]:
        value = provider()
        if not inspect.isawaitable(value) and callable(getattr(value, "health_check", None)):
            adapters.setdefault(id(value), (graph.name(provider), value))

    async def check(adapter: Any) -> Any:
        async with asyncio.timeout(deadline):
            return await adapter.health_check()

    results = await asyncio.gather(
        *(check(adapter) for _, adapter in adapters.values()), return_exceptions=True
    )
    unhealthy: dict[str, str] = {}
    causes: list[Exception] = []
    for (name, _), result in zip(adapters.values(), results, strict=True):
        if isinstance(result, TimeoutError):
            unhealthy[name] = f"no answer within {deadline}s"
        elif isinstance(result, Exception):
            unhealthy[name] = f"{type(result).__name__}: {result}"
            causes.append(result)
        elif isinstance(result, BaseException):
            raise result
        elif not _healthy(result):
            details = result[1] if isinstance(result, tuple) and len(result) > 1 else result
            unhealthy[name] = str(details)
    if unhealthy:
        raise _PingError(unhealthy, causes)


def _healthy(result: Any) -> bool:
    """A ``health_check`` answer: an ``(ok, details)`` pair, or anything truthy when ok."""
    if isinstance(result, tuple) and result:
        return bool(result[0])
    return bool(result)


class _PingError(Exception):
    def __init__(self, unhealthy: dict[str, str], causes: list[Exception]) -> None:
        super().__init__(unhealthy)
        self.unhealthy = unhealthy
        self.causes = causes


def _cause(exc: Exception) -> BaseException | None:
    """What the ``StartupError`` is chained to: the real error, not our wrappers."""
    if isinstance(exc, _handout.BuildError):
        return exc.__cause__
    if isinstance(exc, _PingError):
        return ExceptionGroup("startup ping failed", exc.causes) if exc.causes else None
    return exc


def _startup_error(
    graph: _Graph,
    *,
    exc: Exception,
    failed: AnyProvider | None,
    rolled_back: list[str],
    failures: list[Exception],
    timeout: float,
) -> StartupError:
    details: dict[str, Any] = {"rolled_back": rolled_back}
    if failures:
        details["rollback_failures"] = [str(f) or type(f).__name__ for f in failures]
    if isinstance(exc, _PingError):
        details["unhealthy"] = exc.unhealthy
        listed = "; ".join(f"{name}: {why}" for name, why in exc.unhealthy.items())
        return StartupError(
            f"startup ping failed for {len(exc.unhealthy)} provider(s): {listed}",
            component="containers",
            details=details,
        )
    if isinstance(exc, _handout.BuildError):
        failed = exc.provider
    cause = _cause(exc) or exc
    if isinstance(cause, TimeoutError):
        details["timeout"] = timeout
        reason = f"did not start within {timeout}s"
    else:
        reason = f"failed to start: {type(cause).__name__}: {cause}"

    if failed is None:
        return StartupError(f"start failed: {reason}", component="containers", details=details)
    path = " -> ".join(graph.name(p) for p in graph.path_to(failed))
    details.update(resource=graph.name(failed), dependency_path=path)
    return StartupError(
        f"{graph.name(failed)} {reason} (dependency path: {path})",
        component="containers",
        details=details,
    )


def _check_timeout(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0 < value < float("inf")):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")

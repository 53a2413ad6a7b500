"""Hand out started resources, and the singletons built on them, without a ``Future``.

dependency-injector puts every provider that depends on an asynchronous ``Resource`` in
*async mode*: from then on each call returns a new ``Future``, even once the value exists,
and ``@inject`` awaits such a provider through ``asyncio.gather`` -- tasks and several
event-loop iterations for every injection (25-97 us per call, against 0.12 us for a plain
call). Once :func:`containers.lifecycle.start` has initialised the resources, their
values cannot change until :func:`containers.lifecycle.stop`, so there is nothing to wait
for. :func:`pin` therefore, right after ``init_resources()``:

1. finds every provider that depends -- transitively, through any provider kind and any
   override -- on an asynchronous resource, the resources included;
2. builds each ``Singleton`` among them that is not built yet (awaited once), so no
   singleton is first built later on top of providers still in async mode;
3. switches those resources and singletons to sync mode with dependency-injector's
   documented ``disable_async_mode()``: a call returns the stored value, the same object
   every time, and ``@inject`` passes it straight through (no ``Future``, no ``gather``).

So after ``start()`` a started adapter is a plain value: ``app.postgres.store()`` returns
the store (before ``start()``, or after ``stop()``, ``await app.postgres.store()``
initialises it lazily, as dependency-injector always did). Providers of other kinds are
left as they are: a ``Factory`` builds per call by definition.

:func:`unpin` (run by ``stop()``) puts everything back: it returns the pinned providers to
the mode ``start()`` left them in, shuts the resources down (in reverse dependency order,
by :mod:`containers.lifecycle`), resets every singleton built on an asynchronous resource
-- pinned by ``start()``, built lazily without one, or built before a ``start()`` that
failed: they hold objects the shutdown just closed, so the next use or ``start()`` builds
them on the new resources -- and finally restores every provider's async mode to what
``start()`` found. Overrides
(``use_fakes``, ``provider.override``) are never touched: an override entered after
``start()`` is handed out through the pinned provider, synchronously, and leaving it
brings back the started value.

:func:`declare_async` (run by ``ApplicationContainer()``) puts the providers on an
asynchronous resource in async mode at construction instead of at their first call, so
the order of overrides and first calls cannot leave one in sync mode before ``start()``.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from dependency_injector import containers, providers, resources

__all__ = [
    "BuildError",
    "ModeSnapshot",
    "declare_async",
    "handed_out",
    "mode_of",
    "pin",
    "record",
    "restore_modes",
    "set_mode",
    "snapshot",
    "started_since",
    "unpin",
]

Mode = Literal["enabled", "disabled", "undefined"]
AnyProvider: TypeAlias = "providers.Provider[Any]"

#: Provider kinds whose value is stored once and shared by every caller (thread- or
#: context-local variants hold one value per thread/context and are left alone).
_STORED = (providers.Resource, providers.Singleton, providers.ThreadSafeSingleton)
_SINGLETONS = (providers.Singleton, providers.ThreadSafeSingleton)


@dataclass(slots=True)
class _Record:
    """What ``start()`` changed on one container, so ``stop()`` can undo exactly that."""

    found: dict[AnyProvider, Mode]
    started: dict[AnyProvider, Mode] = field(default_factory=dict)
    #: Other providers on a started resource (List, Factory, ...) whose async mode was
    #: put back to "undefined", with the mode they had.
    relaxed: dict[AnyProvider, Mode] = field(default_factory=dict)
    singletons: list[providers.BaseSingleton[Any]] = field(default_factory=list)


# One record per started container; weak, so a container dropped without stop() is freed.
_records: weakref.WeakKeyDictionary[containers.Container, _Record] = weakref.WeakKeyDictionary()


def mode_of(provider: AnyProvider) -> Mode:
    """The provider's async mode as dependency-injector tracks it."""
    if provider.is_async_mode_enabled():
        return "enabled"
    if provider.is_async_mode_disabled():
        return "disabled"
    return "undefined"


def set_mode(provider: AnyProvider, mode: Mode) -> None:
    """Put ``provider`` back in ``mode`` (see :func:`mode_of`)."""
    if mode == "enabled":
        provider.enable_async_mode()
    elif mode == "disabled":
        provider.disable_async_mode()
    else:
        provider.reset_async_mode()


def record(container: containers.Container) -> None:
    """Remember every provider's async mode before ``start()`` (a second start keeps the
    first record: ``stop()`` restores the state found before the first one)."""
    if container not in _records:
        _records[container] = _Record({p: mode_of(p) for p in _graph(container)})


class BuildError(Exception):
    """Building ``provider`` (a singleton on a started resource) failed; the cause is
    chained. :func:`containers.lifecycle.start` turns it into a ``StartupError``."""

    def __init__(self, provider: AnyProvider) -> None:
        super().__init__(provider)
        self.provider = provider


async def pin(container: containers.Container, *, timeout: float | None = None) -> None:
    """Build and pin what depends on a started async resource; see the module docstring.
    Each build waits at most ``timeout`` seconds; a failure raises :class:`BuildError`."""
    entry = _records[container]
    bound = list(_resource_bound(_graph(container)))
    for provider in bound:
        if not isinstance(provider, _STORED):
            continue
        try:
            value = provider()
            if inspect.isawaitable(value):
                async with asyncio.timeout(timeout):
                    await value
        except Exception as exc:
            raise BuildError(provider) from exc
        if provider not in entry.started:
            entry.started[provider] = mode_of(provider)
            if isinstance(provider, _SINGLETONS):
                entry.singletons.append(provider)
    for provider in entry.started:
        provider.disable_async_mode()
    # A List, Dict, Factory ... on the started resources stays in async mode after its
    # first call before start(): it would wrap every later (now synchronous) value in a
    # Future, and so would anything built on it after start(), e.g. an override entered
    # then. Its dependencies are plain values now: let its next call decide again.
    for provider in bound:
        if provider not in entry.started and provider.is_async_mode_enabled():
            entry.relaxed.setdefault(provider, "enabled")
            provider.reset_async_mode()


def handed_out(container: containers.Container) -> list[AnyProvider]:
    """The providers :func:`pin` switched to handing out their stored value."""
    entry = _records.get(container)
    return [] if entry is None else list(entry.started)


async def unpin(container: containers.Container, shutdown: Callable[[], Awaitable[None]]) -> None:
    """Shut the resources down with ``shutdown`` (:mod:`containers.lifecycle` passes its
    ordered shutdown) and leave every provider as ``start()`` found it, even when
    ``shutdown`` raises."""
    entry = _records.pop(container, None)
    if entry is not None:
        for provider, mode in [*entry.started.items(), *entry.relaxed.items()]:
            set_mode(provider, mode)  # async again, so the shutdown awaits their cleanup
    # Every singleton built on a resource holds what the shutdown is about to close: the
    # pinned ones, and also those built lazily (before a start, or without one) or before
    # a start that failed and is being rolled back. All are reset, so the next use or
    # start() builds them on new resources instead of handing out a closed client.
    stale: list[providers.BaseSingleton[Any]] = [
        p for p in _resource_bound(_graph(container)) if isinstance(p, _SINGLETONS)
    ]
    if entry is not None:
        stale.extend(entry.singletons)
    try:
        await shutdown()
    finally:
        for singleton in dict.fromkeys(stale):
            singleton.reset()
        if entry is not None:
            for provider, mode in entry.found.items():
                set_mode(provider, mode)


@dataclass(frozen=True, slots=True)
class ModeSnapshot:
    """Every provider's async mode at one moment, and the ``start()`` in effect then; for
    code that changes providers for a while and must put them back (``use_fakes``)."""

    modes: dict[AnyProvider, Mode]
    started: _Record | None
    #: The modes to have while not started: for a started container, what its stop()
    #: will restore.
    base: dict[AnyProvider, Mode]


def snapshot(container: containers.Container) -> ModeSnapshot:
    """The async mode of every provider of ``container`` now (see :func:`restore_modes`)."""
    entry = _records.get(container)
    modes = {p: mode_of(p) for p in _graph(container)}
    base = modes if entry is None else {p: entry.found.get(p, m) for p, m in modes.items()}
    return ModeSnapshot(modes, entry, base)


def started_since(container: containers.Container, taken: ModeSnapshot) -> bool:
    """Whether a ``start()`` that began after ``taken`` is in effect."""
    entry = _records.get(container)
    return entry is not None and entry is not taken.started


def restore_modes(
    container: containers.Container,
    taken: ModeSnapshot,
    replaced: Iterable[AnyProvider] = (),
) -> None:
    """Put the providers of ``taken`` back in their modes without undoing a ``start()``:

    * not started now: every provider gets the mode it has while not started;
    * started since ``taken`` (inside the block): the providers ``start()`` hands out keep
      their mode until ``stop()``, which then restores the modes of ``taken`` (not the
      ones ``start()`` found, which the block may have changed); the others get theirs;
    * started across: the providers it hands out stay as they are, the others get the
      mode they had in ``taken``.

    ``replaced`` are providers whose override just ended: if a start since ``taken``
    pinned them, it pinned the override's value, so they are unpinned and go back to
    lazy (their real value is built on first use and closed by ``stop()``).
    """
    entry = _records.get(container)
    if entry is None:
        for provider, mode in taken.base.items():
            set_mode(provider, mode)
        return
    same_start = entry is taken.started
    if not same_start:
        entry.found.update(taken.base)
        for provider in replaced:
            if entry.started.pop(provider, None) is not None and provider in entry.singletons:
                entry.singletons.remove(provider)
    for provider, mode in taken.modes.items():
        if provider not in entry.started:
            set_mode(provider, mode if same_start else taken.base[provider])


def declare_async(container: containers.Container) -> None:
    """Put every provider that depends on an asynchronous resource (and the resources) in
    async mode now, instead of at its first call.

    dependency-injector decides a provider's async mode at its first call, from the value
    it gets: a provider first called while overridden by a plain value (``override``,
    ``use_fakes``) is switched to sync mode for good, and once the override is reset it
    passes its asynchronous dependencies on as ``Future`` objects (a store built with a
    ``Future`` for its policy). Declared up front, the mode no longer depends on the order
    of overrides and calls; :func:`pin` still hands the started values out synchronously.
    """
    for provider in _resource_bound(_graph(container), declared=True):
        if mode_of(provider) == "undefined" and not isinstance(provider, providers.Container):
            provider.enable_async_mode()


def _graph(container: containers.Container) -> list[AnyProvider]:
    """Every provider of ``container``, nested containers and overrides included."""
    return list(container.traverse(types=[providers.Provider]))


def _resource_bound(
    graph: Iterable[AnyProvider], *, declared: bool = False
) -> Iterator[AnyProvider]:
    """The providers of ``graph`` that depend on an asynchronous resource (or are one),
    dependencies before dependants, so a singleton is built after what it is built on.
    A resource is asynchronous once in async mode or, with ``declared``, when its
    initialiser is asynchronous (before its first call)."""
    bound: dict[AnyProvider, bool] = {}
    visiting: set[AnyProvider] = set()

    def visit(provider: AnyProvider) -> bool:
        if provider in bound:
            return bound[provider]
        if provider in visiting:  # a cycle: dependency-injector reports it when resolving
            return False
        visiting.add(provider)
        result = False
        for dependency in provider.related:
            result = visit(dependency) or result
        visiting.discard(provider)
        if isinstance(provider, providers.Resource) and (
            provider.is_async_mode_enabled() or (declared and _async_initialiser(provider))
        ):
            result = True
        bound[provider] = result
        return result

    for provider in graph:
        visit(provider)
    # ``bound`` is filled in post-order: every provider after its dependencies.
    return (provider for provider, is_bound in bound.items() if is_bound)


def _async_initialiser(resource: providers.Resource[Any]) -> bool:
    """Whether the resource's initialiser is asynchronous (an async generator or coroutine
    function, an ``AsyncResource`` class or an async context manager class):
    dependency-injector switches such a resource to async mode at its first call. It
    keeps an async generator function as ``asynccontextmanager(function)``, hence the
    unwrapping."""
    provides = resource.provides
    if inspect.isclass(provides):
        return issubclass(provides, resources.AsyncResource) or hasattr(provides, "__aenter__")
    if provides is None:
        return False
    original = inspect.unwrap(provides)
    return inspect.isasyncgenfunction(original) or inspect.iscoroutinefunction(original)

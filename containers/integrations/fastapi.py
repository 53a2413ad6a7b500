"""FastAPI (and Starlette): a lifespan, async dependency aliases, an error-handler installer.

::

    from fastapi import FastAPI
    from containers.integrations.fastapi import (
        StoreDep, ThreeTierDep, install_error_handlers, lifespan,
    )

    container = ApplicationContainer()
    app = FastAPI(lifespan=lifespan(container, ping=True, on_startup=create_schema))
    install_error_handlers(app)

    @app.get("/notes/{note_id}")
    async def get_note(note_id: int, store: StoreDep, cache: ThreeTierDep) -> Note: ...

**The lifespan** (:func:`lifespan`) is :func:`containers.integrations.serving.serving` in
FastAPI's shape: it first checks that every dependency alias the app's routes use names
a provider of ``container`` (a typo fails at startup with the closest names, not at the
first request), then wires ``wire``, starts the container with rollback (``ping=True``:
every backend must answer its health check within ``ping_timeout`` before the server
accepts traffic), starts the 3-tier caches, awaits ``on_startup(container)``, and puts
the container on ``app.state.container``. On shutdown it stops the container (reverse
order, every resource attempted) and takes it off ``app.state``. A container that is
already started (the test kit's ``semantica_container``) is used as it is -- ``start()``
is then a no-op -- and is stopped with the app all the same (``stop()`` is idempotent).

**The dependency aliases** -- ``StoreDep`` (``postgres.store``), ``CacheDep``
(``redis.cache``), ``ThreeTierDep`` (``redis.three_tier``), ``LockDep`` (``redis.lock``),
``ContainerDep``, and :func:`provided` for any other provider (``Annotated[Repo,
provided("repo")]`` or ``provided(MyContainer.repo)``) -- are ``async`` dependencies that
read the container of the app serving the request (``request.app.state.container``), so
two apps in one process (or a test's app under fakes) each get their own, and nothing
is global. The provider is looked up once per container and remembered; a request then
costs one call of the started provider (what :func:`containers.lifecycle.resolve` does:
the same on fakes and real servers, started or not).

Why not dependency-injector's ``Depends(Provide[...])`` idiom: FastAPI sees the
``Provide`` marker as a *synchronous* dependency and runs it in its worker-thread pool,
one thread hop per injected parameter on every request (``benchmarks/bench_fastapi.py``
measures what that costs); and in that worker thread a container that is not started
cannot create its resources (there is no event loop). These aliases are coroutines:
they run on the event loop, with no hop.

**Synchronous routes.** A ``def`` route (not ``async def``) runs in a worker thread. The
aliases still resolve on the event loop, so such a route receives its adapter without
failing, on fakes and on real servers alike -- but the adapters' methods are coroutines,
which a worker thread cannot await. Declare every route that talks to a backend ``async
def``.

**Errors** (:func:`install_error_handlers`): our errors answer JSON, mapped by
:func:`containers.integrations.http_errors.error_answer` -- a caller error 409/422, a
backend outage 503 with ``Retry-After`` when known, anything else of ours 500; other
exceptions keep FastAPI's own handling.

FastAPI and Starlette are imported by this module only (``pip install
'semantica-infra[fastapi]'``); nothing else in the library imports it.
"""

from __future__ import annotations

import difflib
import inspect
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import ModuleType
from typing import Annotated, Any, TypeAlias, TypeVar

from dependency_injector import containers, providers, wiring
from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.responses import Response

from containers.integrations.http_errors import error_answer
from containers.integrations.serving import StartupHook, serving
from containers.lifecycle import DEFAULT_PING_TIMEOUT, DEFAULT_TIMEOUT
from infra.cache import ThreeTierCache
from infra.exceptions import ConfigurationError, InfraError, InvalidArgumentError, StartupError
from infra.ports import CacheStore, DistributedLock, RelationalStore

__all__ = [
    "CacheDep",
    "ContainerDep",
    "LockDep",
    "StoreDep",
    "ThreeTierDep",
    "check_dependencies",
    "container_of",
    "install_error_handlers",
    "lifespan",
    "provided",
]

C = TypeVar("C", bound=containers.Container)
Target: TypeAlias = "str | providers.Provider[Any]"
Dependency: TypeAlias = Callable[[HTTPConnection], Awaitable[Any]]

_COMPONENT = "containers"
# Each alias's dependency function -> the provider it names, for the startup check.
_TARGETS: weakref.WeakKeyDictionary[Callable[..., Any], Target] = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------------ lifespan
def lifespan(
    container: C,
    *,
    wire: Iterable[ModuleType | str] = (),
    ping: bool = False,
    ping_timeout: float = DEFAULT_PING_TIMEOUT,
    timeout: float = DEFAULT_TIMEOUT,
    on_startup: StartupHook[C] | None = None,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """``FastAPI(lifespan=lifespan(container, ...))``: see the module docstring.

    Args:
        container: The application's container (its own instance: not shared with
            another app).
        wire: Modules to ``wire()`` for ``@inject`` handlers, unwired on shutdown.
        ping: Fail fast: every started backend must answer its health check within
            ``ping_timeout`` seconds, or the start is rolled back and fails.
        timeout: Seconds each resource may take to start, and to stop.
        on_startup: Awaited with the started container before the first request (create
            a schema, warm a cache); if it raises, the container is stopped again.
    """
    modules = list(wire)

    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        check_dependencies(app, container)
        async with serving(
            container,
            wire=modules,
            ping=ping,
            ping_timeout=ping_timeout,
            timeout=timeout,
            on_startup=on_startup,
        ):
            app.state.container = container
            try:
                yield
            finally:
                del app.state.container

    return run


def check_dependencies(app: Starlette, container: containers.Container) -> None:
    """Raise :class:`~infra.exceptions.StartupError` when a dependency alias used by one
    of ``app``'s routes names no provider of ``container`` (the lifespan calls this)."""
    problems = []
    for where, target in _targets_of(app):
        try:
            _find(container, target)
        except ConfigurationError as exc:
            problems.append(f"{where}: {exc.message}")
    if problems:
        raise StartupError(
            "dependencies name no provider of the container: " + "; ".join(problems),
            component=_COMPONENT,
            details={"unresolved": problems},
        )


def _targets_of(app: Starlette) -> Iterator[tuple[str, Target]]:
    for route in app.routes:
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        stack = list(dependant.dependencies)
        while stack:
            sub = stack.pop()
            stack.extend(sub.dependencies)
            target = _TARGETS.get(sub.call) if sub.call is not None else None
            if target is not None:
                yield f"{getattr(route, 'path', route)!s}({sub.name})", target


# -------------------------------------------------------------------------- dependencies
def _no_container() -> ConfigurationError:
    return ConfigurationError(
        "no container on app.state: create the app with "
        "FastAPI(lifespan=lifespan(container)), or set app.state.container yourself",
        component=_COMPONENT,
    )


async def container_of(connection: HTTPConnection) -> Any:
    """A dependency: the container of the app serving this request."""
    try:
        return connection.app.state.container
    except AttributeError:
        raise _no_container() from None


def _provider_paths(container: containers.Container, prefix: str = "") -> Iterator[str]:
    for name, provider in container.providers.items():
        yield prefix + name
        if isinstance(provider, providers.Container):
            yield from _provider_paths(provider.container, f"{prefix}{name}.")


def _find(container: containers.Container, target: Target) -> providers.Provider[Any]:
    """The provider of ``container`` that ``target`` names (a dotted path, or a provider
    of the container's declarative class), or a ``ConfigurationError`` with hints."""
    if isinstance(target, str):
        found: Any = container
        for part in target.split("."):
            found = getattr(found, part, None)
            if found is None:
                break
        if isinstance(found, providers.Provider):
            return found
        close = difflib.get_close_matches(target, list(_provider_paths(container)), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigurationError(
            f"{target!r} names no provider of {type(container).__name__}{hint}",
            component=_COMPONENT,
        )
    resolved = wiring.ProvidersMap(container).resolve_provider(target, None)
    if resolved is None:
        raise ConfigurationError(
            f"{target!r} is not a provider of {type(container).__name__} (pass a provider "
            "of the container's class, or its dotted path)",
            component=_COMPONENT,
        )
    found_provider: providers.Provider[Any] = resolved
    return found_provider


def _dependency(target: Target) -> Dependency:
    """An async dependency resolving ``target`` from the request's app's container."""
    cached_for: weakref.ref[containers.Container] | None = None
    cached: providers.Provider[Any] | None = None

    async def resolve_from_app_container(connection: HTTPConnection) -> Any:
        nonlocal cached_for, cached
        try:
            container = connection.app.state.container
        except AttributeError:
            raise _no_container() from None
        provider = cached
        if provider is None or cached_for is None or cached_for() is not container:
            provider = cached = _find(container, target)
            cached_for = weakref.ref(container)
        # lifecycle.resolve() inlined: this runs on every request.
        value = provider()
        if inspect.isawaitable(value):
            value = await value
        return value

    _TARGETS[resolve_from_app_container] = target
    return resolve_from_app_container


def provided(target: Target) -> Any:
    """``Depends`` on the provider ``target`` names in the app's own container:
    ``repo: Annotated[Repo, provided("repo")]`` (a dotted path) or
    ``provided(MyContainer.repo)`` (a provider of the container's class).

    Raises:
        InvalidArgumentError: ``target`` is neither a non-empty dotted path nor a provider.
    """
    if isinstance(target, str):
        if not target or not all(part.isidentifier() for part in target.split(".")):
            raise InvalidArgumentError(
                f"target must be a dotted provider path such as 'postgres.store', got {target!r}",
                argument="target",
                component=_COMPONENT,
            )
    elif not isinstance(target, providers.Provider):
        raise InvalidArgumentError(
            f"target must be a provider or its dotted path, got {type(target).__name__}",
            argument="target",
            component=_COMPONENT,
        )
    return Depends(_dependency(target))


#: The PostgreSQL store (``postgres.store``) of the app's container.
StoreDep = Annotated[RelationalStore, provided("postgres.store")]
#: The Redis cache (``redis.cache``).
CacheDep = Annotated[CacheStore, provided("redis.cache")]
#: The coherent 3-tier cache (``redis.three_tier``).
ThreeTierDep = Annotated[ThreeTierCache, provided("redis.three_tier")]
#: The Redis distributed lock (``redis.lock``).
LockDep = Annotated[DistributedLock, provided("redis.lock")]
#: The app's container itself.
ContainerDep = Annotated[Any, Depends(container_of)]


# -------------------------------------------------------------------------------- errors
async def _answer_infra_error(_request: Request, exc: Exception) -> Response:
    answer = error_answer(exc)
    if answer is None:  # registered for InfraError only; anything else is not ours
        raise exc
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


def install_error_handlers(app: Starlette) -> None:
    """Answer our errors as :mod:`containers.integrations.http_errors` maps them (JSON,
    409/422 for caller errors, 503 with ``Retry-After`` for outages)."""
    app.add_exception_handler(InfraError, _answer_infra_error)

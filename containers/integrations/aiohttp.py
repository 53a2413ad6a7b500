"""aiohttp: the container's lifecycle as a ``cleanup_ctx``, our errors as a middleware.

::

    from aiohttp import web
    from containers.integrations.aiohttp import CONTAINER, cleanup_ctx, error_middleware

    container = ApplicationContainer()
    app = web.Application(middlewares=[error_middleware])
    app.cleanup_ctx.append(cleanup_ctx(container, wire=[handlers], ping=True))

    async def handler(request: web.Request) -> web.Response:
        store = request.app[CONTAINER].postgres.store()   # or @inject + Provide[...]

:func:`cleanup_ctx` is :func:`containers.integrations.serving.serving` in aiohttp's shape:
on startup wire, start with rollback (``ping``: fail fast unless every backend answers),
start the 3-tier caches, await ``on_startup(container)``, and put the container under
``app[CONTAINER]``; on cleanup stop it (reverse order, every resource attempted) and
unwire. aiohttp runs cleanup contexts in reverse order of registration, so append this
one first: what is appended after it may use the started container and is cleaned up
before it stops.

:func:`error_middleware` answers our errors as
:func:`containers.integrations.http_errors.error_answer` maps them (JSON; 409/422 for a
caller error, 503 with ``Retry-After`` for an outage, 500 for anything else of ours);
everything else -- aiohttp's own ``HTTPException``\\ s included -- passes through.

aiohttp is imported by this module only; nothing else in the library imports it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import ModuleType
from typing import Any, TypeVar

from aiohttp import web
from dependency_injector import containers

from containers.integrations.http_errors import error_answer
from containers.integrations.serving import StartupHook, serving
from containers.lifecycle import DEFAULT_PING_TIMEOUT, DEFAULT_TIMEOUT

__all__ = ["CONTAINER", "cleanup_ctx", "error_middleware"]

C = TypeVar("C", bound=containers.Container)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Where the started container is kept: ``request.app[CONTAINER]``.
CONTAINER: web.AppKey[Any] = web.AppKey("semantica_container", object)


def cleanup_ctx(
    container: C,
    *,
    wire: Iterable[ModuleType | str] = (),
    ping: bool = False,
    ping_timeout: float = DEFAULT_PING_TIMEOUT,
    timeout: float = DEFAULT_TIMEOUT,
    on_startup: StartupHook[C] | None = None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """``app.cleanup_ctx.append(cleanup_ctx(container, ...))``; the arguments are those of
    :func:`containers.integrations.fastapi.lifespan` (see the module docstring)."""
    modules = list(wire)

    async def run(app: web.Application) -> AsyncIterator[None]:
        async with serving(
            container,
            wire=modules,
            ping=ping,
            ping_timeout=ping_timeout,
            timeout=timeout,
            on_startup=on_startup,
        ):
            app[CONTAINER] = container
            yield

    return run


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Our errors as JSON answers (see the module docstring); the rest passes through."""
    try:
        return await handler(request)
    except Exception as exc:
        answer = error_answer(exc)
        if answer is None:
            raise
        return web.json_response(answer.body, status=answer.status, headers=answer.headers)

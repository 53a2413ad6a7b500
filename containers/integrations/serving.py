"""What a web application's startup and shutdown do with its container, in one place.

::

    async with serving(container, wire=[handlers], ping=True, on_startup=create_schema):
        ...   # serve requests

On entry, in order: ``container.wire(modules=wire)``; :func:`containers.lifecycle.start`
(validation, dependency order, rollback of everything on any failure, and with ``ping``
a health check of every started backend within ``ping_timeout`` -- the fail-fast
connect); every started :class:`~infra.cache.ThreeTierCache` subscribes to its
invalidations (waiting up to ``ping_timeout``), so the first request is served from L1
like every later one; then ``on_startup(container)`` (create a schema, warm a cache).
If any step fails, what was started is stopped again and the error propagates: the
server never accepts traffic with a half-started container.

On exit: :func:`containers.lifecycle.stop` (reverse order, every resource attempted),
then ``unwire()``.

The FastAPI lifespan (:mod:`containers.integrations.fastapi`) and the aiohttp
``cleanup_ctx`` (:mod:`containers.integrations.aiohttp`) are this context manager in
their framework's shape.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import TypeVar

from dependency_injector import containers, providers

from containers.lifecycle import (
    DEFAULT_PING_TIMEOUT,
    DEFAULT_TIMEOUT,
    check_wiring_is_not_shared,
    start,
    stop,
)

__all__ = ["StartupHook", "serving", "start_caches"]

C = TypeVar("C", bound=containers.Container)
#: ``on_startup``: awaited with the started container before the first request.
StartupHook = Callable[[C], Awaitable[None]]

_log = logging.getLogger("containers.integrations")


@asynccontextmanager
async def serving(
    container: C,
    *,
    wire: Iterable[ModuleType | str] = (),
    ping: bool = False,
    ping_timeout: float = DEFAULT_PING_TIMEOUT,
    timeout: float = DEFAULT_TIMEOUT,
    on_startup: StartupHook[C] | None = None,
) -> AsyncIterator[C]:
    """Wire, start (with rollback), start the caches, run ``on_startup``; on exit stop
    and unwire. See the module docstring."""
    modules = list(wire)
    if modules:
        # Refused before wiring: wiring would already take the modules' @inject handlers
        # away from the running container that has them.
        check_wiring_is_not_shared(container, modules)
        container.wire(modules=modules)
    try:
        await start(container, timeout=timeout, ping=ping, ping_timeout=ping_timeout)
        try:
            await start_caches(container, timeout=ping_timeout)
            if on_startup is not None:
                await on_startup(container)
            yield container
        finally:
            await stop(container, timeout=timeout)
    finally:
        if modules:
            container.unwire()


async def start_caches(container: containers.Container, *, timeout: float) -> None:
    """``await cache.start(timeout)`` for every started 3-tier cache resource. A cache
    whose subscription is not confirmed in time is logged and keeps working (it starts
    on first use and serves L1 once subscribed)."""
    # Imported here: an application without Redis never loads the cache (or redis-py).
    from infra.cache import ThreeTierCache  # noqa: PLC0415

    for provider in container.traverse(types=[providers.Resource]):
        if not provider.initialized:
            continue
        value = provider()
        if isinstance(value, ThreeTierCache) and not await value.start(timeout):
            _log.warning(
                "3-tier cache %r: no coherence subscription within %ss; L1 joins in once "
                "it is confirmed",
                value.namespace,
                timeout,
            )

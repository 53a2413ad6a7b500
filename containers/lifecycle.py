"""Start and stop a container's resources with one awaitable, whatever they are.

dependency-injector's ``init_resources()`` / ``shutdown_resources()`` return an awaitable
only when at least one initialised resource is asynchronous, and ``None`` otherwise (for
example once ``containers.testing.use_fakes`` replaced every async client with a fake).
Application code should not have to know which: ``await start(app)`` / ``await stop(app)``
work in both cases. Each resource's own cleanup logs a failure and carries on (see the
backend containers), so one failing close does not leak the others.
"""

from __future__ import annotations

import inspect

from dependency_injector import containers

__all__ = ["start", "stop"]


async def start(container: containers.Container) -> None:
    """Initialise every resource of ``container`` (clients stay lazy where they can)."""
    result = container.init_resources()
    if inspect.isawaitable(result):
        await result


async def stop(container: containers.Container) -> None:
    """Shut down every initialised resource of ``container``."""
    result = container.shutdown_resources()
    if inspect.isawaitable(result):
        await result

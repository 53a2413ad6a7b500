"""Start and stop a container's resources with one awaitable, whatever they are.

``await start(app)`` initialises every resource (dependency-injector's
``init_resources()``), then hands the started values out synchronously: every started
asynchronous resource, and every singleton built on one, returns the same object on each
call -- no ``Future`` per call, and ``@inject`` passes it straight through (see
:mod:`containers._handout` for how and why). So after ``start()``::

    store = app.postgres.store()          # the store itself, not an awaitable

Before ``start()`` (or after ``stop()``) resources stay lazy: ``await
app.postgres.store()`` initialises one on first use, as dependency-injector always does.
Code that runs in both phases (a script, a test helper) uses :func:`resolve`, which
returns the value either way::

    store = await resolve(app.postgres.store)

``await stop(app)`` shuts every initialised resource down, resets the singletons built on
them (so a later ``start()`` builds them on the new resources) and leaves every provider's
async mode as ``start()`` found it. Stop with this function, not with
``shutdown_resources()``: while started, the resources are in sync mode and
dependency-injector would not await their asynchronous cleanup.

dependency-injector's ``init_resources()`` / ``shutdown_resources()`` return an awaitable
only when at least one initialised resource is asynchronous, and ``None`` otherwise (for
example once ``containers.testing.use_fakes`` replaced every async client with a fake);
these two functions work in both cases. Each resource's own cleanup logs a failure and
carries on (see the backend containers), so one failing close does not leak the others.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar, cast

from dependency_injector import containers, providers

from containers import _handout

__all__ = ["resolve", "start", "stop"]

T = TypeVar("T")


async def start(container: containers.Container) -> None:
    """Initialise every resource of ``container`` and hand the started values out
    synchronously (clients stay lazy where they can: no connection is opened here)."""
    _handout.record(container)
    result = container.init_resources()
    if inspect.isawaitable(result):
        await result
    await _handout.pin(container)


async def stop(container: containers.Container) -> None:
    """Shut down every initialised resource of ``container``; providers are left as
    ``start()`` found them."""
    await _handout.unpin(container)


async def resolve(provider: providers.Provider[T] | providers.Provider[Any]) -> T:
    """The provider's value, whether the container is started (a plain value) or not (an
    awaitable that initialises the resources it needs on first use)."""
    value: Any = provider()
    if inspect.isawaitable(value):
        value = await value
    return cast("T", value)

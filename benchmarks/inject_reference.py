"""The reference handlers of ``bench_inject``: ``@inject`` of a bare ``providers.Object``.

A module of its own because the lifecycle checks, at ``start()``, that every
``Provide[...]`` marker of a module wired to the application container names one of its
providers; these name a provider of :class:`Reference`, so they are wired to that
container only.
"""

from __future__ import annotations

from typing import Any

from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject


class Reference(containers.DeclarativeContainer):
    """A provider with nothing behind it: the floor of ``@inject`` itself."""

    value = providers.Object(object())


@inject
async def inject_object(adapter: Any = Provide[Reference.value]) -> Any:
    """Returns the injected object (dependency-injector's coroutine wrapper)."""
    return adapter


@inject
def inject_object_sync(adapter: Any = Provide[Reference.value]) -> Any:
    """The same through dependency-injector's wrapper of a plain function: its resolver
    without the coroutine machinery (no ``async with``, no awaitable check)."""
    return adapter

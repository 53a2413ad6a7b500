"""The reference handler of ``bench_inject``: ``@inject`` of a ``providers.Object``.

A module of its own because the lifecycle checks, at ``start()``, that every
``Provide[...]`` marker of a module wired to the application container names one of its
providers; this one names a provider of :class:`Reference`, so it is wired to that
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
    """Returns the injected object."""
    return adapter

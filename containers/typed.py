"""Typed access to the containers' providers, checked by mypy.

Every provider of a backend container carries its value type
(``PostgresContainer.store: providers.Resource[EnhancedPostgresStore]``), and the
application container declares each nested container with :func:`nested`, so the same
types reach ``app.postgres.store`` and ``ApplicationContainer.postgres.store``. Three
idioms, all checked by ``mypy --strict``::

    from containers.lifecycle import resolve, start
    from containers.typed import provide

    app = ApplicationContainer()
    store = await resolve(app.postgres.store)   # EnhancedPostgresStore, started or not
    await start(app)
    store = app.postgres.store()                # EnhancedPostgresStore (started: a value)

    @inject
    async def handler(
        user_id: int, store: EnhancedPostgresStore = provide(ApplicationContainer.postgres.store)
    ) -> str | None: ...

A typo (``app.postgres.stor``) is an ``attr-defined`` error, a store bound to a
``RedisCache`` variable an ``assignment`` error, a wrong argument to an adapter method an
``arg-type`` error; ``typing_tests/`` proves each of these.

``await app.postgres.store()`` is a type error on purpose: after ``start()`` the call
returns the store itself and awaiting it fails at run time; code that runs in both phases
awaits :func:`containers.lifecycle.resolve` instead.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from dependency_injector import containers, providers
from dependency_injector.wiring import Provide

__all__ = ["nested", "provide"]

C = TypeVar("C", bound=containers.DeclarativeContainer)
T = TypeVar("T")


def nested(container_cls: type[C], **dependencies: Any) -> type[C]:
    """``providers.Container(container_cls, **dependencies)``, typed as ``container_cls``.

    dependency-injector types a nested container's attributes as ``Provider[Any]`` (its
    stub forwards every name through ``__getattr__``), so mypy accepts any name and any use
    of the value. At run time the provider forwards each attribute to the container's own
    provider; typing it as the container class states exactly that, so ``.store`` is the
    backend container's typed provider and ``.stor`` is an error.
    """
    return cast("type[C]", providers.Container(container_cls, **dependencies))


def provide(provider: providers.Provider[T]) -> T:
    """``Provide[provider]`` typed as the provider's value, for ``@inject`` parameters.

    dependency-injector types ``Provide[...]`` as ``Any``, which a parameter of any type
    accepts; this returns the same marker (``@inject`` and the startup validation see no
    difference) typed as ``T``, so a parameter of the wrong type is a mypy error.
    """
    return cast("T", Provide[provider])

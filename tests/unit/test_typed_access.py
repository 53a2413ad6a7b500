"""The typed access helpers change nothing at run time: ``nested`` is dependency-injector's
``providers.Container`` and ``provide`` its ``Provide[...]`` marker, so wiring, ``@inject``
and the startup validation behave as with the untyped spellings. (What mypy accepts and
rejects is proven by ``typing_tests/``.)"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import resolve, start, stop
from containers.postgres import PostgresContainer
from containers.redis import RedisContainer
from containers.testing import use_fakes
from containers.typed import nested, provide
from infra.ports import CacheStore, DistributedLock, RelationalStore

App = ApplicationContainer

#: Every provider of the nested backend containers, by name.
BACKEND_PROVIDERS = [
    ("postgres", name) for name in PostgresContainer.providers if name != "settings"
] + [("redis", name) for name in RedisContainer.providers if name != "settings"]


@inject
async def typed_handler(
    store: RelationalStore = provide(App.postgres.store),
    cache: CacheStore = provide(App.redis.cache),
    lock: DistributedLock = provide(App.redis.lock),
) -> tuple[RelationalStore, CacheStore, DistributedLock]:
    """Declared as the ports: the fakes implement them as the adapters do."""
    return store, cache, lock


def make_app() -> ApplicationContainer:
    app = ApplicationContainer()
    app.core.settings.override(providers.Object(Settings(log_level="WARNING")))
    app.observability.tracing_global.override(providers.Object(False))
    return app


@pytest.fixture
def app() -> Iterator[ApplicationContainer]:
    container = make_app()
    container.wire(modules=[sys.modules[__name__]])
    try:
        yield container
    finally:
        container.unwire()


@pytest.mark.parametrize(("backend", "name"), BACKEND_PROVIDERS)
def test_provide_is_the_marker_provide_would_build(backend: str, name: str) -> None:
    """For every backend provider, ``provide(p)`` is a ``Provide`` marker naming ``p``."""
    provider = getattr(getattr(App, backend), name)
    marker: object = provide(provider)
    untyped: object = Provide[provider]
    assert type(marker) is type(untyped)
    assert getattr(marker, "provider", None) is provider is getattr(untyped, "provider", None)


@pytest.mark.parametrize("backend", ["core", "observability", "postgres", "redis"])
def test_nested_containers_are_dependency_injector_container_providers(backend: str) -> None:
    declared: object = getattr(App, backend)
    assert isinstance(declared, providers.Container)
    built: object = getattr(make_app(), backend)
    assert isinstance(built, providers.Container)
    assert built is not declared  # each application container has its own copy


def test_nested_passes_the_dependencies_through() -> None:
    settings = Settings(log_level="WARNING")

    class Outer(containers.DeclarativeContainer):
        postgres = nested(PostgresContainer, settings=providers.Object(settings))

    outer = Outer()
    outer.check_dependencies()
    assert outer.postgres.settings() is settings


async def test_provide_markers_are_injected_under_fakes(app: ApplicationContainer) -> None:
    """Wired ``provide`` parameters receive the fakes ``use_fakes`` installed."""
    with use_fakes(app) as fakes:
        store, cache, lock = await typed_handler()
        assert store is fakes.relational
        assert cache is fakes.cache
        assert lock is fakes.lock


async def test_provide_markers_are_injected_after_start(app: ApplicationContainer) -> None:
    """Wired ``provide`` parameters receive the started adapters, as ``Provide`` would."""
    await start(app)
    try:
        store, cache, lock = await typed_handler()
        assert store is app.postgres.store() is await resolve(app.postgres.store)
        assert cache is app.redis.cache()
        assert lock is app.redis.lock()
    finally:
        await stop(app)

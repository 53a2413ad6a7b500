"""``containers.lifecycle.resolve`` -- what every dependency alias calls -- behaves the same
on the fakes and on real servers, before ``start()``, once started and after ``stop()``."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from dependency_injector import providers

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import resolve, start, stop
from containers.testing import use_fakes


class Repo:
    """An application's own class, built on the store by a Factory."""

    def __init__(self, db: Any) -> None:
        self.db = db


class App(ApplicationContainer):
    repo = providers.Factory(Repo, db=ApplicationContainer.postgres.store)


REAL = pytest.param("real", marks=[pytest.mark.postgres, pytest.mark.redis])
PATHS = ["postgres.store", "redis.cache", "redis.three_tier", "redis.lock", "health"]


@pytest.fixture(params=["fake", REAL])
def app(request: pytest.FixtureRequest) -> Iterator[App]:
    container = App()
    with ExitStack() as stack:
        if request.param == "fake":
            stack.enter_context(use_fakes(container))
        else:
            settings = Settings(
                database_url=request.getfixturevalue("postgres_dsn"),
                redis_url=request.getfixturevalue("redis_url"),
                log_level="WARNING",
            )
            container.core.settings.override(providers.Object(settings))
            container.observability.tracing_global.override(providers.Object(False))
        yield container


def provider_at(app: App, path: str) -> Any:
    found: Any = app
    for part in path.split("."):
        found = getattr(found, part)
    return found


async def test_resolve_gives_the_same_adapter_in_every_phase(app: App) -> None:
    """Before start: the adapter (initialised on first use), the same one each time.
    Started: the same objects, now also what the provider hands out synchronously.
    Stopped: a plain value again, never an awaitable."""
    before = {path: await resolve(provider_at(app, path)) for path in PATHS}
    repo: Any = await resolve(app.repo)
    assert isinstance(repo, Repo)
    assert repo.db is before["postgres.store"]
    for path, value in before.items():
        assert not inspect.isawaitable(value), path
        assert await resolve(provider_at(app, path)) is value, path
    await start(app)
    try:
        for path, value in before.items():
            assert await resolve(provider_at(app, path)) is value, path
            assert provider_at(app, path)() is value, path
        store: Any = await resolve(app.postgres.store)
        assert await store.fetchval("select 1") == 1
        repo = await resolve(app.repo)  # a Factory on a resource: a new Repo, same store
        assert isinstance(repo, Repo)
        assert repo.db is store
    finally:
        await stop(app)
    for path in PATHS:
        again = await resolve(provider_at(app, path))
        assert not inspect.isawaitable(again), path
    await stop(app)

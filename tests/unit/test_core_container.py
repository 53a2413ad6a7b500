"""Core container: settings provided lazily, overridable, no connections at construction."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dependency_injector import containers, errors, providers

from config import Settings
from containers import CoreContainer
from containers.lifecycle import resolve


def test_settings_are_a_singleton_built_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """The container builds Settings once, from the environment, when first asked."""
    monkeypatch.setenv("SEMANTICA_POSTGRES_MAX_POOL_SIZE", "33")
    core = CoreContainer()
    first = core.settings()
    assert first is core.settings()
    assert first.db.max_pool_size == 33


def test_settings_provider_can_be_overridden() -> None:
    """A test or deployment injects its own Settings through an override."""
    core = CoreContainer()
    custom = Settings(database_url="postgresql://localhost/db", postgres_max_pool_size=50)
    with core.settings.override(providers.Object(custom)):
        assert core.settings().db.url == "postgresql://localhost/db"
    assert core.settings() is not custom


async def test_backend_pattern_connects_nothing_until_used_and_closes_on_shutdown() -> None:
    """The documented Resource pattern: nothing opens at construction; shutdown closes."""
    events: list[str] = []

    async def make_client(settings: Settings) -> AsyncIterator[str]:
        events.append("open")
        try:
            yield f"client for {settings.redis.url}"
        finally:
            events.append("close")

    class Backend(containers.DeclarativeContainer):
        settings = providers.Dependency(instance_of=Settings)
        client = providers.Resource(make_client, settings)

    core = CoreContainer()
    backend = Backend(settings=core.settings)
    backend.check_dependencies()
    assert events == []
    value = await resolve(backend.client)
    assert value.startswith("client for redis://")
    assert events == ["open"]
    stopping = backend.shutdown_resources()
    assert stopping is not None  # async resources: an awaitable
    await stopping
    assert events == ["open", "close"]


def test_missing_dependency_is_reported() -> None:
    """check_dependencies names an undeclared input of a backend container."""

    class Backend(containers.DeclarativeContainer):
        settings = providers.Dependency(instance_of=Settings)

    with pytest.raises(errors.Error, match="settings"):
        Backend().check_dependencies()


def test_the_package_exports_every_container_an_application_needs() -> None:
    """``import containers`` gives the application container, its parts and lifecycle."""
    import containers as package  # this module's `containers` is the library's
    from containers import application, lifecycle

    assert package.__all__ == [
        "ApplicationContainer",
        "CoreContainer",
        "ObservabilityContainer",
        "PostgresContainer",
        "RedisContainer",
        "lifecycle",
    ]
    assert package.ApplicationContainer is application.ApplicationContainer
    assert package.lifecycle is lifecycle
    settings = package.ApplicationContainer().core.settings()
    assert isinstance(settings, Settings)

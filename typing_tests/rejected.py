"""Uses of the containers that mypy strict must reject.

Each line carries ``# type: ignore[<code>]`` naming the error it must produce. mypy strict
(``warn_unused_ignores``) reports an ignore that suppresses nothing, and an ignore with
another code does not hide a different error: if any case here becomes accepted, or is
rejected for another reason, ``mypy`` fails.
"""

from __future__ import annotations

from dependency_injector import providers
from dependency_injector.wiring import inject

from containers.application import ApplicationContainer
from containers.lifecycle import resolve, start
from containers.postgres import PostgresContainer
from containers.typed import provide
from infra.cache import RedisCache
from infra.storage import EnhancedPostgresStore


async def typo_in_a_provider_name() -> None:
    app = ApplicationContainer()
    await resolve(app.postgres.stor)  # type: ignore[attr-defined]
    await resolve(app.redis.cahce)  # type: ignore[attr-defined]
    await resolve(app.postgress.store)  # type: ignore[attr-defined]
    await resolve(PostgresContainer.stor)  # type: ignore[attr-defined]
    # A top-level name on an instance: dependency-injector's stub answers any name with
    # ``Provider[Any]`` (``count: int = await resolve(app.helth)`` was accepted).
    await resolve(app.helth)  # type: ignore[attr-defined]
    count: int = await resolve(app.helth)  # type: ignore[attr-defined]
    del count


class _AppContainer(ApplicationContainer):
    repo = providers.Factory(EnhancedPostgresStore, "postgresql://localhost/app")


async def typo_on_an_application_subclass() -> None:
    app = _AppContainer()
    await resolve(app.rpo)  # type: ignore[attr-defined]
    name: str = app.rpo()  # type: ignore[attr-defined]
    del name


@inject
async def typo_in_an_injected_provider(
    store: EnhancedPostgresStore = provide(ApplicationContainer.postgres.stor),  # type: ignore[attr-defined]
) -> None:
    await store.fetchval("select 1")


async def the_wrong_type() -> None:
    app = ApplicationContainer()
    # mypy infers ``resolve``'s value type from the variable, so the provider is the
    # mismatching argument here ...
    cache: RedisCache = await resolve(app.postgres.store)  # type: ignore[arg-type]
    count: int = await resolve(app.postgres.store)  # type: ignore[arg-type]
    # ... and the assignment once the value has its own type.
    store = await resolve(app.postgres.store)
    other: RedisCache = store  # type: ignore[assignment]
    await start(app)
    started: RedisCache = app.postgres.store()  # type: ignore[assignment]
    del cache, count, other, started


@inject
async def the_wrong_injected_type(
    cache: RedisCache = provide(ApplicationContainer.postgres.store),  # type: ignore[assignment]
) -> None:
    await cache.get("k")


async def wrong_arguments_to_adapter_methods() -> None:
    app = ApplicationContainer()
    store = await resolve(app.postgres.store)
    await store.fetchval(42)  # type: ignore[arg-type]
    await store.execute("select 1", timeout="5s")  # type: ignore[arg-type]
    cache = await resolve(app.redis.cache)
    await cache.get(1)  # type: ignore[arg-type]
    await cache.set("k", "v", ttl="30")  # type: ignore[arg-type]
    await store.no_such_method()  # type: ignore[attr-defined]


async def awaiting_a_started_value() -> None:
    # After start() a provider call is the value itself; awaiting it would fail at run
    # time, so it is a type error. Code that runs before and after start awaits resolve().
    app = ApplicationContainer()
    await app.postgres.store()  # type: ignore[misc]

"""Correct uses of the containers that mypy strict must accept, with their exact types.

``assert_type`` fails unless the type is exactly the one named (``Any`` does not pass), so
this file proves the types are precise, not merely permissive.
"""

from __future__ import annotations

from typing import assert_type

from dependency_injector import providers
from dependency_injector.wiring import inject

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import resolve, start, stop
from containers.postgres import PostgresContainer
from containers.redis import RedisContainer
from containers.testing import use_fakes
from containers.typed import provide
from infra.cache import RedisCache, RedisDistributedLock, ThreeTierCache
from infra.observability import HealthRegistry, MetricsCollector
from infra.ports import CacheStore, RelationalStore
from infra.resilience import ResiliencePolicy
from infra.storage import EnhancedPostgresStore


@inject
async def handler(
    user_id: int,
    store: EnhancedPostgresStore = provide(ApplicationContainer.postgres.store),
    cache: RedisCache = provide(ApplicationContainer.redis.cache),
    registry: HealthRegistry = provide(ApplicationContainer.health),
) -> str | None:
    """An ``@inject`` handler whose parameters are typed by the providers they come from."""
    registry.register("postgres", store, critical=True)
    cached = await cache.get(f"user:{user_id}")
    if cached is not None:
        return str(cached)
    name = await store.fetchval("select name from users where id = $1", user_id)
    return None if name is None else str(name)


@inject
async def handler_on_ports(
    store: RelationalStore = provide(ApplicationContainer.postgres.store),
    cache: CacheStore = provide(ApplicationContainer.redis.cache),
) -> None:
    """A parameter may be declared as the port the adapter implements."""
    await cache.set("k", await store.fetchval("select 1"), ttl=30)


async def application_container() -> None:
    """Through ``ApplicationContainer``: every nested provider keeps its value type."""
    app = ApplicationContainer()
    assert_type(await resolve(app.postgres.store), EnhancedPostgresStore)
    assert_type(await resolve(app.redis.cache), RedisCache)
    assert_type(await resolve(app.redis.lock), RedisDistributedLock)
    assert_type(await resolve(app.redis.three_tier), ThreeTierCache)
    assert_type(await resolve(app.observability.metrics), MetricsCollector)
    assert_type(await resolve(app.health), HealthRegistry)
    assert_type(app.core.settings(), Settings)
    assert_type(app.postgres.policy(), ResiliencePolicy)
    await start(app)
    store = app.postgres.store()  # started: the value itself
    assert_type(store, EnhancedPostgresStore)
    await store.execute("insert into users values ($1, $2)", 1, "ada")
    await app.redis.cache().set("user:1", "ada", ttl=30.0)
    await stop(app)


def overrides() -> None:
    """Overriding a provider or a policy is typed through the same attributes."""
    app = ApplicationContainer()
    app.postgres.policy.override(providers.Object(ResiliencePolicy.instant("postgres")))
    app.redis.namespace.override(providers.Object("tenant-a"))
    assert_type(ApplicationContainer.postgres.store, providers.Resource[EnhancedPostgresStore])
    assert_type(ApplicationContainer.redis.cache, providers.Singleton[RedisCache])


async def backend_containers() -> None:
    """A backend container on its own has the same typed providers."""
    settings = Settings()
    postgres = PostgresContainer(settings=settings)
    redis = RedisContainer(settings=settings)
    assert_type(await resolve(postgres.store), EnhancedPostgresStore)
    assert_type(await resolve(redis.cache), RedisCache)


async def with_fakes() -> None:
    """Under ``use_fakes`` the providers keep their types (the fakes implement the ports)."""
    app = ApplicationContainer()
    with use_fakes(app) as fakes:
        store = await resolve(app.postgres.store)
        assert_type(store, EnhancedPostgresStore)
        await fakes.relational.execute("create table t (id integer)")

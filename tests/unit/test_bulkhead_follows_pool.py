"""Each pool-backed policy's bulkhead fits its own pool: unset, the PostgreSQL store's
bulkhead is the PostgreSQL pool and the Redis cache's the Redis pool (other policies take
the smaller pool); set, ``SEMANTICA_BULKHEAD_MAX_CONCURRENT`` applies to every policy."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import resolve, stop
from infra.resilience import ResiliencePolicy


async def limits(settings: Settings) -> tuple[int, int, int]:
    """The bulkhead limits of the container's PostgreSQL, Redis cache and Redis lock
    policies, built (nothing connects) from ``settings``."""
    app = ApplicationContainer()
    app.core.settings.override(settings)
    found = []
    try:
        for provider in (app.postgres.policy, app.redis.policy, app.redis.lock_policy):
            policy: ResiliencePolicy = await resolve(provider)
            assert policy.bulkhead is not None
            found.append(policy.bulkhead.max_concurrent)
    finally:
        await stop(app)  # the policies' observer started the app's metrics resource
    return found[0], found[1], found[2]


@given(postgres=st.integers(1, 300), redis=st.integers(1, 300))
async def test_unset_each_pool_backed_bulkhead_is_its_pool(postgres: int, redis: int) -> None:
    settings = Settings(
        postgres_min_pool_size=1, postgres_max_pool_size=postgres, redis_max_connections=redis
    )
    assert await limits(settings) == (postgres, redis, min(postgres, redis))
    assert settings.resilience.bulkhead_max_concurrent == min(postgres, redis)


@given(data=st.data(), postgres=st.integers(1, 300), redis=st.integers(1, 300))
async def test_set_the_variable_applies_to_every_policy(
    data: st.DataObject, postgres: int, redis: int
) -> None:
    chosen = data.draw(st.integers(1, min(postgres, redis)), label="bulkhead_max_concurrent")
    settings = Settings(
        postgres_min_pool_size=1,
        postgres_max_pool_size=postgres,
        redis_max_connections=redis,
        bulkhead_max_concurrent=chosen,
    )
    assert await limits(settings) == (chosen, chosen, chosen)


async def test_the_defaults() -> None:
    """The shipped pools: PostgreSQL 20, Redis 50 -- the Redis cache no longer queues
    behind PostgreSQL's smaller pool."""
    assert await limits(Settings()) == (20, 50, 20)

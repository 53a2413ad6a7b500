"""``containers.lifecycle`` against the embedded PostgreSQL and Redis: what is left open.

Open connections are counted on the servers themselves (``pg_stat_activity``, Redis
``CLIENT LIST``) and logging by the root logger's handlers, before and after.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from dependency_injector import providers
from redis.asyncio import Redis

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import start, stop
from infra.exceptions import StartupError

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class WarmupError(RuntimeError):
    """An application resource failing after the backends were used."""


async def pg_connections(dsn: str) -> int:
    """Client connections to the server other than the one counting."""
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "select count(*) from pg_stat_activity "
            "where backend_type = 'client backend' and pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return count


async def redis_clients(client: Redis) -> int:
    return len(await client.client_list())


def app_for(postgres_dsn: str, redis_url: str) -> ApplicationContainer:
    app = ApplicationContainer()
    settings = Settings(database_url=postgres_dsn, redis_url=redis_url, log_level="WARNING")
    app.core.settings.override(providers.Object(settings))
    app.observability.tracing_global.override(providers.Object(False))
    return app


async def snapshot(postgres_dsn: str, redis_client: Redis) -> tuple[int, int, int]:
    return (
        await pg_connections(postgres_dsn),
        await redis_clients(redis_client),
        len(logging.getLogger().handlers),
    )


async def test_a_failed_start_leaves_no_connection_or_handler_open(
    postgres_dsn: str, redis_url: str, redis_client: Redis
) -> None:
    """An application resource uses PostgreSQL and Redis, then fails: the pool, the Redis
    client and the root log handler installed by the start are all gone again."""
    before = await snapshot(postgres_dsn, redis_client)
    app = app_for(postgres_dsn, redis_url)

    async def warm_then_fail(store: Any, cache: Any) -> AsyncIterator[None]:
        assert await store.fetchval("select 1") == 1
        await cache.set("lifecycle:warm", {"v": 1})
        assert await pg_connections(postgres_dsn) > before[0]
        assert await redis_clients(redis_client) > before[1]
        raise WarmupError("the application's own resource failed")
        # Never reached; it makes this an async generator (a resource) for dependency-injector.
        yield  # type: ignore[unreachable]  # pragma: no cover

    app.warmup = providers.Resource(warm_then_fail, app.postgres.store, app.redis.cache)
    with pytest.raises(StartupError) as raised:
        await start(app)
    assert raised.value.details["resource"] == "warmup"
    assert isinstance(raised.value.__cause__, WarmupError)
    assert "postgres.store" in raised.value.details["rolled_back"]
    assert await snapshot(postgres_dsn, redis_client) == before
    await stop(app)  # safe after a failed start
    assert await snapshot(postgres_dsn, redis_client) == before


async def test_a_failing_shutdown_still_closes_the_pool_and_the_client(
    postgres_dsn: str, redis_url: str, redis_client: Redis
) -> None:
    """A resource built on the store raises in its cleanup: the ExceptionGroup carries
    it, and the PostgreSQL pool and the Redis client are closed all the same."""
    before = await snapshot(postgres_dsn, redis_client)
    app = app_for(postgres_dsn, redis_url)

    async def flusher(store: Any) -> AsyncIterator[str]:
        yield "flusher"
        await store.execute("select 1")  # the last batch, written before the pool closes
        raise WarmupError("flusher cleanup failed")

    app.flusher = providers.Resource(flusher, app.postgres.store)
    await start(app)
    store = app.postgres.store()
    assert await store.fetchval("select 1") == 1
    await app.redis.cache().set("lifecycle:k", 1)
    with pytest.raises(ExceptionGroup) as raised:
        await stop(app)
    assert [str(e) for e in raised.value.exceptions] == ["flusher cleanup failed"]
    assert store.is_closed
    assert await snapshot(postgres_dsn, redis_client) == before


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_ping_passes_on_live_servers_and_reports_every_dead_one_at_once(
    postgres_dsn: str, redis_url: str, redis_client: Redis
) -> None:
    """``ping=True`` checks every adapter through its health_check: on the live servers
    the start succeeds; with both addresses wrong one StartupError names every failing
    adapter, and nothing stays open."""
    before = await snapshot(postgres_dsn, redis_client)
    live = app_for(postgres_dsn, redis_url)
    await start(live, ping=True)
    await stop(live)

    port = closed_port()
    dead = app_for(f"postgresql://nobody@127.0.0.1:{port}/nothing", f"redis://127.0.0.1:{port}/0")
    with pytest.raises(StartupError) as raised:
        await start(dead, ping=True, ping_timeout=10.0)
    unhealthy = raised.value.details["unhealthy"]
    assert {"postgres.store", "redis.cache"} <= set(unhealthy)
    assert "startup ping failed" in str(raised.value)
    assert await snapshot(postgres_dsn, redis_client) == before

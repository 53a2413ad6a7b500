"""An aiohttp app on the container: ``cleanup_ctx`` and the error middleware, on fakes and
on real servers (embedded, or the ``SEMANTICA_TEST_*`` ones)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from dependency_injector import containers, providers

from config import Settings
from containers.application import ApplicationContainer
from containers.integrations.aiohttp import CONTAINER, cleanup_ctx, error_middleware
from containers.testing import use_fakes
from infra.exceptions import CircuitBreakerOpenError, StartupError

REAL = pytest.param("real", marks=[pytest.mark.postgres, pytest.mark.redis])


@pytest.fixture(params=["fake", REAL])
def container(request: pytest.FixtureRequest) -> Iterator[ApplicationContainer]:
    app = ApplicationContainer()
    with ExitStack() as stack:
        if request.param == "fake":
            stack.enter_context(use_fakes(app))
        else:
            settings = Settings(
                database_url=request.getfixturevalue("postgres_dsn"),
                redis_url=request.getfixturevalue("redis_url"),
                log_level="WARNING",
            )
            app.core.settings.override(providers.Object(settings))
            app.observability.tracing_global.override(providers.Object(False))
        yield app


def started_resources(container: containers.Container) -> list[Any]:
    return [
        p
        for p in container.traverse(types=[providers.Resource])
        if isinstance(p, providers.Resource) and p.initialized
    ]


def build_app(container: containers.Container, table: str, **options: Any) -> web.Application:
    async def create_schema(started: Any) -> None:
        await started.postgres.store().execute(
            f"create table if not exists {table} (id bigint primary key, body text not null)"
        )

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        store = request.app[CONTAINER].postgres.store()
        await store.execute(
            f"insert into {table} (id, body) values ($1, $2)",  # noqa: S608 - generated name
            body["id"],
            body["body"],
        )
        return web.json_response({"id": body["id"]}, status=201)

    async def read(request: web.Request) -> web.Response:
        note_id = int(request.match_info["id"])
        started = request.app[CONTAINER]
        store, cache = started.postgres.store(), started.redis.three_tier()

        async def load() -> dict[str, Any] | None:
            row = await store.fetchrow(
                f"select id, body from {table} where id = $1",  # noqa: S608 - generated name
                note_id,
            )
            return dict(row) if row is not None else None

        note = await cache.get(f"{table}:{note_id}", load)
        if note is None:
            raise web.HTTPNotFound(text=f"no note {note_id}")
        return web.json_response(note)

    async def breaker(request: web.Request) -> web.Response:
        raise CircuitBreakerOpenError(component="postgres", details={"retry_after_s": 1.5})

    async def bug(request: web.Request) -> web.Response:
        raise RuntimeError("not ours")

    app = web.Application(middlewares=[error_middleware])
    app.cleanup_ctx.append(cleanup_ctx(container, on_startup=create_schema, **options))
    app.add_routes(
        [
            web.post("/notes", create),
            web.get("/notes/{id}", read),
            web.get("/breaker", breaker),
            web.get("/bug", bug),
        ]
    )
    return app


@asynccontextmanager
async def client_for(app: web.Application) -> AsyncIterator[TestClient[web.Request, Any]]:
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_the_notes_app_under_cleanup_ctx(container: ApplicationContainer) -> None:
    """Create, read (through the 3-tier cache), a duplicate answered 409 by the
    middleware, an open breaker answered 503 + Retry-After, aiohttp's own 404 and a bug's
    500 passed through; the container is stopped with the app."""
    table = f"notes_{uuid.uuid4().hex[:12]}"
    app = build_app(container, table)
    async with client_for(app) as client:
        assert app[CONTAINER] is container
        assert (await client.post("/notes", json={"id": 1, "body": "hi"})).status == 201
        duplicate = await client.post("/notes", json={"id": 1, "body": "hi"})
        assert duplicate.status == 409
        assert (await duplicate.json())["type"] == "UniqueViolationError"
        read = await client.get("/notes/1")
        assert (await read.json()) == {"id": 1, "body": "hi"}
        assert (await client.get("/notes/2")).status == 404
        breaker = await client.get("/breaker")
        assert breaker.status == 503
        assert breaker.headers["Retry-After"] == "2"
        assert (await client.get("/bug")).status == 500
        assert started_resources(container) != []
    assert started_resources(container) == []


async def test_a_failed_startup_hook_leaves_nothing_started(
    container: ApplicationContainer,
) -> None:
    """``on_startup`` raises after using the store: the start is undone, nothing stays
    started, the error reaches whoever starts the server."""

    async def broken(started: Any) -> None:
        await started.postgres.store().fetchval("select 1")
        raise RuntimeError("migration failed")

    app = web.Application(middlewares=[error_middleware])
    app.cleanup_ctx.append(cleanup_ctx(container, on_startup=broken))
    server = TestServer(app)
    with pytest.raises(RuntimeError, match="migration failed"):
        await server.start_server()
    await server.close()
    assert started_resources(container) == []


async def test_a_failing_resource_rolls_the_start_back() -> None:
    """A resource of the app's container fails: ``StartupError`` names it, and what
    started before it is stopped again."""
    container = ApplicationContainer()

    async def broken() -> None:
        raise RuntimeError("cannot reach the payment provider")

    container.payments = providers.Resource(broken)
    with use_fakes(container):
        app = web.Application()
        app.cleanup_ctx.append(cleanup_ctx(container))
        server = TestServer(app)
        with pytest.raises(StartupError) as raised:
            await server.start_server()
        await server.close()
    assert raised.value.details["resource"] == "payments"
    assert started_resources(container) == []

"""A FastAPI app on the container, as an adopter writes one, on fakes and on real servers.

Each test that takes ``backend`` runs twice: on the verified fakes (``use_fakes``) and on
real servers (embedded PostgreSQL and Redis, or the ``SEMANTICA_TEST_*`` ones: external
mode). The app is driven by FastAPI's ``TestClient`` (its own event loop, which the
lifespan starts the container on) and by ``httpx.AsyncClient`` over ``ASGITransport`` (the
test's loop; the lifespan is entered by hand, since ``ASGITransport`` sends none).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
import httpx
import pytest
from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject
from fastapi import Depends, FastAPI, HTTPException
from fastapi.testclient import TestClient
from pydantic import BaseModel

from config import Settings
from containers.application import ApplicationContainer
from containers.integrations.fastapi import (
    CacheDep,
    ContainerDep,
    LockDep,
    StoreDep,
    ThreeTierDep,
    install_error_handlers,
    lifespan,
    provided,
)
from containers.lifecycle import stop
from containers.testing import use_fakes
from infra.exceptions import InvalidArgumentError, StartupError

REAL = pytest.param("real", marks=[pytest.mark.postgres, pytest.mark.redis])


class NoteIn(BaseModel):
    id: int
    body: str


class App(ApplicationContainer):
    """An application's own container: ours plus a provider of its own."""

    thread = providers.Callable(threading.get_ident)


@inject
async def thread_via_provide(
    ident: int = Depends(Provide[App.thread]),  # dependency-injector's idiom
) -> int:
    return ident


def build_app(container: containers.Container, *, table: str, **options: Any) -> FastAPI:
    """The notes API: one table, read through the 3-tier cache, updated under a lock."""

    async def create_schema(started: Any) -> None:
        await started.postgres.store().execute(
            f"create table if not exists {table} "
            "(id bigint primary key, body text not null, touched bigint not null default 0)"
        )

    app = FastAPI(lifespan=lifespan(container, on_startup=create_schema, **options))
    install_error_handlers(app)

    @app.post("/notes", status_code=201)
    async def create(note: NoteIn, store: StoreDep) -> dict[str, Any]:
        await store.execute(f"insert into {table} (id, body) values ($1, $2)", note.id, note.body)  # noqa: S608
        return {"id": note.id}

    @app.get("/notes/{note_id}")
    async def read(note_id: int, store: StoreDep, cache: ThreeTierDep) -> dict[str, Any]:
        async def load() -> dict[str, Any] | None:
            row = await store.fetchrow(f"select id, body from {table} where id = $1", note_id)  # noqa: S608
            return dict(row) if row is not None else None

        note = await cache.get(f"{table}:{note_id}", load)
        if note is None:
            raise HTTPException(404, f"no note {note_id}")
        return note

    @app.post("/notes/{note_id}/touch")
    async def touch(
        note_id: int, store: StoreDep, lock: LockDep, cache: ThreeTierDep
    ) -> dict[str, Any]:
        async with lock.hold(f"{table}:{note_id}", lease=5.0, wait=2.0) as lease:
            await store.execute(f"update {table} set touched = $2 where id = $1", note_id, 1)  # noqa: S608
        await cache.delete(f"{table}:{note_id}")
        return {"fence": lease.fencing_token}

    @app.put("/kv/{key}")
    async def put(key: str, value: dict[str, Any], cache: CacheDep) -> dict[str, Any]:
        await cache.set(f"{table}:{key}", value)
        got = await cache.get(f"{table}:{key}")
        return {"stored": got}

    @app.get("/sync")
    def sync_route(store: StoreDep, container: ContainerDep) -> dict[str, Any]:
        return {"store": type(store).__name__, "same": store is container.postgres.store()}

    @app.get("/alias")
    async def via_alias(ident: Annotated[int, provided("thread")]) -> int:
        return ident

    @app.get("/provide")
    async def via_provide(ident: Annotated[int, Depends(thread_via_provide)]) -> int:
        return ident

    return app


@pytest.fixture(params=["fake", REAL])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, App]]:
    """``(mode, container)``: fakes installed, or settings pointed at the real servers."""
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
        yield request.param, container


def started_resources(container: containers.Container) -> list[Any]:
    return [
        p
        for p in container.traverse(types=[providers.Resource])
        if isinstance(p, providers.Resource) and p.initialized
    ]


def new_table() -> str:
    """A table of its own (the name is generated here, never user input: S608 below)."""
    return f"notes_{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """``httpx.AsyncClient`` on the app in this loop, with its lifespan entered by hand."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client


# ------------------------------------------------------------------------- the routes
def test_the_notes_api_through_test_client(backend: tuple[str, App]) -> None:
    """Create, read (store, then L1), touch under the lock, a 404, a 409 for a duplicate
    (our error handler), cache set/get: the same answers on fakes and real servers."""
    _, container = backend
    app = build_app(container, table=new_table())
    with TestClient(app) as client:
        assert client.post("/notes", json={"id": 1, "body": "hi"}).status_code == 201
        duplicate = client.post("/notes", json={"id": 1, "body": "again"})
        assert duplicate.status_code == 409
        assert duplicate.json()["type"] == "UniqueViolationError"
        assert client.get("/notes/1").json() == {"id": 1, "body": "hi"}
        assert client.get("/notes/1").json() == {"id": 1, "body": "hi"}
        assert client.get("/notes/2").status_code == 404
        fence = client.post("/notes/1/touch").json()["fence"]
        assert client.post("/notes/1/touch").json()["fence"] > fence
        assert client.put("/kv/a", json={"x": 1}).json() == {"stored": {"x": 1}}
        assert app.state.container is container
    assert not hasattr(app.state, "container")  # taken off when the lifespan ended


async def test_the_notes_api_through_httpx_asgi_transport(backend: tuple[str, App]) -> None:
    """The same app on the test's own event loop, through ``httpx.AsyncClient``."""
    _, container = backend
    app = build_app(container, table=new_table())
    async with asgi_client(app) as client:
        assert (await client.post("/notes", json={"id": 7, "body": "x"})).status_code == 201
        assert (await client.get("/notes/7")).json() == {"id": 7, "body": "x"}
        # the second read is an L1 hit: the 3-tier cache was started before traffic
        cache = container.redis.three_tier()
        assert cache.l1_size == 1
        assert (await client.get("/notes/7")).json() == {"id": 7, "body": "x"}


def test_a_sync_route_gets_its_adapter(backend: tuple[str, App]) -> None:
    """A ``def`` route runs in a worker thread; the alias resolves on the event loop all
    the same, so it gets the started adapter on fakes and real servers alike."""
    _, container = backend
    app = build_app(container, table=new_table())
    with TestClient(app) as client:
        answer = client.get("/sync").json()
    assert answer["same"] is True
    assert answer["store"] in {"FakeRelationalStore", "EnhancedPostgresStore"}


def test_aliases_never_hop_to_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """No thread hop: a route whose dependencies are our aliases runs nothing in the
    worker-thread pool, while the ``Depends(Provide[...])`` idiom sends its marker there
    on every request (FastAPI takes it for a synchronous dependency)."""
    hops: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__name__", type(func).__name__))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    container = App()
    container.wire(modules=[__name__])
    with use_fakes(container):
        app = build_app(container, table=new_table())
        with TestClient(app) as client:
            hops.clear()
            assert client.get("/alias").status_code == 200
            assert hops == []
            assert client.get("/provide").status_code == 200
            assert len(hops) == 1
    container.unwire()


async def test_each_app_reads_its_own_container() -> None:
    """Two apps, two containers under their own fakes: each route sees its own store."""
    first, second = App(), App()
    with use_fakes(first), use_fakes(second):
        table = new_table()
        app_one = build_app(first, table=table)
        app_two = build_app(second, table=table)
        async with asgi_client(app_one) as one, asgi_client(app_two) as two:
            assert (await one.post("/notes", json={"id": 1, "body": "one"})).status_code == 201
            # the same id in the other app: 201, not 409 -- another store
            assert (await two.post("/notes", json={"id": 1, "body": "two"})).status_code == 201
            assert (await one.get("/notes/1")).json()["body"] == "one"
            assert (await two.get("/notes/1")).json()["body"] == "two"


# ------------------------------------------------------------------------ the lifespan
def test_a_mistyped_provider_fails_at_startup_with_the_closest_names() -> None:
    """``provided("postgres.stor")`` stops the start before any resource starts,
    naming the route, the bad path and ``postgres.store``."""
    container = App()
    app = FastAPI(lifespan=lifespan(container))

    @app.get("/x")
    async def x(store: Annotated[Any, provided("postgres.stor")]) -> None:
        return None

    with pytest.raises(StartupError) as raised, TestClient(app):
        pass
    message = str(raised.value)
    assert "/x(store)" in message
    assert "'postgres.stor'" in message
    assert "postgres.store" in message
    assert started_resources(container) == []  # nothing was started


def test_a_failing_startup_hook_stops_the_container(backend: tuple[str, App]) -> None:
    """``on_startup`` raises: the container is stopped again and the error propagates;
    the app never serves."""
    _, container = backend

    async def broken(started: Any) -> None:
        await started.postgres.store().fetchval("select 1")
        raise RuntimeError("schema migration failed")

    app = FastAPI(lifespan=lifespan(container, on_startup=broken))
    with pytest.raises(RuntimeError, match="schema migration failed"), TestClient(app):
        pass
    assert started_resources(container) == []
    assert not hasattr(app.state, "container")


def test_ping_fails_fast_when_a_backend_is_down(unused_tcp_port: int) -> None:
    """``ping=True`` with PostgreSQL and Redis unreachable: one ``StartupError`` naming
    both, nothing left started."""
    container = App()
    settings = Settings(
        database_url=f"postgresql://app@127.0.0.1:{unused_tcp_port}/db",
        redis_url=f"redis://127.0.0.1:{unused_tcp_port}/0",
        log_level="WARNING",
    )
    container.core.settings.override(providers.Object(settings))
    app = FastAPI(lifespan=lifespan(container, ping=True, ping_timeout=5.0))
    with pytest.raises(StartupError) as raised, TestClient(app):
        pass
    unhealthy = raised.value.details.get("unhealthy", {})
    assert {"postgres.store", "redis.cache"} <= set(unhealthy)
    assert started_resources(container) == []


@pytest.fixture
def semantica_container_factory() -> type[App]:
    """The test kit builds this app's own container class."""
    return App


async def test_the_kit_container_serves_under_the_lifespan(
    semantica_container: App, semantica_backends: str
) -> None:
    """The test kit's container (fake, embedded or external, as the session chose) under
    the lifespan: ``start`` finds it started, the routes use it, and it is stopped once."""
    app = build_app(semantica_container, table=new_table())
    async with asgi_client(app) as client:
        assert (await client.post("/notes", json={"id": 3, "body": "kit"})).status_code == 201
        assert (await client.get("/notes/3")).json() == {"id": 3, "body": "kit"}
    assert semantica_backends in {"fake", "embedded", "external"}


def test_a_route_without_the_lifespan_gets_a_clear_error() -> None:
    """No container on ``app.state`` (the lifespan was not passed): a 500 from our error
    handler saying how to fix it, not an ``AttributeError``."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/x")
    async def x(store: StoreDep) -> None:
        return None

    with TestClient(app) as client:
        answer = client.get("/x")
    assert answer.status_code == 500
    assert "lifespan=lifespan(container)" in answer.json()["error"]


@pytest.mark.parametrize("target", ["", "postgres..store", "1x", 42, None])
def test_provided_rejects_what_names_no_provider(target: Any) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        provided(target)
    assert raised.value.argument == "target"


async def test_provided_accepts_a_provider_of_the_containers_class() -> None:
    """``provided(App.thread)`` (the class's provider) resolves to the instance's."""
    container = App()
    container.thread.override(providers.Object(12345))
    app = FastAPI(lifespan=lifespan(container))

    @app.get("/t")
    async def t(value: Annotated[int, provided(App.thread)]) -> int:
        return value

    with use_fakes(container):
        async with asgi_client(app) as client:
            assert (await client.get("/t")).json() == 12345
    await stop(container)

"""The example's own tests, as an application writes them with the test kit.

Tests built on the kit's ``semantica_container`` run on whatever backends the session
chose (``--semantica-backends=fake|embedded|external``, default fake; see
docs/testing.md); the rest script failures and so install the fakes themselves.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeAlias
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from dependency_injector import providers
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import stop
from containers.testing import Fakes, use_fakes
from infra.exceptions import CircuitBreakerOpenError, DatabaseConnectionError

#: aiohttp's test client for the example's web application.
Client: TypeAlias = "TestClient[web.Request, web.Application]"
ROOT = Path(__file__).resolve().parents[2]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "quickstart_example", ROOT / "examples" / "quickstart.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


EXAMPLE = load_example()


@pytest.fixture
def semantica_container_factory() -> Callable[[], ApplicationContainer]:
    """The test kit builds the example's container, wired to its handlers."""

    def build() -> ApplicationContainer:
        app = ApplicationContainer()
        app.wire(modules=[EXAMPLE])
        return app

    return build


@pytest.fixture
def semantica_settings(semantica_settings: Settings) -> Settings:
    """The example's settings, as its ``main()`` builds them, on the session's servers:
    PostgreSQL and Redis. (The kit also configures a graph, a vector store and an LLM
    endpoint, for applications that use them; this one does not, and its readiness
    checks only what it uses.)"""
    return Settings(
        database_url=semantica_settings.database_url,
        redis_url=semantica_settings.redis_url,
        log_level="WARNING",
    )


@pytest.fixture
async def served_by_kit(
    semantica_container: ApplicationContainer,
) -> AsyncIterator[tuple[Client, ApplicationContainer]]:
    """The example's web app on the session's backends, with no users and no cached ones."""
    store = semantica_container.postgres.store()
    await store.execute(EXAMPLE.SCHEMA)
    await store.execute("delete from users")
    for key in ("user:7", "user:404"):
        await semantica_container.redis.three_tier().delete(key)
    client = TestClient(TestServer(EXAMPLE.make_web_app()))
    await client.start_server()
    try:
        yield client, semantica_container
    finally:
        await client.close()


@pytest.fixture
async def served() -> AsyncIterator[tuple[Client, Fakes]]:
    async for pair in served_app():
        yield pair


async def served_app() -> AsyncIterator[tuple[Client, Fakes]]:
    """The example's web app on the fakes, served on loopback by aiohttp's test server."""
    example = load_example()
    app = ApplicationContainer()
    app.core.settings.override(providers.Object(Settings(log_level="WARNING")))
    with use_fakes(app) as fakes:
        app.wire(modules=[example])
        await fakes.relational.execute(example.SCHEMA)
        client = TestClient(TestServer(example.make_web_app()))
        await client.start_server()
        try:
            yield client, fakes
        finally:
            await client.close()
            await stop(app)
            app.unwire()


async def test_handlers_run_on_the_sessions_backends(
    served_by_kit: tuple[Client, ApplicationContainer],
) -> None:
    """Create, read through the cache, update under the lock: on the verified fakes, or on
    real servers with ``--semantica-backends=embedded|external``."""
    client, app = served_by_kit
    assert (await client.post("/users", json={"id": 7, "name": "ada"})).status == 201
    assert (await client.post("/users", json={"id": 7, "name": "ada"})).status == 409
    first = await (await client.get("/users/7")).json()
    assert first == {"id": 7, "name": "ada", "visits": 0}
    for _ in range(3):
        assert (await client.post("/users/7/visits")).status == 200
    assert (await (await client.get("/users/7")).json())["visits"] == 3
    assert (await client.get("/users/404")).status == 404
    fences = await app.postgres.store().fetchval("select fence from users where id = $1", 7)
    assert fences >= 3  # one fencing token per hold; a real server's count spans tests


async def test_scripted_outage_surfaces_as_503_and_opens_the_breaker(
    served: tuple[Client, Fakes],
) -> None:
    """A scripted outage: 503s, then the breaker opens and the fake is no longer called."""
    client, fakes = served
    fakes.relational.fail_next(DatabaseConnectionError(component="postgres"), times=1000)
    seen: list[str] = []
    for n in range(1, 15):
        response = await client.get(f"/users/{n}")
        assert response.status == 503
        seen.append((await response.json())["type"])
    assert seen[0] == DatabaseConnectionError.__name__
    assert seen[-1] == CircuitBreakerOpenError.__name__
    calls_when_open = len(fakes.relational.calls)
    rejected = await client.get("/users/99")
    assert int(rejected.headers["Retry-After"]) >= 1
    assert len(fakes.relational.calls) == calls_when_open


async def test_readiness_reports_both_backends(
    semantica_container: ApplicationContainer,
) -> None:
    """The health registry checks the session's backends (the fakes by default)."""
    report = await semantica_container.health().readiness()
    checks = report.to_dict()["checks"]
    assert set(checks) == {"postgres", "redis", "llm"}
    # Each answered (a first check on a loaded machine may be over its latency threshold:
    # "degraded", still serving).
    assert {name: check["error"] for name, check in checks.items()} == dict.fromkeys(checks)
    assert report.ok, checks


def test_application_container_declares_all_inputs() -> None:
    """check_dependencies passes: every backend container receives its settings."""
    ApplicationContainer().check_dependencies()


# ----------------------------------------------------------------------- bad input
async def answer(client: Client, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    """Status and JSON body; fails if the body is not JSON."""
    response = await client.request(method, path, **kw)
    assert response.content_type == "application/json", await response.text()
    return response.status, await response.json()


async def test_bad_input_answers_a_json_client_error_never_500(
    served_by_kit: tuple[Client, ApplicationContainer],
) -> None:
    """A missing field, a non-JSON body, a mistyped field, ``/users/abc``, an unknown
    route and a wrong method: each a 4xx with an ``{"error": ...}`` that says why."""
    client, _ = served_by_kit
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", "/users", {"json": {"id": 1}}, 422, "missing field 'name'"),
        ("POST", "/users", {"data": b"not json"}, 400, "the body must be a JSON object"),
        ("POST", "/users", {"json": [1, 2]}, 400, "the body must be a JSON object, got an array"),
        (
            "POST",
            "/users",
            {"json": {"id": "7", "name": "x"}},
            422,
            "field 'id' must be an integer, got a string",
        ),
        (
            "POST",
            "/users",
            {"json": {"id": True, "name": "x"}},
            422,
            "field 'id' must be an integer, got a boolean",
        ),
        ("POST", "/users", {"json": {"id": 2**70, "name": "x"}}, 422, "out of range"),
        ("POST", "/users", {"json": {"id": 1, "name": ""}}, 422, "must not be empty"),
        ("GET", "/users/abc", {}, 404, "no user 'abc': user ids are integers"),
        ("POST", "/users/abc/visits", {}, 404, "user ids are integers"),
        ("GET", "/nowhere", {}, 404, "Not Found"),
        ("DELETE", "/users", {}, 405, "Method Not Allowed"),
    ]
    for method, path, kw, status, error in cases:
        got_status, body = await answer(client, method, path, **kw)
        assert (got_status, set(body)) == (status, {"error"}), (method, path, kw, body)
        assert error in body["error"], (method, path, body)


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=6,
    )


def user_bodies() -> st.SearchStrategy[bytes]:
    fields = st.fixed_dictionaries(
        {},
        optional={
            "id": st.integers(-(2**65), 2**65) | json_values(),
            "name": st.text(max_size=8) | json_values(),
        },
    )
    as_json = (fields | json_values()).map(lambda value: json.dumps(value).encode())
    return as_json | st.binary(max_size=32)


@hypothesis_settings(max_examples=40)
@given(body=user_bodies(), segment=st.text(min_size=1, max_size=12))
def test_no_body_or_user_id_gets_a_500_or_a_non_json_answer(body: bytes, segment: str) -> None:
    """Any body for ``POST /users`` and any ``{id}`` segment: a JSON answer with a
    client status (or success), never a 500."""

    async def scenario() -> None:
        async for client, _ in served_app():
            status, _ = await answer(client, "POST", "/users", data=body)
            assert status in {201, 400, 409, 422}, body
            status, _ = await answer(client, "GET", "/users/" + quote(segment, safe=""))
            assert status in {200, 404}, segment

    asyncio.run(scenario())

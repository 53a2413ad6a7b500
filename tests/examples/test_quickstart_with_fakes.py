"""An application's own tests without servers: the example's handlers on the fakes."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp.test_utils import TestClient, TestServer
from dependency_injector import providers

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import stop
from containers.testing import Fakes, use_fakes
from infra.exceptions import CircuitBreakerOpenError, DatabaseConnectionError

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


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestClient, Fakes]]:
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


async def test_handlers_run_on_fakes_with_no_server(
    served: tuple[TestClient, Fakes],
) -> None:
    """Create, read through the cache, update under the lock: all on verified fakes."""
    client, fakes = served
    assert (await client.post("/users", json={"id": 7, "name": "ada"})).status == 201
    assert (await client.post("/users", json={"id": 7, "name": "ada"})).status == 409
    first = await (await client.get("/users/7")).json()
    assert first == {"id": 7, "name": "ada", "visits": 0}
    for _ in range(3):
        assert (await client.post("/users/7/visits")).status == 200
    assert (await (await client.get("/users/7")).json())["visits"] == 3
    assert (await client.get("/users/404")).status == 404
    fences = await fakes.relational.fetchval("select fence from users where id = $1", 7)
    assert fences == 3


async def test_scripted_outage_surfaces_as_503_and_opens_the_breaker(
    served: tuple[TestClient, Fakes],
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


async def test_readiness_reports_the_fakes() -> None:
    """The health registry checks the fakes installed by use_fakes."""
    example = load_example()
    app = ApplicationContainer()
    app.core.settings.override(providers.Object(Settings()))
    with use_fakes(app):
        registry = await app.health()
        report = await registry.readiness()
        assert report.status == "healthy"
        assert set(report.to_dict()["checks"]) == {"postgres", "redis"}
        await stop(app)
    assert example.SCHEMA


def test_application_container_declares_all_inputs() -> None:
    """check_dependencies passes: every backend container receives its settings."""
    ApplicationContainer().check_dependencies()

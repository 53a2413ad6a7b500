"""Importing the containers imports no driver or telemetry SDK; starting them does.

Startup time is measured by ``benchmarks/bench_startup.py``; what is pinned here is the
behaviour behind it: every heavy third-party package is imported when the resource that
needs it first starts, never by ``import containers.<module>`` or by building a container.
Beyond the named list, importing the application container may add to what
dependency-injector imports itself (its floor: pydantic, pydantic-settings, PyYAML and,
when installed, FastAPI) only our own packages and the few standard-library modules
listed in ``STDLIB_ADDED``: a new import on that path has to be added there on purpose.
Each check runs in a fresh interpreter, since this test process has imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Drivers, SDKs and libraries that only a started resource needs.
HEAVY = (
    "asyncpg",
    "redis",
    "aiobreaker",
    "tenacity",
    "opentelemetry.sdk",
    "opentelemetry.exporter",
    "prometheus_client",
    "structlog",
    "qdrant_client",
    "neo4j",
    "litellm",
    "openai",
    "httpx",
    "aiohttp",
    "grpc",
    "numpy",
    "psutil",
    "promql_parser",
)

#: Our packages: what importing the application container is expected to add.
OURS = frozenset({"config", "containers", "infra"})
#: Standard-library modules it may add to dependency-injector's own imports (cheap ones).
STDLIB_ADDED = frozenset({"graphlib"})

CONTAINER_MODULES = (
    "containers",
    "containers.core",
    "containers.lifecycle",
    "containers.observability",
    "containers.postgres",
    "containers.redis",
    "containers.application",
)


def loaded_after(code: str) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; which of ``HEAVY`` it left in sys.modules."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(  # noqa: S603 - fixed interpreter and code
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    loaded: dict[str, bool] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("module", CONTAINER_MODULES)
def test_importing_a_container_module_imports_no_driver(module: str) -> None:
    """No container module imports a driver, an SDK or the resilience libraries."""
    loaded = loaded_after(f"import {module}")
    assert [name for name, present in loaded.items() if present] == []


def test_building_and_checking_the_application_container_imports_no_driver() -> None:
    """Construction and check_dependencies() stay lazy too."""
    loaded = loaded_after(
        "from containers.application import ApplicationContainer\n"
        "ApplicationContainer().check_dependencies()"
    )
    assert [name for name, present in loaded.items() if present] == []


def test_starting_the_container_imports_what_its_resources_need() -> None:
    """The drivers arrive with the resources that use them (nothing connects: no server)."""
    loaded = loaded_after(
        "import asyncio\n"
        "from dependency_injector import providers\n"
        "from config import Settings\n"
        "from containers.application import ApplicationContainer\n"
        "from containers.lifecycle import start, stop\n"
        "app = ApplicationContainer()\n"
        "app.core.settings.override(providers.Object(Settings(log_level='WARNING')))\n"
        "app.observability.tracing_global.override(providers.Object(False))\n"
        "async def main():\n"
        "    await start(app)\n"
        "    await stop(app)\n"
        "asyncio.run(main())"
    )
    for name in ("asyncpg", "redis", "aiobreaker", "tenacity", "prometheus_client"):
        assert loaded[name], name
    for name in ("qdrant_client", "neo4j", "litellm"):  # no resource of the app uses them
        assert not loaded[name], name


def added_over_the_floor(*, fastapi: bool) -> tuple[list[str], list[str]]:
    """(modules the floor imports, modules ``containers.application`` adds to them), in a
    fresh interpreter; ``fastapi=False`` makes FastAPI unimportable first."""
    code = (
        ("import sys; sys.modules['fastapi'] = None\n" if not fastapi else "")
        + "import json, sys\n"
        "import dependency_injector.containers\n"
        "floor = set(sys.modules)\n"
        "from containers.application import ApplicationContainer\n"
        "print(json.dumps([sorted(floor), sorted(set(sys.modules) - floor)]))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(  # noqa: S603 - fixed interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    floor, added = json.loads(result.stdout.strip().splitlines()[-1])
    return floor, added


@pytest.mark.parametrize("fastapi", [True, False], ids=["fastapi-importable", "fastapi-blocked"])
def test_the_application_container_adds_only_our_modules_to_the_floor(fastapi: bool) -> None:
    """Over ``import dependency_injector.containers``, importing the application container
    adds our packages, ``STDLIB_ADDED`` and at most lazily loaded parts of libraries the
    floor already imported (pydantic loads some submodules on first attribute access);
    nothing heavy either way."""
    floor, added = added_over_the_floor(fastapi=fastapi)
    floor_packages = {name.partition(".")[0] for name in floor}
    unexpected = [
        name
        for name in added
        if name.partition(".")[0] not in OURS | floor_packages and name not in STDLIB_ADDED
    ]
    assert unexpected == []
    assert [name for name in added if name.partition(".")[0] in OURS]  # it measured ours
    heavy = [m for m in added if any(m == h or m.startswith(f"{h}.") for h in HEAVY)]
    assert heavy == []

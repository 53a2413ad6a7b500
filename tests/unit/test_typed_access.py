"""The typed access helpers change nothing at run time: ``nested`` is dependency-injector's
``providers.Container`` and ``provide`` its ``Provide[...]`` marker, so wiring, ``@inject``
and the startup validation behave as with the untyped spellings. (What mypy accepts and
rejects is proven by ``typing_tests/``.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import resolve, start, stop
from containers.postgres import PostgresContainer
from containers.redis import RedisContainer
from containers.testing import use_fakes
from containers.typed import nested, provide
from infra.ports import CacheStore, DistributedLock, RelationalStore

App = ApplicationContainer

#: Every provider of the nested backend containers, by name.
BACKEND_PROVIDERS = [
    ("postgres", name) for name in PostgresContainer.providers if name != "settings"
] + [("redis", name) for name in RedisContainer.providers if name != "settings"]


@inject
async def typed_handler(
    store: RelationalStore = provide(App.postgres.store),
    cache: CacheStore = provide(App.redis.cache),
    lock: DistributedLock = provide(App.redis.lock),
) -> tuple[RelationalStore, CacheStore, DistributedLock]:
    """Declared as the ports: the fakes implement them as the adapters do."""
    return store, cache, lock


def make_app() -> ApplicationContainer:
    app = ApplicationContainer()
    app.core.settings.override(providers.Object(Settings(log_level="WARNING")))
    app.observability.tracing_global.override(providers.Object(False))
    return app


@pytest.fixture
def app() -> Iterator[ApplicationContainer]:
    container = make_app()
    container.wire(modules=[sys.modules[__name__]])
    try:
        yield container
    finally:
        container.unwire()


@pytest.mark.parametrize(("backend", "name"), BACKEND_PROVIDERS)
def test_provide_is_the_marker_provide_would_build(backend: str, name: str) -> None:
    """For every backend provider, ``provide(p)`` is a ``Provide`` marker naming ``p``."""
    provider = getattr(getattr(App, backend), name)
    marker: object = provide(provider)
    untyped: object = Provide[provider]
    assert type(marker) is type(untyped)
    assert getattr(marker, "provider", None) is provider is getattr(untyped, "provider", None)


@pytest.mark.parametrize("backend", ["core", "observability", "postgres", "redis"])
def test_nested_containers_are_dependency_injector_container_providers(backend: str) -> None:
    declared: object = getattr(App, backend)
    assert isinstance(declared, providers.Container)
    built: object = getattr(make_app(), backend)
    assert isinstance(built, providers.Container)
    assert built is not declared  # each application container has its own copy


def test_nested_passes_the_dependencies_through() -> None:
    settings = Settings(log_level="WARNING")

    class Outer(containers.DeclarativeContainer):
        postgres = nested(PostgresContainer, settings=providers.Object(settings))

    outer = Outer()
    outer.check_dependencies()
    assert outer.postgres.settings() is settings


async def test_provide_markers_are_injected_under_fakes(app: ApplicationContainer) -> None:
    """Wired ``provide`` parameters receive the fakes ``use_fakes`` installed."""
    with use_fakes(app) as fakes:
        store, cache, lock = await typed_handler()
        assert store is fakes.relational
        assert cache is fakes.cache
        assert lock is fakes.lock


async def test_provide_markers_are_injected_after_start(app: ApplicationContainer) -> None:
    """Wired ``provide`` parameters receive the started adapters, as ``Provide`` would."""
    await start(app)
    try:
        store, cache, lock = await typed_handler()
        assert store is app.postgres.store() is await resolve(app.postgres.store)
        assert cache is app.redis.cache()
        assert lock is app.redis.lock()
    finally:
        await stop(app)


# ------------------------------------------------------------------ the rejected cases
TYPING_TESTS = Path(__file__).resolve().parents[2] / "typing_tests"
_IGNORE = re.compile(r"\s*# type: ignore\[([a-z-]+)\]\s*$")
_ERROR = re.compile(r"^(?P<path>.+?):(?P<line>\d+): error: (?P<message>.*)\[(?P<code>[a-z-]+)\]$")


def expected_rejections(source: str) -> tuple[str, dict[int, str]]:
    """``source`` without its ``# type: ignore[code]`` comments, and ``{line: code}``."""
    stripped: list[str] = []
    expected: dict[int, str] = {}
    for number, line in enumerate(source.splitlines(), start=1):
        match = _IGNORE.search(line)
        if match is not None:
            expected[number] = match.group(1)
        stripped.append(line if match is None else line[: match.start()])
    return "\n".join(stripped) + "\n", expected


@pytest.mark.slow
def test_mypy_accepts_the_accepted_cases_and_rejects_each_rejected_one(tmp_path: Path) -> None:
    """mypy strict (the project's configuration) run on ``typing_tests/accepted.py`` and on
    ``typing_tests/rejected.py`` with its ``# type: ignore[code]`` comments removed: no error
    in the accepted file, and in the rejected one exactly one error per marked line, with
    the code the comment names -- so a case that became accepted, or is rejected for
    another reason, fails here (and not only in the project's ``mypy`` run)."""
    root = TYPING_TESTS.parent
    source, expected = expected_rejections((TYPING_TESTS / "rejected.py").read_text())
    assert len(expected) >= 15  # every case is marked; the file is not empty
    rejected = tmp_path / "rejected_cases.py"
    rejected.write_text(source)
    done = subprocess.run(  # noqa: S603 - mypy on our own files, fixed arguments
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(root / "pyproject.toml"),
            "--no-incremental",
            "--hide-error-context",
            "--no-pretty",
            "--show-error-codes",
            str(TYPING_TESTS / "accepted.py"),
            str(rejected),
        ],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "MYPYPATH": str(root)},  # this checkout, not an installed copy
        timeout=600,
        check=False,
    )
    errors: dict[str, dict[int, str]] = {"accepted.py": {}, "rejected_cases.py": {}}
    for line in done.stdout.splitlines():
        match = _ERROR.match(line)
        if match is not None:
            found = errors.setdefault(Path(match["path"]).name, {})
            assert int(match["line"]) not in found, f"two errors on one line: {line}"
            found[int(match["line"])] = match["code"]
    assert errors.pop("accepted.py") == {}, done.stdout
    assert errors.pop("rejected_cases.py") == expected, done.stdout
    assert errors == {}, done.stdout  # nothing the two files import
    assert done.returncode == 1, done.stdout + done.stderr

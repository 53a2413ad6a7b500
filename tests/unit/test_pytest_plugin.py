"""The application test kit (infra/testing/pytest_plugin.py), run as an application would.

The app and its test suite are the files of docs/testing.md, "Testing your application"
(each code block starting with ``# file: <path>``), so the documentation is what runs.
Each run is a separate pytest process (pytester's subprocess mode) -- a fresh session, so
"started once per session, stopped at its end" is observable -- with the plugin loaded by
``-p`` exactly as the entry point would load it.
"""

from __future__ import annotations

import json
import os
import re
import time
import tomllib
from pathlib import Path
from typing import TypedDict

import psutil  # type: ignore[import-untyped]
import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "testing.md"
PLUGIN = "infra.testing.pytest_plugin"

# Records which fixtures the inner session set up, and the embedded servers' pids.
SPY_CONFTEST = """
import json, os
import pytest
SETUP, SERVERS = [], {}
@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    value = yield
    SETUP.append(fixturedef.argname)
    if fixturedef.argname.startswith("semantica_embedded_"):
        SERVERS[fixturedef.argname] = value.pid
    return value
def pytest_sessionfinish(session):
    with open(os.environ["SPY_LOG"], "w") as log:
        json.dump({"setup": SETUP, "servers": SERVERS}, log)
"""


def doc_files() -> dict[str, str]:
    """``path -> content`` of the documented example's code blocks."""
    section = DOC.read_text().split("## Testing your application", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:python|toml)\n# file: (\S+)\n(.*?)```", section, re.S)
    return dict(blocks)


class Spy(TypedDict, total=False):
    """What the spy conftest recorded (nothing when the inner session did not finish)."""

    setup: list[str]
    servers: dict[str, int]


@pytest.fixture
def app_dir(pytester: pytest.Pytester) -> pytest.Pytester:
    """The documented application and its tests, plus a spy in a root conftest."""
    for path, content in doc_files().items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    (pytester.path / "conftest.py").write_text(SPY_CONFTEST)
    return pytester


def run(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    env: dict[str, str] | None = None,
    path: tuple[Path, ...] = (),
) -> tuple[pytest.RunResult, Spy]:
    """One pytest process on the app, with our packages importable; its result and spy log."""
    for name in list(os.environ):
        if name.startswith("SEMANTICA_"):
            monkeypatch.delenv(name)
    log = pytester.path / "spy.json"
    monkeypatch.setenv("SPY_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(map(str, (ROOT, pytester.path, *path))))
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    result = pytester.runpytest_subprocess("-p", PLUGIN, "-p", "no:cacheprovider", *args)
    spy: Spy = json.loads(log.read_text()) if log.exists() else {}
    return result, spy


def test_the_doc_example_has_an_app_a_conftest_tests_and_settings() -> None:
    """The extraction below finds every file of the documented example."""
    assert set(doc_files()) == {
        "notes.py",
        "tests/conftest.py",
        "tests/test_notes.py",
        "pyproject.toml",
    }


def test_fake_mode_is_the_default_and_starts_no_server(
    app_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, spy = run(app_dir, monkeypatch)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["semantica backends: fake"])
    assert "semantica_container" in spy["setup"]
    assert "semantica_embedded_postgres" not in spy["setup"]
    assert "semantica_embedded_redis" not in spy["setup"]


@pytest.mark.slow
@pytest.mark.postgres  # the inner session starts its own servers: `-m "not postgres"` skips
@pytest.mark.redis
def test_embedded_mode_starts_each_server_once_and_stops_it(
    app_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tests, one PostgreSQL and one Redis for the session; both gone afterwards."""
    result, spy = run(app_dir, monkeypatch, "--semantica-backends=embedded")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["semantica backends: embedded"])
    setup = spy["setup"]
    assert isinstance(setup, list)
    assert setup.count("semantica_embedded_postgres") == 1
    assert setup.count("semantica_embedded_redis") == 1
    assert setup.count("semantica_container") == 2
    servers = spy["servers"]
    assert isinstance(servers, dict)
    assert set(servers) == {"semantica_embedded_postgres", "semantica_embedded_redis"}
    for pid in servers.values():
        assert _ends(pid), f"server {pid} still running after the session"


def _ends(pid: int, within: float = 30.0) -> bool:
    """Whether ``pid`` is gone (or dead, a zombie its parent has not collected yet) within
    ``within`` seconds -- a hang guard: PostgreSQL's postmaster is pg_ctl's daemon, not
    our child, and may still be in its last exit steps, or waiting for init, when the
    session's last line returns (a loaded machine showed it once)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def test_the_environment_variable_selects_the_mode_and_the_option_wins(
    app_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, postgres_dsn: str, redis_url: str
) -> None:
    """``SEMANTICA_TEST_BACKENDS=external`` runs on the servers the variables name (this
    session's, so nothing starts); ``--semantica-backends=fake`` overrides the variable."""
    env = {
        "SEMANTICA_TEST_BACKENDS": "external",
        "SEMANTICA_TEST_POSTGRES_DSN": postgres_dsn,
        "SEMANTICA_TEST_REDIS_URL": redis_url,
    }
    result, spy = run(app_dir, monkeypatch, env=env)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["semantica backends: external"])
    assert "semantica_postgres_dsn" in spy["setup"]
    assert "semantica_embedded_postgres" not in spy["setup"]
    assert "semantica_embedded_redis" not in spy["setup"]

    result, spy = run(app_dir, monkeypatch, "--semantica-backends=fake", env=env)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["semantica backends: fake"])
    assert "semantica_postgres_dsn" not in spy["setup"]


def test_settings_point_at_the_chosen_servers(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, postgres_dsn: str, redis_url: str
) -> None:
    """In external mode ``semantica_settings`` and the started adapters use the variables."""
    pytester.makepyfile(
        test_settings="""
        import os

        async def test_settings(semantica_settings, semantica_container):
            assert semantica_settings.database_url == os.environ["SEMANTICA_TEST_POSTGRES_DSN"]
            assert semantica_settings.redis_url == os.environ["SEMANTICA_TEST_REDIS_URL"]
            assert semantica_container.core.settings() is semantica_settings
            assert await semantica_container.postgres.store().fetchval("select 41 + 1") == 42
            assert type(semantica_container.postgres.store()).__name__ != "FakeRelationalStore"
        """
    )
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function")
    env = {"SEMANTICA_TEST_POSTGRES_DSN": postgres_dsn, "SEMANTICA_TEST_REDIS_URL": redis_url}
    result, _ = run(pytester, monkeypatch, "--semantica-backends=external", env=env)
    result.assert_outcomes(passed=1)


def test_external_mode_without_the_variables_fails_naming_them(
    app_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, spy = run(app_dir, monkeypatch, "--semantica-backends=external")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*needs SEMANTICA_TEST_POSTGRES_DSN naming a disposable*"])
    assert "semantica_embedded_postgres" not in spy["setup"]


def test_a_bad_mode_in_the_environment_is_a_usage_error(
    app_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, _ = run(app_dir, monkeypatch, env={"SEMANTICA_TEST_BACKENDS": "docker"})
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*SEMANTICA_TEST_BACKENDS='docker' is not a backends mode*"])


def test_fakes_fixture_outside_fake_mode_fails_saying_so(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, postgres_dsn: str, redis_url: str
) -> None:
    pytester.makepyfile(test_fakes="async def test_fakes(semantica_fakes):\n    pass\n")
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function")
    env = {"SEMANTICA_TEST_POSTGRES_DSN": postgres_dsn, "SEMANTICA_TEST_REDIS_URL": redis_url}
    result, _ = run(pytester, monkeypatch, "--semantica-backends=external", env=env)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*semantica_fakes exists only with --semantica-backends=fake*"])


def test_entry_point_plus_pytest_plugins_registers_once(
    app_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``pytest11`` entry point of pyproject.toml, installed (as a dist-info on the
    path), together with ``pytest_plugins`` in a conftest and ``-p``: no error, one plugin."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    entry_points = project["entry-points"]["pytest11"]
    assert entry_points == {PLUGIN: PLUGIN}
    site = app_dir.path / "site"
    dist = site / "semantica_infra_probe-0.0.0.dist-info"
    dist.mkdir(parents=True)
    metadata = "Metadata-Version: 2.1\nName: semantica-infra-probe\nVersion: 0.0.0\n"
    (dist / "METADATA").write_text(metadata)
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[pytest11]\n{lines}")
    conftest = app_dir.path / "tests" / "conftest.py"
    conftest.write_text(f"pytest_plugins = [{PLUGIN!r}]\n" + conftest.read_text())
    result, _ = run(app_dir, monkeypatch, "--trace-config", path=(site,))
    result.assert_outcomes(passed=2)
    registered = [line for line in result.stdout.lines if "pytest_plugin.py" in line]
    assert len([line for line in registered if line.lstrip().startswith(PLUGIN)]) == 1
    # loaded through an entry point (pytest names the distribution that provided it): the
    # probe's, or the installed semantica-infra's when the package itself is installed
    result.stdout.fnmatch_lines(["*semantica-infra* at *pytest_plugin.py*"])


# Found before the installed one (PYTHONPATH precedes site-packages): "not installed".
ABSENT_PYTEST_ASYNCIO = (
    "raise ModuleNotFoundError(\"No module named 'pytest_asyncio'\", name='pytest_asyncio')\n"
)


def test_without_pytest_asyncio_the_container_fixture_says_what_to_install(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-asyncio absent (its plugin off, its import failing): the plugin still loads, the
    mode fixtures work, and ``semantica_container`` fails naming the package."""
    site = pytester.mkdir("site")
    (site / "pytest_asyncio.py").write_text(ABSENT_PYTEST_ASYNCIO)
    pytester.makepyfile(
        test_kit="""
        def test_mode(semantica_backends):
            assert semantica_backends == "fake"

        def test_container(semantica_container):
            raise AssertionError("not reached")
        """
    )
    result, _ = run(pytester, monkeypatch, "-p", "no:asyncio", path=(site,))
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*needs pytest-asyncio: pip install pytest-asyncio*"])


def test_an_application_containers_module_is_named_with_the_fix(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app with its own top-level ``containers.py`` (dependency-injector's examples name
    their module so) and a test importing ours: Python's own error says only "'containers'
    is not a package"; the collection error also names the app's file and the fix."""
    shadow = pytester.path / "containers.py"
    shadow.write_text("class Container:\n    pass\n")
    pytester.makepyfile(
        test_app="""
        from containers.application import ApplicationContainer

        def test_app():
            assert ApplicationContainer
        """
    )
    result, _ = run(pytester, monkeypatch, "-p", "no:asyncio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*'containers' is not a package*",
            "*semantica-infra: a shadowed package*",
            f"*{shadow} shadows semantica-infra's 'containers' package*",
        ]
    )
    assert "Rename your module (e.g. containers.py -> app_containers.py)" in result.stdout.str()

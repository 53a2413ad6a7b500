"""The application test kit (``infra.testing.pytest_plugin``) serves the graph in every
mode: the fake under ``fake``, the embedded FalkorDB under ``embedded``, and the server
``SEMANTICA_TEST_GRAPH_URI`` names under ``external``. Each run is a separate pytest
process on a one-file application test, with the plugin loaded by ``-p``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[3]

#: What an application's test does with the graph: one write, the reads back, the
#: cached store and the health check -- whichever store the mode gives.
APP_TEST = """
import os


async def test_graph(semantica_container, semantica_backends):
    store = semantica_container.graph.store()
    cached = semantica_container.graph.cached_store()
    assert type(store).__name__ == os.environ["EXPECTED_STORE"]
    assert semantica_backends == os.environ["EXPECTED_MODE"]
    await store.upsert_nodes("Kit", [{"id": "kit-a", "v": 1}, {"id": "kit-b"}])
    await store.upsert_edges("KNOWS", [("kit-a", "kit-b")])
    assert (await cached.get_node("kit-a")).properties == {"v": 1}
    await cached.upsert_nodes("Kit", [{"id": "kit-a", "v": 2}])
    assert (await cached.get_node("kit-a")).properties == {"v": 2}
    assert [n.node.id for n in await store.neighbours("kit-a")] == ["kit-b"]
    await store.delete_nodes(["kit-a", "kit-b"])
    healthy, _ = await store.health_check(latency_threshold_ms=60_000)
    assert healthy
"""


def run_app(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    expected_store: str,
    env: dict[str, str],
) -> pytest.RunResult:
    for name in list(os.environ):
        if name.startswith("SEMANTICA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join((str(ROOT), str(pytester.path))))
    monkeypatch.setenv("EXPECTED_STORE", expected_store)
    monkeypatch.setenv("EXPECTED_MODE", mode)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(test_app=APP_TEST)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function")
    plugin = "infra.testing.pytest_plugin"
    return pytester.runpytest_subprocess(
        "-p", plugin, "-p", "no:cacheprovider", f"--semantica-backends={mode}"
    )


def test_fake_mode_serves_the_graph_fake(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No server: the container's graph store is the in-memory fake."""
    run_app(pytester, monkeypatch, "fake", "FakeGraphStore", {}).assert_outcomes(passed=1)


@pytest.mark.graph
@pytest.mark.redis
@pytest.mark.postgres
def test_external_mode_serves_the_named_graph_server(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """``SEMANTICA_TEST_GRAPH_URI`` (and its user) name the Bolt server: the real store."""
    bolt_auth: tuple[str, str] = request.getfixturevalue("bolt_auth")
    env = {
        "SEMANTICA_TEST_POSTGRES_DSN": request.getfixturevalue("postgres_dsn"),
        "SEMANTICA_TEST_REDIS_URL": request.getfixturevalue("redis_url"),
        "SEMANTICA_TEST_GRAPH_URI": request.getfixturevalue("bolt_uri"),
        "SEMANTICA_TEST_GRAPH_USER": bolt_auth[0],
    }
    if bolt_auth[1]:
        env["SEMANTICA_TEST_GRAPH_PASSWORD"] = bolt_auth[1]
    result = run_app(pytester, monkeypatch, "external", "MemgraphGraphStore", env)
    result.assert_outcomes(passed=1)


@pytest.mark.graph
@pytest.mark.slow
def test_embedded_mode_serves_the_embedded_bolt_engine(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing named: the kit starts PostgreSQL and Redis with FalkorDB's Bolt server,
    and the container's graph store is the real one on it."""
    result = run_app(pytester, monkeypatch, "embedded", "MemgraphGraphStore", {})
    result.assert_outcomes(passed=1)

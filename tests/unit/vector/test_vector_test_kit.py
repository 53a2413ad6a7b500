"""The application test kit (``infra.testing.pytest_plugin``) serves the vector store in
each of its modes, run as an application's suite would be (a pytest subprocess with the
plugin loaded by ``-p``): the fake under ``fake``; Qdrant's local mode under
``embedded`` and ``external``; the server in ``SEMANTICA_TEST_QDRANT_URL`` when set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[3]

APP_TEST = """
import os
from infra.ports import VectorPoint

async def test_vector(semantica_backends, semantica_container):
    store = semantica_container.vector.store()
    print(f"vector store: {type(store).__name__}")
    url = os.environ.get("SEMANTICA_TEST_QDRANT_URL")
    if semantica_backends != "fake" and url:
        assert store.client.init_options["url"] == url  # a server: no request made here
        return
    if semantica_backends != "fake":
        assert store.client.init_options["location"] == ":memory:"
    await store.ensure_collection("docs", vector_size=2, model="m")
    await store.upsert("docs", [VectorPoint(1, [1.0, 0.0]), VectorPoint(2, [0.0, 1.0])])
    assert [hit.id for hit in await store.search("docs", [1.0, 0.1], limit=1)] == [1]
    if semantica_backends != "fake":  # the fake is served whether or not one is configured
        assert "vector" in semantica_container.observability.health().names()
"""


def run_app_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str, env: dict[str, str]
) -> pytest.RunResult:
    for name in list(os.environ):
        if name.startswith("SEMANTICA_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join((str(ROOT), str(pytester.path))))
    pytester.makepyfile(test_app_vector=APP_TEST)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function")
    return pytester.runpytest_subprocess(
        "-p", "infra.testing.pytest_plugin", "-p", "no:cacheprovider", "-s",
        f"--semantica-backends={mode}",
    )  # fmt: skip


def test_fake_mode_serves_the_fake_vector_store(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_app_suite(pytester, monkeypatch, "fake", {})
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*vector store: FakeVectorStore*"])


@pytest.mark.parametrize("qdrant_url", [None, "http://127.0.0.1:6333"])
def test_external_mode_serves_local_mode_or_the_qdrant_server_named(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    postgres_dsn: str,
    redis_url: str,
    qdrant_url: str | None,
) -> None:
    """On this session's PostgreSQL and Redis (nothing started): Qdrant local mode, or --
    with ``SEMANTICA_TEST_QDRANT_URL`` -- a client for that server."""
    env = {"SEMANTICA_TEST_POSTGRES_DSN": postgres_dsn, "SEMANTICA_TEST_REDIS_URL": redis_url}
    if qdrant_url:
        env["SEMANTICA_TEST_QDRANT_URL"] = qdrant_url
    result = run_app_suite(pytester, monkeypatch, "external", env)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*vector store: QdrantVectorStore*"])


@pytest.mark.slow
@pytest.mark.postgres  # the inner session starts its own servers
@pytest.mark.redis
def test_embedded_mode_serves_qdrant_local_mode(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_app_suite(pytester, monkeypatch, "embedded", {})
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*vector store: QdrantVectorStore*"])

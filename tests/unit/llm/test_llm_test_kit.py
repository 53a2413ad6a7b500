"""The application test kit serves the LLM in every mode: the fake in ``fake`` mode, the
loopback OpenAI-compatible server (through the real adapter) otherwise. (``embedded``
mode takes the session's servers from the ``SEMANTICA_TEST_*`` variables instead of
starting its own, as it does whenever they are set.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = "infra.testing.pytest_plugin"
APP_TEST = """
from infra.ports import ChatMessage

async def test_llm(semantica_container, semantica_backends):
    llm = semantica_container.llm.adapter()
    answer = await llm.complete([ChatMessage("user", "ping pong")])
    assert answer.text == "echo: ping pong"
    [vector] = await semantica_container.llm.embeddings().embed(["x"])
    assert len(vector) == 16
    real = type(llm).__name__ == "LiteLLMAdapter"
    assert real == (semantica_backends != "fake")
"""


@pytest.mark.parametrize("mode", ["fake", "embedded", "external"])
def test_the_llm_answers_in_each_mode(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    postgres_dsn: str,
    redis_url: str,
    mode: str,
) -> None:
    for name in list(os.environ):
        if name.startswith("SEMANTICA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join((str(ROOT), str(pytester.path))))
    monkeypatch.setenv("SEMANTICA_TEST_POSTGRES_DSN", postgres_dsn)
    monkeypatch.setenv("SEMANTICA_TEST_REDIS_URL", redis_url)
    pytester.makepyfile(test_app=APP_TEST)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function")
    result = pytester.runpytest_subprocess(
        "-p", PLUGIN, "-p", "no:cacheprovider", f"--semantica-backends={mode}"
    )
    result.assert_outcomes(passed=1)

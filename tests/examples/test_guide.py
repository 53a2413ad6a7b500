"""Every code block of docs/guide.md runs as written.

The README's mechanism (``tests/examples/test_readme.py``: compile each ```python block
with top-level ``await`` allowed, evaluate it, await the result), with two additions the
guide needs:

* a block whose first line is ``# file: <name>.py`` is a file of the example
  application: it is written to a folder on ``sys.path`` (so the other blocks import
  it), not evaluated on its own;
* each other block runs as a module of its own in ``sys.modules`` (``wire()`` takes
  modules), which is removed afterwards;
* the ```bash block's ``pytest`` commands are run, with its ``export`` lines, against the
  ``test_*.py`` file block in a fresh pytest process each: the same application suite on
  the fakes, on embedded servers started by that process, and on external servers (this
  session's, named by the exported variables).
"""

from __future__ import annotations

import ast
import re
import shlex
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.observability import MetricsCollector, reset_metrics_collector, set_metrics_collector

pytest_plugins = ["pytester"]

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"
BLOCKS = re.findall(r"```(python|bash)\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.DOTALL)
FILE_MARK = re.compile(r"# file: (\w+\.py)\n")

FILES = {m.group(1): code for lang, code in BLOCKS if (m := FILE_MARK.match(code))}
SNIPPETS = [code for lang, code in BLOCKS if lang == "python" and not FILE_MARK.match(code)]
COMMANDS = [code for lang, code in BLOCKS if lang == "bash"]


def test_the_guide_has_its_blocks() -> None:
    """The guide shows the application, its test file, snippets and the commands (so the
    tests below cannot pass vacuously)."""
    assert set(FILES) == {"notes_app.py", "test_notes.py"}
    fences = re.findall(r"^```", GUIDE.read_text(encoding="utf-8"), re.MULTILINE)
    assert len(fences) == 2 * len(BLOCKS), "a block that is neither ```python nor ```bash"
    assert len(SNIPPETS) >= 5
    assert len(COMMANDS) == 1


@pytest.fixture
def application(tmp_path: Path) -> Iterator[Path]:
    """The guide's files in a folder on ``sys.path``; their modules forgotten after."""
    for name, code in FILES.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in FILES:
            sys.modules.pop(name.removesuffix(".py"), None)


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
async def test_guide_block_runs(index: int, application: Path) -> None:
    """Snippet number ``index`` of the guide executes without error."""
    set_metrics_collector(MetricsCollector())
    name = f"guide_block_{index}"
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        code = compile(
            SNIPPETS[index],
            f"guide.md[block {index}]",
            "exec",
            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        )
        result = eval(code, module.__dict__)  # noqa: S307 - our own guide, by design
        if isinstance(result, types.CoroutineType):
            await result
    finally:
        del sys.modules[name]
        reset_metrics_collector()


def runs() -> list[tuple[dict[str, str], list[str]]]:
    """``(exported variables, pytest arguments)`` of each ``pytest`` line of the bash
    block, in order; an ``export`` applies to the lines after it."""
    exported: dict[str, str] = {}
    found = []
    for line in COMMANDS[0].splitlines():
        words = shlex.split(line)
        if words[:1] == ["export"]:
            key, _, value = words[1].partition("=")
            exported[key] = value
        elif words[:1] == ["pytest"]:
            found.append((dict(exported), words[1:]))
    return found


def test_the_commands_are_the_three_modes() -> None:
    assert [args for _, args in runs()] == [
        [],
        ["--semantica-backends=embedded"],
        ["--semantica-backends=external"],
    ]


@pytest.mark.slow
def test_the_application_suite_runs_three_ways(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    postgres_dsn: str,
    redis_url: str,
) -> None:
    """The guide's ``test_notes.py`` (an httpx test on ``semantica_container``, a
    TestClient test on ``semantica_unstarted_container``) passes under each of its three
    commands, each in a
    pytest process of its own; external mode on this session's servers."""
    for name, code in FILES.items():
        (pytester.path / name).write_text(code, encoding="utf-8")
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings =\n    error\n    ignore:.*XDG_RUNTIME_DIR.*\n"
    )
    real = {"SEMANTICA_TEST_POSTGRES_DSN": postgres_dsn, "SEMANTICA_TEST_REDIS_URL": redis_url}
    for exported, args in runs():
        for key in (*real, "SEMANTICA_TEST_BACKENDS"):
            monkeypatch.delenv(key, raising=False)
        for key in exported:
            assert key in real, f"the guide exports {key}, which this test cannot supply"
            monkeypatch.setenv(key, real[key])
        result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider")
        mode = args[0].partition("=")[2] if args else "fake"
        assert f"semantica backends: {mode}" in result.stdout.str()
        result.assert_outcomes(passed=2)

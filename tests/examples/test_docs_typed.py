"""mypy checks the Python blocks of README.md, docs/guide.md, docs/testing.md and
docs/lifecycle.md through the modules
``typing_tests/render_docs.py`` generates; this keeps them in step with the documents,
so an edited snippet cannot escape the check."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_renderer() -> ModuleType:
    """``typing_tests/render_docs.py``, loaded by path (it is not an installed package)."""
    spec = importlib.util.spec_from_file_location(
        "typing_tests_render_docs", ROOT / "typing_tests" / "render_docs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_checked_modules_are_current() -> None:
    """Each generated module equals a fresh rendering of its document."""
    rendered: dict[str, str] = load_renderer().render_all()
    assert set(rendered) == {
        "readme_snippets.py",
        "guide_notes_app.py",
        "guide_test_notes.py",
        "guide_snippets.py",
        "testing_notes.py",
        "testing_conftest.py",
        "testing_test_notes.py",
        "testing_snippets.py",
        "lifecycle_snippets.py",
    }
    stale = [
        name
        for name, text in rendered.items()
        if (ROOT / "typing_tests" / name).read_text(encoding="utf-8") != text
    ]
    assert not stale, f"{stale} out of date: run python -m typing_tests.render_docs"


def _functions(name: str) -> list[str]:
    text = (ROOT / "typing_tests" / name).read_text(encoding="utf-8")
    return re.findall(r"^async def (\w+)\(\) -> None:", text, re.MULTILINE)


def test_every_readme_block_is_in_the_checked_module() -> None:
    """One ``async def`` per README block, none dropped (the rendering is not vacuous)."""
    renderer = load_renderer()
    count = len(renderer.blocks((ROOT / "README.md").read_text(encoding="utf-8")))
    assert count >= 5
    assert _functions("readme_snippets.py") == [f"readme_block_{i}" for i in range(count)]


def test_every_guide_block_is_checked() -> None:
    """The guide's two file blocks are modules and each other Python block an ``async
    def``: together, every Python block of the guide."""
    renderer = load_renderer()
    guide = (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")
    snippets = [b for b in renderer.blocks(guide) if not renderer.FILE_MARK.match(b)]
    assert len(snippets) >= 5
    assert len(renderer.blocks(guide)) == len(snippets) + 2
    assert _functions("guide_snippets.py") == [f"guide_block_{i}" for i in range(len(snippets))]


def test_every_testing_and_lifecycle_block_is_checked() -> None:
    """docs/testing.md's application files (what adopters copy: its example failed mypy
    strict, unchecked) and every other Python block of it and of docs/lifecycle.md."""
    renderer = load_renderer()
    testing = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    files = [m.group(1) for b in renderer.blocks(testing) if (m := renderer.FILE_MARK.match(b))]
    assert files == ["notes", "conftest", "test_notes"]
    snippets = len(renderer.blocks(testing)) - len(files)
    assert snippets >= 3
    assert _functions("testing_snippets.py") == [f"testing_block_{i}" for i in range(snippets)]
    lifecycle = (ROOT / "docs" / "lifecycle.md").read_text(encoding="utf-8")
    count = len(renderer.blocks(lifecycle))
    assert count >= 2
    assert _functions("lifecycle_snippets.py") == [f"lifecycle_block_{i}" for i in range(count)]

"""mypy checks the README's Python blocks through ``typing_tests/readme_snippets.py``; this
keeps that file in step with the README, so an edited snippet cannot escape the check."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_renderer() -> ModuleType:
    """``typing_tests/render_readme.py``, loaded by path (it is not an installed package)."""
    spec = importlib.util.spec_from_file_location(
        "typing_tests_render_readme", ROOT / "typing_tests" / "render_readme.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_checked_readme_snippets_are_current() -> None:
    """The generated module equals a fresh rendering of README.md."""
    renderer = load_renderer()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    expected = renderer.render(readme)
    current = (ROOT / "typing_tests" / "readme_snippets.py").read_text(encoding="utf-8")
    assert current == expected, (
        "typing_tests/readme_snippets.py is out of date: run python -m typing_tests.render_readme"
    )


def test_every_readme_block_is_in_the_checked_module() -> None:
    """One ``async def`` per README block, none dropped (the rendering is not vacuous)."""
    renderer = load_renderer()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    count = len(renderer.blocks(readme))
    assert count >= 5
    current = (ROOT / "typing_tests" / "readme_snippets.py").read_text(encoding="utf-8")
    assert [f"async def readme_block_{i}() -> None:" in current for i in range(count)] == [
        True
    ] * count

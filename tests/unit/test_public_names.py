"""Every package states its public names, and they are what it says.

Each package of ``infra``, ``containers`` and ``config`` has a module docstring and an
``__all__``; every public module that declares ``__all__`` is held to the same list rules:

* every listed name can be imported from it (``from package import name``, lazy
  attributes included);
* no listed name is private (``_name``) -- a helper that is exported is public whatever
  its spelling, so it is either renamed or left out;
* no name is listed twice.

A private module (``_name.py``) or one inside a private package is an implementation
detail and may export what its package needs.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL = ("infra", "containers", "config")


def _is_private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _dotted(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def public_modules() -> list[Path]:
    """The package ``__init__`` files and public modules of our top-level packages."""
    found: list[Path] = []
    for top in TOP_LEVEL:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if not any(_is_private(part) for part in parts):
                found.append(path)
    return found


def declared_all(path: Path) -> list[str] | None:
    """The literal ``__all__`` of a module, or ``None`` when it declares none."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        value: ast.expr | None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert isinstance(value, ast.List | ast.Tuple), f"{path}: __all__ must be a literal"
            names = [elt.value for elt in value.elts if isinstance(elt, ast.Constant)]
            assert len(names) == len(value.elts), f"{path}: __all__ holds only strings"
            return [str(name) for name in names]
    return None


PACKAGES = [p for p in public_modules() if p.name == "__init__.py"]
DECLARING = [p for p in public_modules() if declared_all(p) is not None]


def test_the_scan_finds_the_packages() -> None:
    """The lists below are not empty by mistake (a moved folder, a wrong root)."""
    names = {_dotted(path) for path in PACKAGES}
    assert {"infra", "infra.cache", "infra.storage", "containers", "config"} <= names
    assert len(DECLARING) > len(PACKAGES)


@pytest.mark.parametrize("path", PACKAGES, ids=_dotted)
def test_each_package_states_its_public_names(path: Path) -> None:
    """A package's ``__init__`` has a docstring and an ``__all__``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert ast.get_docstring(tree), f"{_dotted(path)}: say what the package is for"
    assert declared_all(path) is not None, f"{_dotted(path)}: declare __all__"


@pytest.mark.parametrize("path", DECLARING, ids=_dotted)
def test_every_exported_name_is_public_and_importable(path: Path) -> None:
    """Each ``__all__`` entry is a public name, listed once, that the module provides."""
    names = declared_all(path) or []
    assert [name for name in names if _is_private(name)] == []
    assert sorted(set(names)) == sorted(names), "a name is listed twice"
    module = importlib.import_module(_dotted(path))
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == []


def test_the_checks_see_a_private_or_missing_name(tmp_path: Path) -> None:
    """The list reader sees private entries; a non-literal ``__all__`` is refused."""
    module = tmp_path / "sample.py"
    module.write_text('"""Doc."""\n__all__ = ["public", "_helper"]\n', encoding="utf-8")
    assert declared_all(module) == ["public", "_helper"]
    assert [name for name in declared_all(module) or [] if _is_private(name)] == ["_helper"]
    module.write_text("__all__ = sorted(['a'])\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="literal"):
        declared_all(module)
    module.write_text("x = 1\n", encoding="utf-8")
    assert declared_all(module) is None

"""Tests reach our code through public names only.

A test that imports a private module (``infra.cache._client``) or a private name
(``from infra.cache import _helper``) pins an internal layout: it breaks when the
internals are reorganised although no behaviour changed, and it tests what users cannot
see. This test reads every test, example and benchmark file and fails on such an import
of ``infra``, ``containers`` or ``config``.

``PENDING`` lists the files whose private imports belong to areas being reorganised in
parallel; each entry says what it imports. It may only shrink: an entry whose file no
longer imports anything private fails the test too, so the list cannot go stale.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("infra", "containers", "config")
SCANNED = ("tests", "examples", "benchmarks")

PENDING: dict[str, set[str]] = {
    # The storage internals (DSN parsing, the pool, the dead-peer timer, statements) and
    # the fakes' SQL helpers are being replaced by their owners.
    "tests/unit/storage/test_postgres_unit.py": {
        "infra.storage._deadpeer",
        "infra.storage._dsn",
        "infra.storage._pool",
        "infra.storage._statements",
        "infra.testing.fakes._relational_sql",
    },
}


def _private(dotted: str) -> bool:
    parts = dotted.split(".")
    return parts[0] in OURS and any(p.startswith("_") and not p.startswith("__") for p in parts)


def private_imports(path: Path) -> set[str]:
    """The private modules (and ``module._name`` imports) of ours that ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if _private(alias.name)}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _private(node.module):
                found.add(node.module)
            elif node.module.split(".")[0] in OURS:
                names = (f"{node.module}.{alias.name}" for alias in node.names)
                found |= {name for name in names if _private(name)}
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and _private(node.args[0].value)
        ):
            found.add(node.args[0].value)
    return found


def scanned_files() -> list[Path]:
    return sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*.py"))


def test_no_test_imports_a_private_module_of_ours() -> None:
    offenders = {
        str(path.relative_to(ROOT)): imported
        for path in scanned_files()
        if (imported := private_imports(path))
    }
    unexpected = {
        path: sorted(imported - PENDING.get(path, set()))
        for path, imported in offenders.items()
        if imported - PENDING.get(path, set())
    }
    assert unexpected == {}, "import the public name instead (or make it public on purpose)"
    stale = {path for path, names in PENDING.items() if not names <= offenders.get(path, set())}
    assert stale == set(), "these files no longer import the private modules listed: shrink"


def test_the_check_sees_every_form_of_private_import(tmp_path: Path) -> None:
    """Each way of reaching a private module is caught; public ones and others' are not."""
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import infra.cache._client\n"
        "from infra.storage._dsn import mask_dsn\n"
        "from infra.cache import _helper, RedisCache\n"
        "import importlib\n"
        "importlib.import_module('config._hidden')\n"
        "from infra.testing.chaos import ChaosProxy\n"
        "from opentelemetry.semconv import _incubating\n"
        "from . import _local\n",
        encoding="utf-8",
    )
    assert private_imports(sample) == {
        "infra.cache._client",
        "infra.storage._dsn",
        "infra.cache._helper",
        "config._hidden",
    }

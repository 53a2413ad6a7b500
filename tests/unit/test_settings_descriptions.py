"""Field descriptions: each setting's docstring, read on demand, never while importing.

A setting's meaning is declared once, as the docstring under its field in
``config/groups.py``; ``docs/configuration.md`` shows it (``test_settings.py`` compares the
two). :meth:`SettingsGroup.descriptions` reads the docstrings from the source when asked.
pydantic's ``use_attribute_docstrings`` reads the same convention, but while each class is
created, which made ``import config`` re-read and tokenize its own source; here pydantic's
reading is the oracle for ours, over generated class bodies.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

from hypothesis import given
from hypothesis import strategies as st

from config import Settings
from config.groups import SettingsGroup

ROOT = Path(__file__).resolve().parents[2]
_MODULE_NUMBERS = itertools.count()


def test_every_setting_has_a_description() -> None:
    """Each field of each group has a non-empty docstring (its documented meaning)."""
    for env, (group, name) in Settings.variables().items():
        assert group.descriptions().get(name, "").strip(), env


def test_descriptions_follow_the_declaration_order() -> None:
    """``descriptions()`` names exactly the declared fields, in declaration order."""
    for group, _ in Settings.variables().values():
        assert list(group.descriptions()) == list(group.model_fields)


def test_importing_config_reads_no_source() -> None:
    """Importing config extracts no docstring: no field carries a description and no
    source file sits in ``linecache`` (pydantic's extraction reads the class source
    through it) -- until ``descriptions()`` is called."""
    code = (
        "import json, linecache, config\n"
        "from config.groups import GROUPS\n"
        "described = [f'{g.__name__}.{n}' for g in GROUPS for n, f in g.model_fields.items()"
        " if f.description]\n"
        "before = sorted(linecache.cache)\n"
        "GROUPS[0].descriptions()\n"
        "print(json.dumps([described, before, len(GROUPS[0].descriptions())]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(  # noqa: S603 - fixed interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    described, cached_sources, counted = json.loads(result.stdout.strip().splitlines()[-1])
    assert described == []
    assert cached_sources == []
    assert counted > 0


# ------------------------------------------------- generated classes, pydantic as oracle

_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: (
        name not in {"model_config", "settings_attribute"}
        and not name.startswith("model_")
        and name not in {"if", "in", "is", "or", "as", "def", "del", "for", "not", "and", "try"}
    )
)
_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from("\n \t"),
    max_size=40,
)


@st.composite
def _docstring(draw: st.DrawFn) -> str:
    """A string literal: repr'd, or triple-quoted and indented like a hand-written one."""
    text = draw(_TEXT)
    if draw(st.booleans()) and '"' not in text and "\\" not in text:
        return '"""' + text.replace("\n", "\n    ") + ' """'
    return repr(text)


@st.composite
def _class_body(draw: st.DrawFn) -> list[str]:
    """Lines of a class body: annotated fields with or without a docstring, and the
    statements that must not be mistaken for one (comments, a private attribute or a class
    variable followed by a string, methods, a blank line)."""
    names = draw(st.lists(_NAMES, min_size=1, max_size=6, unique=True))
    lines: list[str] = []
    for name in names:
        lines.append(f"    {name}: int = {draw(st.integers(0, 9))}")
        between = draw(st.sampled_from(["", "comment", "blank"]))
        if between == "comment":
            lines.append("    # a comment is not a statement")
        elif between == "blank":
            lines.append("")
        if draw(st.booleans()):
            lines.append(f"    {draw(_docstring())}")
        extra = draw(st.sampled_from(["", "assignment", "class variable", "method"]))
        if extra == "assignment":  # a private attribute: no annotation needed
            lines += [f"    _plain_{name} = 1", f"    {draw(_docstring())}"]
        elif extra == "class variable":
            lines += [f"    shared_{name}: ClassVar[int] = 1", f"    {draw(_docstring())}"]
        elif extra == "method":
            lines += ["    def helper(self) -> int:", f"        {draw(_docstring())}"]
            lines += ["        return 1"]
    return lines


def _load(lines: list[str], folder: Path) -> type[SettingsGroup]:
    """Import a module defining ``Generated`` (pydantic records its docstrings too)."""
    name = f"generated_settings_{next(_MODULE_NUMBERS)}"
    source = "\n".join(
        [
            "from typing import ClassVar",
            "from pydantic import ConfigDict",
            "from config.groups import SettingsGroup",
            "",
            "class Generated(SettingsGroup):",
            "    model_config = ConfigDict(use_attribute_docstrings=True)",
            *lines,
            "",
        ]
    )
    path = folder / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    generated: type[SettingsGroup] = module.Generated
    return generated


@given(_class_body())
def test_descriptions_read_what_pydantic_reads(lines: list[str]) -> None:
    """For any class body, ``descriptions()`` equals the descriptions pydantic's own
    ``use_attribute_docstrings`` extraction gives the same class."""
    with TemporaryDirectory() as folder:
        generated = _load(lines, Path(folder))
        try:
            expected = {
                name: field.description
                for name, field in generated.model_fields.items()
                if field.description is not None
            }
            assert generated.descriptions() == expected
        finally:
            del sys.modules[generated.__module__]

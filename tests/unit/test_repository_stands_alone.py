"""The repository explains itself: no file cites a document that is not in it.

The design documents the project was started from live outside the repository, so a
reader of the code cannot follow a citation of them. Each rule they gave is written into
docs/ (docs/design.md, docs/decisions.md) and cited there instead. Tracker numbers are
not explanations either: the reason belongs next to the code.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]

#: The outside documents' names. This file must name them to forbid them: it is the one
#: place in the repository that does.
FORBIDDEN = ("CONVENTIONS", "SPEC", "ARCHITECTURE", "SEED_SNIPPETS", "../shared")
OUTSIDE = re.compile(
    "|".join(rf"(?<![\w/]){re.escape(name)}(?:\.md)?\b" for name in FORBIDDEN[:4])
    + rf"|{re.escape(FORBIDDEN[4])}\b|\b[Ii]ssue #?\d+\b"
)


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    suffixes = {".py", ".md", ".yml", ".yaml", ".toml", ".cfg", ".txt", ""}
    this = Path(__file__).resolve()
    return [
        ROOT / name
        for name in listed
        if Path(name).suffix in suffixes and (ROOT / name).is_file() and (ROOT / name) != this
    ]


def outside_references(text: str) -> list[str]:
    return [match.group(0) for match in OUTSIDE.finditer(text)]


def test_no_file_cites_a_document_outside_the_repository() -> None:
    """Code, tests, docs and scripts name only what a reader of the repository can open."""
    files = tracked_text_files()
    assert any(path.name == "README.md" for path in files)
    found = {
        str(path.relative_to(ROOT)): refs
        for path in files
        if (refs := outside_references(path.read_text(encoding="utf-8", errors="replace")))
    }
    assert found == {}


def test_the_design_page_the_code_cites_exists() -> None:
    assert (ROOT / "docs" / "design.md").is_file()


@pytest.mark.parametrize("name", FORBIDDEN)
def test_the_check_recognises_each_outside_document(name: str) -> None:
    for text in (f"see {name}", f"per {name}.md", f"({name} #5)"):
        assert outside_references(text), text


@pytest.mark.parametrize("text", ["issue #12", "Issue 8"])
def test_the_check_recognises_tracker_numbers(text: str) -> None:
    assert outside_references(text)


@given(st.text(alphabet=st.characters(categories=("Ll", "Zs", "Nd")), max_size=80))
def test_ordinary_lowercase_prose_is_never_flagged(text: str) -> None:
    """Lower-case words (docs/design.md, "the design", "specification") never match."""
    assert outside_references(text.replace("issue", "topic")) == []

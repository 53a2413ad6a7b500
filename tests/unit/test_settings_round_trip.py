"""Every SEMANTICA_* variable round-trips: the value written is the value read back.

The variables, their group attributes and their accepted ranges are taken from the
reference tables of docs/configuration.md (not from ``config``), so the same test runs
unchanged against any release that has the flat reads (``settings.redis_port``) and the
group reads (``settings.redis.port``): it passed on the flat ``Settings`` of the previous
release and passes on the grouped one, which is the proof that regrouping the
declarations changed no variable's meaning. A value is written as an environment
variable (the text an operator types) and as a keyword argument; both must read back, by
flat name and by group attribute, as the same typed value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
_ROW = re.compile(
    r"^\|\s*`(?P<env>SEMANTICA_\w+)`\s*\|\s*`(?P<group>\w+)\.(?P<attr>\w+)`\s*\|"
    r"\s*(?P<type>[^|]*?)\s*\|"
)


@dataclass(frozen=True)
class Variable:
    env: str
    group: str
    attr: str
    type: str

    @property
    def flat(self) -> str:
        return self.env.removeprefix("SEMANTICA_").lower()


def documented_variables() -> list[Variable]:
    text = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = [_ROW.match(line.replace(r"\|", "/")) for line in text.splitlines()]
    return [Variable(m["env"], m["group"], m["attr"], m["type"]) for m in rows if m]


VARIABLES = documented_variables()

# Pairs that are checked against each other; drawn alone, a value must fit the other
# side's default (postgres pool 5..20, the bulkhead at most the default pool of 20).
BOUNDS: dict[str, tuple[int, int]] = {
    "postgres_min_pool_size": (1, 20),
    "postgres_max_pool_size": (5, 10_000),
    "bulkhead_max_concurrent": (1, 20),
}
URLS: dict[str, list[str]] = {
    "postgres": [
        "postgresql://app@db.internal:5432/app",
        "postgres://u:p%40ss@10.0.0.5/x?sslmode=require",
        "postgresql:///app?host=/run/pg",
    ],
    "redis": ["redis://cache:6380/2", "rediss://:tok@cache.example:6379/0", "unix:///run/r.sock"],
    "http": ["http://localhost:8000", "https://api.example.com/v1", "http://[::1]:6333"],
    "bolt": ["bolt://graph:7687", "neo4j+s://graph.example:7687", "bolt+ssc://10.1.2.3"],
}
TEXT = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="\"'#\\$`="),
    min_size=1,
    max_size=20,
)


def numbers(kind: str, flat: str) -> st.SearchStrategy[Any]:
    """Values inside the documented range of ``int > 0``, ``float 0.0..1.0`` ..."""
    if flat in BOUNDS:
        low, high = BOUNDS[flat]
        return st.integers(low, high)
    if kind.startswith("int"):
        if "1..65535" in kind:
            return st.integers(1, 65535)
        return st.integers(0 if "≥ 0" in kind else 1, 10**6)
    if "0.0..1.0" in kind:
        return st.floats(0.0, 1.0)
    floor = 1.0 if "≥ 1.0" in kind else 0.0
    floats = st.floats(floor, 1e6, allow_nan=False, allow_infinity=False)
    return floats.filter(lambda x: x > 0) if "> 0" in kind else floats


def values(variable: Variable) -> st.SearchStrategy[Any]:  # noqa: PLR0911 -- one per type
    """Typed values valid for ``variable``, per its documented type."""
    kind = variable.type
    if kind.startswith(("int", "float")):
        return numbers(kind, variable.flat)
    if kind == "bool":
        return st.booleans()
    if kind.startswith("secret"):
        return TEXT
    if kind.startswith("URL"):
        scheme = next(name for name in URLS if name in kind)
        return st.sampled_from(URLS[scheme])
    if "/" in kind:  # an enumeration: standalone / cluster / sentinel
        return st.sampled_from([choice.strip() for choice in kind.split("/")])
    if kind == "log level":
        return st.sampled_from(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    if kind.startswith("non-empty str"):
        return TEXT
    assert kind.startswith("str"), f"no strategy for {variable.env}: {kind!r}"
    return TEXT | st.just("")


def spellings(variable: Variable, value: Any) -> st.SearchStrategy[str]:
    """How an operator may write ``value`` in the environment."""
    if isinstance(value, bool):
        words = ["true", "1", "yes", "on"] if value else ["false", "0", "no", "off"]
        return st.sampled_from(words).flatmap(lambda w: st.sampled_from([w, w.upper()]))
    if isinstance(value, float):
        return st.sampled_from([repr(value), f"{value:.17g}"])
    if variable.type == "log level" or "/" in variable.type:
        return st.sampled_from([value, value.lower(), value.upper()])
    return st.just(str(value))


def read_back(settings: Settings, variable: Variable) -> tuple[Any, Any]:
    """The value by flat name and by group attribute, secrets unwrapped."""
    by_flat = getattr(settings, variable.flat)
    by_group = getattr(getattr(settings, variable.group), variable.attr)
    return unwrap(by_flat), unwrap(by_group)


def unwrap(value: object) -> object:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def expected(variable: Variable, value: Any) -> Any:
    if variable.type == "log level" or "/" in variable.type:
        return value.upper() if variable.type == "log level" else value.lower()
    return value


@contextmanager
def environment(name: str, text: str) -> Iterator[None]:
    """``name=text`` in a process environment free of other SEMANTICA_* variables."""
    saved = {k: v for k, v in os.environ.items() if k.upper().startswith("SEMANTICA_")}
    for key in saved:
        del os.environ[key]
    os.environ[name] = text
    try:
        yield
    finally:
        del os.environ[name]
        os.environ.update(saved)


def test_the_reference_documents_every_group() -> None:
    """The table the round trip is drawn from covers every group and dozens of variables."""
    assert {v.group for v in VARIABLES} == {
        "db",
        "redis",
        "vector",
        "graph",
        "llm",
        "cache",
        "resilience",
        "observability",
    }
    assert len(VARIABLES) == len({v.env for v in VARIABLES}) >= 70


EACH = pytest.mark.parametrize("variable", VARIABLES, ids=[v.env for v in VARIABLES])


@EACH
@settings(max_examples=25)
@given(data=st.data())
def test_every_variable_round_trips_from_the_environment(
    variable: Variable, data: st.DataObject
) -> None:
    """SEMANTICA_X=<text> reads back as the typed value, by flat name and by group."""
    value = data.draw(values(variable), label="value")
    text = data.draw(spellings(variable, value), label="text")
    with environment(variable.env, text):
        settings = Settings(_env_file=None)
    want = expected(variable, value)
    if text == "":  # an empty variable counts as unset
        want = getattr(Settings(_env_file=None), variable.flat)
    by_flat, by_group = read_back(settings, variable)
    assert by_flat == want
    assert by_group == want


@EACH
@settings(max_examples=25)
@given(data=st.data())
def test_every_variable_round_trips_as_a_keyword_argument(
    variable: Variable, data: st.DataObject
) -> None:
    """Settings(<flat name>=value) reads back as the same value, by flat name and by group."""
    value = data.draw(values(variable), label="value")
    with environment("SEMANTICA_UNRELATED", "x"):
        settings = Settings(_env_file=None, **{variable.flat: value})
    by_flat, by_group = read_back(settings, variable)
    assert by_flat == expected(variable, value)
    assert by_group == expected(variable, value)

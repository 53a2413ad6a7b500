"""The parameter preparation for an inlining server (``infra/graph/_params.py``), without a
server: what the store relies on when it cuts batches and escapes values.

The defects themselves (a parameter name that deleted the graph, rounded floats, a crash
past the size budget) are proved on the real engine in
``tests/integration/test_graph_hostile_values.py``; these guard the pure functions.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.exceptions import GraphQueryError
from infra.graph._params import INLINE_BUDGET, check_inline_size, fit, prepare_inline

_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_rows = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.one_of(_text, st.integers(-(2**63), 2**63 - 1)),
            "props": st.dictionaries(
                st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
                st.one_of(_scalars, st.lists(_scalars, max_size=20)),
                max_size=6,
            ),
        }
    ),
    max_size=80,
)


@given(rows=_rows)
def test_every_part_fit_cuts_passes_the_size_check(rows: list[dict[str, Any]]) -> None:
    """fit() and check_inline_size() measure alike: a part holding more than one row is
    always accepted as a statement's parameters; only a single row may be too large."""
    parts = fit(rows)
    assert [row for part in parts for row in part] == rows
    for part in parts:
        if len(part) > 1:
            check_inline_size({"rows": part})


def _unescaped(value: Any) -> Any:
    if isinstance(value, str):
        chars = iter(value)  # an escape's backslash is dropped, the next char kept
        return "".join(next(chars) if char == "\\" else char for char in chars)
    if isinstance(value, list):
        return [_unescaped(item) for item in value]
    if isinstance(value, dict):
        return {key: _unescaped(item) for key, item in value.items()}
    return value


@given(value=st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=8))
def test_a_prepared_value_is_the_callers_value_escaped_or_a_refusal(value: Any) -> None:
    """Either refused (a float six decimals cannot carry) or the same value once the
    server reads the escapes back."""
    try:
        prepared = prepare_inline({"v": value})
    except GraphQueryError as exc:
        assert "float" in str(exc)  # noqa: PT017 - the only refusal these values can get
        return
    assert _unescaped(prepared["v"]) == value


@pytest.mark.parametrize(
    ("parameters", "where"),
    [
        ({"a b": 1}, "parameters['a b']"),
        ({"m": {"x: 1}) MATCH (n) DETACH DELETE n //": 1}}, "parameters['m']"),
        ({"m": [1, {"ok": b"x"}]}, "parameters['m'][1]['ok']"),
        ({"f": 0.1 + 0.2}, "parameters['f']"),
        ({"f": float("nan")}, "parameters['f']"),
    ],
)
def test_a_refusal_names_where_the_value_sits(parameters: dict[str, Any], where: str) -> None:
    with pytest.raises(GraphQueryError) as refused:
        prepare_inline(parameters)
    assert str(refused.value.details["parameter"]).startswith(where)


def test_the_budget_leaves_room_below_the_servers_crash() -> None:
    assert INLINE_BUDGET < 4000

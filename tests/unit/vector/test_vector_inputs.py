"""Caller input of the vector stores is checked before any I/O, the same way everywhere:
ids, vectors, payloads and filters (properties over generated input)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import uuid
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from qdrant_client.http import models

from infra.exceptions import CallerError, DimensionMismatchError, InvalidArgumentError
from infra.ports import VectorPoint
from infra.vector import point_id
from infra.vector.filters import Condition, matches, parse_filter
from infra.vector.points import (
    MAX_POINT_ID,
    check_point_id,
    check_vector,
    plain_floats,
    prepare_points,
)

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)


@given(vector=st.lists(finite, min_size=1, max_size=64))
def test_any_finite_vector_of_the_right_size_passes_unchanged(vector: list[float]) -> None:
    assert check_vector(vector, len(vector)) == vector


@given(
    vector=st.lists(finite, min_size=1, max_size=64),
    data=st.data(),
    bad=st.sampled_from([math.nan, math.inf, -math.inf]),
)
def test_a_non_finite_value_anywhere_is_named_by_position(
    vector: list[float], data: st.DataObject, bad: float
) -> None:
    position = data.draw(st.integers(0, len(vector) - 1))
    vector[position] = bad
    with pytest.raises(InvalidArgumentError) as caught:
        check_vector(vector, len(vector), argument="points[3].vector")
    assert caught.value.details["position"] == position
    assert caught.value.details["argument"] == "points[3].vector"


@given(size=st.integers(1, 50), expected=st.integers(1, 50))
def test_a_wrong_length_is_a_dimension_mismatch_with_both_sizes(size: int, expected: int) -> None:
    vector = [0.5] * size
    if size == expected:
        assert check_vector(vector, expected) == vector
        return
    with pytest.raises(DimensionMismatchError) as caught:
        check_vector(vector, expected)
    assert (caught.value.details["expected_dim"], caught.value.details["got_dim"]) == (
        expected,
        size,
    )
    assert isinstance(caught.value, CallerError)


def test_values_at_the_float32_limit_pass_and_beyond_it_are_refused() -> None:
    """The engines store float32: 3.4e38 is the largest value, and a vector of them
    (whose sum is far beyond float32) passes; 1e39 or 1e308 -- infinity in the engine --
    is refused naming its position, and so is an int too large for any float."""
    assert check_vector([3.4e38] * 384, 384) == [3.4e38] * 384
    for bad in (1e39, -1e308, 10**400):
        with pytest.raises(InvalidArgumentError, match="32-bit float range") as caught:
            check_vector([0.5, bad, 1.0], 3)
        assert caught.value.details["position"] == 1


#: Upper end of float32: a double rounds to float32 infinity from FLT_MAX + half an ULP.
ROUNDS_TO_FLOAT32_INF = 2.0**128 - 2.0**103

elements = st.one_of(
    st.floats(),
    st.floats(width=32),
    st.integers(),
    st.integers(min_value=-(2**140), max_value=2**140),
    st.booleans(),
    st.decimals(),
    st.fractions(),
    st.floats(width=32).map(np.float32),
    st.floats().map(np.float64),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.text(max_size=3),
    st.none(),
    st.lists(st.floats(), max_size=1),
)


def element_ok(value: object) -> bool:
    """An independent statement of what a vector element may be."""
    if isinstance(value, str | type(None) | list):
        return False
    try:
        number = float(value)  # type: ignore[arg-type] # the strategy's numbers
    except (OverflowError, ValueError):  # a huge int; a signalling Decimal NaN
        return False
    return math.isfinite(number) and abs(number) < ROUNDS_TO_FLOAT32_INF


@given(vector=st.lists(elements, min_size=1, max_size=12))
def test_any_element_is_either_sent_as_a_plain_float_or_refused_by_position(
    vector: list[object],
) -> None:
    """Whatever the caller's numbers (numpy scalars, Decimal, Fraction, bool, ints of any
    size, floats beyond float32, NaN, text ...): either the vector passes and its plain
    floats (what a server is sent) are the numbers given, written by qdrant-client's
    REST encoder as JSON numbers, or a typed error names the first bad position --
    before any request, never a failure in the middle of an upsert."""
    bad = [i for i, value in enumerate(vector) if not element_ok(value)]
    if bad:
        with pytest.raises(InvalidArgumentError) as caught:
            check_vector(vector, len(vector))
        assert caught.value.details["position"] == bad[0]
        return
    checked = check_vector(vector, len(vector))
    plain = plain_floats(checked)
    assert all(type(x) is float for x in plain)
    assert plain == [float(x) for x in vector]  # type: ignore[arg-type]
    body = models.PointsList(
        points=[models.PointStruct.model_construct(id=1, vector=plain, payload={})]
    ).model_dump_json(exclude_unset=True)
    assert json.loads(body)["points"][0]["vector"] == plain


@pytest.mark.parametrize("bad", ["x", None, [1.0], {"a": 1}])
def test_a_non_number_element_is_named(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match=r"vector\[1\] must be a number"):
        check_vector([1.0, bad, 2.0], 3)


@pytest.mark.parametrize("bad", ["abc", b"\x00\x01", {"a": 1}, 3, None])
def test_a_non_sequence_vector_is_refused(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        check_vector(bad, 3)


@given(value=st.integers(0, MAX_POINT_ID))
def test_unsigned_64_bit_ints_are_ids(value: int) -> None:
    assert check_point_id(value) == value


@given(value=st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_POINT_ID + 1)))
def test_ints_outside_64_bits_are_refused(value: int) -> None:
    with pytest.raises(InvalidArgumentError, match="point_id"):
        check_point_id(value)


@given(value=st.uuids())
def test_uuid_strings_in_any_spelling_become_canonical(value: uuid.UUID) -> None:
    for spelling in (str(value).upper(), value.hex, f"{{{value}}}", f"urn:uuid:{value}"):
        assert check_point_id(spelling) == str(value)


@given(text=st.text(max_size=40))
def test_other_strings_are_refused_with_the_way_out(text: str) -> None:
    try:
        uuid.UUID(text)
    except ValueError:
        with pytest.raises(InvalidArgumentError, match=r"point_id\(key\)"):
            check_point_id(text)


@pytest.mark.parametrize("bad", [True, 1.0, None, b"1"])
def test_other_id_types_are_refused(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        check_point_id(bad)


@given(a=st.text(min_size=1), b=st.text(min_size=1))
def test_point_id_is_a_stable_uuid_per_key(a: str, b: str) -> None:
    assert point_id(a) == point_id(a) == check_point_id(point_id(a))
    assert (point_id(a) == point_id(b)) == (a == b)


#: Text every engine stores (no U+0000, no lone surrogate: see the tests below).
storable_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))


@given(payload=st.dictionaries(storable_text, st.floats(allow_nan=True), min_size=1))
def test_payloads_must_encode_as_json_without_nan(payload: dict[str, float]) -> None:
    point = VectorPoint(1, [1.0], payload)
    if any(math.isnan(v) or math.isinf(v) for v in payload.values()):
        with pytest.raises(InvalidArgumentError, match="JSON"):
            prepare_points([point], 1)
    else:
        assert prepare_points([point], 1).payloads == [payload]


def test_prepare_refuses_non_points_and_strings() -> None:
    with pytest.raises(InvalidArgumentError, match="points must be a list"):
        prepare_points("abc", 1)
    with pytest.raises(InvalidArgumentError, match=r"points\[0\] must be a VectorPoint"):
        prepare_points([(1, [1.0])], 1)


# -------------------------------------------------------------------------- filters
#: Filter values an engine can hold (text with U+0000 or a lone surrogate is refused:
#: tested below).
scalars = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=4),
    st.integers(-5, 5),
    st.booleans(),
)
json_values = st.recursive(
    st.one_of(st.none(), scalars, st.floats(-10, 10)),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)


@given(stored=json_values, wanted=scalars)
def test_equality_is_typed_and_arrays_match_by_element(stored: Any, wanted: Any) -> None:
    """The fake's filter semantics: a value equals only a value of the same type; an array
    matches when one of its elements does."""
    expected = (
        any(type(e) is type(wanted) and e == wanted for e in stored)
        if isinstance(stored, list)
        else type(stored) is type(wanted) and stored == wanted
    )
    assert matches({"f": stored}, parse_filter({"f": wanted})) == expected


@given(
    stored=st.lists(st.floats(-10, 10), max_size=4),
    low=st.floats(-10, 10),
    high=st.floats(-10, 10),
)
def test_an_array_is_in_a_range_when_one_element_is_inside_it(
    stored: list[float], low: float, high: float
) -> None:
    conditions = parse_filter({"f": {"gte": low, "lt": high}})
    assert matches({"f": stored}, conditions) == any(low <= x < high for x in stored)


@pytest.mark.parametrize(
    "bad",
    [
        {"f": 1.5},
        {"f": {"gte": "a"}},
        {"f": {"between": 1}},
        {"f": {}},
        {"f": []},
        {"": 1},
        {"a..b": 1},
        {"f": None},
        {"f": {"gt": math.nan}},
        ["f"],
        "f",
    ],
)
def test_bad_filters_are_refused_naming_the_filter(bad: object) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_filter(bad)
    assert caught.value.details["argument"] == "filter"


def test_a_dotted_key_reads_nested_objects() -> None:
    (condition,) = parse_filter({"a.b": 1})
    assert condition == Condition(("a", "b"), (1,))
    assert matches({"a": {"b": 1}}, [condition])
    assert not matches({"a": 1}, [condition])
    assert not matches({"a.b": 1}, [condition])


# ------------------------------------------- text no engine can store, bounds, floats
#: Text PostgreSQL's jsonb refuses (U+0000) or no UTF-8 wire can carry (lone surrogates).
unstorable = st.sampled_from(["\x00", "\ud800", "\udfff", "\udbff"])
json_documents = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=4),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


def plant(document: Any, text: str, choice: int, as_key: bool) -> Any:
    """``document`` with ``text`` put into a key or a string somewhere inside it."""
    if isinstance(document, dict) and document:
        key = sorted(document)[choice % len(document)]
        inner = dict(document)
        if as_key:
            inner[key + text] = inner.pop(key)
        else:
            inner[key] = plant(inner[key], text, choice // 2, as_key)
        return inner
    if isinstance(document, list) and document:
        inner_list = list(document)
        inner_list[choice % len(inner_list)] = plant(
            inner_list[choice % len(inner_list)], text, choice // 2, as_key
        )
        return inner_list
    return f"x{text}"


@given(
    payload=st.dictionaries(st.text(max_size=3), json_documents, min_size=1, max_size=3),
    text=unstorable,
    choice=st.integers(0, 100),
    as_key=st.booleans(),
    position=st.integers(0, 2),
)
@example(payload={"k": "a"}, text="\x00", choice=0, as_key=False, position=0)
@example(payload={"k": {"n": ["a"]}}, text="\ud800", choice=0, as_key=True, position=1)
def test_text_no_engine_can_store_is_refused_before_any_write(
    payload: dict[str, Any], text: str, choice: int, as_key: bool, position: int
) -> None:
    """U+0000 or a lone surrogate anywhere in a payload (a key or a string, at any depth)
    is refused for the whole upsert, naming the point -- before this check, pgvector
    failed in the middle of the upsert (QueryDataError) with other batches written."""
    bad = plant(payload, text, choice, as_key)
    points = [VectorPoint(i, [1.0], {"ok": i}) for i in range(3)]
    points[position] = VectorPoint(position, [1.0], bad)
    with pytest.raises(InvalidArgumentError) as caught:
        prepare_points(points, 1)
    assert caught.value.details["argument"] == f"points[{position}].payload"


@given(
    # (no "." or '"' either: those make the field name wrong for another reason)
    good=st.text(st.characters(exclude_categories=["Cs"], exclude_characters='\x00."'), max_size=4),
    text=unstorable,
    in_field=st.booleans(),
    as_list=st.booleans(),
)
def test_filter_text_no_engine_can_store_is_refused_naming_the_field(
    good: str, text: str, in_field: bool, as_list: bool
) -> None:
    """U+0000 or a lone surrogate in a filter's field name or value matches nothing any
    engine stored: refused before any I/O, naming the filter (pgvector failed the query)."""
    field = f"f{good}{text}" if in_field else "f"
    value: Any = good + text if not in_field else good
    rule = ["x", value] if as_list else value  # a list: equal to any of these
    with pytest.raises(InvalidArgumentError, match=r"U\+0000|lone surrogate") as caught:
        parse_filter({field: rule})
    assert caught.value.details["argument"] == "filter"
    assert caught.value.details["field"] == field


@given(payload=st.dictionaries(st.text(max_size=3), json_documents, max_size=3))
def test_storable_payloads_pass_and_their_json_keeps_every_float_a_float(
    payload: dict[str, Any],
) -> None:
    """Without such text a payload passes; its JSON (what pgvector stores) writes each
    float with a decimal point or a negative exponent -- never ``1e+20``, which jsonb
    keeps as the integer 10**20 -- and decodes to the same typed document."""
    from infra.vector.filters import text_problem

    def texts(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [t for key, item in value.items() for t in [key, *texts(item)]]
        if isinstance(value, list):
            return [t for item in value for t in texts(item)]
        return [value] if isinstance(value, str) else []

    assume(all(text_problem(text) is None for text in texts(payload)))
    (encoded,) = prepare_points([VectorPoint(1, [1.0], payload)], 1).payload_json

    def typed(value: Any) -> Any:
        if isinstance(value, dict):
            return ("o", sorted((k, typed(v)) for k, v in value.items()))
        if isinstance(value, list):
            return ("a", [typed(v) for v in value])
        return (type(value).__name__, value)

    assert typed(json.loads(encoded)) == typed(json.loads(json.dumps(payload)))
    numbers = re.sub(r'"(?:[^"\\]|\\.)*"', '""', encoded)  # strings blanked
    assert "e+" not in numbers


@given(field=storable_text.filter(bool), text=unstorable, value=st.booleans())
def test_filters_on_text_no_engine_stores_are_refused(field: str, text: str, value: bool) -> None:
    """As a field name or an equality value (it could never match a stored payload; on
    pgvector it failed the query)."""
    assume("." not in field and '"' not in field)  # a path, or refused for that
    for bad in ({field + text: 1}, {field: "a" + text}, {field: ["a", text]}):
        with pytest.raises(InvalidArgumentError) as caught:
            parse_filter(bad)
        assert caught.value.details["argument"] == "filter"
    assert parse_filter({field: value})


@given(
    bound=st.one_of(
        st.sampled_from([math.inf, -math.inf]),
        st.integers(min_value=2**1024).flatmap(lambda n: st.sampled_from([n, -n])),
    ),
    name=st.sampled_from(["gt", "gte", "lt", "lte"]),
)
def test_range_bounds_beyond_every_float_are_refused(bound: float, name: str) -> None:
    """An infinite bound has no JSON form (pgvector failed, a server's REST too) and an
    int beyond the float range raised a bare OverflowError."""
    with pytest.raises(InvalidArgumentError, match="finite number") as caught:
        parse_filter({"f": {name: bound}})
    assert caught.value.details["field"] == "f"


@given(
    bound=st.one_of(
        st.integers(-(2**1000), 2**1000), st.floats(allow_nan=False, allow_infinity=False)
    )
)
def test_finite_bounds_are_kept_exactly(bound: float) -> None:
    (condition,) = parse_filter({"f": {"gte": bound}})
    assert condition.gte == bound
    assert type(condition.gte) is type(bound)


def test_field_names_with_a_double_quote_are_refused() -> None:
    """Qdrant quotes unusual names with '"' and a quoted part cannot hold one."""
    with pytest.raises(InvalidArgumentError, match="field name contains"):
        parse_filter({'we"ird': 1})


@given(threshold=st.integers(min_value=2**1024).flatmap(lambda n: st.sampled_from([n, -n])))
def test_a_score_threshold_beyond_every_float_is_a_typed_error(threshold: int) -> None:
    """It raised a bare OverflowError from math.isnan."""
    from infra.resilience import ResiliencePolicy
    from infra.testing.fakes.vector import FakeVectorStore

    async def scenario() -> None:
        store = FakeVectorStore(policy=ResiliencePolicy.instant("qdrant"))
        await store.ensure_collection("c", vector_size=1)
        with pytest.raises(InvalidArgumentError) as caught:
            await store.search("c", [1.0], score_threshold=threshold)
        assert caught.value.details["argument"] == "score_threshold"

    asyncio.run(scenario())


@given(
    depth=st.one_of(st.integers(1, 130), st.integers(130, 20_000)),
    kinds=st.lists(st.sampled_from(["list", "dict"]), min_size=1, max_size=4),
    position=st.integers(0, 2),
)
@example(depth=5_000, kinds=["list"], position=0)  # RecursionError before
@example(depth=101, kinds=["dict"], position=1)  # accepted before; a server refuses it
def test_payloads_nest_at_most_max_depth_levels(
    depth: int, kinds: list[str], position: int
) -> None:
    """A payload nesting lists and mappings ``depth`` levels below its own: accepted up
    to MAX_PAYLOAD_DEPTH levels in all, else refused naming the point -- deep input made
    Python's encoder raise a bare RecursionError, and a Qdrant server refuses JSON past
    128 levels (local mode and pgvector accept it: one rule for every engine)."""
    from infra.vector.points import MAX_PAYLOAD_DEPTH

    value: Any = "leaf"
    for level in range(depth):
        value = [value] if kinds[level % len(kinds)] == "list" else {"k": value}
    points = [VectorPoint(i, [1.0], {"ok": i}) for i in range(3)]
    points[position] = VectorPoint(position, [1.0], {"deep": value})
    if 1 + depth <= MAX_PAYLOAD_DEPTH:
        assert len(prepare_points(points, 1)) == 3
        return
    with pytest.raises(InvalidArgumentError, match="levels deep") as caught:
        prepare_points(points, 1)
    assert caught.value.details["argument"] == f"points[{position}].payload"


@given(
    threshold=st.floats(-2, 2, allow_nan=False),
    kind=st.sampled_from([float, np.float32, np.float64, Fraction, "int"]),
)
@example(threshold=0.5, kind=np.float32)
def test_a_score_threshold_may_be_any_real_number(threshold: float, kind: Any) -> None:
    """As vector elements may: a numpy scalar or a Fraction (refused before, with a
    message calling it "not a number") thresholds the same as its float value."""
    from infra.resilience import ResiliencePolicy
    from infra.testing.fakes.vector import FakeVectorStore

    given_value: Any = int(threshold) if kind == "int" else kind(threshold)

    async def scenario() -> None:
        store = FakeVectorStore(policy=ResiliencePolicy.instant("qdrant"))
        await store.ensure_collection("c", vector_size=2, distance="dot")
        await store.upsert("c", [VectorPoint(i, [(i - 8) / 4, 0.0]) for i in range(17)])
        typed = await store.search("c", [1.0, 0.0], limit=20, score_threshold=given_value)
        plain = await store.search("c", [1.0, 0.0], limit=20, score_threshold=float(given_value))
        assert typed == plain

    asyncio.run(scenario())

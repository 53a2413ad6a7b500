"""Identifier and value checks of the graph store (shared by the store, the cached store
and the fake): anything not in the strict pattern is a typed caller error, never I/O."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.exceptions import CallerError, InvalidArgumentError
from infra.graph import cypher
from infra.graph.identifiers import (
    IDENTIFIER_PATTERN,
    check_edges,
    check_identifier,
    check_nodes,
)
from infra.graph.results import Neighbour, Node, Path, Relationship, from_plain, to_plain


@given(st.text(max_size=80))
def test_any_text_is_a_valid_identifier_or_a_typed_caller_error(text: str) -> None:
    """A label either matches the strict pattern (and is spliced backquoted, with nothing
    that could close the quote) or raises InvalidArgumentError naming the argument."""
    if IDENTIFIER_PATTERN.fullmatch(text) is None:
        with pytest.raises(InvalidArgumentError) as caught:
            check_identifier(text, argument="label")
        assert isinstance(caught.value, CallerError)
        assert caught.value.argument == "label"
        return
    checked = check_identifier(text, argument="label")
    assert checked == text
    statement = cypher.upsert_nodes(checked)
    assert statement.count("`") == 4  # `_Node` and `<label>`: no quote inside the label
    assert all(c.isascii() and (c.isalnum() or c == "_") for c in checked)


@pytest.mark.parametrize(
    "attempt",
    [
        "Person`) DETACH DELETE (n",
        "Person {id: 1}",
        "A:B",
        "A|B",
        "a b",
        "x//",
        "_Node",
        "",
        "Pe\u0000rson",
        "\u03a1erson",  # Greek capital rho, a look-alike of P
        "a" * 65,
    ],
)
def test_injection_attempts_are_refused(attempt: str) -> None:
    """Each classic way out of a label position is refused before any statement exists."""
    with pytest.raises(InvalidArgumentError) as caught:
        check_identifier(attempt, argument="rel_type")
    assert caught.value.argument == "rel_type"
    assert "relationship type" in caught.value.message


def test_non_strings_are_refused() -> None:
    """A label must be a str."""
    with pytest.raises(InvalidArgumentError):
        check_identifier(b"Person", argument="label")


_ids = st.one_of(st.sampled_from(["a", "b"]), st.integers(0, 1))
_props = st.dictionaries(st.sampled_from(["p", "q"]), st.integers(-3, 3), max_size=2)


@given(st.lists(st.tuples(_ids, _props), max_size=8))
def test_repeated_ids_merge_in_order_last_value_wins(
    items: list[tuple[Any, dict[str, Any]]],
) -> None:
    """check_nodes sends one row per id, at its first place, with the properties merged
    in order: the same result any engine gives for one MERGE per row in sequence."""
    model: dict[Any, dict[str, Any]] = {}
    for node_id, props in items:
        model.setdefault(node_id, {}).update(props)
    merged = check_nodes([{"id": i, **p} for i, p in items])
    assert merged == list(model.items())
    edges = check_edges([(i, i, p) for i, p in items])
    assert [(s, p) for s, _, p in edges] == list(model.items())


@given(
    st.lists(
        st.builds(
            Neighbour,
            st.builds(Node, _ids, st.frozensets(st.sampled_from(["A", "B"])), _props),
            st.builds(Relationship, st.sampled_from(["R"]), _ids, _ids, _props),
        ),
        max_size=3,
    )
)
def test_results_survive_the_cache_round_trip(found: list[Neighbour]) -> None:
    """What the cached store stores (JSON-able data) reads back equal."""
    import json

    assert from_plain(json.loads(json.dumps(to_plain(found)))) == found
    path = Path(tuple(n.node for n in found), tuple(n.relationship for n in found))
    assert from_plain(json.loads(json.dumps(to_plain([path])))) == [path]
    assert from_plain(to_plain(None)) is None
    assert from_plain(to_plain(7)) == 7


def test_importing_the_graph_package_imports_no_driver() -> None:
    """``import infra.graph`` (and its store, cached store, fake and container) load no
    neo4j: a fresh interpreter shows it absent from sys.modules until a driver is built."""
    code = (
        "import sys\n"
        "import infra.graph, infra.graph.memgraph, infra.graph.cached_store\n"
        "import infra.testing.fakes.graph, containers.graph, containers.application\n"
        "from infra.graph import MemgraphGraphStore, CachedGraphStore\n"
        "assert 'neo4j' not in sys.modules, 'neo4j imported'\n"
        "from infra.graph.driver import open_driver\n"
        "open_driver('bolt://127.0.0.1:1')\n"
        "assert 'neo4j' in sys.modules\n"
    )
    done = subprocess.run(  # noqa: S603 - our interpreter, our code
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr

"""One validation path: hostile input raises the same typed error from the fake graph
store and from the real one, before anything is sent.

Both stores subclass ``infra.graph.base.GraphStoreBase``, which checks every argument of
every public method; this property holds them to it. A Hypothesis stream of calls -- odd
labels, ids, properties, edges, limits, directions, batch sizes, Cypher text and
parameters, mixed with valid ones -- goes to ``FakeGraphStore`` and to
``MemgraphGraphStore`` on the embedded engine. Whenever either rejects the input with an
``InvalidArgumentError``, the other rejects it with the same type naming the same
argument; a call neither rejects may succeed (or, for raw Cypher the fake was not
scripted for, fail differently: the fake does not interpret Cypher).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.exceptions import CallerError, InfraError, InvalidArgumentError
from infra.resilience import BreakerState, ResiliencePolicy
from infra.testing.fakes.graph import FakeGraphStore

pytestmark = pytest.mark.graph

Store = Any  # MemgraphGraphStore | FakeGraphStore (the real one needs neo4j)

_odd_text = st.one_of(
    st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "\u202eevil", "1abc", "a b", "Ünï"]),
    st.builds("x".__mul__, st.sampled_from([64, 65, 1024, 1025, 5000])),  # around the limits
)
_wrong_types: st.SearchStrategy[Any] = st.sampled_from(
    [None, True, 1.5, float("nan"), b"bytes", [], {}, ("a",), 2**70]
)
_hostile = st.one_of(_odd_text, _wrong_types, st.integers(-(2**70), 2**70))
_labels = st.one_of(st.sampled_from(["Person", "KNOWS", "A_1"]), _hostile)
_ids = st.one_of(st.sampled_from(["a", "b", 1, 2**63 - 1]), _hostile)
_props = st.dictionaries(
    st.one_of(st.sampled_from(["p", "q", "id"]), _odd_text),
    st.one_of(st.integers(-5, 5), st.text(max_size=3), _hostile, st.just({"nested": 1})),
    max_size=2,
)
_nodes = st.one_of(
    st.lists(st.builds(lambda i, p: {"id": i, **p}, _ids, _props), max_size=3),
    st.lists(_props, max_size=2),  # no "id"
    _hostile,
)
_edge = st.one_of(st.tuples(_ids, _ids), st.tuples(_ids, _ids, _props), st.tuples(_ids), _hostile)
_edges = st.one_of(st.lists(_edge, max_size=3), _hostile)
_ints = st.one_of(st.integers(-3, 20), st.sampled_from([10**9, True, 2.0, "3"]), _wrong_types)
_directions = st.one_of(st.sampled_from(["out", "in", "both", "up", "OUT"]), _hostile)
_optional_label = st.one_of(st.none(), _labels)
# Cypher text: valid, or what the validator rejects (odd text the validator passes would
# only test the engine's parser; FalkorDB answers some of it with undecodable messages).
_cypher = st.one_of(
    st.sampled_from(["RETURN 1", "MATCH (n) RETURN count(n) AS n", "", " ", "\x00", "\ud800"]),
    _wrong_types,
    st.integers(),
)
_parameters = st.one_of(
    st.none(),
    st.dictionaries(st.one_of(st.just("x"), _odd_text, st.integers()), _hostile, max_size=2),
    _hostile,
)

Call = tuple[str, tuple[Any, ...], dict[str, Any]]
"""A method name, its positional and its keyword arguments."""


def _call(method: str, *args: st.SearchStrategy[Any], **kwargs: st.SearchStrategy[Any]) -> Any:
    return st.tuples(st.just(method), st.tuples(*args), st.fixed_dictionaries(kwargs))


_size = st.one_of(st.none(), _ints)
_calls: st.SearchStrategy[Call] = st.one_of(
    _call("upsert_nodes", _labels, _nodes, batch_size=_size),
    _call("upsert_edges", _labels, _edges, batch_size=_size),
    _call("delete_nodes", st.one_of(st.lists(_ids, max_size=3), _hostile)),
    _call("delete_edges", _labels, _edges),
    _call("get_node", _ids),
    _call("neighbours", _ids, rel_type=_optional_label, direction=_directions, limit=_ints),
    _call(
        "paths",
        _ids,
        _ids,
        max_hops=_ints,
        rel_type=_optional_label,
        direction=_directions,
        limit=_ints,
    ),
    _call("count_nodes", _optional_label),
    _call("query", _cypher, _parameters),
    _call("write", _cypher, _parameters, idempotent=st.just(True)),
    _call(
        "health_check",
        st.one_of(st.sampled_from([100.0, 1]), _hostile),
        timeout=st.one_of(st.none(), st.sampled_from([-1.0, 0.0, 5.0]), _hostile),
    ),
)


@pytest.fixture
async def stores(bolt_uri: str, bolt_auth: tuple[str, str]) -> AsyncIterator[tuple[Store, Store]]:
    """The fake and the real store (on an emptied graph), each under an instant policy."""
    from infra.graph.driver import open_driver
    from infra.graph.memgraph import MemgraphGraphStore

    fake = FakeGraphStore(policy=ResiliencePolicy.instant("graph"))
    driver = open_driver(bolt_uri, user=bolt_auth[0], password=bolt_auth[1])
    real = MemgraphGraphStore(
        driver, policy=ResiliencePolicy.instant("graph"), name="parity", owns_driver=True
    )
    try:
        await real.write("MATCH (n) DETACH DELETE n")
        yield fake, real
    finally:
        await real.close()
        await fake.close()


async def _outcome(store: Store, call: Call) -> tuple[Any, ...]:
    """("ok",) or the error's type and, for a rejected argument, its name."""
    method, args, kwargs = call
    try:
        await getattr(store, method)(*args, **kwargs)
    except InvalidArgumentError as exc:
        return (type(exc), exc.argument)
    except InfraError as exc:
        return ("backend", type(exc))
    return ("ok",)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=_calls)
async def test_the_fake_and_the_real_store_reject_the_same_input_the_same_way(
    stores: tuple[Store, Store], call: Call
) -> None:
    """Same InvalidArgumentError subtype and argument from both, or neither rejects."""
    fake, real = stores
    fake_outcome, real_outcome = await _outcome(fake, call), await _outcome(real, call)
    rejected = [o for o in (fake_outcome, real_outcome) if isinstance(o[0], type)]
    if rejected:
        assert fake_outcome == real_outcome, call[0]
        assert issubclass(fake_outcome[0], CallerError)
    for store in (fake, real):  # nothing rejected reached a breaker
        assert store.policy.breaker.state is BreakerState.CLOSED

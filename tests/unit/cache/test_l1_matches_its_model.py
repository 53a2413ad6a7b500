"""L1Cache against a reference model of its documented rules, under any operation sequence.

The rules (module docstring of ``infra.cache.l1``): an LRU of at most ``max_size``
entries, each with its own expiry (an entry whose expiry is not after now is a miss and
is dropped); a hit becomes the most recent entry; a write beyond the bound evicts the
least recently used entry and counts an eviction. A fill registers its key; every
invalidation of the key (``set``, ``discard``, ``discard_prefix``, ``clear``) voids the
registration; concurrent fills of one key share it (counted), and ``finish_fill`` stores
only while the registration it began under survives.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.cache.l1 import ABSENT, MISS, L1Cache
from infra.resilience import ManualClock

KEYS = ["a", "ab", "abc", "b", "ba"]
VALUES = st.one_of(st.integers(0, 9), st.just(ABSENT), st.none())
TTLS = st.sampled_from([0.5, 1.0, 2.0, 5.0])


class Model:
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.now = 0.0
        self.data: OrderedDict[str, tuple[object, float]] = OrderedDict()
        self.filling: dict[str, list[int]] = {}
        self.next_token = 0
        self.evictions = 0

    def get(self, key: str) -> object:
        if key not in self.data:
            return MISS
        value, expires = self.data[key]
        if expires <= self.now:
            del self.data[key]
            return MISS
        self.data.move_to_end(key)
        return value

    def store(self, key: str, value: object, ttl: float) -> None:
        self.data[key] = (value, self.now + ttl)
        self.data.move_to_end(key)
        if len(self.data) > self.max_size:
            self.data.popitem(last=False)
            self.evictions += 1

    def set(self, key: str, value: object, ttl: float) -> None:
        self.filling.pop(key, None)
        self.store(key, value, ttl)

    def discard(self, key: str) -> bool:
        self.filling.pop(key, None)
        return self.data.pop(key, None) is not None

    def discard_prefix(self, prefix: str) -> int:
        for key in [k for k in self.filling if k.startswith(prefix)]:
            del self.filling[key]
        doomed = [k for k in self.data if k.startswith(prefix)]
        for key in doomed:
            del self.data[key]
        return len(doomed)

    def clear(self) -> None:
        self.filling.clear()
        self.data.clear()

    def begin_fill(self, key: str) -> int:
        if key not in self.filling:
            self.next_token += 1
            self.filling[key] = [self.next_token, 0]
        self.filling[key][1] += 1
        return self.filling[key][0]

    def valid(self, key: str, token: int) -> bool:
        return key in self.filling and self.filling[key][0] == token

    def end_fill(self, key: str, token: int) -> bool:
        if not self.valid(key, token):
            return False
        self.filling[key][1] -= 1
        if self.filling[key][1] == 0:
            del self.filling[key]
        return True


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(KEYS), VALUES, TTLS),
        st.tuples(st.just("get"), st.sampled_from(KEYS)),
        st.tuples(st.just("discard"), st.sampled_from(KEYS)),
        st.tuples(st.just("discard_prefix"), st.sampled_from(["a", "ab", "b", "z"])),
        st.tuples(st.just("clear")),
        st.tuples(st.just("begin"), st.sampled_from(KEYS)),
        st.tuples(st.just("finish"), st.integers(0, 20), VALUES, TTLS),
        st.tuples(st.just("abandon"), st.integers(0, 20)),
        st.tuples(st.just("valid"), st.integers(0, 20)),
        st.tuples(st.just("advance"), st.sampled_from([0.25, 0.5, 1.0, 3.0])),
    ),
    max_size=60,
)


@given(ops=OPS, max_size=st.integers(1, 4))
def test_l1_agrees_with_the_model(  # noqa: PLR0912 -- one branch per operation, on purpose
    ops: list[tuple[object, ...]], max_size: int
) -> None:
    clock = ManualClock()
    l1 = L1Cache(max_size, clock=clock)
    model = Model(max_size)
    fills: list[tuple[str, int, int]] = []  # (key, real token, model token)
    for op in ops:
        name = op[0]
        if name == "set":
            _, key, value, ttl = op
            l1.set(key, value, ttl)  # type: ignore[arg-type]
            model.set(key, value, ttl)  # type: ignore[arg-type]
        elif name == "get":
            assert l1.get(op[1]) == model.get(op[1])  # type: ignore[arg-type]
        elif name == "discard":
            assert l1.discard(op[1]) is model.discard(op[1])  # type: ignore[arg-type]
        elif name == "discard_prefix":
            assert l1.discard_prefix(op[1]) == model.discard_prefix(op[1])  # type: ignore[arg-type]
        elif name == "clear":
            l1.clear()
            model.clear()
        elif name == "begin":
            key = op[1]
            fills.append((key, l1.begin_fill(key), model.begin_fill(key)))  # type: ignore[arg-type]
        elif name == "advance":
            clock.advance(op[1])  # type: ignore[arg-type]
            model.now += op[1]  # type: ignore[operator]
        elif fills:
            key, real, mine = fills[op[1] % len(fills)]  # type: ignore[operator]
            if name == "finish":
                _, _, value, ttl = op
                stored = l1.finish_fill(key, real, value, ttl)  # type: ignore[arg-type]
                expected = model.end_fill(key, mine)
                if expected:
                    model.store(key, value, ttl)  # type: ignore[arg-type]
                assert stored is expected
            elif name == "abandon":
                l1.abandon_fill(key, real)
                model.end_fill(key, mine)
            else:
                assert l1.fill_is_valid(key, real) is model.valid(key, mine)
        assert len(l1) == len(model.data)
        assert l1.evictions == model.evictions
    for key in KEYS:
        assert l1.get(key) == model.get(key)


def test_a_single_entry_cache_is_allowed_and_keeps_the_latest() -> None:
    l1 = L1Cache(1, clock=ManualClock())
    assert l1.max_size == 1
    l1.set("a", 1, 10)
    l1.set("b", 2, 10)
    assert (l1.get("a"), l1.get("b"), l1.evictions, len(l1)) == (MISS, 2, 1, 1)
    assert repr(l1) == "L1Cache(size=1, max_size=1)"


@pytest.mark.parametrize("bad", [0, -1])
def test_a_size_below_one_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match=f"max_size must be >= 1, got {bad}"):
        L1Cache(bad, clock=ManualClock())


def test_the_markers_are_falsy_and_print_their_names() -> None:
    assert not ABSENT
    assert not MISS
    assert bool(ABSENT) is False
    assert bool(MISS) is False
    assert (repr(ABSENT), str(ABSENT), repr(MISS), str(MISS)) == (
        "ABSENT",
        "ABSENT",
        "MISS",
        "MISS",
    )
    # Distinct by type already; pinned at run time too (mypy calls the check redundant).
    assert ABSENT is not MISS  # type: ignore[comparison-overlap]

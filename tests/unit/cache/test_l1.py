"""L1Cache: per-entry TTL, LRU order at the size bound, absence as a value, fill tokens,
and the staleness cap."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.cache.l1 import ABSENT, MISS, L1Cache
from infra.resilience.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def test_get_returns_stored_value_and_miss_for_unknown_key(clock: ManualClock) -> None:
    l1 = L1Cache(10, clock=clock)
    l1.set("a", {"v": 1}, ttl=5)
    assert l1.get("a") == {"v": 1}
    assert l1.get("b") is MISS


def test_each_entry_expires_after_its_own_ttl(clock: ManualClock) -> None:
    l1 = L1Cache(10, clock=clock)
    l1.set("short", 1, ttl=1)
    l1.set("long", 2, ttl=10)
    clock.advance(1)
    assert l1.get("short") is MISS
    assert l1.get("long") == 2
    clock.advance(9)
    assert l1.get("long") is MISS
    assert len(l1) == 0


def test_least_recently_used_entry_is_evicted_at_max_size(clock: ManualClock) -> None:
    l1 = L1Cache(3, clock=clock)
    for key in "abc":
        l1.set(key, key, ttl=60)
    assert l1.get("a") == "a"  # a becomes most recent; b is now the oldest
    l1.set("d", "d", ttl=60)
    assert l1.get("b") is MISS
    assert [l1.get(k) for k in "acd"] == ["a", "c", "d"]
    l1.set("e", "e", ttl=60)  # reading a, c, d in that order left a the oldest
    assert l1.get("a") is MISS
    assert l1.evictions == 2
    assert len(l1) == 3


def test_overwriting_a_key_refreshes_value_ttl_and_recency(clock: ManualClock) -> None:
    l1 = L1Cache(2, clock=clock)
    l1.set("a", 1, ttl=1)
    l1.set("b", 2, ttl=60)
    l1.set("a", 3, ttl=60)
    clock.advance(2)
    l1.set("c", 4, ttl=60)  # evicts b, the least recently written
    assert l1.get("a") == 3
    assert l1.get("b") is MISS


def test_absent_is_a_cached_value_distinct_from_miss(clock: ManualClock) -> None:
    l1 = L1Cache(10, clock=clock)
    l1.set("gone", ABSENT, ttl=5)
    assert l1.get("gone") is ABSENT
    assert not ABSENT
    assert repr(ABSENT) == "ABSENT"
    assert str(ABSENT) == "ABSENT"


def test_discard_prefix_and_clear_remove_entries(clock: ManualClock) -> None:
    l1 = L1Cache(10, clock=clock)
    for key in ("user:1", "user:2", "org:1"):
        l1.set(key, key, ttl=60)
    assert l1.discard("org:1") is True
    assert l1.discard("org:1") is False
    assert l1.discard_prefix("user:") == 2
    assert len(l1) == 0
    l1.set("x", 1, ttl=60)
    l1.clear()
    assert l1.get("x") is MISS


def test_finish_fill_stores_when_nothing_intervened(clock: ManualClock) -> None:
    l1 = L1Cache(10, clock=clock)
    token = l1.begin_fill("k")
    assert l1.fill_is_valid("k", token)
    assert l1.finish_fill("k", token, "loaded", ttl=5) is True
    assert l1.get("k") == "loaded"
    assert not l1.fill_is_valid("k", token)  # a token is used once


@pytest.mark.parametrize(
    "intervene",
    [
        pytest.param(lambda l1: l1.set("k", "written", ttl=5), id="set"),
        pytest.param(lambda l1: l1.discard("k"), id="discard"),
        pytest.param(lambda l1: l1.discard_prefix("k"), id="discard_prefix"),
        pytest.param(lambda l1: l1.clear(), id="clear"),
    ],
)
def test_an_invalidation_during_a_fill_voids_it(
    clock: ManualClock, intervene: Callable[[L1Cache], object]
) -> None:
    l1 = L1Cache(10, clock=clock)
    token = l1.begin_fill("k")
    intervene(l1)
    assert not l1.fill_is_valid("k", token)
    assert l1.finish_fill("k", token, "stale", ttl=5) is False
    assert l1.get("k") != "stale"


def test_concurrent_fills_share_a_registration(clock: ManualClock) -> None:
    """A second fill of a key does not void the first; both may store."""
    l1 = L1Cache(10, clock=clock)
    load = l1.begin_fill("k")
    read = l1.begin_fill("k")
    assert l1.finish_fill("k", read, "from-l2", ttl=5)
    assert l1.fill_is_valid("k", load)  # the load may still write back
    assert l1.finish_fill("k", load, "loaded", ttl=5)
    assert l1.get("k") == "loaded"
    assert not l1.fill_is_valid("k", load)  # both ended: the registration is gone


def test_an_invalidation_voids_every_concurrent_fill(clock: ManualClock) -> None:
    """One discard voids all fills registered before it; a fill begun after is valid."""
    l1 = L1Cache(10, clock=clock)
    first, second = l1.begin_fill("k"), l1.begin_fill("k")
    l1.discard("k")
    later = l1.begin_fill("k")
    assert not l1.fill_is_valid("k", first)
    assert not l1.finish_fill("k", second, "stale", ttl=5)
    assert l1.finish_fill("k", later, "fresh", ttl=5)
    assert l1.get("k") == "fresh"


def test_abandon_fill_ends_the_registration(clock: ManualClock) -> None:
    """An abandoned fill releases its share; a stale token changes nothing."""
    l1 = L1Cache(10, clock=clock)
    token = l1.begin_fill("k")
    l1.abandon_fill("k", token)
    assert not l1.fill_is_valid("k", token)
    fresh = l1.begin_fill("k")
    l1.abandon_fill("k", token)  # stale: ignored
    assert l1.fill_is_valid("k", fresh)


def test_max_size_below_one_is_rejected(clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="max_size must be >= 1"):
        L1Cache(0, clock=clock)


@given(
    ttls=st.lists(st.floats(0.01, 100), min_size=1, max_size=20),
    bound=st.floats(0.01, 50),
    elapsed=st.floats(0, 60),
)
def test_cap_expiry_bounds_every_entry_and_changes_nothing_else(
    ttls: list[float], bound: float, elapsed: float
) -> None:
    """After cap_expiry(bound) no entry outlives ``bound`` from now; an entry that would
    expire sooner keeps its own expiry; values, order and size are unchanged."""
    clock = ManualClock()
    l1 = L1Cache(len(ttls), clock=clock)
    for i, ttl in enumerate(ttls):
        l1.set(f"k{i}", i, ttl=ttl)
    l1.cap_expiry(bound)
    assert len(l1) == len(ttls)
    clock.advance(elapsed)
    for i, ttl in enumerate(ttls):
        alive = elapsed < min(ttl, bound)
        assert (l1.get(f"k{i}") == i) is alive, (ttl, bound, elapsed)

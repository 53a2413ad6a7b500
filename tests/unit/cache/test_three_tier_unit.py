"""ThreeTierCache on FakeCache with a ManualClock: tiers, TTLs, negative caching, jitter,
single flight, invalidation and the degraded path (no Redis: single-process mode)."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config import Settings
from infra.cache.three_tier_cache import ABSENT, ThreeTierCache
from infra.exceptions import (
    BackendAuthenticationError,
    BulkheadFullError,
    CacheConnectionError,
    CacheError,
    CacheSerializationError,
    CircuitBreakerOpenError,
    ConfigurationError,
    InfraError,
    InfraTimeoutError,
    OperationTimeoutError,
    PoolExhaustedError,
)
from infra.observability.metrics import MetricsCollector
from infra.resilience.clock import ManualClock
from infra.testing.fakes.cache import FakeCache

Factory = Callable[..., ThreeTierCache]


class Source:
    """The L3 stand-in: a dict plus a count of loads (``None`` = the row does not exist)."""

    def __init__(self, **rows: Any) -> None:
        self.rows = dict(rows)
        self.loads = 0

    def loader(self, key: str) -> Callable[[], Any]:
        async def load() -> Any:
            self.loads += 1
            await asyncio.sleep(0)
            return self.rows.get(key)

        return load


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1000.0)


@pytest.fixture
def store(clock: ManualClock) -> FakeCache:
    return FakeCache(clock=clock)


@pytest.fixture
def collector() -> MetricsCollector:
    return MetricsCollector()


@pytest.fixture
def make(store: FakeCache, clock: ManualClock, collector: MetricsCollector) -> Factory:
    def build(**options: Any) -> ThreeTierCache:
        options.setdefault("ttl_jitter", 0.0)
        options.setdefault("rng", random.Random(7))
        return ThreeTierCache(store, clock=clock, metrics=collector, **options)

    return build


def is_degraded(cache: ThreeTierCache) -> bool:
    """Read afresh: mypy would keep ``cache.degraded`` narrowed across awaits."""
    return cache.degraded


def count(collector: MetricsCollector, name: str, **labels: str) -> float:
    return collector.get_counter(name, **labels)


async def until(check: Callable[[], bool]) -> None:
    """Let the cache's tasks run until ``check()`` holds. A fixed sleep is no barrier: on a
    loaded machine the test can resume before the tasks it waits for have run at all."""
    async with asyncio.timeout(30):  # a hang guard, not a bound under test
        while not check():  # noqa: ASYNC110 -- polling the cache's state
            await asyncio.sleep(0.001)


# ------------------------------------------------------------------- read-through
async def test_read_through_loads_once_then_serves_from_l1(
    make: Factory, store: FakeCache, collector: MetricsCollector
) -> None:
    """First get runs the loader and writes L2 then L1; the second is an L1 hit."""
    cache, source = make(), Source(k={"v": 1})
    assert await cache.get("k", source.loader("k")) == {"v": 1}
    assert await store.get("cache:v:k") == [{"v": 1}]  # written back, wrapped
    assert await cache.get("k", source.loader("k")) == {"v": 1}
    assert source.loads == 1
    assert count(collector, "cache_hits_total", tier="l1") == 1
    assert count(collector, "cache_misses_total", tier="l2") == 1
    assert count(collector, "cache_hits_total", tier="l3") == 1
    assert collector.get_histogram_stats("cache_tier_latency_ms", tier="l3").count == 1


async def test_another_instance_reads_the_written_back_value_from_l2(
    make: Factory, collector: MetricsCollector
) -> None:
    """A second process (instance) on the same L2 gets an L2 hit, not a load."""
    first, second, source = make(), make(), Source(k=42)
    await first.get("k", source.loader("k"))
    assert await second.get("k", source.loader("k")) == 42
    assert source.loads == 1
    assert count(collector, "cache_hits_total", tier="l2") == 1


async def test_get_without_loader_returns_none_on_miss(make: Factory) -> None:
    """Without a loader a miss in L1 and L2 is ``None``."""
    assert await make().get("nothing") is None


async def test_l1_expiry_falls_back_to_l2_and_l2_expiry_to_the_loader(
    make: Factory, clock: ManualClock, collector: MetricsCollector
) -> None:
    """After l1_ttl the value comes from L2; after l2_ttl the loader runs again."""
    cache, source = make(l1_ttl=10, l2_ttl=100), Source(k="v")
    await cache.get("k", source.loader("k"))
    clock.advance(11)
    assert await cache.get("k", source.loader("k")) == "v"
    assert (source.loads, count(collector, "cache_hits_total", tier="l2")) == (1, 1)
    clock.advance(90)
    assert await cache.get("k", source.loader("k")) == "v"
    assert source.loads == 2


async def test_l1_evicts_least_recently_used_at_max_size(
    make: Factory, collector: MetricsCollector
) -> None:
    """With l1_max_size=2, the oldest of three keys is served by L2 again."""
    cache, source = make(l1_max_size=2), Source(a=1, b=2, c=3)
    for key in "abc":
        await cache.get(key, source.loader(key))
    assert cache.l1_size == 2
    assert await cache.get("c") == 3  # L1
    assert await cache.get("a") == 1  # evicted: L2
    assert count(collector, "cache_hits_total", tier="l1") == 1
    assert count(collector, "cache_hits_total", tier="l2") == 1


# ------------------------------------------------------------------- negative caching
async def test_absence_is_cached_for_negative_ttl(
    make: Factory, store: FakeCache, clock: ManualClock, collector: MetricsCollector
) -> None:
    """A loader's None is cached for negative_ttl; get() tells ABSENT from a miss."""
    cache, source = make(negative_ttl=5, l1_ttl=30, l2_ttl=60), Source()
    assert await cache.get("gone", source.loader("gone")) is None
    assert await cache.get("gone", source.loader("gone")) is None
    assert await cache.get("gone") is ABSENT
    assert source.loads == 1
    assert await store.ttl("cache:v:gone") == 5
    assert count(collector, "cache_misses_total", tier="l3") == 1
    clock.advance(5.001)
    assert await cache.get("gone") is None
    source.rows["gone"] = "back"
    assert await cache.get("gone", source.loader("gone")) == "back"


async def test_set_absent_caches_absence_explicitly(make: Factory, store: FakeCache) -> None:
    """set(key, ABSENT) makes loaders skip the key until negative_ttl ends."""
    cache, source = make(negative_ttl=7), Source(k="exists")
    await cache.set("k", ABSENT)
    assert await cache.get("k", source.loader("k")) is None
    assert source.loads == 0
    assert await store.ttl("cache:v:k") == 7


# ------------------------------------------------------------------------------ TTLs
async def test_jittered_ttls_stay_within_bounds_and_vary(
    store: FakeCache, clock: ManualClock, collector: MetricsCollector
) -> None:
    """Every L2 TTL lies in l2_ttl*(1±jitter), and they are not all equal."""
    cache = ThreeTierCache(
        store, clock=clock, metrics=collector, l2_ttl=100, ttl_jitter=0.2, rng=random.Random(1)
    )
    for i in range(200):
        await cache.set(f"k{i}", i)
    ttls = [await store.ttl(f"cache:v:k{i}") for i in range(200)]
    assert all(t is not None and 80 <= t <= 120 for t in ttls)
    assert len(set(ttls)) > 50


async def test_an_l1_entry_never_outlives_its_l2_entry(make: Factory, clock: ManualClock) -> None:
    """set(ttl=2) with l1_ttl=60: after 2 s L1 no longer serves the value either."""
    cache = make(l1_ttl=60, l2_ttl=120, ttl_jitter=0.1)
    await cache.set("k", "v", ttl=2)
    assert await cache.get("k") == "v"
    clock.advance(2.3)
    assert await cache.get("k") is None


def test_l1_ttl_above_l2_ttl_is_rejected_naming_both(make: Factory) -> None:
    """l1_ttl > l2_ttl is a ValueError that names both arguments."""
    with pytest.raises(ValueError, match=r"l1_ttl \(600\).*l2_ttl \(300\)"):
        make(l1_ttl=600, l2_ttl=300)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl_jitter": 1.0}, "ttl_jitter"),
        ({"negative_ttl": 0}, "negative_ttl"),
        ({"l2_ttl": float("inf")}, "l2_ttl"),
        ({"namespace": ""}, "namespace"),
        ({"l1_max_size": 0}, "max_size"),
        ({"max_staleness": 0}, "max_staleness"),
        ({"fallback_timeout": -0.1}, "fallback_timeout"),
    ],
)
def test_bad_arguments_are_rejected_by_name(
    make: Factory, options: dict[str, Any], message: str
) -> None:
    """Each invalid argument raises a ValueError naming it."""
    with pytest.raises(ValueError, match=message):
        make(**options)


def test_from_settings_uses_the_cache_view(store: FakeCache) -> None:
    """from_settings takes sizes and TTLs from settings.cache; overrides win."""
    settings = Settings(cache_l1_ttl=5, cache_l2_ttl=50, cache_l1_max_size=3)
    cache = ThreeTierCache.from_settings(settings, l2=store, namespace="s", negative_ttl=2.5)
    assert (cache.ttls.l1_ttl, cache.ttls.l2_ttl, cache.ttls.negative_ttl) == (5, 50, 2.5)
    assert cache.namespace == "s"


@pytest.mark.parametrize(
    ("fields", "variable"),
    [
        ({"cache_l1_ttl": 600, "cache_l2_ttl": 300}, "SEMANTICA_CACHE_L1_TTL"),
        ({"cache_ttl_jitter": 1.0}, "SEMANTICA_CACHE_TTL_JITTER"),
    ],
)
def test_from_settings_reports_bad_settings_as_configuration_errors(
    store: FakeCache, fields: dict[str, float], variable: str
) -> None:
    """Contradictory cache settings raise ConfigurationError naming the variable."""
    with pytest.raises(ConfigurationError, match=variable):
        ThreeTierCache.from_settings(Settings(**fields), l2=store)


# ---------------------------------------------------------------------- single flight
async def test_one_load_for_100_concurrent_callers(
    make: Factory, collector: MetricsCollector
) -> None:
    """100 concurrent gets of a cold key run the loader once and all get its value."""
    cache, gate, loads = make(), asyncio.Event(), 0

    async def loader() -> str:
        nonlocal loads
        loads += 1
        await gate.wait()
        return "value"

    callers = [asyncio.create_task(cache.get("cold", loader)) for _ in range(100)]
    # Every other caller has joined the first one's load before it may finish.
    await until(lambda: count(collector, "cache_coalesced_total", scope="process") == 99)
    gate.set()
    assert await asyncio.gather(*callers) == ["value"] * 100
    assert loads == 1
    assert count(collector, "cache_coalesced_total", scope="process") == 99


async def test_a_failing_load_reaches_every_waiter_and_is_not_cached(
    make: Factory, store: FakeCache
) -> None:
    """All concurrent callers see the loader's error; the next get loads again."""
    cache, loads = make(), 0

    async def failing() -> str:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.005)
        raise LookupError("db says no")

    results = await asyncio.gather(
        *(cache.get("k", failing) for _ in range(20)), return_exceptions=True
    )
    assert loads == 1
    assert all(isinstance(r, LookupError) for r in results)
    assert store.keys() == []
    assert await cache.get("k", Source(k="ok").loader("k")) == "ok"


async def test_a_write_during_a_load_wins_over_the_loaded_value(
    make: Factory, store: FakeCache
) -> None:
    """A set() while a load is in flight: the stale load is returned, not cached."""
    cache, gate, loading = make(), asyncio.Event(), asyncio.Event()

    async def slow_old() -> str:
        loading.set()
        await gate.wait()
        return "old"

    reader = asyncio.create_task(cache.get("k", slow_old))
    await loading.wait()  # the load is in flight (not merely scheduled)
    await cache.set("k", "new")
    gate.set()
    assert await reader == "old"
    assert await cache.get("k") == "new"
    assert await store.get("cache:v:k") == ["new"]


async def test_a_plain_read_during_a_load_does_not_stop_its_write_back(
    make: Factory, store: FakeCache
) -> None:
    """get(key) while get(key, loader) is loading: the load still reaches L2 and L1."""
    cache, gate, started = make(), asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        await gate.wait()
        return "loaded"

    loading = asyncio.create_task(cache.get("k", slow))
    await started.wait()  # the load is in flight (not merely scheduled)
    assert await cache.get("k") is None
    gate.set()
    assert await loading == "loaded"
    assert await store.get("cache:v:k") == ["loaded"]
    assert cache.l1_size == 1


# ------------------------------------------------------------------------- writes
async def test_set_delete_and_key_validation(make: Factory, store: FakeCache) -> None:
    """set() writes both tiers, delete() removes both; None and non-str keys refused."""
    cache = make()
    await cache.set("k", [1, 2])
    assert await cache.get("k") == [1, 2]
    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    assert await cache.get("k") is None
    with pytest.raises(TypeError, match="ABSENT"):
        await cache.set("k", None)
    with pytest.raises(TypeError, match="keys must be str"):
        await cache.get(b"k")  # type: ignore[call-overload]
    with pytest.raises(CacheSerializationError):
        await cache.set("k", object())


async def test_invalidate_by_tag_removes_only_tagged_keys(make: Factory) -> None:
    """invalidate(tag=) drops the tagged keys from L1 and L2, and nothing else."""
    cache = make()
    await cache.set("user:1", 1, tags=["org:a"])
    await cache.set("user:2", 2, tags=["org:a", "org:b"])
    await cache.set("user:3", 3, tags=["org:b"])
    assert await cache.invalidate(tag="org:a") == 2
    assert [await cache.get(f"user:{i}") for i in (1, 2, 3)] == [None, None, 3]
    assert await cache.invalidate(tag="org:a") == 0


async def test_invalidate_by_prefix_removes_matching_keys(make: Factory) -> None:
    """invalidate(prefix=) drops keys starting with it; clear() drops all."""
    cache, other = make(), make()
    for key in ("user:1", "user:2", "org:1"):
        await cache.set(key, key)
    assert await cache.invalidate(prefix="user:") == 2
    assert await cache.get("user:1") is None
    assert await other.get("org:1") == "org:1"
    assert await cache.clear() == 1
    assert await cache.get("org:1") is None


async def test_invalidate_needs_exactly_one_selector(make: Factory) -> None:
    """invalidate() with neither or both selectors is a TypeError."""
    cache = make()
    with pytest.raises(TypeError, match="exactly one"):
        await cache.invalidate()
    with pytest.raises(TypeError, match="exactly one"):
        await cache.invalidate(prefix="a", tag="b")


# ------------------------------------------------------------------------ degradation
async def test_l2_outage_falls_through_logs_once_counts_and_recovers(
    make: Factory,
    store: FakeCache,
    clock: ManualClock,
    collector: MetricsCollector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """L2 raising CacheConnectionError: loader answers, one warning, counted; a probe
    after probe_interval finds L2 back and clears L1."""
    cache, source = make(probe_interval=5), Source(a=1, b=2, c=3)
    store.fail_next(CacheConnectionError("connection refused"))
    with caplog.at_level(logging.WARNING, logger="infra.cache"):
        assert [await cache.get(k, source.loader(k)) for k in "abc"] == [1, 2, 3]
        await cache.set("d", 4)  # skipped while degraded: no error
    assert cache.degraded
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
    assert count(collector, "cache_degraded_total") == 1
    assert collector.get_gauge("cache_degraded") == 1
    assert count(collector, "cache_l2_errors_total", reason="CacheConnectionError") == 1
    assert count(collector, "cache_l2_errors_total", reason="skipped") >= 3
    assert store.calls == ["get"]  # nothing else reached the broken store
    assert source.loads == 3
    assert await cache.get("a") == 1  # L1 still serves in single-process mode

    clock.advance(5)
    assert await cache.get("e", source.loader("e")) is None  # the probe: L2 answers
    assert not is_degraded(cache)
    assert collector.get_gauge("cache_degraded") == 0
    assert count(collector, "cache_l1_resets_total", reason="recovered") == 1
    assert await cache.get("a") is None  # L1 was cleared; L2 never got "a"


async def test_undecodable_l2_value_reads_as_a_miss(
    make: Factory, store: FakeCache, collector: MetricsCollector
) -> None:
    """A foreign value under the cache's key is a counted miss, overwritten by a load."""
    cache = make()
    await store.set("cache:v:k", {"not": "wrapped"})
    assert await cache.get("k", Source(k="fresh").loader("k")) == "fresh"
    assert count(collector, "cache_l2_errors_total", reason="unrecognised") == 1
    assert await store.get("cache:v:k") == ["fresh"]
    assert not cache.degraded


# ---------------------------------------------------- validation and misuse paths
class GatedStore(FakeCache):
    """FakeCache whose ``get`` of chosen keys waits for a gate, then raises or answers:
    a request that is in flight while the cache changes state."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.gates: dict[str, tuple[asyncio.Event, BaseException | None]] = {}

    async def get(self, key: str) -> Any:
        gate = self.gates.get(key)
        if gate is not None:
            await gate[0].wait()
            if gate[1] is not None:
                raise gate[1]
        return await super().get(key)


def run(coro: Any) -> Any:
    """Run one scenario on a fresh loop (for Hypothesis examples)."""
    return asyncio.run(coro)


def fresh_cache(**options: Any) -> tuple[ThreeTierCache, GatedStore, ManualClock, MetricsCollector]:
    clock, collector = ManualClock(start=1000.0), MetricsCollector()
    store = GatedStore(clock=clock)
    options.setdefault("ttl_jitter", 0.0)
    cache = ThreeTierCache(store, clock=clock, metrics=collector, **options)
    return cache, store, clock, collector


def is_valid_key(key: object) -> bool:
    if not isinstance(key, str) or not key:
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


keys = st.one_of(
    st.text(st.characters(categories=["L", "N", "P", "Zs", "Cs", "Cc"]), max_size=6),
    st.binary(max_size=3),
    st.integers(),
    st.none(),
    st.lists(st.text(max_size=2), max_size=2),
)


@given(key=keys)
def test_every_operation_validates_its_key_before_any_io(key: object) -> None:
    """Non-str, empty or unencodable (lone surrogate) keys raise a TypeError/ValueError
    naming the key at every entry point, before anything reaches L2; the cache stays
    healthy. Valid keys round-trip."""

    async def scenario() -> None:
        cache, store, _, collector = fresh_cache()
        calls: list[Callable[[], Any]] = [
            lambda: cache.get(key),  # type: ignore[call-overload]
            lambda: cache.get(key, Source().loader("x")),  # type: ignore[call-overload]
            lambda: cache.set(key, 1),  # type: ignore[arg-type]
            lambda: cache.delete(key),  # type: ignore[arg-type]
        ]
        if not is_valid_key(key):
            for call in calls:
                with pytest.raises((TypeError, ValueError), match=r"(?i)key") as caught:
                    await call()
                assert not isinstance(caught.value, CacheConnectionError)
            assert store.calls == []
        else:
            await cache.set(key, 1)  # type: ignore[arg-type]
            assert await cache.get(key) == 1  # type: ignore[call-overload]
            assert await cache.delete(key) is True  # type: ignore[arg-type]
        assert not cache.degraded
        assert count(collector, "cache_degraded_total") == 0

    run(scenario())


def test_an_empty_key_names_the_fix() -> None:
    """The empty key is refused with a message that says what a key looks like."""
    cache, store, _, _ = fresh_cache()
    with pytest.raises(ValueError, match=r"must not be empty.*user:42"):
        run(cache.get(""))
    with pytest.raises(ValueError, match="lone surrogate"):
        run(cache.set("user:\ud800", 1))
    with pytest.raises(TypeError, match="tags must be a list"):
        run(cache.set("k", 1, tags="org:a"))
    with pytest.raises(ValueError, match="tag"):
        run(cache.set("k", 1, tags=[""]))
    assert store.calls == []


ttls = st.one_of(
    st.none(),
    st.floats(min_value=-1e9, max_value=1e9),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0]),
    st.integers(-3, 10**6),
    st.booleans(),
    st.text(max_size=3),
)


@given(ttl=ttls)
def test_set_validates_its_ttl_per_call(ttl: object) -> None:
    """``set(ttl=)`` accepts positive finite seconds (L2 then lives exactly that long)
    and refuses anything else by name -- zero, negative, NaN, infinite, bool, str --
    before any I/O."""
    valid = ttl is None or (
        isinstance(ttl, int | float)
        and not isinstance(ttl, bool)
        and math.isfinite(ttl)
        and ttl > 0
    )

    async def scenario() -> None:
        cache, store, _, _ = fresh_cache(l1_ttl=60, l2_ttl=300)
        if not valid:
            with pytest.raises((TypeError, ValueError), match="ttl"):
                await cache.set("k", "v", ttl=ttl)  # type: ignore[arg-type]
            assert store.calls == []
            assert await cache.get("k") is None
            return
        await cache.set("k", "v", ttl=ttl)  # type: ignore[arg-type]
        stored = await store.ttl("cache:v:k")
        expected = 300 if ttl is None else ttl
        assert stored is not None
        assert isinstance(expected, (int, float))
        assert stored == pytest.approx(max(expected, 0.001), rel=1e-9, abs=0.0006)

    run(scenario())


# ------------------------------------------------------- which errors degrade the cache
UNREACHABLE = [
    CacheConnectionError("connection refused"),
    OperationTimeoutError("attempt timed out", details={"timeout": 0.1}),
    InfraTimeoutError("timed out"),
    CircuitBreakerOpenError("breaker open"),
]
NOT_UNREACHABLE = [
    CacheError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    BackendAuthenticationError("WRONGPASS invalid username-password pair"),
    PoolExhaustedError("no free connection"),
    BulkheadFullError("bulkhead full"),
]


@given(error=st.sampled_from(UNREACHABLE + NOT_UNREACHABLE), op=st.sampled_from(["get", "set"]))
def test_only_unreachability_degrades_the_cache(error: InfraError, op: str) -> None:
    """A read never raises a backend error (the loader answers); a write raises what is
    not unreachability, typed, and absorbs what is (replayed later). Only connection
    errors, timeouts and an open breaker mark the cache degraded."""
    unreachable = any(error is e for e in UNREACHABLE)

    async def scenario() -> None:
        cache, store, _, collector = fresh_cache()
        store.fail_next(error, operation=op)
        if op == "get":
            assert await cache.get("k", Source(k="db").loader("k")) == "db"
        elif unreachable:
            await cache.set("k", "v")
            assert cache.pending_invalidations == 1
        else:
            with pytest.raises(type(error)):
                await cache.set("k", "v")
        assert cache.degraded is unreachable
        assert count(collector, "cache_degraded_total") == (1 if unreachable else 0)
        assert count(collector, "cache_l2_errors_total", reason=type(error).__name__) == 1

    run(scenario())


# ------------------------------------------------------- hysteresis: one outage, once
@given(
    inflight=st.lists(
        st.tuples(st.booleans(), st.booleans()),  # (it fails, it ends after the recovery)
        min_size=1,
        max_size=6,
    )
)
def test_requests_from_before_a_transition_never_flip_the_state(
    inflight: list[tuple[bool, bool]],
) -> None:
    """Requests in flight when Redis fails end in any order -- succeeding while the
    cache is degraded, failing after it recovered: one degradation, one recovery (by the
    probe), and every caller gets the loader's answer."""

    async def scenario() -> None:
        cache, store, clock, collector = fresh_cache(probe_interval=1.0)
        gates = []
        for i, (fails, _) in enumerate(inflight):
            gate = asyncio.Event()
            error = CacheConnectionError("reset") if fails else None
            store.gates[f"cache:v:slow{i}"] = (gate, error)
            gates.append(gate)
        tasks = [
            asyncio.create_task(cache.get(f"slow{i}", Source(**{f"slow{i}": i}).loader(f"slow{i}")))
            for i in range(len(inflight))
        ]
        await asyncio.sleep(0)  # every request is now waiting inside L2
        store.fail_next(CacheConnectionError("connection refused"), operation="get")
        assert await cache.get("first", Source(first="f").loader("first")) == "f"
        assert cache.degraded
        for (_, after), gate in zip(inflight, gates, strict=True):
            if not after:
                gate.set()
        await asyncio.sleep(0.001)
        assert cache.degraded  # a success from before the failure proves nothing
        clock.advance(1.0)
        assert await cache.get("probe", Source(probe="p").loader("probe")) == "p"
        assert not is_degraded(cache)  # the probe recovered it
        for gate in gates:
            gate.set()
        assert await asyncio.gather(*tasks) == list(range(len(inflight)))
        assert not is_degraded(cache)  # a failure from before the recovery proves nothing
        assert count(collector, "cache_degraded_total") == 1
        assert count(collector, "cache_l1_resets_total", reason="recovered") == 1

    run(scenario())


# ---------------------------------------------------- skipped writes are replayed
write_ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(["a:1", "a:2", "b:1", "c:1"])),
        st.tuples(st.just("delete"), st.sampled_from(["a:1", "a:2", "b:1", "c:1"])),
        st.tuples(st.just("prefix"), st.sampled_from(["a:", "b:"])),
        st.tuples(st.just("tag"), st.sampled_from(["t1", "t2"])),
    ),
    min_size=1,
    max_size=6,
)


@given(ops=write_ops)
def test_writes_skipped_during_an_outage_leave_no_older_value_in_l2(
    ops: list[tuple[str, str]],
) -> None:
    """Whatever was written, deleted or invalidated while L2 was unreachable (no error to
    the caller), none of those keys still has its pre-outage value in L2 after recovery;
    keys the outage did not touch keep theirs."""
    tags = {"a:1": ["t1"], "a:2": ["t2"], "b:1": ["t1", "t2"], "c:1": []}

    async def scenario() -> None:
        cache, store, clock, _ = fresh_cache(probe_interval=1.0)
        for key, key_tags in tags.items():
            await cache.set(key, "old", tags=key_tags)
        store.fail_next(CacheConnectionError("connection refused"), operation="get")
        await cache.get("x", Source(x=1).loader("x"))
        assert cache.degraded
        touched: set[str] = set()
        for kind, arg in ops:
            if kind == "set":
                await cache.set(arg, "new")
                touched.add(arg)
            elif kind == "delete":
                await cache.delete(arg)
                touched.add(arg)
            elif kind == "prefix":
                await cache.invalidate(prefix=arg)
                touched |= {k for k in tags if k.startswith(arg)}
            else:
                await cache.invalidate(tag=arg)
                touched |= {k for k, t in tags.items() if arg in t}
        assert cache.pending_invalidations > 0
        clock.advance(1.0)
        await cache.get("y", Source(y=2).loader("y"))  # the probe: recovery replays
        assert not is_degraded(cache)
        assert cache.pending_invalidations == 0
        for key in tags:
            stored = await store.get(f"cache:v:{key}")
            assert stored is None if key in touched else stored == ["old"], key

    run(scenario())


async def test_too_many_skipped_writes_invalidate_the_whole_namespace(
    make: Factory, store: FakeCache, clock: ManualClock
) -> None:
    """Past the remembered-keys bound the recovery clears everything it wrote."""
    cache = make(probe_interval=1.0)
    await cache.set("kept-before", "old")
    store.fail_next(CacheConnectionError("refused"), operation="get")
    await cache.get("x", Source(x=1).loader("x"))
    for i in range(10_001):
        await cache.delete(f"gone:{i}")
    assert cache.pending_invalidations == 1  # one namespace-wide invalidation
    clock.advance(1.0)
    await cache.get("y", Source(y=2).loader("y"))
    assert await store.get("cache:v:kept-before") is None


async def test_redis_mode_needs_the_redis_cache_over_that_client() -> None:
    """With a raw client the cache writes the port's format itself: a store without the
    port's key() and serializer is refused, naming what to pass."""
    from redis.asyncio import Redis

    client = Redis()
    try:
        with pytest.raises(TypeError, match="RedisCache over that client"):
            ThreeTierCache(FakeCache(), redis=client)
    finally:
        await client.aclose()

"""The benchmark harness's statistics and the goal verdicts, on synthetic samples.

No server starts here: the harness is exercised with in-process coroutines and made-up
batches, so what is checked is the arithmetic and the rules (per-round ratios, rotation,
errors counted, goals judged on the container default only).
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.goals import GOALS, judge
from benchmarks.harness import (
    Batch,
    Variant,
    rotated,
    run_batch,
    run_rounds,
    spread,
    summarize,
)
from benchmarks.report import RunInfo, cost_breakdown, now, remaining_cost, write_markdown
from benchmarks.scenario import HEADLINE, ScenarioResult


def test_spread_is_median_and_range() -> None:
    """Median, min and max; an empty list is refused."""
    result = spread([3.0, 1.0, 2.0, 10.0])
    assert (result.median, result.low, result.high) == (2.5, 1.0, 10.0)
    with pytest.raises(ValueError, match="at least one"):
        spread([])


@given(names=st.lists(st.text(min_size=1), min_size=1, max_size=8, unique=True))
def test_rotation_puts_every_variant_in_every_position(names: list[str]) -> None:
    """Over len(names) rounds each variant runs once in each position of the round."""
    orders = [rotated(names, index) for index in range(len(names))]
    assert all(sorted(order) == sorted(names) for order in orders)
    for position in range(len(names)):
        assert sorted(order[position] for order in orders) == sorted(names)
    assert rotated(names, 0) == names


def test_ratios_are_taken_per_round_not_from_medians() -> None:
    """The median of same-round ratios, which differs here from the ratio of medians."""
    base = [Batch(1.0, 1.0, 10), Batch(2.0, 2.0, 10), Batch(10.0, 1.0, 10)]
    mine = [Batch(3.0, 1.0, 10), Batch(2.2, 3.0, 10), Batch(10.0, 1.5, 10)]
    [baseline, variant] = summarize({"raw": base, "mine": mine}, "raw")
    assert baseline.wall_ratio.median == baseline.cpu_ratio.median == 1.0
    assert variant.wall_ratio.median == pytest.approx(1.1)  # ratios 3.0, 1.1, 1.0
    ratio_of_medians = statistics.median([3.0, 2.2, 10.0]) / statistics.median([1.0, 2.0, 10.0])
    assert variant.wall_ratio.median != pytest.approx(ratio_of_medians)
    assert (variant.wall_ratio.low, variant.wall_ratio.high) == pytest.approx((1.0, 3.0))
    assert variant.cpu_ratio.median == pytest.approx(1.5)  # ratios 1.0, 1.5, 1.5
    assert variant.wall_us.median == pytest.approx(3.0e6)
    assert variant.calls == 30


@given(
    rounds=st.lists(st.tuples(st.floats(1e-6, 1.0), st.floats(1e-6, 1.0)), min_size=1, max_size=20)
)
def test_ratio_median_matches_the_definition(rounds: list[tuple[float, float]]) -> None:
    """Property: wall_ratio.median is statistics.median of mine/base, round by round,
    and the range brackets it."""
    base = [Batch(b, b, 1) for b, _ in rounds]
    mine = [Batch(m, m, 1) for _, m in rounds]
    result = summarize({"base": base, "mine": mine}, "base")[1]
    expected = statistics.median(m / b for b, m in rounds)
    assert result.wall_ratio.median == pytest.approx(expected)
    assert result.wall_ratio.low <= result.wall_ratio.median <= result.wall_ratio.high


def test_summarize_refuses_a_missing_baseline_and_unequal_rounds() -> None:
    """Ratios need the baseline and one baseline batch per round."""
    one = [Batch(1.0, 1.0, 1)]
    with pytest.raises(ValueError, match="baseline"):
        summarize({"a": one}, "raw")
    with pytest.raises(ValueError, match="rounds"):
        summarize({"raw": one, "a": one * 2}, "raw")


async def test_run_batch_spreads_calls_and_counts_errors() -> None:
    """10 calls over 3 tasks make 9 (3 each); every third call raising is counted."""
    made = 0

    async def call() -> None:
        nonlocal made
        made += 1
        if made % 3 == 0:
            raise RuntimeError("boom")

    batch = await run_batch(call, 10, 3)
    assert (made, batch.calls, batch.errors) == (9, 9, 3)
    assert batch.wall > 0
    assert batch.cpu >= 0
    with pytest.raises(ValueError, match=">= 1"):
        await run_batch(call, 0, 1)


async def test_rounds_rotate_and_run_setup_before_each_batch() -> None:
    """Warm-up batches are not results; each round's order is rotated; a variant's setup
    runs right before each of its batches."""
    log: list[str] = []

    def variant(name: str) -> Variant:
        async def call() -> None:
            if not log or log[-1] != name:
                log.append(name)

        return Variant(name, call, setup=lambda: log.append(f"setup {name}"))

    results = await run_rounds(
        [variant("a"), variant("b"), variant("c")], rounds=3, calls=4, tasks=2, warmup=1
    )
    assert {name: len(batches) for name, batches in results.items()} == {"a": 3, "b": 3, "c": 3}
    timed = [entry for entry in log if not entry.startswith("setup")][3:]  # after warm-up
    assert timed == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert Counter(log)["setup a"] == 4  # warm-up + 3 rounds
    for index, entry in enumerate(log):
        if entry.startswith("setup "):  # the next thing to run is that variant's batch
            assert log[index + 1] == entry.removeprefix("setup ")
    with pytest.raises(ValueError, match="unique"):
        await run_rounds([variant("a"), variant("a")], rounds=1, calls=1, tasks=1)


# ------------------------------------------------------------------------------ goals
def scenario(key: str, tasks: int, ratios: dict[str, float], errors: int = 0) -> ScenarioResult:
    """A scenario whose variants ran one round at ``tasks`` with these wall ratios."""
    batches = {"raw": [Batch(1.0, 1.0, 100)]}
    for name, ratio in ratios.items():
        batches[name] = [Batch(ratio, ratio, 100, errors if name == HEADLINE else 0)]
    return ScenarioResult(key, key, "raw", "", {tasks: summarize(batches, "raw")}, {tasks: 100})


def verdict_for(key: str, tasks: int, results: dict[str, ScenarioResult]) -> tuple[bool, str]:
    [v] = [v for v in judge(results) if (v.goal.scenario, v.goal.tasks) == (key, tasks)]
    return v.met, v.shortfall


def test_goals_are_judged_on_the_container_default_only() -> None:
    """A breakdown variant under the limit never makes a goal met; the headline does."""
    limit = next(g.limit for g in GOALS if (g.scenario, g.tasks) == ("redis_get", 1))
    missed = {"redis_get": scenario("redis_get", 1, {HEADLINE: 1.3, "passthrough": 1.01})}
    assert verdict_for("redis_get", 1, missed) == (False, "+18% over")
    met = {"redis_get": scenario("redis_get", 1, {HEADLINE: limit})}
    assert verdict_for("redis_get", 1, met) == (True, "")


def test_errors_and_missing_measurements_are_never_met() -> None:
    """A headline with failed calls misses its goal whatever its ratio; an unmeasured
    goal is reported as such."""
    failing = {"postgres_fetchval": scenario("postgres_fetchval", 32, {HEADLINE: 1.0}, 5)}
    assert verdict_for("postgres_fetchval", 32, failing) == (False, "5 calls failed")
    assert verdict_for("tpcb", 16, failing) == (False, "not measured")


def test_rejected_call_goals_are_microseconds_and_expect_errors() -> None:
    """Rejected calls all raise by design: judged on µs per call, errors ignored."""
    batches = {
        "bare breaker": [Batch(3e-6, 3e-6, 100, 100)],
        "store (container)": [Batch(12e-6, 10e-6, 100, 100)],
        "cache (container)": [Batch(250e-6, 200e-6, 100, 100)],
    }
    result = ScenarioResult(
        "rejected", "rejected", "bare breaker", "", {1: summarize(batches, "bare breaker")}, {}
    )
    result.expect_errors = True
    verdicts = {v.goal.figure: v for v in judge({"rejected": result})}
    store = verdicts["rejected call while OPEN, store"]
    cache = verdicts["rejected call while OPEN, cache"]
    assert store.met
    assert store.value == pytest.approx(12.0)
    assert not cache.met
    assert cache.shortfall == "+230.0 µs over"


# ---------------------------------------------------------- remaining cost of missed goals
@given(
    rounds=st.lists(
        st.tuples(*(st.floats(50e-6, 500e-6) for _ in range(3))), min_size=1, max_size=9
    )
)
def test_a_missed_goal_is_broken_down_by_layer_from_the_same_rounds(
    rounds: list[tuple[float, float, float]],
) -> None:
    """Under a missed goal the report gives each variant's CPU over the baseline as the
    median of same-round differences, and the policy as the headline minus passthrough."""
    raw = [Batch(1.0, cpu, 100) for cpu, _, _ in rounds]
    passthrough = [Batch(1.0, cpu, 100) for _, cpu, _ in rounds]
    headline = [Batch(2.0, cpu, 100) for _, _, cpu in rounds]  # wall 2x: the goal is missed
    results = summarize({"raw": raw, HEADLINE: headline, "passthrough": passthrough}, "raw")
    result = ScenarioResult("redis_get", "RedisCache.get", "raw", "", {32: results}, {32: 100})
    verdicts = judge({"redis_get": result})
    [missed] = [v for v in verdicts if (v.goal.scenario, v.goal.tasks) == ("redis_get", 32)]
    lines = cost_breakdown(missed, result)

    def extra(index: int) -> float:
        return statistics.median((r[index] - r[0]) * 1e6 for r in rounds)

    assert f"{HEADLINE} {extra(2):+.1f}; passthrough {extra(1):+.1f}." in lines[0]
    assert f"costs {extra(2) - extra(1):+.1f} µs per call" in lines[1]


def test_the_remaining_cost_follows_the_goals_table_only_for_missed_goals(
    tmp_path: Path,
) -> None:
    """The section sits right under the goals table, names each missed goal with its
    shortfall, breakdown and profile, and says nothing about met goals."""
    batches = {
        "raw": [Batch(1.0, 100e-6, 100)],
        HEADLINE: [Batch(1.3, 130e-6, 100)],
        "passthrough": [Batch(1.05, 104e-6, 100)],
    }
    result = ScenarioResult(
        "redis_get", "RedisCache.get", "raw", "", {1: summarize(batches, "raw")}, {1: 100}
    )
    result.profiles[f"{HEADLINE} @ 1"] = ["PROFILE LINE"]
    met = scenario("postgres_fetchval", 1, {HEADLINE: 1.0})
    verdicts = judge({"redis_get": result, "postgres_fetchval": met})
    info = RunInfo("quick", 1, 0.1, "", now(), {}, "abc", (0.0, 0.0, 0.0))
    path = tmp_path / "report.md"
    write_markdown(path, info, [result, met], verdicts)
    text = path.read_text(encoding="utf-8")
    goals, rest = text.split("## Where the remaining cost is (missed goals)", 1)
    assert "## Goals:" in goals
    assert "## RedisCache.get" not in goals  # the scenario tables come after it
    section = rest.split("\n## ", 1)[0]
    assert "### RedisCache.get vs raw GET + same decoding @ 1: 1.300x" in section
    assert "(+18% over)" in section
    assert "container default +30.0; passthrough +4.0." in section
    assert "costs +26.0 µs per call (+26% of the baseline's CPU)" in section
    assert "PROFILE LINE" in section
    assert "PostgreSQL fetchval" not in section
    assert remaining_cost([v for v in verdicts if v.met], [result, met]) == []

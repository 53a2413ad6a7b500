"""The performance goals and how a run is judged against them.

Goals apply to the configuration an application gets from ``ApplicationContainer`` with
default settings -- the *container default* variant of each scenario, never a breakdown
variant -- as a median of same-round ratios to the raw driver doing the same work (or,
for rejected calls, microseconds per call).

| figure | 1 task | 32 tasks | 128 tasks |
| --- | --- | --- | --- |
| ``RedisCache.get`` vs raw GET + same decoding | <= 1.10x | <= 1.15x | <= 1.20x |
| PostgreSQL ``fetchval`` vs raw asyncpg pool | <= 1.10x | <= 1.15x | <= 1.20x |
| TPC-B-like transaction vs raw asyncpg transaction | <= 1.10x | <= 1.10x (16 clients) | |
| L2 hit through ``ThreeTierCache`` vs raw GET + decoding | <= 1.15x | <= 1.20x | |
| rejected call while OPEN (store, cache) | <= 20 µs | | |

A goal whose variant raised errors, or that was not measured, is *not met*.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from benchmarks import rejected
from benchmarks.harness import VariantResult
from benchmarks.scenario import HEADLINE, ScenarioResult

__all__ = ["GOALS", "Goal", "Verdict", "goal_for", "judge", "missed"]


@dataclass(frozen=True, slots=True)
class Goal:
    """One cell of the goals table.

    Attributes:
        figure: Row label.
        scenario: Key of the scenario that measures it.
        variant: The variant judged (the container's default configuration).
        tasks: Concurrency of the cell.
        limit: The bound (a ratio, or microseconds).
        kind: ``"ratio"`` (median wall-time ratio) or ``"us"`` (median µs per call).
    """

    figure: str
    scenario: str
    variant: str
    tasks: int
    limit: float
    kind: Literal["ratio", "us"] = "ratio"


def _row(figure: str, scenario: str, cells: Mapping[int, float]) -> list[Goal]:
    return [Goal(figure, scenario, HEADLINE, tasks, limit) for tasks, limit in cells.items()]


GOALS: tuple[Goal, ...] = (
    *_row("RedisCache.get vs raw GET + same decoding", "redis_get", {1: 1.10, 32: 1.15, 128: 1.20}),
    *_row(
        "PostgreSQL fetchval vs raw asyncpg pool",
        "postgres_fetchval",
        {1: 1.10, 32: 1.15, 128: 1.20},
    ),
    *_row("TPC-B-like transaction vs raw asyncpg transaction", "tpcb", {1: 1.10, 16: 1.10}),
    *_row(
        "L2 hit through ThreeTierCache vs raw GET + decoding", "three_tier_l2", {1: 1.15, 32: 1.20}
    ),
    *_row(
        "FastAPI cache-hit route: ThreeTierDep vs a module-level object",
        "fastapi_http",
        {1: 1.10, 32: 1.10},
    ),
    Goal("rejected call while OPEN, store", "rejected", rejected.STORE, 1, 20.0, "us"),
    Goal("rejected call while OPEN, cache", "rejected", rejected.CACHE, 1, 20.0, "us"),
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A goal and what this run measured for it."""

    goal: Goal
    value: float | None  #: median ratio or µs; None when not measured
    low: float | None
    high: float | None
    cpu_ratio: float | None  #: median CPU-time ratio (same rounds), for context
    errors: int
    met: bool

    @property
    def shortfall(self) -> str:
        """By how much a missed goal is missed (empty when met)."""
        if self.met:
            return ""
        if self.value is None:
            return "not measured"
        if self.errors:
            return f"{self.errors} calls failed"
        if self.goal.kind == "us":
            return f"+{self.value - self.goal.limit:.1f} µs over"
        return f"+{(self.value / self.goal.limit - 1) * 100:.0f}% over"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "figure": self.goal.figure,
            "scenario": self.goal.scenario,
            "variant": self.goal.variant,
            "tasks": self.goal.tasks,
            "kind": self.goal.kind,
            "limit": self.goal.limit,
            "value": self.value,
            "min": self.low,
            "max": self.high,
            "cpu_ratio": self.cpu_ratio,
            "errors": self.errors,
            "met": self.met,
            "shortfall": self.shortfall,
        }


def missed(goal: Goal, result: VariantResult, *, expect_errors: bool = False) -> bool:
    """Whether ``result`` misses ``goal`` (errors miss it unless they are the figure)."""
    spread = result.wall_us if goal.kind == "us" else result.wall_ratio
    return (result.errors and not expect_errors) or spread.median > goal.limit


def goal_for(scenario: str, variant: str, tasks: int) -> Goal | None:
    """The goal judged on this cell, if any."""
    for goal in GOALS:
        if (goal.scenario, goal.variant, goal.tasks) == (scenario, variant, tasks):
            return goal
    return None


def judge(scenarios: Mapping[str, ScenarioResult]) -> list[Verdict]:
    """Every goal against the scenarios measured."""
    verdicts = []
    for goal in GOALS:
        scenario = scenarios.get(goal.scenario)
        result = None if scenario is None else scenario.variant(goal.variant, goal.tasks)
        if result is None:
            verdicts.append(Verdict(goal, None, None, None, None, 0, met=False))
            continue
        spread = result.wall_us if goal.kind == "us" else result.wall_ratio
        errors = 0 if scenario is None or scenario.expect_errors else result.errors
        verdicts.append(
            Verdict(
                goal,
                spread.median,
                spread.low,
                spread.high,
                result.cpu_ratio.median,
                errors,
                met=errors == 0 and spread.median <= goal.limit,
            )
        )
    return verdicts

"""The PNG chart: wall-time ratio to the raw driver by concurrency, one panel per backend.

matplotlib comes from the optional ``bench`` extra (``pip install -e ".[bench]"``) and
is imported here only, when the chart is drawn, so the measurements run without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.goals import GOALS
from benchmarks.scenario import HEADLINE, ScenarioResult

__all__ = ["draw"]

RATIO_PANELS = ("redis_get", "postgres_fetchval", "tpcb", "three_tier_l2")


def draw(path: Path, scenarios: Sequence[ScenarioResult], title: str) -> None:
    """Write the chart to ``path``.

    Raises:
        ImportError: matplotlib is not installed (the ``bench`` extra).
    """
    import matplotlib  # noqa: PLC0415 - optional, imported only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    by_key = {s.key: s for s in scenarios}
    fig, axes = plt.subplots(2, 3, figsize=(16, 9), constrained_layout=True)
    panels = list(axes.flat)
    for ax, key in zip(panels, RATIO_PANELS, strict=False):
        scenario = by_key.get(key)
        if scenario is None:
            ax.set_visible(False)
            continue
        _ratio_panel(ax, scenario)
    rejected = by_key.get("rejected")
    if rejected is not None:
        _rejected_panel(panels[4], rejected)
    else:
        panels[4].set_visible(False)
    _cpu_panel(panels[5], [by_key[k] for k in RATIO_PANELS if k in by_key])
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: One colour per variant name in every panel.
COLOURS = {
    HEADLINE: "tab:blue",
    "raw GET": "tab:gray",
    "sampled out": "tab:green",
    "sampled in": "tab:red",
    "bulkhead at the pool size": "tab:orange",
    "passthrough": "tab:purple",
    "bare": "tab:brown",
}


def _ratio_panel(ax: Any, scenario: ScenarioResult) -> None:
    levels = sorted(scenario.levels)
    names = [r.name for r in scenario.levels[levels[0]] if r.name != scenario.baseline]
    for name in names:
        medians, lows, highs = [], [], []
        for tasks in levels:
            result = scenario.variant(name, tasks)
            assert result is not None
            spread = result.wall_ratio
            medians.append(spread.median)
            lows.append(spread.median - spread.low)
            highs.append(spread.high - spread.median)
        headline = name == HEADLINE
        ax.errorbar(
            levels,
            medians,
            yerr=[lows, highs],
            label=name,
            color=COLOURS.get(name),
            marker="o",
            linewidth=2.5 if headline else 1.2,
            capsize=3,
            zorder=3 if headline else 2,
        )
    goals = [g for g in GOALS if g.scenario == scenario.key]
    if goals:
        ax.scatter(
            [g.tasks for g in goals],
            [g.limit for g in goals],
            marker="_",
            s=600,
            color="red",
            label="goal",
            zorder=4,
        )
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(t) for t in levels])
    ax.set_xlabel("concurrent tasks")
    ax.set_ylabel(f"wall time ÷ {scenario.baseline}")
    ax.set_title(scenario.title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def _rejected_panel(ax: Any, scenario: ScenarioResult) -> None:
    results = scenario.levels[min(scenario.levels)]
    names = [r.name for r in results]
    medians = [r.wall_us.median for r in results]
    errors = [
        [r.wall_us.median - r.wall_us.low for r in results],
        [r.wall_us.high - r.wall_us.median for r in results],
    ]
    ax.bar(names, medians, yerr=errors, capsize=4, color="tab:orange")
    for goal in GOALS:
        if goal.scenario == scenario.key:
            ax.axhline(goal.limit, color="red", linestyle="--", linewidth=1)
            break
    ax.set_ylabel("µs per rejected call")
    ax.set_title("Rejected call while OPEN (goal: red line)")
    ax.grid(True, axis="y", alpha=0.3)


def _cpu_panel(ax: Any, scenarios: Sequence[ScenarioResult]) -> None:
    for scenario in scenarios:
        levels = sorted(scenario.levels)
        ratios = []
        for tasks in levels:
            result = scenario.variant(HEADLINE, tasks)
            assert result is not None
            ratios.append(result.cpu_ratio.median)
        ax.plot(levels, ratios, marker="o", label=scenario.title)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ticks = sorted({t for s in scenarios for t in s.levels})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("concurrent tasks")
    ax.set_ylabel("client CPU time ÷ baseline's")
    ax.set_title("Container default: CPU-time ratio")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)

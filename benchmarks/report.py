"""Writing a run down: ``report.md`` for people, ``report.json`` for tools.

The Markdown starts with where and when the numbers were measured (machine, date,
commit, load), what was measured (the container's settings and policies), then the goals
table -- each goal with the measured median, its range over rounds, the CPU-time ratio
beside it and met / not met -- and right under it, for each missed goal, what the
remaining cost is: the same run's breakdown variants (which layer costs what) and a
profile of the variant that missed; then every scenario's full table.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.goals import Verdict
from benchmarks.scenario import HEADLINE, ScenarioResult

__all__ = ["RunInfo", "cost_breakdown", "machine", "remaining_cost", "write_json", "write_markdown"]

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RunInfo:
    """Everything about a run that is not a measurement."""

    mode: str  #: "full" or "quick"
    rounds: int
    scale: float
    note: str
    started: datetime
    machine: dict[str, str]
    commit: str
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    duration_s: float = 0.0
    settings_overridden: list[str] = field(default_factory=list)
    tracing: str = ""
    policies: dict[str, str] = field(default_factory=dict)
    chart: str | None = None
    #: Scenarios that could not be measured: key -> the error.
    failures: dict[str, str] = field(default_factory=dict)
    #: The startup measurement's text (``benchmarks.bench_startup``) and its figures.
    startup: list[str] = field(default_factory=list)
    startup_figures: dict[str, float | bool] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "mode": self.mode,
            "rounds": self.rounds,
            "scale": self.scale,
            "note": self.note,
            "started_utc": self.started.isoformat(timespec="seconds"),
            "machine": self.machine,
            "commit": self.commit,
            "load_average_start": self.load_start,
            "load_average_end": self.load_end,
            "duration_s": round(self.duration_s, 1),
            "settings_overridden": self.settings_overridden,
            "container_tracing": self.tracing,
            "container_policies": self.policies,
            "chart": self.chart,
            "failures": self.failures,
            "startup": self.startup_figures,
        }


def machine() -> dict[str, str]:
    """CPU model, cores, memory, OS and Python of this machine (no host name)."""
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "python": sys.version.split()[0],
    }
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        first = meminfo.read_text(encoding="utf-8").splitlines()[0]
        kib = int(first.split()[1])
        info["memory"] = f"{kib / 1024 / 1024:.1f} GiB"
    return info


def commit() -> str:
    """``<short sha>`` of the checkout, ``+ uncommitted changes`` when dirty."""
    try:
        sha = subprocess.run(  # fixed argv
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{sha} + uncommitted changes" if dirty else sha


def write_json(
    path: Path, info: RunInfo, scenarios: Sequence[ScenarioResult], verdicts: Sequence[Verdict]
) -> None:
    """Everything, raw rounds included."""
    data = {
        "run": info.as_dict(),
        "goals": [v.as_dict() for v in verdicts],
        "scenarios": {s.key: s.as_dict() for s in scenarios},
    }
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _ratio(median: float, low: float, high: float) -> str:
    return f"{median:.3f}x ({low:.2f}..{high:.2f})"


def _goal_value(v: Verdict) -> str:
    if v.value is None or v.low is None or v.high is None:
        return "not measured"
    if v.goal.kind == "us":
        return f"{v.value:.1f} µs ({v.low:.1f}..{v.high:.1f})"
    return _ratio(v.value, v.low, v.high)


def _limit(v: Verdict) -> str:
    return f"≤ {v.goal.limit:g} µs" if v.goal.kind == "us" else f"≤ {v.goal.limit:.2f}x"


def goals_table(verdicts: Sequence[Verdict]) -> list[str]:
    """The goals as a Markdown table."""
    lines = [
        "| figure | tasks | goal | measured: median (range over rounds) | CPU-time ratio | |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for v in verdicts:
        tasks = "16 clients" if v.goal.scenario == "tpcb" and v.goal.tasks == 16 else v.goal.tasks
        cpu = "" if v.cpu_ratio is None or v.goal.kind == "us" else f"{v.cpu_ratio:.3f}x"
        verdict = "**met**" if v.met else f"**not met** ({v.shortfall})"
        lines.append(
            f"| {v.goal.figure} | {tasks} | {_limit(v)} | {_goal_value(v)} | {cpu} | {verdict} |"
        )
    return lines


def scenario_table(scenario: ScenarioResult) -> list[str]:
    """Every variant at every level."""
    lines = [
        (
            f"Baseline: **{scenario.baseline}**. Ratios are per round (variant ÷ baseline, same "
            "round), median and range over rounds; µs are per call."
        ),
        "",
        "| tasks | variant | wall µs | wall ratio | CPU µs | CPU ratio | errors |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for tasks, results in scenario.levels.items():
        for r in results:
            name = f"**{r.name}**" if r.name == HEADLINE else r.name
            if r.note:
                name += f" ({r.note})"
            errors = "all (expected)" if scenario.expect_errors else str(r.errors)
            lines.append(
                f"| {tasks} | {name} | {r.wall_us.median:.1f} | "
                f"{_ratio(r.wall_ratio.median, r.wall_ratio.low, r.wall_ratio.high)} | "
                f"{r.cpu_us.median:.1f} | "
                f"{_ratio(r.cpu_ratio.median, r.cpu_ratio.low, r.cpu_ratio.high)} | {errors} |"
            )
    return lines


def cost_breakdown(verdict: Verdict, scenario: ScenarioResult) -> list[str]:
    """For a missed goal: what each variant of the same level costs over the baseline, in
    CPU µs per call (median of same-round differences), so the layers can be told apart
    -- e.g. the container default minus *passthrough* is what the policy costs."""
    goal = verdict.goal
    results = scenario.levels.get(goal.tasks, [])
    base = next((r for r in results if r.name == scenario.baseline), None)
    if base is None:
        return []
    extra: dict[str, float] = {}
    for r in results:
        if r.name != base.name and len(r.batches) == len(base.batches):
            pairs = zip(r.batches, base.batches, strict=True)
            differences = [(b.cpu - a.cpu) * 1e6 for b, a in pairs]
            extra[r.name] = statistics.median(differences) if differences else 0.0
    if not extra:
        return []
    cells = "; ".join(f"{name} {value:+.1f}" for name, value in extra.items())
    lines = [
        (
            f"* CPU µs per call over *{base.name}* ({base.cpu_us.median:.1f} µs), median of "
            f"same-round differences: {cells}."
        )
    ]
    headline = extra.get(goal.variant)
    if headline is not None and "passthrough" in extra:
        policy = headline - extra["passthrough"]
        share = policy / base.cpu_us.median * 100 if base.cpu_us.median else 0.0
        lines.append(
            f"* The policy (container default minus passthrough) costs {policy:+.1f} µs per call "
            f"({share:+.0f}% of the baseline's CPU); the adapter and its telemetry "
            f"(passthrough minus baseline) {extra['passthrough']:+.1f} µs."
        )
    return lines


def remaining_cost(verdicts: Sequence[Verdict], scenarios: Sequence[ScenarioResult]) -> list[str]:
    """Under the goals table: for each missed goal, by how much, which layer costs what
    (:func:`cost_breakdown`) and, when one was taken, the profile of the variant."""
    by_key = {s.key: s for s in scenarios}
    lines: list[str] = []
    for v in verdicts:
        scenario = by_key.get(v.goal.scenario)
        if v.met or scenario is None or v.value is None:
            continue
        tasks = "16 clients" if v.goal.scenario == "tpcb" and v.goal.tasks == 16 else v.goal.tasks
        lines += [
            (f"### {v.goal.figure} @ {tasks}: {_goal_value(v)}, goal {_limit(v)} ({v.shortfall})"),
            "",
            *cost_breakdown(v, scenario),
        ]
        profile = scenario.profiles.get(f"{v.goal.variant} @ {v.goal.tasks}")
        if profile:
            lines += ["", "```text", *profile, "```"]
        lines.append("")
    if not lines:
        return []
    return [
        "## Where the remaining cost is (missed goals)",
        "",
        (
            "For each missed goal: the same run's breakdown variants as CPU µs per call over "
            "the baseline, then one extra batch of the variant under cProfile -- the "
            "project's own functions first, with exact calls per call (profiling inflates "
            "every timing; compare entries with each other)."
        ),
        "",
        *lines,
    ]


def write_markdown(
    path: Path, info: RunInfo, scenarios: Sequence[ScenarioResult], verdicts: Sequence[Verdict]
) -> None:
    """The human-readable report."""
    m = info.machine
    met = sum(v.met for v in verdicts)
    lines = [
        "# Benchmarks: the container's default configuration against the raw drivers",
        "",
        "Generated by `python -m benchmarks`"
        + (" --quick (a smoke run: indicative only)" if info.mode == "quick" else "")
        + "; do not edit by hand.",
        "",
        (
            f"* **Measured**: {info.started:%Y-%m-%d %H:%M} UTC, commit `{info.commit}`, "
            f"{info.rounds} interleaved rounds per level, {info.duration_s / 60:.1f} min."
        ),
        (
            f"* **Machine**: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
            f"{m.get('memory', '?')} RAM; {m.get('os', '?')}; Python {m.get('python', '?')}. "
            f"Load average (1/5/15 min) at start {_load(info.load_start)}, "
            f"at end {_load(info.load_end)}."
        ),
    ]
    if info.note:
        lines.append(f"* **Note**: {info.note}")
    lines += [
        "* **Configuration**: `ApplicationContainer()` with `Settings(database_url=…, "
        "redis_url=…)` pointing at the embedded PostgreSQL and Redis; every other setting "
        + (
            "at its default."
            if not info.settings_overridden
            else f"at its default except {', '.join(info.settings_overridden)} "
            "(set in the environment)."
        ),
        f"* **Container tracing**: {info.tracing}.",
    ]
    for name, described in info.policies.items():
        lines.append(f"* **{name} policy**: `{described}`")
    lines += [
        "",
        (
            "Every figure is a same-run comparison: all variants of a scenario are measured "
            "in the same rounds, in an order rotated each round, and each ratio is taken "
            "within its round. Wall time includes the servers and everything else the machine "
            "runs; CPU time is this process's (`time.process_time`), i.e. what the client "
            "side costs. Goals are judged on the **container default** variant only -- the "
            "adapters exactly as `ApplicationContainer` hands them out."
        ),
        "",
        f"## Goals: {met} of {len(verdicts)} met",
        "",
        *goals_table(verdicts),
        "",
        *remaining_cost(verdicts, scenarios),
    ]
    if info.failures:
        lines += ["**Scenarios that could not be measured:**", ""]
        lines += [f"* `{key}`: {error}" for key, error in info.failures.items()]
        lines.append("")
    if info.chart:
        lines += [f"![Wall-time ratio to the raw driver by concurrency]({info.chart})", ""]
    for scenario in scenarios:
        lines += [f"## {scenario.title}", "", scenario.description, "", *scenario_table(scenario)]
        lines.append("")
    if info.startup:
        lines += [
            "## Startup: `from containers.application import ApplicationContainer`",
            "",
            (
                "Fresh interpreters, bytecode cached; the goal (<= 300 ms over bare Python) is "
                "judged with FastAPI blocked, on the in-process import time "
                "(`benchmarks/bench_startup.py` says why)."
            ),
            "",
            "```text",
            *info.startup,
            "```",
            "",
        ]
    lines += [
        "## Reproduce",
        "",
        "```bash",
        'pip install -e ".[dev,embedded,bench]"',
        "python -m benchmarks            # full run: this report, report.json, report.png",
        "python -m benchmarks --quick    # CI-sized smoke run, written to a temporary folder",
        "```",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)

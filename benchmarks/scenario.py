"""What a scenario is and what it produces: variants measured at several concurrencies.

A scenario module (``redis_get``, ``postgres_fetchval``, ``tpcb``, ``three_tier``,
``rejected``) builds its variants from the :class:`~benchmarks.environment.Environment`
and calls :func:`measure`. Its *headline* variant is always the adapter exactly as the
container hands it out; goals are read from the headline only.
"""

from __future__ import annotations

import cProfile
import gc
import inspect
import pstats
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import Variant, VariantResult, run_batch, run_rounds, summarize

__all__ = ["HEADLINE", "Plan", "ScenarioResult", "measure", "resolved"]

#: The name of every scenario's headline variant.
HEADLINE = "container default"


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure.

    Attributes:
        rounds: Interleaved rounds per concurrency level.
        scale: Multiplies each scenario's calls per batch (1.0 = full run).
        levels: Concurrency levels (coroutines making calls at once).
    """

    rounds: int
    scale: float
    levels: tuple[int, ...] = (1, 8, 32, 128)
    #: ``(scenario key, tasks, result) -> bool``: profile this variant (a missed goal).
    wants_profile: Callable[[str, int, VariantResult], bool] | None = None

    def calls(self, full: int, tasks: int) -> int:
        """Calls per batch: ``full`` scaled, at least 2 per task."""
        return max(2 * tasks, int(full * self.scale))


@dataclass
class ScenarioResult:
    """Figures of one scenario: ``levels[tasks]`` lists every variant's result."""

    key: str
    title: str
    baseline: str
    description: str
    levels: dict[int, list[VariantResult]]
    calls_per_batch: dict[int, int]
    #: Profiles taken for missed goals: "variant @ tasks" -> printed lines.
    profiles: dict[str, list[str]] = field(default_factory=dict)
    #: Whether every call is meant to raise (rejected calls): errors are the figure.
    expect_errors: bool = False
    duration_s: float = 0.0  #: time spent measuring (set-up excluded)

    def variant(self, name: str, tasks: int) -> VariantResult | None:
        """The named variant's result at ``tasks``, if measured."""
        for result in self.levels.get(tasks, []):
            if result.name == name:
                return result
        return None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "key": self.key,
            "title": self.title,
            "baseline": self.baseline,
            "description": self.description,
            "calls_per_batch": {str(k): v for k, v in self.calls_per_batch.items()},
            "levels": {
                str(tasks): [r.as_dict() for r in results] for tasks, results in self.levels.items()
            },
            "profiles": self.profiles,
            "expect_errors": self.expect_errors,
            "duration_s": round(self.duration_s, 1),
        }


async def measure(
    key: str,
    title: str,
    description: str,
    variants: Sequence[Variant],
    *,
    baseline: str,
    plan: Plan,
    full_calls: int,
    levels: Sequence[int] | None = None,
    progress: Any = print,
) -> ScenarioResult:
    """Run every level's interleaved rounds and summarize them against ``baseline``.

    After each level, a variant for which ``plan.wants_profile(key, tasks, result)`` is
    true (a missed goal) is run once more under cProfile, and the top of that profile
    is kept in ``profiles`` -- the evidence of where the remaining cost is.
    """
    result = ScenarioResult(key, title, baseline, description, {}, {})
    started = time.perf_counter()
    notes = {v.name: v.note for v in variants}
    for tasks in levels if levels is not None else plan.levels:
        calls = plan.calls(full_calls, tasks)
        progress(f"  {title}: {tasks} task(s), {plan.rounds} rounds x {calls} calls")
        batches = await run_rounds(variants, rounds=plan.rounds, calls=calls, tasks=tasks)
        result.levels[tasks] = summarize(batches, baseline, notes)
        result.calls_per_batch[tasks] = calls
        if plan.wants_profile is None:
            continue
        for variant, summary in zip(variants, result.levels[tasks], strict=True):
            if plan.wants_profile(key, tasks, summary):
                lines = await profile_variant(variant, calls, tasks)
                result.profiles[f"{variant.name} @ {tasks}"] = lines
    result.duration_s = time.perf_counter() - started
    return result


async def profile_variant(
    variant: Variant, calls: int, tasks: int, *, ours: int = 12, others: int = 6
) -> list[str]:
    """One batch of ``variant`` under cProfile: the project's functions (``infra/``,
    ``containers/``) with the most own time, then the top of all the others (driver,
    event loop), in microseconds and calls per call of the batch.

    The call counts are exact (they do not depend on the machine's load): they say
    which layer does how much work per call, next to the timings profiling inflates.
    """
    if variant.setup is not None:
        variant.setup()
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    batch = await run_batch(variant.call, calls, tasks, collect=False)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = sorted(
        stats.stats.items(),  # type: ignore[attr-defined]  # pstats keeps its table here
        key=lambda item: item[1][2],
        reverse=True,
    )
    per_call = 1e6 / batch.calls
    mine = [row for row in rows if _is_ours(row[0][0])]
    total_calls = sum(row[1][1] for row in rows) / batch.calls
    own_calls = sum(row[1][1] for row in mine) / batch.calls
    own_time = sum(row[1][2] for row in mine) * per_call
    lines = [
        (
            f"{total_calls:.0f} function calls per call, {own_calls:.0f} of them in infra/ "
            f"and containers/ ({own_time:.1f} µs own time per call, profiled)"
        ),
        "",
        f"{'own µs/call':>11} {'cum µs/call':>11} {'calls/call':>10}  function",
    ]
    for title, chosen in (
        ("project functions", mine[:ours]),
        ("everything else", [row for row in rows if not _is_ours(row[0][0])][:others]),
    ):
        lines.append(f"{'':>35}  -- {title} --")
        for (filename, line, name), (_, count, own, cumulative, _) in chosen:
            where = _short(filename)
            label = f"{name} ({where}:{line})" if line else name
            lines.append(
                f"{own * per_call:11.2f} {cumulative * per_call:11.2f} "
                f"{count / batch.calls:10.2f}  {label}"
            )
    return lines


def _is_ours(filename: str) -> bool:
    """Whether a profiled function is the project's own (not the benchmark's)."""
    if "site-packages/" in filename:
        return False
    return "/infra/" in filename or "/containers/" in filename


def _short(filename: str) -> str:
    """A path relative to the repository or to site-packages."""
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    root = str(Path(__file__).resolve().parents[1]) + "/"
    return filename.removeprefix(root)


async def resolved(value: Any) -> Any:
    """``value``, awaited if it is awaitable (providers that depend on async resources
    return awaitables; the others return the object)."""
    return await value if inspect.isawaitable(value) else value

"""``python -m benchmarks``: measure what users run, write the report, the JSON and the chart.

::

    python -m benchmarks                  # full run -> benchmarks/report.{md,json,png}
    python -m benchmarks --quick          # CI-sized smoke run -> a temporary folder
    python -m benchmarks --only redis_get,rejected --out /tmp/b

Exit status 0 whether goals are met or not (the report says which); 1 if a scenario
could not be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Sequence
from pathlib import Path

from benchmarks import (
    bench_fastapi,
    bench_startup,
    postgres_fetchval,
    redis_get,
    rejected,
    three_tier,
    tpcb,
)
from benchmarks.environment import environment, servers
from benchmarks.goals import goal_for, judge, missed
from benchmarks.harness import VariantResult
from benchmarks.report import RunInfo, commit, machine, now, write_json, write_markdown
from benchmarks.scenario import Plan, ScenarioResult

SCENARIOS = (
    "redis_get",
    "postgres_fetchval",
    "tpcb",
    "three_tier_l2",
    "rejected",
    "fastapi_http",
    "fastapi_asgi",
    "startup",
)
FULL = Plan(rounds=15, scale=1.0)
QUICK = Plan(rounds=3, scale=0.1)


def wants_profile(scenario: str, tasks: int, result: VariantResult) -> bool:
    """Profile a variant that misses the goal judged on it."""
    goal = goal_for(scenario, result.name, tasks)
    return goal is not None and missed(goal, result, expect_errors=goal.kind == "us")


async def measure_all(plan: Plan, only: Sequence[str], info: RunInfo) -> list[ScenarioResult]:
    """Start the servers and the container, run the chosen scenarios in order."""
    results: list[ScenarioResult] = []
    clock = time.perf_counter()
    with servers() as (dsn, url):
        print(f"servers up: {time.perf_counter() - clock:.0f} s")
        async with environment(dsn, url) as env:
            info.settings_overridden = env.overridden
            info.tracing = env.tracing.describe_container()
            store = await env.store()
            cache = await env.cache()
            info.policies = {
                "PostgreSQL": store.policy.describe(),
                "Redis": cache.policy.describe(),
            }
            print(f"container tracing: {info.tracing}")
            for name, described in info.policies.items():
                print(f"{name} policy: {described}")

            async def attempt(name: str, scenario: Awaitable[ScenarioResult]) -> None:
                """Run one scenario; a failure is reported and the others still run."""
                clock = time.perf_counter()
                try:
                    result = await scenario
                except Exception as exc:
                    traceback.print_exc()
                    info.failures[name] = f"{type(exc).__name__}: {exc}"
                    return
                results.append(result)
                print(f"  -> {result.title}: {time.perf_counter() - clock:.0f} s")

            if "redis_get" in only:
                await attempt("redis_get", redis_get.run(env, plan))
            if "postgres_fetchval" in only or "tpcb" in only:
                stores = await postgres_fetchval.open_stores(env)
                try:
                    if "postgres_fetchval" in only:
                        await attempt("postgres_fetchval", postgres_fetchval.run(env, stores, plan))
                    if "tpcb" in only:
                        await attempt("tpcb", tpcb.run(env, stores, plan))
                finally:
                    await stores.close()
            if "three_tier_l2" in only:
                await attempt("three_tier_l2", three_tier.run(env, plan))
            if "rejected" in only:
                await attempt("rejected", rejected.run(env, plan))
            for transport in bench_fastapi.TRANSPORTS:
                if f"fastapi_{transport}" in only:
                    scenario = bench_fastapi.run(env, plan, transport)
                    await attempt(f"fastapi_{transport}", scenario)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, measure, write the outputs; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI-sized smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per level (>= 1)")
    parser.add_argument("--scale", type=float, help="multiply the calls per batch")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, help="output folder (default: see above)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    parser.add_argument("--note", default="", help="a sentence for the report header")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    plan = Plan(
        rounds=args.rounds or base.rounds,
        scale=args.scale or base.scale,
        wants_profile=wants_profile,  # a missed goal is profiled in the same run
    )
    only = SCENARIOS if not args.only else tuple(args.only.split(","))
    unknown = set(only) - set(SCENARIOS)
    if unknown or plan.rounds < 1 or plan.scale <= 0:
        parser.error(f"unknown scenarios {sorted(unknown)}" if unknown else "bad --rounds/--scale")
    out: Path = args.out or (
        Path(tempfile.mkdtemp(prefix="semantica-bench-"))
        if args.quick
        else Path(__file__).resolve().parent
    )
    out.mkdir(parents=True, exist_ok=True)
    info = RunInfo(
        mode="quick" if args.quick else "full",
        rounds=plan.rounds,
        scale=plan.scale,
        note=args.note,
        started=now(),
        machine=machine(),
        commit=commit(),
        load_start=os.getloadavg(),
    )
    clock = time.perf_counter()
    if "startup" in only:  # fresh interpreters, before the servers start
        try:
            info.startup, info.startup_figures = bench_startup.run(3 if args.quick else 15)
        except Exception as exc:
            traceback.print_exc()
            info.failures["startup"] = f"{type(exc).__name__}: {exc}"
        print("\n".join(info.startup))
    served = [name for name in only if name != "startup"]
    scenarios = asyncio.run(measure_all(plan, served, info)) if served else []
    info.duration_s = time.perf_counter() - clock
    info.load_end = os.getloadavg()
    verdicts = judge({s.key: s for s in scenarios})
    if not args.no_chart:
        try:
            from benchmarks.chart import draw  # noqa: PLC0415 - needs the bench extra

            draw(out / "report.png", scenarios, f"python -m benchmarks, commit {info.commit}")
            info.chart = "report.png"
        except ImportError:
            print('no chart: matplotlib is missing (pip install -e ".[bench]")', file=sys.stderr)
    write_json(out / "report.json", info, scenarios, verdicts)
    write_markdown(out / "report.md", info, scenarios, verdicts)
    print(f"\nwrote {out / 'report.md'} ({info.duration_s / 60:.1f} min)\n")
    for v in verdicts:
        value = "not measured" if v.value is None else f"{v.value:.3f}"
        state = "met" if v.met else f"NOT met ({v.shortfall})"
        print(f"  {v.goal.figure:55s} {v.goal.tasks:>4}  {value:>10}  {state}")
    return 0 if len(scenarios) + bool(info.startup) == len(only) else 1


if __name__ == "__main__":
    raise SystemExit(main())

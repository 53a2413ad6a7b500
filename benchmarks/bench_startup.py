"""Startup cost: ``from containers.application import ApplicationContainer`` vs bare Python.

Each statement runs in a fresh interpreter (``python -c``), N times, interleaved with the
others so machine load drifts evenly across them; each figure is the median over runs of
the wall time and of the child's CPU time (user + system, which load on a shared machine
distorts less), minus the same median for ``python -c pass``. Statements:

* ``import config``                                  -- settings alone (pydantic-settings);
* ``import dependency_injector.containers, config``  -- the floor: what any container of
  ours needs before its own code (dependency-injector imports pydantic-settings and PyYAML
  itself);
* ``from containers.application import ApplicationContainer`` -- the headline.

Goal: the headline <= 300 ms over bare Python. The script also prints, from one
``python -X importtime`` run of the headline, the modules with the largest cumulative
import time, so a regression names its cause. Run from the repository root (the
repository must be importable, e.g. ``PYTHONPATH=$PWD``):

    python -m benchmarks.bench_startup [--quick] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

GOAL_MS = 300.0
BARE = "pass"
HEADLINE = "from containers.application import ApplicationContainer"
STATEMENTS = (
    BARE,
    "import config",
    "import dependency_injector.containers, config",
    HEADLINE,
)


def run_once(statement: str) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh interpreter running ``statement``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begin = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)  # noqa: S603 - fixed code
    wall = time.perf_counter() - begin
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(runs: int) -> dict[str, tuple[list[float], list[float]]]:
    samples: dict[str, tuple[list[float], list[float]]] = {s: ([], []) for s in STATEMENTS}
    for index in range(runs):
        shift = index % len(STATEMENTS)
        for statement in STATEMENTS[shift:] + STATEMENTS[:shift]:
            wall, cpu = run_once(statement)
            samples[statement][0].append(wall)
            samples[statement][1].append(cpu)
    return samples


def slowest_packages(statement: str, count: int) -> list[tuple[int, str]]:
    """(cumulative microseconds, package) of the slowest top-level packages ``statement``
    imports, at any depth, from one ``-X importtime`` run."""
    result = subprocess.run(  # noqa: S603 - fixed interpreter and code
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        check=True,
    )
    rows: list[tuple[int, str]] = []
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if "." not in name and not name.startswith("_"):
            rows.append((int(parts[1]), name))
    return sorted(rows, reverse=True)[:count]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (5 runs)")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    runs = 5 if args.quick else args.runs

    samples = measure(runs)
    bare_wall = statistics.median(samples[BARE][0])
    bare_cpu = statistics.median(samples[BARE][1])
    print(f"startup over bare Python ({sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print(
        f"median of {runs} fresh interpreters each, interleaved; bare python: "
        f"{bare_wall * 1e3:.0f} ms wall, {bare_cpu * 1e3:.0f} ms CPU\n"
    )
    print(f"{'statement':55} {'wall +ms':>9} {'CPU +ms':>8}")
    over: dict[str, tuple[float, float]] = {}
    for statement in STATEMENTS[1:]:
        wall = (statistics.median(samples[statement][0]) - bare_wall) * 1e3
        cpu = (statistics.median(samples[statement][1]) - bare_cpu) * 1e3
        over[statement] = (wall, cpu)
        print(f"{statement:55} {wall:9.0f} {cpu:8.0f}")
    floor_wall, floor_cpu = over["import dependency_injector.containers, config"]
    head_wall, head_cpu = over[HEADLINE]
    print(
        f"\nour containers over the floor: {head_wall - floor_wall:+.0f} ms wall, "
        f"{head_cpu - floor_cpu:+.0f} ms CPU"
    )
    for label, value in (("wall", head_wall), ("CPU", head_cpu)):
        verdict = "met" if value <= GOAL_MS else f"missed by {value - GOAL_MS:.0f} ms"
        print(f"goal: headline <= {GOAL_MS:.0f} ms over bare Python ({label}): {verdict}")
    print("(wall time includes waiting for a CPU: on a loaded machine read the CPU column)")

    print("\nslowest packages the headline imports (-X importtime, cumulative, one run):")
    for micros, name in slowest_packages(HEADLINE, 10):
        print(f"  {micros / 1e3:8.1f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``@inject`` cost per call: each adapter of a started ``ApplicationContainer`` vs a plain call.

The container is built exactly as an application builds it (``ApplicationContainer()``,
default ``Settings``, ``containers.lifecycle.start``); no server is needed because nothing
connects until an adapter is used, and the handlers below only receive their adapter.
Every handler has the same body (``return adapter``); the figures are:

* ``plain call``                 -- ``await handler(adapter)``: the adapter passed by hand;
* ``plain, provider called``     -- ``await handler(app.postgres.store())``: what code that
  resolves from the started container itself (no ``@inject``) pays;
* ``@inject, Object provider``   -- ``@inject`` of a ``providers.Object``: the least
  dependency-injector's own wrapper costs (its async resolver), whatever the container does;
* ``@inject <adapter>``          -- ``@inject`` of ``Provide[App.postgres.store]``,
  ``App.redis.cache``, ``App.redis.three_tier``, ``App.redis.lock``, and all four at once.

Goal: each single-adapter ``@inject`` <= 2 us over the plain call, same run. Variants
are interleaved (every round times each variant once, in rotating order); each figure is
the median over rounds of the mean per call, wall (with its range) and CPU time of this
process (``time.process_time``: on a shared machine the wall figure also counts time spent
waiting for a core, so the goal is judged on CPU time). A second, shorter table
shows the same handlers before ``start()`` (providers in dependency-injector's async mode:
a ``Future`` per call and an ``asyncio.gather`` per injection), which is what every
injection cost before the lifecycle handed out started values. Run from the repository
root:

    python -m benchmarks.bench_inject [--quick] [--rounds 15] [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dependency_injector.wiring import Provide, inject

from benchmarks import inject_reference
from benchmarks.inject_reference import Reference, inject_object
from containers.application import ApplicationContainer
from containers.lifecycle import start, stop

App = ApplicationContainer
GOAL_US = 2.0


async def plain(adapter: Any) -> Any:
    return adapter


@inject
async def inject_store(adapter: Any = Provide[App.postgres.store]) -> Any:
    return adapter


@inject
async def inject_cache(adapter: Any = Provide[App.redis.cache]) -> Any:
    return adapter


@inject
async def inject_three_tier(adapter: Any = Provide[App.redis.three_tier]) -> Any:
    return adapter


@inject
async def inject_lock(adapter: Any = Provide[App.redis.lock]) -> Any:
    return adapter


@inject
async def inject_all(
    *,
    store: Any = Provide[App.postgres.store],
    cache: Any = Provide[App.redis.cache],
    three_tier: Any = Provide[App.redis.three_tier],
    lock: Any = Provide[App.redis.lock],
) -> tuple[Any, ...]:
    return store, cache, three_tier, lock


Variant = Callable[[], Awaitable[Any]]


def variants(app: ApplicationContainer, started: bool) -> dict[str, Variant]:
    """Name -> a zero-argument call; the plain call gets the adapter the container holds."""
    named: dict[str, Variant] = {}
    if started:
        store = app.postgres.store()
        named["plain call"] = lambda: plain(store)
        named["plain, provider called"] = lambda: plain(app.postgres.store())
    named["@inject, Object provider"] = inject_object
    named["@inject postgres.store"] = inject_store
    named["@inject redis.cache"] = inject_cache
    named["@inject redis.three_tier"] = inject_three_tier
    named["@inject redis.lock"] = inject_lock
    named["@inject all four"] = inject_all
    return named


async def time_calls(call: Variant, calls: int) -> tuple[float, float]:
    """Mean wall and CPU seconds per call over ``calls`` sequential awaits."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


Samples = dict[str, tuple[list[float], list[float]]]


async def measure(named: dict[str, Variant], rounds: int, calls: int) -> Samples:
    """Per-variant mean wall and CPU us per call of each round; order rotates per round."""
    names = list(named)
    for name in names:  # warm up: first builds, caches, branch predictors
        await time_calls(named[name], max(1, calls // 10))
    samples: Samples = {name: ([], []) for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = await time_calls(named[name], calls)
            samples[name][0].append(wall * 1e6)
            samples[name][1].append(cpu * 1e6)
    return samples


def cpu_us(samples: Samples, name: str) -> float:
    return statistics.median(samples[name][1])


def report(title: str, samples: Samples, baseline: str | None) -> None:
    print(f"\n{title}")
    print(f"{'variant':28} {'wall us':>8} {'range':>13} {'CPU us':>8} {'CPU over plain':>15}")
    floor = cpu_us(samples, baseline) if baseline else None
    for name, (wall, cpu) in samples.items():
        spread = f"{min(wall):.2f}-{max(wall):.2f}"
        over = "" if floor is None or name == baseline else f"{cpu_us(samples, name) - floor:+.2f}"
        print(
            f"{name:28} {statistics.median(wall):8.2f} {spread:>13} "
            f"{statistics.median(cpu):8.2f} {over:>15}"
        )


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args(argv)
    rounds, calls = (5, 2_000) if args.quick else (args.rounds, args.calls)

    reference = Reference()
    reference.wire(modules=[inject_reference])
    app = ApplicationContainer()
    app.wire(modules=[sys.modules[__name__]])

    before = await measure(variants(app, started=False), max(3, rounds // 3), max(200, calls // 20))
    await stop(app)  # the lazy calls above initialised resources; start from scratch
    await start(app)
    try:
        after = await measure(variants(app, started=True), rounds, calls)
    finally:
        await stop(app)
        app.unwire()
        reference.unwire()

    print(
        f"@inject per call, ApplicationContainer with default settings ({sys.version.split()[0]})"
    )
    report(
        f"started (lifecycle.start): {rounds} rounds x {calls} calls, median of round means",
        after,
        "plain call",
    )
    report(
        "before start (dependency-injector's async mode: a Future and a gather per injection)",
        before,
        None,
    )
    plain_us = cpu_us(after, "plain call")
    floor_us = cpu_us(after, "@inject, Object provider") - plain_us
    print(f"\ngoal: each single-adapter @inject <= {GOAL_US:.1f} us (CPU) over the plain call")
    for name in ("postgres.store", "redis.cache", "redis.three_tier", "redis.lock"):
        over = cpu_us(after, f"@inject {name}") - plain_us
        verdict = "met" if over <= GOAL_US else f"missed by {over - GOAL_US:.2f} us"
        print(f"  {name:18} {over:+.2f} us  {verdict}  (Object-provider floor {floor_us:+.2f} us)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

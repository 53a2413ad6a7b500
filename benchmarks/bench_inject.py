"""``@inject`` cost per call: each adapter of a started ``ApplicationContainer`` vs a plain call.

The container is built exactly as an application builds it (``ApplicationContainer()``,
default ``Settings``, ``containers.lifecycle.start``); no server is needed because nothing
connects until an adapter is used, and the handlers below only receive their adapter.
Every handler has the same body (``return adapter``). Measured, started:

* ``plain call``                 -- ``await handler(adapter)``: the adapter passed by hand;
* ``@inject <adapter>``          -- ``@inject`` of ``Provide[App.postgres.store]``,
  ``App.redis.cache``, ``App.redis.three_tier``, ``App.redis.lock``, and all four at once;
* ``@inject, Object provider``   -- ``@inject`` of a bare ``providers.Object``: what
  dependency-injector's coroutine wrapper costs whatever the container does (the floor);
* ``sync: plain call`` / ``sync: @inject, Object`` -- the same floor for a plain
  function: dependency-injector's resolver without the coroutine machinery.

**The goal**: once started, each single-adapter ``@inject`` costs <= 2 us over the plain
call. The figure judged is the CPU time of this process per call (``process_time_ns``;
on a shared machine wall time also counts waiting for a core), ``over plain`` is the
median over rounds of (variant - plain call) *in the same round*; wall time
(``perf_counter_ns``) is shown beside it. Variants are interleaved: every round times
each variant once over ``--calls`` calls, in rotating order. The verdict line also
shows how much of the figure is dependency-injector's own wrapper (the Object floor
of the same run) and how much the adapter adds over it.

A second, shorter table shows the same handlers before ``start()`` (providers in
dependency-injector's async mode: a ``Future`` per call and an ``asyncio.gather`` per
injection), which is what every injection cost before the lifecycle handed out started
values. Run from the repository root:

    python -m benchmarks.bench_inject [--quick] [--rounds 21] [--calls 20000]
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
from benchmarks.inject_reference import Reference, inject_object, inject_object_sync
from containers.application import ApplicationContainer
from containers.lifecycle import start, stop

App = ApplicationContainer
#: The goal: microseconds of CPU per call over the plain call, per single-adapter inject.
GOAL_US = 2.0
ADAPTERS = ("postgres.store", "redis.cache", "redis.three_tier", "redis.lock")


async def plain(adapter: Any) -> Any:
    return adapter


def plain_sync(adapter: Any) -> Any:
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
SyncVariant = Callable[[], Any]


def variants(app: ApplicationContainer, started: bool) -> dict[str, Variant]:
    """Name -> a zero-argument call; the plain call gets the adapter the container holds."""
    named: dict[str, Variant] = {}
    if started:
        store = app.postgres.store()
        named["plain call"] = lambda: plain(store)
    named["@inject, Object provider"] = inject_object
    named["@inject postgres.store"] = inject_store
    named["@inject redis.cache"] = inject_cache
    named["@inject redis.three_tier"] = inject_three_tier
    named["@inject redis.lock"] = inject_lock
    named["@inject all four"] = inject_all
    return named


def sync_variants() -> dict[str, SyncVariant]:
    value = object()
    return {
        "sync: plain call": lambda: plain_sync(value),
        "sync: @inject, Object": inject_object_sync,
    }


Sample = tuple[float, float]  # (wall ns, CPU ns) per call, one round


async def time_calls(call: Variant, calls: int) -> Sample:
    wall, cpu = time.perf_counter_ns(), time.process_time_ns()
    for _ in range(calls):
        await call()
    return (time.perf_counter_ns() - wall) / calls, (time.process_time_ns() - cpu) / calls


def time_sync_calls(call: SyncVariant, calls: int) -> Sample:
    wall, cpu = time.perf_counter_ns(), time.process_time_ns()
    for _ in range(calls):
        call()
    return (time.perf_counter_ns() - wall) / calls, (time.process_time_ns() - cpu) / calls


Samples = dict[str, list[Sample]]


async def measure(
    named: dict[str, Variant], rounds: int, calls: int, sync: dict[str, SyncVariant] | None = None
) -> Samples:
    """One sample per variant per round; the order rotates every round."""
    timers: dict[str, Callable[[], Awaitable[Sample]]] = {}
    for name, call in named.items():
        timers[name] = lambda call=call: time_calls(call, calls)  # type: ignore[misc]
    for name, sync_call in (sync or {}).items():
        timers[name] = lambda call=sync_call: asyncio.sleep(0, time_sync_calls(call, calls))  # type: ignore[misc]
    names = list(timers)
    for name in names:  # warm up: first builds, caches, branch predictors
        await timers[name]()
    samples: Samples = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(await timers[name]())
    return samples


def over(samples: Samples, name: str, base: str, which: int) -> list[float]:
    """Per-round difference ``name - base`` in us (which: 0 wall, 1 CPU)."""
    return [(a[which] - b[which]) / 1000 for a, b in zip(samples[name], samples[base], strict=True)]


def median_us(samples: Samples, name: str, which: int) -> float:
    return statistics.median(s[which] for s in samples[name]) / 1000


def report(title: str, samples: Samples, bases: dict[str, str]) -> None:
    print(f"\n{title}")
    header = f"{'variant':26} {'wall us':>8} {'min':>6} {'CPU us':>7} {'min':>6}"
    print(f"{header} {'CPU over plain':>15} {'wall over plain':>16}")
    for name, taken in samples.items():
        wall = [s[0] / 1000 for s in taken]
        cpu = [s[1] / 1000 for s in taken]
        base = bases.get(name)
        cpu_over = wall_over = ""
        if base is not None:
            cpu_over = f"{statistics.median(over(samples, name, base, 1)):+.2f}"
            wall_over = f"{statistics.median(over(samples, name, base, 0)):+.2f}"
        print(
            f"{name:26} {statistics.median(wall):8.2f} {min(wall):6.2f} "
            f"{statistics.median(cpu):7.2f} {min(cpu):6.2f} {cpu_over:>15} {wall_over:>16}"
        )


def verdicts(samples: Samples) -> list[str]:
    floor = statistics.median(over(samples, "@inject, Object provider", "plain call", 1))
    sync_floor = statistics.median(over(samples, "sync: @inject, Object", "sync: plain call", 1))
    goal = f"each single-adapter @inject <= {GOAL_US:.1f} us over a plain call"
    lines = [f"goal: once started, {goal} (CPU, median of same-round differences)"]
    for name in ADAPTERS:
        cost = statistics.median(over(samples, f"@inject {name}", "plain call", 1))
        above_floor = statistics.median(
            over(samples, f"@inject {name}", "@inject, Object provider", 1)
        )
        verdict = "met" if cost <= GOAL_US else f"NOT met, by {cost - GOAL_US:.2f} us"
        lines.append(
            f"  {name:18} {cost:+.2f} us  {verdict}"
            f"  (dependency-injector's wrapper alone: {floor:+.2f} us; adapter over it:"
            f" {above_floor:+.2f} us)"
        )
    lines.append(
        f"  dependency-injector's @inject floor in this run: coroutine wrapper {floor:+.2f} us,"
        f" plain-function wrapper {sync_floor:+.2f} us over a plain call"
    )
    return lines


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--rounds", type=int, default=21)
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
        after = await measure(variants(app, started=True), rounds, calls, sync_variants())
    finally:
        await stop(app)
        app.unwire()
        reference.unwire()

    print(
        f"@inject per call, ApplicationContainer with default settings ({sys.version.split()[0]})"
    )
    bases = {name: "plain call" for name in after if not name.startswith(("plain", "sync"))}
    bases["sync: @inject, Object"] = "sync: plain call"
    report(f"started (lifecycle.start): {rounds} rounds x {calls} calls", after, bases)
    report(
        "before start (dependency-injector's async mode: a Future and a gather per injection)",
        before,
        {},
    )
    print()
    print("\n".join(verdicts(after)))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

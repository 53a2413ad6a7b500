"""Redis adapter benchmark: ``RedisCache.get`` against a raw ``redis.asyncio`` GET.

Run ``python benchmarks/bench_redis.py`` (``--quick`` for a short run, ``--profile`` to
print a cProfile of the adapter's loop). One embedded Redis is started; every figure is
measured in this run against the raw client on that same server:

* **raw GET** -- ``redis.asyncio.Redis.get`` on a pooled client (the baseline);
* **raw GET + json** -- the same plus ``json.loads`` of the value, i.e. what a caller of
  the raw client has to do to get the same Python value back;
* **RedisCache.get, everything on** -- policy from default settings (overall timeout,
  retry + budget, breaker, bulkhead, attempt timeout), telemetry on (latency histograms,
  call counters) with tracing set up and sampled out (ratio 0), JSON decoding, a
  namespace;
* **RedisCache.get, no timers** -- everything on except the policy's two timeouts
  (same breaker, retry + budget, bulkhead, telemetry): shows what the per-call
  ``asyncio.timeout`` costs;
* **RedisCache.get, bare** -- passthrough policy and telemetry off: what the adapter
  itself costs (key prefix, serializer).

Sequential calls (one in flight) and a concurrent run (``--tasks`` coroutines sharing
the pool) are both measured. Rounds of the variants are interleaved in a shuffled order
and the median of the per-round ratios is reported, because a shared machine drifts.
The issue's goal for the L2 hit path is <= 1.15x the raw GET.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis.asyncio import Redis

from config import Settings
from infra.cache import RedisCache
from infra.observability import reset_tracing, setup_tracing
from infra.resilience import BulkheadConfig, CircuitBreakerConfig, ResiliencePolicy, RetryConfig
from infra.testing.embedded import EmbeddedRedis

Call = Callable[[], Awaitable[Any]]
KEY = "bench:user:42"
VALUE = {"id": 42, "name": "Ada Lovelace", "roles": ["admin", "author"], "score": 9.5}
GOAL = 1.15


Sample = tuple[float, float]  # (wall seconds per call, client CPU seconds per call)


async def sequential(call: Call, n: int) -> Sample:
    """Wall and client-CPU seconds per call over ``n`` calls, one at a time."""
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


async def concurrent(call: Call, n: int, tasks: int) -> Sample:
    """Wall and client-CPU seconds per call when ``tasks`` coroutines make ``n`` calls."""
    per_task = max(1, n // tasks)

    async def worker() -> None:
        for _ in range(per_task):
            await call()

    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    total = per_task * tasks
    return (time.perf_counter() - start) / total, (time.process_time() - cpu) / total


async def interleaved(
    variants: dict[str, Call], rounds: int, run: Callable[[Call], Awaitable[Sample]]
) -> dict[str, list[Sample]]:
    """One measurement per variant per round, in a freshly shuffled order each round."""
    order = list(variants)
    shuffler = random.Random(0)
    for call in variants.values():  # warm-up: connections, bindings, caches
        await run(call)
    results: dict[str, list[Sample]] = {name: [] for name in variants}
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            results[name].append(await run(variants[name]))
    return results


def report(title: str, results: dict[str, list[Sample]]) -> dict[str, float]:
    """Print medians; return each variant's median per-round wall-time ratio to raw GET.

    The client-CPU column is this process's CPU time per call: less sensitive to other
    load on the machine than wall time, it shows what the layers themselves cost."""
    raw = results["raw GET"]
    print(f"\n{title}")
    print("    variant                         wall µs   ratio   client CPU µs   CPU ratio")
    ratios: dict[str, float] = {}
    for name, samples in results.items():
        pairs = list(zip(samples, raw, strict=True))
        ratios[name] = statistics.median(w / rw for (w, _), (rw, _) in pairs)
        cpu_ratio = statistics.median(c / rc for (_, c), (_, rc) in pairs)
        wall = statistics.median(w for w, _ in samples) * 1e6
        cpu = statistics.median(c for _, c in samples) * 1e6
        print(f"    {name:30s} {wall:8.1f}  {ratios[name]:6.3f}x  {cpu:12.1f}   {cpu_ratio:6.3f}x")
    return ratios


async def main(args: argparse.Namespace) -> None:
    rounds, n = (5, 2_000) if args.quick else (15, 6_000)
    setup_tracing(service_name="bench", sample_ratio=0.0)  # tracing on, sampled out
    with EmbeddedRedis(graph=False) as server:
        settings = Settings(redis_url=server.url)
        raw = Redis.from_url(server.url)
        full = RedisCache.from_settings(settings, namespace="bench")
        bare = RedisCache.from_settings(
            settings, ResiliencePolicy.passthrough("redis"), namespace="bench"
        )
        bare_unrecorded = RedisCache(bare.client, namespace="bench", record=False)
        untimed_policy = ResiliencePolicy.build(  # the default settings' layers, no timeouts
            "redis",
            breaker=CircuitBreakerConfig(),
            retry=RetryConfig(),
            retry_budget_ratio=0.2,
            bulkhead=BulkheadConfig(100, max_queue=1000, max_wait=5.0),
        )
        untimed = RedisCache(bare.client, policy=untimed_policy, namespace="bench")
        try:
            await full.set(KEY, VALUE)
            await raw.set("bench:raw", json.dumps(VALUE))
            assert await full.get(KEY) == VALUE

            async def raw_json() -> Any:
                return json.loads(await raw.get("bench:raw"))  # type: ignore[arg-type]

            variants: dict[str, Call] = {
                "raw GET": lambda: raw.get("bench:raw"),
                "raw GET + json.loads": raw_json,
                "RedisCache.get, everything on": lambda: full.get(KEY),
                "RedisCache.get, no timers": lambda: untimed.get(KEY),
                "RedisCache.get, bare": lambda: bare_unrecorded.get(KEY),
            }
            print(f"policy: {full.policy.describe()}")
            seq = report(
                f"sequential GET, {rounds} rounds x {n} calls",
                await interleaved(variants, rounds, lambda c: sequential(c, n)),
            )
            conc = report(
                f"concurrent GET, {args.tasks} tasks, {rounds} rounds x {n} calls",
                await interleaved(variants, rounds, lambda c: concurrent(c, n, args.tasks)),
            )
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                await sequential(lambda: full.get(KEY), n)
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        finally:
            await raw.aclose()
            await full.aclose()
            await bare.aclose()
    reset_tracing()
    key = "RedisCache.get, everything on"
    for label, ratios in (("sequential", seq), ("concurrent", conc)):
        verdict = "met" if ratios[key] <= GOAL else "NOT met"
        print(
            f"\n{label}: RedisCache.get / raw GET = {ratios[key]:.3f}x (goal <= {GOAL}x: {verdict})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument("--profile", action="store_true", help="cProfile the adapter loop")
    parser.add_argument("--tasks", type=int, default=32, help="coroutines in the concurrent run")
    asyncio.run(main(parser.parse_args()))

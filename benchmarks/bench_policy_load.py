"""The default policy's per-call cost under concurrency: the container's adapters vs raw.

Run ``python benchmarks/bench_policy_load.py`` (``--quick`` for a short run,
``--profile N`` to print a cProfile of the container's adapters at ``N`` tasks). One
embedded PostgreSQL and one embedded Redis are started; the adapters are the ones
``ApplicationContainer`` builds from default ``Settings`` pointed at them, with the
bulkhead as large as the smaller pool (what the settings allow at most), so every figure
is the configuration an application runs. Variants, measured in the same run:

* **redis raw** -- ``redis.asyncio`` GET + ``json.loads`` (the same decoding the cache
  does) on a pool that never runs out; the baseline of the two Redis variants;
* **redis default** -- ``app.redis.cache().get``: policy from settings, telemetry on,
  tracing as the container set it up;
* **redis passthrough** -- ``RedisCache`` with the same serializer under
  ``ResiliencePolicy.passthrough`` (telemetry on), on a client built as the container
  builds its own (socket timeouts, for which redis-py arms timers per command; no
  driver retry) but with a pool that never runs out (no bulkhead keeps it within the
  container's): what the policy adds;
* **pg raw** -- ``asyncpg`` pool (same size as the store's) ``fetchval("select 1")``;
* **pg default** -- ``app.postgres.store().fetchval("select 1")``;
* **pg passthrough** -- a ``PostgresStore`` on the same server under a passthrough
  policy.

``--layers`` instead measures, without any server, the CPU each layer adds around an await
answered on the next loop iteration, at each level: :class:`~infra.resilience.timeout.
Timeout`'s shared timer (``begin``/``end``, as the policy's attempt timeout uses it),
``asyncio.timeout`` (a timer handle per call; the figure behind keeping the shared
timer), the bulkhead alone, and the whole policy ``ResiliencePolicy.from_settings``
builds from the same settings.

At each level (1, 32 and 128 tasks sharing the adapter) the variants run in rounds, in a
shuffled order per round; each round measures wall time and this process's CPU time
(``time.process_time``) per call. The figures are medians over rounds of µs/call and of
the per-round ratio to the raw variant. The machine is shared: CPU per call of this
process is the steadier instrument, wall ratios are printed beside it. The goals
(container default vs raw): <= 1.10x / 1.15x / 1.20x at 1 / 32 / 128 tasks.
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

import asyncpg
from dependency_injector import providers
from redis.asyncio import Redis

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import start, stop
from infra.cache import RedisCache, build_redis_client
from infra.resilience import ResiliencePolicy
from infra.resilience.timeout import Timeout
from infra.storage import PostgresStore
from infra.testing.embedded import start_embedded_backends

Call = Callable[[], Awaitable[Any]]
KEY = "bench:policy-load:user:42"
RAW_KEY = "bench:policy-load:raw:user:42"
VALUE = {"id": 42, "name": "Ada Lovelace", "roles": ["admin", "author"], "score": 9.5}
LEVELS = (1, 32, 128)
GOALS = {1: 1.10, 32: 1.15, 128: 1.20}


async def timed(call: Call, calls: int, tasks: int) -> tuple[float, float]:
    """(wall µs, CPU µs) per call when ``tasks`` coroutines make ``calls`` calls in all."""
    per_task = max(1, calls // tasks)

    async def worker() -> None:
        for _ in range(per_task):
            await call()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    n = per_task * tasks
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def settings_for(postgres_dsn: str, redis_url: str) -> Settings:
    """Default settings on the embedded servers; the bulkhead no larger than a pool."""
    defaults = Settings(database_url=postgres_dsn, redis_url=redis_url)
    smallest = min(defaults.postgres_max_pool_size, defaults.redis_max_connections)
    bulkhead = min(defaults.bulkhead_max_concurrent or smallest, smallest)
    return Settings(
        database_url=postgres_dsn,
        redis_url=redis_url,
        log_level="WARNING",
        bulkhead_max_concurrent=bulkhead,
    )


async def measure(
    groups: dict[str, dict[str, Call]], rounds: int, calls: int
) -> dict[tuple[str, int], dict[str, tuple[list[float], list[float]]]]:
    """Per (group, level): variant -> (wall µs samples, CPU µs samples)."""
    out: dict[tuple[str, int], dict[str, tuple[list[float], list[float]]]] = {}
    for level in LEVELS:
        for group, variants in groups.items():
            for call in variants.values():  # warm up every connection the level needs
                await timed(call, max(level * 4, 200), level)
            samples: dict[str, tuple[list[float], list[float]]] = {
                name: ([], []) for name in variants
            }
            for _ in range(rounds):
                order = list(variants)
                random.shuffle(order)
                for name in order:
                    wall, cpu = await timed(variants[name], calls, level)
                    samples[name][0].append(wall)
                    samples[name][1].append(cpu)
            out[(group, level)] = samples
            report(group, level, samples)
    return out


def report(group: str, level: int, samples: dict[str, tuple[list[float], list[float]]]) -> None:
    raw_wall, raw_cpu = samples[f"{group} raw"]
    print(f"\n{group} at {level} task(s)  (medians; ratio = median of per-round ratios)")
    print(f"  {'variant':<20} {'CPU us':>8} {'xCPU':>6} {'wall us':>8} {'xwall':>6}")
    for name, (wall, cpu) in samples.items():
        cpu_ratio = statistics.median(c / r for c, r in zip(cpu, raw_cpu, strict=True))
        wall_ratio = statistics.median(w / r for w, r in zip(wall, raw_wall, strict=True))
        goal = f"  (goal <= {GOALS[level]:.2f}x)" if name.endswith("default") else ""
        print(
            f"  {name:<20} {statistics.median(cpu):8.1f} {cpu_ratio:6.3f} "
            f"{statistics.median(wall):8.1f} {wall_ratio:6.3f}{goal}"
        )


async def compare_layers(settings: Settings, rounds: int, calls: int) -> None:
    """CPU µs per call of an await under each layer alone, and under the whole policy."""
    loop = asyncio.get_running_loop()
    shared = Timeout(10.0)
    policy = ResiliencePolicy.from_settings(settings, component="bench")
    bulkhead = policy.bulkhead
    assert bulkhead is not None  # the settings always describe one

    def backend() -> asyncio.Future[int]:  # answers on the next loop iteration
        future = loop.create_future()
        loop.call_soon(future.set_result, 1)
        return future

    async def unbounded() -> int:
        return await backend()

    async def shared_timer() -> int:
        scope = shared.begin()
        try:
            result = await backend()
        except BaseException as exc:
            shared.end(scope, exc)
            raise
        shared.end(scope, None)
        return result

    async def asyncio_timeout() -> int:
        async with asyncio.timeout(10.0):
            return await backend()

    async def bulkhead_only() -> int:
        await bulkhead.acquire()
        try:
            return await backend()
        finally:
            bulkhead.release()

    variants: dict[str, Call] = {
        "unbounded": unbounded,
        "Timeout (shared)": shared_timer,
        "asyncio.timeout": asyncio_timeout,
        f"Bulkhead({bulkhead.max_concurrent})": bulkhead_only,
        "default policy": lambda: policy.execute(backend),
    }
    for level in LEVELS:
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, call in variants.items():
                cpu[name].append((await timed(call, calls * 10, level))[1])
        base = statistics.median(cpu["unbounded"])
        cells = ", ".join(
            f"{name} {statistics.median(v) - base:+.2f}"
            for name, v in cpu.items()
            if name != "unbounded"
        )
        print(f"{level:>3} task(s), CPU us/call {base:.2f} unbounded; added: {cells}")


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None, help="calls per variant per round")
    parser.add_argument("--profile", type=int, default=0, help="cProfile at this many tasks")
    parser.add_argument("--layers", action="store_true", help="each layer's cost, no servers")
    args = parser.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 15)
    calls = args.calls or (512 if args.quick else 2048)
    if args.layers:
        await compare_layers(settings_for("postgresql://unused", "redis://unused"), rounds, calls)
        return 0

    async with start_embedded_backends(graph=False, qdrant=False) as endpoints:
        postgres_dsn, redis_url = endpoints.postgres_dsn, endpoints.redis_url
        assert postgres_dsn is not None  # both were started above
        assert redis_url is not None
        settings = settings_for(postgres_dsn, redis_url)
        app = ApplicationContainer()
        app.core.settings.override(providers.Object(settings))
        await start(app)
        cache: RedisCache = app.redis.cache()
        store: PostgresStore = app.postgres.store()
        print(f"policy: {cache.policy.describe()}")
        raw_redis = Redis.from_url(redis_url, max_connections=max(LEVELS) * 2)
        raw_pg = await asyncpg.create_pool(
            postgres_dsn,
            min_size=settings.postgres_min_pool_size,
            max_size=settings.postgres_max_pool_size,
        )
        # The container's client construction with a pool that never runs out (no
        # bulkhead keeps this cache within the pool size): the same driver options.
        pass_cache = RedisCache(
            build_redis_client(settings.model_copy(update={"redis_max_connections": 256})),
            policy=ResiliencePolicy.passthrough("redis"),
            serializer=cache.serializer,
            owns_client=True,
        )
        # No bulkhead in front of it: callers queue in the pool instead, for as long as the
        # shared machine makes them (the raw pool's callers wait without a limit too).
        pass_store = PostgresStore.from_settings(
            settings.model_copy(update={"postgres_pool_acquire_timeout": 600.0}),
            policy=ResiliencePolicy.passthrough("postgres"),
            name="passthrough",
        )
        try:
            await cache.set(KEY, VALUE)
            await raw_redis.set(RAW_KEY, json.dumps(VALUE))

            async def redis_raw() -> Any:
                return json.loads(await raw_redis.get(RAW_KEY))  # type: ignore[arg-type]

            groups: dict[str, dict[str, Call]] = {
                "redis": {
                    "redis raw": redis_raw,
                    "redis default": lambda: cache.get(KEY),
                    "redis passthrough": lambda: pass_cache.get(KEY),
                },
                "pg": {
                    "pg raw": lambda: raw_pg.fetchval("select 1"),
                    "pg default": lambda: store.fetchval("select 1"),
                    "pg passthrough": lambda: pass_store.fetchval("select 1"),
                },
            }
            if args.profile:
                for call in (groups["redis"]["redis default"], groups["pg"]["pg default"]):
                    await timed(call, calls, args.profile)
                    profiler = cProfile.Profile()
                    profiler.enable()
                    await timed(call, calls * 4, args.profile)
                    profiler.disable()
                    stats = pstats.Stats(profiler).sort_stats("tottime")
                    stats.print_stats(20)
                    stats.print_stats(r"infra/|containers/", 20)  # our own functions
                return 0
            await measure(groups, rounds, calls)
        finally:
            await cache.delete(KEY)
            await raw_redis.delete(RAW_KEY)
            await raw_redis.aclose()
            await raw_pg.close()
            await pass_cache.aclose()
            await pass_store.close()
            await stop(app)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

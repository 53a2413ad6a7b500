"""Distributed lock cost: uncontended acquire + release vs two raw Redis round trips.

All figures come from one run on one client, against the embedded Redis (or
``--redis-url``), and are printed as ratios to the baseline:

* ``raw SET NX PX + DEL``  -- the baseline: the two round trips any Redis lock needs,
  sent through redis-py with no checks at all;
* ``raw scripts``          -- our ACQUIRE + RELEASE Lua scripts through redis-py's
  ``register_script`` (EVALSHA), no wrapper: what the scripts themselves cost;
* ``lock, passthrough``    -- ``RedisDistributedLock.acquire`` + ``release`` with telemetry
  and no policy layers;
* ``lock, settings policy`` -- the same with the default ``ResiliencePolicy.from_settings``
  (timeout, retry, breaker, bulkhead, attempt timeout);
* ``hold(), settings policy`` -- ``async with lock.hold(name)`` (enter + exit).

Goal: ``lock, settings policy`` <= 1.3x the baseline. A loopback round trip is tens to
hundreds of microseconds and drifts with machine load, so the variants are interleaved
call by call (each iteration runs every variant once, in rotating order, and times each
call) rather than measured in blocks; each figure is the mean over all iterations, and
the median of several rounds. Run from the repository root:

    python -m benchmarks.bench_lock [--quick] [--iterations 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator

from redis.asyncio import Redis

from config import Settings
from infra.cache.distributed_lock import (
    ACQUIRE,
    RELEASE,
    RedisDistributedLock,
    abandoned_key,
    fence_key,
    lock_key,
)
from infra.resilience import ResiliencePolicy, redis_no_retry_kwargs
from infra.testing.embedded.redis import EmbeddedRedis

Variant = Callable[[], Awaitable[None]]


def variants(client: Redis) -> dict[str, Variant]:
    """The measured operations, each one acquire + release of an uncontended lock."""
    owner = secrets.token_hex(16)
    acquire_script = client.register_script(ACQUIRE)
    release_script = client.register_script(RELEASE)
    key = lock_key("bench:raw:", "job")
    script_keys = [key, fence_key(key), abandoned_key(key, owner)]
    passthrough = RedisDistributedLock(client, namespace="bench:pass:")
    settings_policy = ResiliencePolicy.from_settings(Settings(), component="redis_lock")
    full = RedisDistributedLock(client, namespace="bench:full:", policy=settings_policy)
    held = RedisDistributedLock(client, namespace="bench:hold:", policy=settings_policy)

    async def raw() -> None:
        await client.set("bench:raw-set", owner, nx=True, px=30_000)
        await client.delete("bench:raw-set")

    async def scripts() -> None:
        await acquire_script(script_keys, [owner, 30_000])
        await release_script([key], [owner])

    async def lock_passthrough() -> None:
        await passthrough.release(await passthrough.acquire("job", wait=0))

    async def lock_full() -> None:
        await full.release(await full.acquire("job", wait=0))

    async def hold_full() -> None:
        async with held.hold("job", wait=0):
            pass

    return {
        "raw SET NX PX + DEL": raw,
        "raw scripts (EVALSHA x2)": scripts,
        "lock, passthrough": lock_passthrough,
        "lock, settings policy": lock_full,
        "hold(), settings policy": hold_full,
    }


async def interleaved(ops: dict[str, Variant], iterations: int) -> dict[str, float]:
    """Mean seconds per call of each variant, calls interleaved in rotating order."""
    names = list(ops)
    totals = dict.fromkeys(names, 0.0)
    clock = time.perf_counter
    for i in range(iterations):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            fn = ops[name]
            started = clock()
            await fn()
            totals[name] += clock() - started
    return {name: total / iterations for name, total in totals.items()}


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    """Yield a Redis URL: the given one, or a fresh embedded server's."""
    if url:
        yield url
        return
    with EmbeddedRedis(graph=False) as server:
        yield server.url


async def main(args: argparse.Namespace) -> None:
    iterations = 1000 if args.quick else args.iterations
    rounds = 3 if args.quick else args.rounds
    with redis_server(args.redis_url) as url:
        client = Redis.from_url(url, **redis_no_retry_kwargs())
        try:
            ops = variants(client)
            await interleaved(ops, 200)  # warm up: connections, script cache, code paths
            samples: dict[str, list[float]] = {name: [] for name in ops}
            for _ in range(rounds):
                for name, mean in (await interleaved(ops, iterations)).items():
                    samples[name].append(mean)
        finally:
            await client.aclose()
    baseline = statistics.median(samples["raw SET NX PX + DEL"])
    print(f"iterations={iterations} x {len(samples)} variants, rounds={rounds} (median round)")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<28} {median * 1e6:8.1f} us/op   ratio {median / baseline:5.2f}x")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1000 iterations x 3 rounds")
    parser.add_argument("--iterations", type=int, default=3000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (median shown)")
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of embedded")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))

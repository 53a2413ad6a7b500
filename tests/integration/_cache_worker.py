"""A separate process for tests/integration/test_three_tier_cache.py (run as a script).

``python _cache_worker.py single-flight URL NAMESPACE --processes 4 --callers 50``
    Waits until ``--processes`` workers are ready (a Redis counter as the barrier), then
    fires ``--callers`` concurrent ``get("cold", loader)``; the loader counts its runs
    with ``INCR <namespace>:loads`` and sleeps 0.2 s so every process overlaps it.

``python _cache_worker.py coherence URL NAMESPACE --protocol 2|3``
    Reads ``k`` (filling L1), announces ``<namespace>:b-ready:<protocol>``, re-reads ``k``
    until it changes and reports ``time.monotonic()`` of the first new value
    (CLOCK_MONOTONIC is shared by processes on one host).

Each prints one JSON object on stdout; the metric counts come from this process's own
collector.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from redis.asyncio import Redis

from infra.cache import RedisCache
from infra.cache.three_tier_cache import ThreeTierCache
from infra.observability import get_metrics_collector
from infra.resilience import redis_no_retry


async def _cache(url: str, namespace: str, protocol: int) -> tuple[Redis, ThreeTierCache]:
    client = Redis.from_url(url, protocol=protocol, retry=redis_no_retry())
    cache = ThreeTierCache(
        RedisCache(client), redis=client, namespace=namespace, l1_ttl=60, l2_ttl=120
    )
    if not await cache.start(timeout=5.0):
        raise SystemExit("coherence subscription not confirmed within 5 s")
    return client, cache


def _counts() -> dict[str, float]:
    metrics = get_metrics_collector()
    return {
        f"{kind}_{tier}": metrics.get_counter(f"cache_{kind}_total", tier=tier)
        for kind in ("hits", "misses")
        for tier in ("l1", "l2", "l3")
    } | {"coalesced_cluster": metrics.get_counter("cache_coalesced_total", scope="cluster")}


async def single_flight(args: argparse.Namespace) -> dict[str, Any]:
    client, cache = await _cache(args.url, args.namespace, args.protocol)
    control = Redis.from_url(args.url)
    try:
        await control.incr(f"{args.namespace}:ready")
        # A barrier across processes: nothing local to wait on, so poll the counter.
        while int(await control.get(f"{args.namespace}:ready") or 0) < args.processes:  # noqa: ASYNC110
            await asyncio.sleep(0.002)

        async def loader() -> dict[str, int]:
            await control.incr(f"{args.namespace}:loads")
            await asyncio.sleep(0.2)
            return {"answer": 42}

        results = await asyncio.gather(*(cache.get("cold", loader) for _ in range(args.callers)))
        return {"results": results, "counts": _counts()}
    finally:
        await cache.close()
        await control.aclose()
        await client.aclose()


async def coherence(args: argparse.Namespace) -> dict[str, Any]:
    client, cache = await _cache(args.url, args.namespace, args.protocol)
    control = Redis.from_url(args.url)
    try:
        first = await cache.get("k")
        await control.set(f"{args.namespace}:b-ready:{args.protocol}", 1)
        stale_reads, deadline = 0, time.monotonic() + 10.0
        while time.monotonic() < deadline:
            value = await cache.get("k")
            if value != first:
                return {
                    "first": first,
                    "seen": value,
                    "seen_at": time.monotonic(),
                    "stale_reads": stale_reads,
                    "counts": _counts(),
                }
            stale_reads += 1
            await asyncio.sleep(0.0002)
        return {"first": first, "seen": None, "stale_reads": stale_reads}
    finally:
        await cache.close()
        await control.aclose()
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["single-flight", "coherence"])
    parser.add_argument("url")
    parser.add_argument("namespace")
    parser.add_argument("--protocol", type=int, default=2)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--callers", type=int, default=50)
    args = parser.parse_args()
    run = single_flight if args.mode == "single-flight" else coherence
    print(json.dumps(asyncio.run(run(args))))  # the parent reads stdout


if __name__ == "__main__":
    main()

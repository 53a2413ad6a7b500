"""A separate process for tests/integration/test_three_tier_cache.py (run as a script).

``python _cache_worker.py single-flight URL NAMESPACE --processes 4 --callers 50``
    Waits until ``--processes`` workers are ready (a Redis counter as the barrier), then
    fires ``--callers`` concurrent ``get("cold", loader)``; the loader counts its runs
    with ``INCR <namespace>:loads`` and sleeps 0.2 s so every process overlaps it.

``python _cache_worker.py coherence URL NAMESPACE --protocol 2|3``
    Reads ``k`` (filling L1) and once more (served by L1), then announces
    ``<namespace>:b-ready:<protocol>``, re-reads ``k`` until it changes (for at most
    ``--patience`` seconds) and reports ``time.monotonic()`` of the first new value
    (CLOCK_MONOTONIC is shared by processes on one host), the reads that still saw the
    old value, and how the change arrived: invalidation messages received and L1 resets
    since the announcement.

``python _cache_worker.py chaos URL NAMESPACE --role writer|reader --protocol 2|3
--truth FILE --control DIR --max-staleness S --probe-interval S``
    One process of the multi-process staleness test (tests/chaos). The truth is a JSON
    file of ``{key: version}`` (the "database"); loaders read it. After setting up, the
    worker creates ``DIR/ready-<role>-<protocol>`` and waits for ``DIR/go`` (``start`` in
    ``time.monotonic()`` seconds, shared by processes on one host). A writer then bumps
    one key's version in the truth file and calls ``set``/``delete`` for it in a loop,
    reporting each acknowledged write ``[key, version, ack time]``; a reader runs
    concurrent ``get(key, loader)`` tasks, reporting each read ``[key, start, latency,
    value]``. Once its cache has been degraded and is healthy and coherent again, the
    worker creates ``DIR/recovered-<role>-<protocol>``; it stops when ``DIR/stop`` exists
    (or ``--patience`` x 4 seconds after the start, whatever happened). Both report
    errors, loader call times and their degradation counts.

The test, not a wall-clock window, decides when a phase is over: a loaded machine may
take seconds for what usually takes milliseconds (a restart, a resubscription).

Each prints one JSON object on stdout; the metric counts come from this process's own
collector.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from infra.cache import RedisCache
from infra.cache.three_tier_cache import ThreeTierCache
from infra.observability import get_metrics_collector
from infra.observability.metrics import MetricsCollector
from infra.resilience import redis_no_retry

#: Seconds a worker waits for its coherence subscription: a hang guard, not a bound.
START_TIMEOUT = 30.0


async def _cache(url: str, namespace: str, protocol: int) -> tuple[Redis, ThreeTierCache]:
    client = Redis.from_url(url, protocol=protocol, retry=redis_no_retry())
    cache = ThreeTierCache(
        RedisCache(client), redis=client, namespace=namespace, l1_ttl=60, l2_ttl=120
    )
    # A generous wait: a loaded machine may take seconds to confirm a subscription.
    if not await cache.start(timeout=START_TIMEOUT):
        raise SystemExit(f"coherence subscription not confirmed within {START_TIMEOUT:g} s")
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
        # One read served by L1 *before* announcing: the writer may write at once, and a
        # loaded machine may not run this process again until its message has arrived.
        stale_reads = int(await cache.get("k") == first)
        metrics = get_metrics_collector()
        received = metrics.get_counter("cache_invalidations_received_total")
        resets = metrics.get_counter("cache_l1_resets_total")
        await control.set(f"{args.namespace}:b-ready:{args.protocol}", 1)
        deadline = time.monotonic() + args.patience
        while time.monotonic() < deadline:
            value = await cache.get("k")
            if value != first:
                counts = _counts() | {
                    "invalidations_received": metrics.get_counter(
                        "cache_invalidations_received_total"
                    )
                    - received,
                    "l1_resets": metrics.get_counter("cache_l1_resets_total") - resets,
                }
                return {
                    "first": first,
                    "seen": value,
                    "seen_at": time.monotonic(),
                    "stale_reads": stale_reads,
                    "counts": counts,
                }
            stale_reads += 1
            await asyncio.sleep(0.0002)
        return {"first": first, "seen": None, "stale_reads": stale_reads}
    finally:
        await cache.close()
        await control.aclose()
        await client.aclose()


def _read_truth(path: Path) -> dict[str, int]:
    # A small local file standing in for the database: read synchronously, like a
    # query's round trip (no event-loop work worth overlapping).
    data: dict[str, int] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _write_truth(path: Path, data: dict[str, int]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)  # atomic: a loader never reads half a file


async def chaos(args: argparse.Namespace) -> dict[str, Any]:
    client = Redis.from_url(
        args.url,
        protocol=args.protocol,
        retry=redis_no_retry(),
        # A SIGKILLed server's connections fail at once; a short timeout would only let
        # a busy host degrade the cache a second time.
        socket_timeout=10.0,
        socket_connect_timeout=10.0,
    )
    metrics = MetricsCollector()
    cache = ThreeTierCache(
        RedisCache(client),
        redis=client,
        namespace=args.namespace,
        metrics=metrics,
        max_staleness=args.max_staleness,
        probe_interval=args.probe_interval,
        fill_lease=30.0,  # a leaked lease would stall reads far beyond the test's bounds
        heartbeat_interval=0.5,
    )
    truth, control = Path(args.truth), Path(args.control)
    keys = sorted(_read_truth(truth))
    loads: list[float] = []
    errors: list[str] = []

    def loader(key: str) -> Any:
        async def load() -> int:
            loads.append(time.monotonic())
            return _read_truth(truth)[key]

        return load

    try:
        if not await cache.start(timeout=START_TIMEOUT):
            raise SystemExit(f"coherence subscription not confirmed within {START_TIMEOUT:g} s")
        (control / f"ready-{args.role}-{args.protocol}").touch()
        go = control / "go"
        while not go.exists():  # noqa: ASYNC110 - a cross-process barrier on a file
            await asyncio.sleep(0.005)
        start = float(go.read_text(encoding="utf-8"))  # written whole, then renamed
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        hard_stop = start + 4 * args.patience
        stopped = asyncio.Event()

        async def watch() -> None:
            """Set ``stopped`` when the test says so; announce the recovery once."""
            was_degraded, announced = False, False
            while not (control / "stop").exists() and time.monotonic() < hard_stop:
                was_degraded = was_degraded or cache.degraded
                if was_degraded and not announced and not cache.degraded and cache.coherent:
                    (control / f"recovered-{args.role}-{args.protocol}").touch()
                    announced = True
                await asyncio.sleep(0.005)
            stopped.set()

        watcher = asyncio.create_task(watch())
        result: dict[str, Any] = {}
        if args.role == "writer":
            acks: list[list[Any]] = []
            version = 0
            while not stopped.is_set():
                for key in keys:
                    version += 1
                    data = _read_truth(truth)
                    data[key] = version
                    _write_truth(truth, data)  # the database first, then the cache
                    try:
                        if version % 3:
                            await cache.set(key, version)
                        else:
                            await cache.delete(key)
                    except Exception as exc:  # the test reports every one
                        errors.append(repr(exc))
                    else:
                        acks.append([key, version, time.monotonic()])
                    await asyncio.sleep(0.01)
            result["acks"] = acks
        else:
            reads: list[list[Any]] = []

            async def read(offset: int) -> None:
                i = offset
                while not stopped.is_set():
                    key = keys[i % len(keys)]
                    i += 1
                    started = time.monotonic()
                    try:
                        value = await cache.get(key, loader(key))
                    except Exception as exc:  # the test reports every one
                        errors.append(repr(exc))
                    else:
                        reads.append([key, started, time.monotonic() - started, value])
                    await asyncio.sleep(0.002)

            await asyncio.gather(*(read(j) for j in range(8)))
            result["reads"] = reads
        await watcher
        return result | {
            "errors": errors,
            "loads": loads,
            "degraded_total": metrics.get_counter("cache_degraded_total"),
            "recovered": metrics.get_counter("cache_l1_resets_total", reason="recovered"),
            "degraded_now": cache.degraded,
        }
    finally:
        await cache.close()
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["single-flight", "coherence", "chaos"])
    parser.add_argument("url")
    parser.add_argument("namespace")
    parser.add_argument("--protocol", type=int, default=2)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--role", choices=["writer", "reader"], default="reader")
    parser.add_argument("--truth")
    parser.add_argument("--control")
    parser.add_argument("--max-staleness", type=float, default=1.0)
    parser.add_argument("--probe-interval", type=float, default=1.0)
    parser.add_argument("--patience", type=float, default=30.0)
    args = parser.parse_args()
    run = {"single-flight": single_flight, "coherence": coherence, "chaos": chaos}[args.mode]
    print(json.dumps(asyncio.run(run(args))))  # the parent reads stdout


if __name__ == "__main__":
    main()

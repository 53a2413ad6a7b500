"""Cost of a call rejected by an OPEN breaker, as an application built by the container
pays it -- the fail-fast path an outage puts on every request.

Variants, each timed in the same run and interleaved round by round:

* ``bare breaker``      -- ``await breaker.call(noop)`` on a stand-alone
  :class:`~infra.resilience.CircuitBreaker` forced OPEN: the reference floor;
* ``container policy``  -- ``await policy.execute(noop)`` on the PostgreSQL policy the
  ``ApplicationContainer`` builds from default ``Settings`` (breaker, retry, timeouts,
  bulkhead, the metrics observer), its breaker forced OPEN;
* ``store.fetchval``    -- ``await store.fetchval("select 1")`` on the container's
  :class:`~infra.storage.EnhancedPostgresStore` (telemetry + policy + translation);
* ``cache.get``         -- ``await cache.get("k")`` on the container's
  :class:`~infra.cache.RedisCache`.

No server is needed: every breaker is OPEN, so nothing reaches the network. Logging,
tracing and metrics are the container's resources started from default ``Settings``
(JSON log lines go to ``/dev/null`` instead of stderr, so writing them is still timed).

For each variant: the median over ``--rounds`` of the per-call wall time (µs) and CPU time
(µs), the range, and the ratio to the bare breaker's median in the same run. The goal
for ``store.fetchval`` and ``cache.get`` is <= 20 µs per rejected call. ``--profile``
prints the cProfile top functions of the cache variant instead. Run from the repository
root::

    python -m benchmarks.bench_failure_path [--calls 2000] [--rounds 15] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from containers.application import ApplicationContainer
from containers.lifecycle import resolve
from infra.exceptions import CircuitBreakerOpenError
from infra.resilience import CircuitBreaker, CircuitBreakerConfig, ResiliencePolicy

Body = Callable[[], Awaitable[Any]]


async def _noop() -> None:
    return None


async def _rejected_calls(body: Body, calls: int) -> tuple[float, float]:
    """(wall µs, CPU µs) per call of ``calls`` calls of ``body``, each rejected."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        try:
            await body()
        except CircuitBreakerOpenError:
            pass
        else:  # pragma: no cover - the setup is wrong, not slow
            raise RuntimeError("the breaker let a call through; it must stay OPEN")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return wall / calls * 1e6, cpu / calls * 1e6


def _forced_open(policy: ResiliencePolicy) -> None:
    breaker = policy.breaker
    if breaker is None:
        raise RuntimeError(f"{policy!r} has no breaker; nothing to reject with")
    breaker.force_open()


async def _variants(app: ApplicationContainer) -> dict[str, Body]:
    """Every variant's body, with its breaker OPEN."""
    await resolve(app.observability.metrics)
    await resolve(app.observability.logging)
    await resolve(app.observability.tracing)
    store = await resolve(app.postgres.store)
    cache = await resolve(app.redis.cache)
    policy = store.policy
    _forced_open(policy)
    _forced_open(cache.policy)
    bare = CircuitBreaker(CircuitBreakerConfig(), name="bare")
    bare.force_open()
    return {
        "bare breaker": lambda: bare.call(_noop),
        "container policy": lambda: policy.execute(_noop),
        "store.fetchval": lambda: store.fetchval("select 1"),
        "cache.get": lambda: cache.get("k"),
    }


async def measure(calls: int, rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per-call (wall, CPU) µs of every variant, one sample per round."""
    app = ApplicationContainer()
    try:
        bodies = await _variants(app)
        samples: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in bodies}
        for body in bodies.values():  # warm-up: series, caches, first log lines
            await _rejected_calls(body, calls // 10 + 1)
        for _ in range(rounds):
            for name, body in bodies.items():
                wall, cpu = await _rejected_calls(body, calls)
                samples[name][0].append(wall)
                samples[name][1].append(cpu)
        return samples
    finally:
        stopping = app.shutdown_resources()
        assert stopping is not None  # async resources: an awaitable
        await stopping


async def profile(calls: int) -> str:
    """cProfile of ``calls`` rejected ``cache.get`` calls: the top functions, cumulative."""
    app = ApplicationContainer()
    try:
        bodies = await _variants(app)
        body = bodies["cache.get"]
        await _rejected_calls(body, 100)
        profiler = cProfile.Profile()
        profiler.enable()
        await _rejected_calls(body, calls)
        profiler.disable()
    finally:
        stopping = app.shutdown_resources()
        assert stopping is not None  # async resources: an awaitable
        await stopping
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    return out.getvalue()


def report(samples: dict[str, tuple[list[float], list[float]]]) -> None:
    """Median, range and ratio to the bare breaker, wall and CPU. On a loaded machine the
    wall figures stretch (the range shows it); the ratios to the bare breaker, measured
    in the same rounds, are the stable figures."""
    bare_wall = statistics.median(samples["bare breaker"][0])
    bare_cpu = statistics.median(samples["bare breaker"][1])
    print(
        f"{'variant':<18}{'wall us':>9}{'range':>17}{'x bare':>8}{'cpu us':>9}{'x bare':>8}  goal"
    )
    for name, (wall, cpu) in samples.items():
        med_wall, med_cpu = statistics.median(wall), statistics.median(cpu)
        spread = f"{min(wall):.1f}-{max(wall):.1f}"
        goal = ""
        if name in ("store.fetchval", "cache.get"):
            verdict = "met" if med_wall <= 20.0 else f"missed by {med_wall - 20:.1f} us"
            goal = f"<= 20 us wall: {verdict}"
        print(
            f"{name:<18}{med_wall:>9.2f}{spread:>17}{med_wall / bare_wall:>8.1f}"
            f"{med_cpu:>9.2f}{med_cpu / bare_cpu:>8.1f}  {goal}"
        )


@contextlib.contextmanager
def _stderr_to_devnull() -> Any:
    """The container's log handler binds ``sys.stderr`` when it starts: point it at
    ``/dev/null`` so lines are still rendered and written, but not shown."""
    saved = sys.stderr
    with open(os.devnull, "w") as sink:  # noqa: PTH123 - a plain text sink
        sys.stderr = sink
        try:
            yield
        finally:
            sys.stderr = saved


def main() -> None:
    """Parse arguments, run (or profile) the variants, print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="rejected calls per sample")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--profile", action="store_true", help="cProfile cache.get instead")
    args = parser.parse_args()
    with _stderr_to_devnull():
        if args.profile:
            text = asyncio.run(profile(args.calls * 5))
        else:
            samples = asyncio.run(measure(args.calls, args.rounds))
    if args.profile:
        print(text)
    else:
        print(f"rejected calls while OPEN; {args.calls} calls x {args.rounds} rounds\n")
        report(samples)


if __name__ == "__main__":
    main()

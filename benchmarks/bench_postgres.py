"""PostgreSQL store overhead: ``fetchval("select 1")`` through the stores vs raw asyncpg.

Run ``python benchmarks/bench_postgres.py`` (``--quick`` for a short run). It starts the
embedded PostgreSQL (or uses ``SEMANTICA_TEST_POSTGRES_DSN``) and measures, in the same
run and on the same server, one caller issuing ``fetchval("select 1")`` back to back:

* ``raw asyncpg``        -- ``pool.fetchval`` on a plain ``asyncpg.create_pool`` (the baseline);
* ``PostgresStore``      -- the basic store: telemetry (metrics), statement + client
  timeouts, bounded acquire; passthrough policy;
* ``Enhanced, tracing off``     -- plus breaker, retry and the resilience metrics hooks;
* ``Enhanced, sampled out``     -- the same with tracing set up at ratio 0;
* ``Enhanced, sampled in``      -- every call traced, spans to a batch processor;
* ``Enhanced, client timer``    -- sampled out, but with no ``statement_timeout`` and a
  ``command_timeout``: asyncpg's timer per call instead of the dead-peer deadline.

All pools have the same size and are warmed up first. A shared machine drifts, so every
round times each variant right next to a raw run (alternating which goes first), and
each figure is the median over rounds of that pair's wall-time ratio, next to the median
CPU overhead per call of this process (``time.process_time``), which the server's and
the scheduler's noise do not reach -- the overhead we add is client CPU. Goal
(design goal): everything on <= 1.10x.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from infra.observability import (
    MetricsCollector,
    reset_tracing,
    set_metrics_collector,
    setup_tracing,
    use_tracer_provider,
)
from infra.storage import EnhancedPostgresStore, PostgresStore

Call = Callable[[], Awaitable[Any]]
POOL_SIZE = 4
GOAL = 1.10


class _DropExporter(SpanExporter):
    """Accepts and discards spans: export cost would blur the recording cost."""

    def export(self, spans: object) -> SpanExportResult:  # noqa: ARG002 - the SDK's signature
        return SpanExportResult.SUCCESS


@contextlib.contextmanager
def postgres_dsn() -> Iterator[str]:
    """The external test DSN if configured, else a fresh embedded server."""
    external = os.environ.get("SEMANTICA_TEST_POSTGRES_DSN")
    if external:
        yield external
        return
    from infra.testing.embedded import EmbeddedPostgres  # noqa: PLC0415 - optional extra

    with EmbeddedPostgres() as server:
        yield server.dsn


async def timed(call: Call, n: int) -> tuple[float, float]:
    """Mean (wall, CPU) microseconds per call over ``n`` sequential calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def tracing_off() -> None:
    reset_tracing()


def tracing_sampled_out() -> None:
    setup_tracing(sample_ratio=0.0, exporter=_DropExporter())


_provider: TracerProvider | None = None


def tracing_sampled_in() -> None:
    global _provider  # noqa: PLW0603 - one provider for the benchmark's lifetime
    if _provider is None:
        _provider = TracerProvider()
        _provider.add_span_processor(
            BatchSpanProcessor(_DropExporter(), max_queue_size=1 << 20, schedule_delay_millis=50)
        )
    use_tracer_provider(_provider, root_sample_ratio=1.0)


# variant -> per-round (wall ratio, CPU overhead µs, raw wall µs, raw CPU µs)
Samples = dict[str, list[tuple[float, float, float, float]]]


async def run(dsn: str, *, rounds: int, per_round: int) -> Samples:
    """Each round times every variant right next to a raw run (alternating which goes
    first), so both see the same machine; per-round ratios and CPU overheads."""
    set_metrics_collector(MetricsCollector())
    raw = await asyncpg.create_pool(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE)
    basic = PostgresStore(dsn, POOL_SIZE, POOL_SIZE, name="bench-basic")
    enhanced = EnhancedPostgresStore(dsn, POOL_SIZE, POOL_SIZE, name="bench-enhanced")
    timer = EnhancedPostgresStore(
        dsn, POOL_SIZE, POOL_SIZE, statement_timeout=None, command_timeout=31.0, name="bench-t"
    )
    for store in (basic, enhanced, timer):
        await store.initialize()
    baseline: Call = lambda: raw.fetchval("select 1")  # noqa: E731 - a table of calls
    variants: list[tuple[str, Call, Callable[[], None]]] = [
        ("PostgresStore", lambda: basic.fetchval("select 1"), tracing_off),
        ("Enhanced, tracing off", lambda: enhanced.fetchval("select 1"), tracing_off),
        ("Enhanced, sampled out", lambda: enhanced.fetchval("select 1"), tracing_sampled_out),
        ("Enhanced, sampled in", lambda: enhanced.fetchval("select 1"), tracing_sampled_in),
        ("Enhanced, client timer", lambda: timer.fetchval("select 1"), tracing_sampled_out),
    ]
    results: Samples = {name: [] for name, _, _ in variants}
    try:
        for _, call, setup in variants:  # warm up: connections, statement caches, bindings
            setup()
            await timed(call, per_round)
            await timed(baseline, per_round)
        for index in range(rounds):
            for name, call, setup in variants:
                setup()
                if index % 2:
                    base = await timed(baseline, per_round)
                    mine = await timed(call, per_round)
                else:
                    mine = await timed(call, per_round)
                    base = await timed(baseline, per_round)
                results[name].append((mine[0] / base[0], mine[1] - base[1], *base))
    finally:
        reset_tracing()
        if _provider is not None:
            _provider.shutdown()
        for store in (timer, enhanced, basic):
            await store.close()
        await raw.close()
    return results


def report(results: Samples) -> bool:
    """Print medians; whether the everything-on goal was met."""
    any_samples = next(iter(results.values()))
    raw_wall = statistics.median(s[2] for s in any_samples)
    raw_cpu = statistics.median(s[3] for s in any_samples)
    print(
        f"\nfetchval('select 1'), one caller, pool of {POOL_SIZE}, {len(any_samples)} rounds;"
        f" raw asyncpg: {raw_wall:.1f} µs wall, {raw_cpu:.1f} µs CPU per call\n"
    )
    print(f"{'variant':<24} {'ratio (wall)':>12} {'CPU overhead µs':>16}")
    met = True
    for name, samples in results.items():
        ratio = statistics.median(s[0] for s in samples)
        overhead = statistics.median(s[1] for s in samples)
        print(f"{name:<24} {ratio:>11.3f}x {overhead:>16.1f}")
        if name == "Enhanced, sampled out":
            met = ratio <= GOAL
    print(f"\ngoal: Enhanced with everything on (sampled out) <= {GOAL:.2f}x -> ", end="")
    print("met" if met else "MISSED")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args()
    rounds, per_round = (10, 100) if args.quick else (60, 100)
    with postgres_dsn() as dsn:
        results = asyncio.run(run(dsn, rounds=rounds, per_round=per_round))
    report(results)


if __name__ == "__main__":
    main()

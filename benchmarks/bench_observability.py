"""Per-call cost of recording one backend call (span + histograms + counter), same run.

Scenarios, each ``N`` iterations of ``async with record_call(...): pass`` (the block is
empty so only the recording is timed), best of ``--repeat`` runs:

* ``bare``                -- ``await noop()``: the loop without recording (baseline);
* ``tracing off``         -- no tracer provider installed: metrics only;
* ``no exporter (default)`` -- ``setup_tracing()`` with no exporter, what the container
  builds from default settings: tracing stays off, so the same as ``tracing off``;
* ``sampled out (ratio 0)``    -- our provider at ratio 0: the SDK is skipped;
* ``sampled out (parent)``     -- inside an unsampled parent span: the SDK is skipped;
* ``sampled out (via SDK)``    -- a provider whose ratio we do not know, sampling 0: the
  SDK's own sampler drops the span (what any non-zero ratio costs for a dropped root);
* ``sampled in``          -- every span recorded and handed to a batch processor;
* ``SDK span only``       -- ``start_span`` + ``end`` with the same attributes and no
  metrics, for reference: the floor the sampled-in figure cannot go below;
* ``handle, ...``         -- the adapters' path, ``await op.run(noop)`` on an operation
  handle of :class:`~infra.calls.BackendCalls` with a passthrough policy (telemetry and
  translation, no policy layers), with tracing off, sampled out (ratio 0) and sampled in;
* ``calls.run, tracing off`` -- the same through ``BackendCalls.run("fetch", noop)``
  (the per-call handle lookup included).

Goals (design goals): <= 5 us per call sampled out, <= 25 us sampled in. With ``--postgres``
(default on) it also times ``pool.fetch("select 1")`` on the embedded PostgreSQL raw and
wrapped in ``record_call``, and prints the ratio. Run from the repository root:

    python -m benchmarks.bench_observability [--iterations 50000] [--repeat 5] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind

from infra.calls import BackendCalls
from infra.observability import (
    MetricsCollector,
    record_call,
    reset_tracing,
    set_metrics_collector,
    setup_tracing,
    use_tracer_provider,
)

ATTRS: dict[str, str | int] = {
    "db.system.name": "postgresql",
    "db.operation.name": "fetch",
    "server.address": "localhost",
    "server.port": 5432,
}


class _DropExporter(SpanExporter):
    """Accepts and discards spans, so export cost does not blur the recording cost."""

    def export(self, spans: object) -> SpanExportResult:  # noqa: ARG002 - the SDK's signature
        return SpanExportResult.SUCCESS


async def _noop() -> None:
    return None


async def _time(body: Callable[[], Awaitable[None]], iterations: int, repeat: int) -> float:
    """Best per-iteration time in microseconds over ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(iterations):
            await body()
        best = min(best, (time.perf_counter() - start) / iterations * 1e6)
    return best


async def _recorded() -> None:
    async with record_call(
        "postgres", "fetch", system="postgresql", server_address="localhost", server_port=5432
    ):
        pass


async def measure(iterations: int, repeat: int) -> dict[str, float]:
    """Per-iteration microseconds for every scenario."""
    set_metrics_collector(MetricsCollector())
    results: dict[str, float] = {}
    results["bare"] = await _time(_noop, iterations, repeat)

    reset_tracing()
    results["tracing off"] = await _time(_recorded, iterations, repeat)

    setup_tracing()  # ratio 1.0 but nothing to export to: no spans are made
    results["no exporter (default)"] = await _time(_recorded, iterations, repeat)

    setup_tracing(sample_ratio=0.0, exporter=_DropExporter())
    results["sampled out (ratio 0)"] = await _time(_recorded, iterations, repeat)

    setup_tracing(sample_ratio=1.0, exporter=_DropExporter())
    parent = trace.NonRecordingSpan(
        trace.SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=trace.TraceFlags(0))
    )
    token = otel_context.attach(trace.set_span_in_context(parent))
    results["sampled out (parent)"] = await _time(_recorded, iterations, repeat)
    otel_context.detach(token)

    dropping = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    use_tracer_provider(dropping)  # ratio unknown to us: the SDK decides every call
    results["sampled out (via SDK)"] = await _time(_recorded, iterations, repeat)
    dropping.shutdown()

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_DropExporter(), max_queue_size=1 << 20))
    use_tracer_provider(provider, root_sample_ratio=1.0)
    results["sampled in"] = await _time(_recorded, iterations, repeat)
    tracer = provider.get_tracer("bench")

    async def sdk_only() -> None:
        tracer.start_span("fetch", kind=SpanKind.CLIENT, attributes=ATTRS).end()

    results["SDK span only"] = await _time(sdk_only, iterations, repeat)

    calls = BackendCalls(
        "postgres",
        family="database",
        system="postgresql",
        server_address="localhost",
        server_port=5432,
    )
    handle = calls.operation("fetch")

    async def through_handle() -> None:
        await handle.run(_noop)

    async def through_calls() -> None:
        await calls.run("fetch", _noop)

    results["handle, sampled in"] = await _time(through_handle, iterations, repeat)
    provider.shutdown()
    reset_tracing()
    results["handle, tracing off"] = await _time(through_handle, iterations, repeat)
    results["calls.run, tracing off"] = await _time(through_calls, iterations, repeat)
    setup_tracing(sample_ratio=0.0, exporter=_DropExporter())
    results["handle, sampled out"] = await _time(through_handle, iterations, repeat)
    reset_tracing()
    return results


async def measure_postgres(iterations: int, repeat: int) -> tuple[float, float]:
    """(raw, recorded) microseconds per ``fetch("select 1")`` on the embedded server."""
    import asyncpg  # noqa: PLC0415 - only for this optional part

    from infra.testing.embedded.postgres import EmbeddedPostgres  # noqa: PLC0415

    with EmbeddedPostgres() as server:
        pool = await asyncpg.create_pool(server.dsn, min_size=1, max_size=1)
        try:

            async def raw() -> None:
                await pool.fetch("select 1")

            async def wrapped() -> None:
                async with record_call("postgres", "fetch", system="postgresql"):
                    await pool.fetch("select 1")

            setup_tracing(sample_ratio=1.0, exporter=_DropExporter())
            await _time(raw, iterations // 10, 1)  # warm up the connection and plan cache
            raw_us = await _time(raw, iterations, repeat)
            wrapped_us = await _time(wrapped, iterations, repeat)
            reset_tracing()
            return raw_us, wrapped_us
        finally:
            await pool.close()


def report(results: dict[str, float]) -> None:
    """Print absolute times and the overhead over ``bare``."""
    bare = results["bare"]
    print(f"{'scenario':<26}{'us/call':>10}{'overhead us':>14}")
    for name, value in results.items():
        overhead = "" if name == "bare" else f"{value - bare:>14.2f}"
        print(f"{name:<26}{value:>10.2f}{overhead}")
    out_worst = max(v for k, v in results.items() if k.startswith("sampled out (r")) - bare
    out_parent = results["sampled out (parent)"] - bare
    sampled_in = results["sampled in"] - bare
    print(
        f"\nsampled out (SDK skipped): {max(out_worst, out_parent):.2f} us  (goal <= 5)\n"
        f"sampled in:                {sampled_in:.2f} us  (goal <= 25; SDK span alone "
        f"{results['SDK span only'] - bare:.2f} us)\n"
        f"adapter path (handle):     {results['handle, sampled out'] - bare:.2f} us sampled "
        f"out, {results['handle, sampled in'] - bare:.2f} us sampled in"
    )


def main() -> None:
    """Parse arguments, run the scenarios, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true", help="skip the real-query ratio")
    args = parser.parse_args()
    report(asyncio.run(measure(args.iterations, args.repeat)))
    if not args.no_postgres:
        raw_us, wrapped_us = asyncio.run(measure_postgres(args.iterations // 10, args.repeat))
        print(
            f"\npostgres fetch('select 1'): raw {raw_us:.1f} us, recorded {wrapped_us:.1f} us, "
            f"ratio {wrapped_us / raw_us:.3f}"
        )


if __name__ == "__main__":
    main()

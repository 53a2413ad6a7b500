"""Resilience benchmarks: happy-path overhead, fail-fast latency, recovery, false trips.

Run ``python benchmarks/bench_resilience.py`` (``--quick`` for a short run, ``--no-redis``
to skip the embedded Redis). Every figure is measured in this run and printed next to
its baseline from the same run:

(a) **Happy-path overhead** per call of the DEFAULT policy --
    ``ResiliencePolicy.from_settings(Settings(), ...)``: timeout → retry + budget →
    breaker → bulkhead → attempt timeout --, of single layers and of naive tenacity,
    against a bare ``await`` of an async no-op, and against a loopback Redis GET through
    redis-py (embedded Redis). For the GET, the same policy without its timeouts, our
    ``Timeout`` alone and a bare ``asyncio.timeout`` are measured too, to show what the
    one per-attempt timer costs.
    Rounds of the variants are interleaved and medians reported, because a shared
    machine drifts; the Redis ratio is the median of per-round ratios. The no-op loops
    yield to the event loop every 64 calls, as real I/O would, so the loop discards
    cancelled timer handles as in production (the baseline yields the same way).
(b) **Fail-fast latency** while the breaker is OPEN: the breaker alone and the full
    policy (the open-breaker error is not retried).
(c) **Recovery rate**: 10,000 calls per seed, each attempt failing independently with
    probability 10 %, 100 calls per second of virtual time. Headline: the DEFAULT policy
    (default settings: 3 attempts, budget 20 %, breaker "5 failed calls / 60 s").
    Alternatives: "5 failed attempts in a row" (``count_retried_attempts=True``, the
    default before), a failure-rate breaker, no breaker. A call *recovers* when its
    first attempt failed but it succeeded.
(d) **False trips**: 1 % independent failures on a healthy backend, threshold 5, the
    default policy and the per-attempt rule. A *false trip* is a CLOSED → OPEN
    transition while the backend is healthy (every failure is random background); the
    rate is false trips per call. For contrast, a sustained outage: how many calls (and
    seconds of virtual backoff, for one sequential caller) open the breaker, and what
    the next call costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tenacity import retry, stop_after_attempt, wait_exponential

from config import Settings
from infra.exceptions import BackendConnectionError, CircuitBreakerOpenError, InfraError
from infra.resilience import (
    BreakerState,
    BulkheadConfig,
    CircuitBreaker,
    CircuitBreakerConfig,
    ManualClock,
    RecordingObserver,
    ResiliencePolicy,
    RetryBudget,
    RetryConfig,
    RetryPolicy,
    Timeout,
)

Call = Callable[[], Awaitable[Any]]


def default_policy(**kwargs: Any) -> ResiliencePolicy:
    """The policy default settings produce: what a user gets without configuring."""
    return ResiliencePolicy.from_settings(Settings(), component="bench", **kwargs)


def untimed_policy() -> ResiliencePolicy:
    """The default policy's layers without its two timeouts."""
    return ResiliencePolicy.build(
        "bench",
        breaker=CircuitBreakerConfig(),
        retry=RetryConfig(),
        retry_budget_ratio=0.2,
        bulkhead=BulkheadConfig(100, max_queue=1000, max_wait=5.0),
    )


async def timed_round(call: Call, n: int) -> float:
    """Mean seconds per call over ``n`` calls, yielding to the loop every 64 calls."""
    start = time.perf_counter()
    for i in range(n):
        await call()
        if i % 64 == 63:
            await asyncio.sleep(0)
    return (time.perf_counter() - start) / n


async def interleaved(variants: dict[str, Call], rounds: int, n: int) -> dict[str, list[float]]:
    """Seconds per call of each variant, one value per round.

    Every round runs each variant once, in a freshly shuffled order, so neither drift
    nor a fixed position in the round favours a variant.
    """
    order = list(variants)
    shuffler = random.Random(0)
    for call in variants.values():  # warm-up
        await timed_round(call, max(200, n // 10))
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            results[name].append(await timed_round(variants[name], n))
    return results


def us(seconds: float) -> str:
    return f"{seconds * 1e6:8.2f} µs"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


# ----------------------------------------------------------------------- (a) overhead
async def overhead_noop(rounds: int, n: int) -> float:
    """Full-policy overhead per call over a bare await, in seconds."""

    async def noop() -> int:
        return 1

    policy = default_policy()
    breaker = CircuitBreaker(name="bench")
    retry_only = RetryPolicy(RetryConfig(), budget=RetryBudget(0.2))
    timeout = Timeout(10.0)
    passthrough = ResiliencePolicy.passthrough()

    @retry(stop=stop_after_attempt(3), wait=wait_exponential(), reraise=True)
    async def tenacity_noop() -> int:
        return 1

    variants: dict[str, Call] = {
        "bare await": noop,
        "passthrough policy": lambda: passthrough.execute(noop),
        "breaker only": lambda: breaker.call(noop),
        "retry + budget only": lambda: retry_only.execute(noop),
        "Timeout only": lambda: timeout.call(noop),
        "default policy": lambda: policy.execute(noop),
        "naive tenacity @retry": tenacity_noop,
    }
    results = await interleaved(variants, rounds, n)
    medians = {name: statistics.median(values) for name, values in results.items()}
    bare = medians["bare await"]
    print(f"\n(a) happy path, async no-op\n    policy = {policy.describe()}")
    for name, value in medians.items():
        extra = "" if name == "bare await" else f"   overhead {us(value - bare)}"
        print(f"    {name:24s} {us(value)}   ({value / bare:6.1f}x bare){extra}")
    assert policy.retry is not None
    print(f"    tenacity loops entered by the policy: {policy.retry.stats.tenacity_loops}")
    return medians["default policy"] - bare


async def overhead_redis(rounds: int, n: int) -> float | None:
    """Median per-round ratio of a policy-wrapped GET to a raw GET."""
    try:
        import redis.asyncio as aioredis  # noqa: PLC0415 -- optional part of the run

        from infra.resilience import redis_no_retry_kwargs  # noqa: PLC0415
        from infra.testing.embedded import EmbeddedRedis  # noqa: PLC0415
    except ImportError as exc:  # the embedded extra is optional
        print(f"\n(a) Redis GET skipped: {exc}")
        return None
    with EmbeddedRedis(graph=False) as server:
        client = aioredis.from_url(server.url, **redis_no_retry_kwargs())
        try:
            await client.set("bench:key", "value")
            policy = default_policy()
            untimed = untimed_policy()
            timeout = Timeout(10.0)

            @retry(stop=stop_after_attempt(3), wait=wait_exponential(), reraise=True)
            async def tenacity_get() -> Any:
                return await client.get("bench:key")

            async def timer_only() -> Any:
                async with asyncio.timeout(10.0):
                    return await client.get("bench:key")

            variants: dict[str, Call] = {
                "raw GET": lambda: client.get("bench:key"),
                "policy GET": lambda: policy.execute(client.get, "bench:key"),
                "  same, without timeouts": lambda: untimed.execute(client.get, "bench:key"),
                "  our Timeout alone": lambda: timeout.call(client.get, "bench:key"),
                "  bare asyncio.timeout": timer_only,
                "naive tenacity GET": tenacity_get,
            }
            results = await interleaved(variants, rounds, n)
        finally:
            await client.aclose()
    raw = results["raw GET"]
    print("\n(a) happy path, loopback Redis GET (redis-py, embedded Redis), default policy")
    print("    variant                    median µs/call   median ratio   best-round ratio")
    ratios: dict[str, float] = {}
    for name, values in results.items():
        ratios[name] = statistics.median(v / r for v, r in zip(values, raw, strict=True))
        print(
            f"    {name:26s} {us(statistics.median(values))}     {ratios[name]:6.3f}x"
            f"        {min(values) / min(raw):6.3f}x"
        )
    return ratios["policy GET"]


# ---------------------------------------------------------------------- (b) fail-fast
async def fail_fast(n: int) -> float:
    """The slower of breaker-alone and full-policy rejection latency, in seconds."""

    async def never_called() -> None:
        raise AssertionError("an open breaker must not call the backend")

    breaker = CircuitBreaker(name="bench")
    breaker.force_open()
    policy = default_policy()
    assert policy.breaker is not None
    policy.breaker.force_open()

    async def rejected(call: Call) -> float:
        start = time.perf_counter()
        for _ in range(n):
            with contextlib.suppress(CircuitBreakerOpenError):
                await call()
        return (time.perf_counter() - start) / n

    alone = statistics.median(
        [await rejected(lambda: breaker.call(never_called)) for _ in range(5)]
    )
    full = statistics.median(
        [await rejected(lambda: policy.execute(never_called)) for _ in range(5)]
    )
    print("\n(b) fail-fast while OPEN (CircuitBreakerOpenError raised and caught)")
    print(f"    breaker alone            {us(alone)}")
    print(f"    default policy           {us(full)}")
    return max(alone, full)


# ---------------------------------------------------------------------- (c) recovery
PolicyFactory = Callable[[ManualClock, RecordingObserver], ResiliencePolicy]


def _like_default(breaker: CircuitBreakerConfig | None) -> PolicyFactory:
    """The default policy's layers and values, with another breaker (or none)."""

    def build(clock: ManualClock, rec: RecordingObserver) -> ResiliencePolicy:
        return ResiliencePolicy.build(
            "bench",
            breaker=breaker,
            retry=RetryConfig(),
            retry_budget_ratio=0.2,
            bulkhead=BulkheadConfig(100, max_queue=1000, max_wait=5.0),
            timeout=30.0,
            attempt_timeout=10.0,
            clock=clock,
            hooks=[rec],
        )

    return build


DEFAULT = "default settings (5 failed calls / 60 s)"
VARIANTS: dict[str, PolicyFactory] = {
    DEFAULT: lambda clock, rec: default_policy(clock=clock, hooks=[rec]),
    "5 failed attempts in a row / 60 s": _like_default(
        CircuitBreakerConfig(count_retried_attempts=True)
    ),
    "rate breaker (50 % of last 100, min 20)": _like_default(
        CircuitBreakerConfig(
            failure_threshold=20, failure_rate_threshold=0.5, window_size=100, minimum_calls=20
        )
    ),
    "no breaker": _like_default(None),
}


async def recovery_run(factory: PolicyFactory, calls: int, seed: int) -> list[int]:
    """[succeeded, first attempt failed, recovered, breaker trips] for one seeded run."""
    rec = RecordingObserver()
    clock = ManualClock()
    policy = factory(clock, rec)
    rng = random.Random(seed)
    attempts = 0

    async def backend() -> str:
        nonlocal attempts
        attempts += 1
        if rng.random() < 0.10:
            raise BackendConnectionError("injected transient failure")
        return "ok"

    ok = first_failed = recovered = 0
    for _ in range(calls):
        before = attempts
        try:
            await policy.execute(backend)
        except InfraError:
            first_failed += attempts > before
        else:
            ok += 1
            if attempts - before > 1:
                first_failed += 1
                recovered += 1
        clock.advance(0.01)
    trips = sum(1 for *_, new in rec.transitions if new is BreakerState.OPEN)
    return [ok, first_failed, recovered, trips]


async def recovery(calls: int, seeds: list[int]) -> dict[str, float]:
    """Success rate per policy variant, pooled over the seeds."""
    print(f"\n(c) recovery: {calls:,} calls x {len(seeds)} seed(s); each attempt fails with")
    print("    p = 10 %; 3 attempts, retry budget 20 %; 100 calls/s of virtual time")
    rates: dict[str, float] = {}
    for name, factory in VARIANTS.items():
        runs = [await recovery_run(factory, calls, seed) for seed in seeds]
        ok, first_failed, recovered, trips = (sum(column) for column in zip(*runs, strict=True))
        tripped_runs = sum(1 for run in runs if run[3])
        rates[name] = ok / (calls * len(seeds))
        print(
            f"    {name:40s} succeeded {rates[name]:8.4%}; recovered {recovered:,}/"
            f"{first_failed:,}; trips {trips} (in {tripped_runs} of {len(seeds)} runs)"
        )
    return rates


# -------------------------------------------------------------------- (d) false trips
async def false_trips(factory: PolicyFactory, calls: int, seed: int) -> float:
    """False trips per call with 1 % random failures on a healthy backend."""
    rng = random.Random(seed)

    async def backend() -> str:
        if rng.random() < 0.01:
            raise BackendConnectionError("injected failure")
        return "ok"

    rec = RecordingObserver()
    clock = ManualClock()
    policy = factory(clock, rec)
    for _ in range(calls):
        with contextlib.suppress(InfraError):
            await policy.execute(backend)
        clock.advance(0.01)
    return sum(1 for *_, new in rec.transitions if new is BreakerState.OPEN) / calls


async def outage(factory: PolicyFactory) -> str:
    """One sequential caller during a sustained outage: what it takes to open, and after."""
    backend_calls = 0

    async def down() -> None:
        nonlocal backend_calls
        backend_calls += 1
        raise BackendConnectionError("connection refused")

    clock = ManualClock()
    policy = factory(clock, RecordingObserver())
    assert policy.breaker is not None
    calls = 0
    while policy.breaker.state is BreakerState.CLOSED:
        calls += 1
        with contextlib.suppress(InfraError):
            await policy.execute(down)
    opened_after = clock.now()
    reached = backend_calls
    rejected = []
    for _ in range(200):
        start = time.perf_counter()
        with contextlib.suppress(CircuitBreakerOpenError):
            await policy.execute(down)
        rejected.append(time.perf_counter() - start)
    assert backend_calls == reached, "an open breaker must not call the backend"
    return (
        f"opens after {calls} calls ({reached} attempts, {opened_after:.1f} s of backoff); "
        f"then calls fail fast in {statistics.median(rejected) * 1e6:.1f} µs (median)"
    )


async def false_trip_report(calls: int, seed: int) -> float:
    """False trips of the default policy (printed with the per-attempt rule for contrast)."""
    print(f"\n(d) false trips: {calls:,} calls, 1 % random failures, threshold 5, 3 attempts")
    rates: dict[str, float] = {}
    for name in (DEFAULT, "5 failed attempts in a row / 60 s"):
        rates[name] = await false_trips(VARIANTS[name], calls, seed)
        print(f"    {name:40s} false trips {rates[name]:.5%} per call")
        print(f"    {'':40s} sustained outage: {await outage(VARIANTS[name])}")
    return rates[DEFAULT]


async def main(quick: bool, with_redis: bool, seed: int) -> None:
    rounds, n = (5, 5_000) if quick else (15, 20_000)
    print(f"Python {sys.version.split()[0]}, {'quick' if quick else 'full'} run, seed {seed}")
    overhead = await overhead_noop(rounds, n)
    redis_rounds, redis_n = (40, 100) if quick else (200, 100)
    redis_ratio = await overhead_redis(redis_rounds, redis_n) if with_redis else None
    fast = await fail_fast(2_000 if quick else 20_000)
    recovered = await recovery(10_000, [seed] if quick else [seed + i for i in range(10)])
    false_rate = await false_trip_report(20_000 if quick else 100_000, seed)

    print("\nGoals (the default policy, from_settings(Settings()))")
    print(f"    overhead <= 10 µs per call          {us(overhead)}  {verdict(overhead <= 10e-6)}")
    if redis_ratio is not None:
        print(
            f"    policy GET <= 1.10x raw GET         {redis_ratio:8.3f}x   "
            f"{verdict(redis_ratio <= 1.10)}"
        )
    print(f"    fail-fast <= 20 µs                  {us(fast)}  {verdict(fast <= 20e-6)}")
    rate = recovered[DEFAULT]
    print(f"    recovery >= 99.5 %                  {rate:10.4%}   {verdict(rate >= 0.995)}")
    ok = verdict(false_rate < 0.001)
    print(f"    false trips < 0.1 % per call        {false_rate:10.5%}   {ok}")
    for name, rate in recovered.items():
        if name != DEFAULT:
            print(f"    (alternative) recovery, {name}: {rate:.4%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Resilience benchmarks (see module docstring).")
    parser.add_argument("--quick", action="store_true", help="short run (about 10 s)")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis comparison")
    parser.add_argument("--seed", type=int, default=1, help="seed of the failure injection")
    args = parser.parse_args()
    asyncio.run(main(args.quick, not args.no_redis, args.seed))

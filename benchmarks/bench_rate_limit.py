"""Rate-limiter accuracy in real time: achieved rate / configured rate, same run.

Measures the in-process :class:`TokenBucketLimiter` and the distributed
:class:`RedisTokenBucketLimiter` (two independent clients sharing one key, as two
processes would) over a real-time window (10 s; ``--quick``: 2 s). The initial burst is
spent before the window opens, so every grant counted comes from refill and the
expected count is ``rate x window``. Goal: within 2 %.

Redis is the embedded server (``infra.testing.embedded``) unless ``--redis-url`` names
one. Run from the repository root:

    python -m benchmarks.bench_rate_limit [--quick] [--rate 100] [--capacity 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import uuid
from collections.abc import Iterator

from redis.asyncio import Redis

from infra.exceptions import RateLimitExceededError
from infra.resilience.rate_limit import RateLimiter, TokenBucketLimiter
from infra.resilience.rate_limit_redis import RedisTokenBucketLimiter
from infra.testing.embedded.redis import EmbeddedRedis


async def _drain(limiter: RateLimiter, capacity: float) -> None:
    """Spend the initial burst so the window measures refill only."""
    await limiter.acquire(capacity)


async def measure(limiters: list[RateLimiter], window: float, workers: int) -> tuple[int, float]:
    """Run ``workers`` callers (spread over ``limiters``) for ``window`` s; count grants."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    stop_at = started + window
    grants = 0

    async def worker(limiter: RateLimiter) -> None:
        nonlocal grants
        while (left := stop_at - loop.time()) > 0:
            try:
                await limiter.acquire(timeout=left)
            except RateLimitExceededError:
                return
            if loop.time() <= stop_at:
                grants += 1

    await asyncio.gather(*(worker(limiters[i % len(limiters)]) for i in range(workers)))
    return grants, window


def report(label: str, rate: float, grants: int, window: float) -> None:
    achieved = grants / window
    ratio = achieved / rate
    print(
        f"{label:<34} grants={grants:>6}  achieved={achieved:9.2f}/s  "
        f"configured={rate:.2f}/s  ratio={ratio:.4f}  error={abs(ratio - 1) * 100:.2f} %"
    )


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    """Yield a Redis URL: the given one, or a fresh embedded server's."""
    if url:
        yield url
        return
    with EmbeddedRedis(graph=False) as server:
        yield server.url


async def main(args: argparse.Namespace) -> None:
    window = 2.0 if args.quick else args.window
    rate, capacity, workers = args.rate, args.capacity, args.workers
    print(f"window={window:g}s rate={rate:g}/s capacity={capacity:g} workers={workers}")

    local = TokenBucketLimiter(rate, capacity, name="bench")
    await _drain(local, capacity)
    grants, elapsed = await measure([local], window, workers)
    report("in-process TokenBucketLimiter", rate, grants, elapsed)

    with redis_server(args.redis_url) as url:
        first, second = Redis.from_url(url), Redis.from_url(url)
        try:
            key = f"bench-{uuid.uuid4().hex}"
            shared: list[RateLimiter] = [
                RedisTokenBucketLimiter(client, key, rate, capacity) for client in (first, second)
            ]
            await _drain(shared[0], capacity)
            grants, elapsed = await measure(shared, window, workers)
            report("Redis limiter, 2 clients, 1 key", rate, grants, elapsed)
        finally:
            await first.aclose()
            await second.aclose()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 s window instead of --window")
    parser.add_argument("--window", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--rate", type=float, default=100.0, help="tokens/s (default 100)")
    parser.add_argument("--capacity", type=float, default=10.0, help="burst (default 10)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent callers (default 8)")
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of embedded")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))

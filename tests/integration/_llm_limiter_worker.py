"""A separate process for tests/integration/test_llm_rate_limit_shared.py (run as a script).

``python _llm_limiter_worker.py URL KEY WINDOW PRODUCERS RPM``
    Builds ``LLMRateLimiter.shared`` on ``KEY``, connects, prints ``ready``, then reads the
    start time (``time.monotonic()`` seconds; CLOCK_MONOTONIC is shared by processes on
    one host) from stdin, waits for it, runs ``PRODUCERS`` concurrent acquire loops for
    ``WINDOW`` seconds and prints the grant times as a JSON list.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from redis.asyncio import Redis

from infra.llm import LLMRateLimiter


async def main(url: str, key: str, *, window: float, producers: int, rpm: float) -> None:
    client = Redis.from_url(url)
    limiter = LLMRateLimiter.shared(client, rpm=rpm, burst_seconds=0.25, key=key)
    await client.ping()
    print("ready", flush=True)
    start = float(await asyncio.to_thread(sys.stdin.readline))
    grants: list[float] = []

    async def produce() -> None:
        while time.monotonic() < start + window:
            await limiter.acquire()
            grants.append(time.monotonic())

    await asyncio.sleep(max(0.0, start - time.monotonic()))
    await asyncio.gather(*(produce() for _ in range(producers)))
    await client.aclose()
    print(json.dumps(grants), flush=True)


if __name__ == "__main__":
    url, key, window, producers, rpm = sys.argv[1:6]
    asyncio.run(main(url, key, window=float(window), producers=int(producers), rpm=float(rpm)))

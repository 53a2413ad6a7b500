"""PostgreSQL ``fetchval("SELECT 1")`` through the store, against a raw asyncpg pool.

Variants (every pool is the size the settings give the container's, and warm):

* **raw asyncpg pool** (baseline) -- ``asyncpg.create_pool`` with the settings' min/max
  sizes, ``pool.fetchval``;
* **container default** (headline) -- ``await app.postgres.store()`` under the
  container's tracing;
* **sampled out** / **sampled in** -- the same store with tracing at ratio 0 / 1;
* **passthrough** -- ``EnhancedPostgresStore.from_settings`` with
  ``ResiliencePolicy.passthrough`` (its own pool), tracing sampled out;
* **bare** -- ``PostgresStore.from_settings`` (passthrough, its own pool), no tracer.

The stores are reused by the TPC-B scenario (:mod:`benchmarks.tpcb`), so
:func:`open_stores` builds them once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from benchmarks.environment import Environment
from benchmarks.harness import Variant
from benchmarks.scenario import HEADLINE, Plan, ScenarioResult, measure
from infra.resilience import ResiliencePolicy
from infra.storage import EnhancedPostgresStore, PostgresStore

__all__ = ["BASELINE", "Stores", "open_stores", "run"]

BASELINE = "raw asyncpg pool"
QUERY = "SELECT 1"


@dataclass
class Stores:
    """The container's store, the breakdown stores and the raw pool, all initialized."""

    container: Any
    passthrough: EnhancedPostgresStore
    bare: PostgresStore
    raw: Any  # asyncpg.Pool

    async def close(self) -> None:
        """Close what the benchmark opened (the container closes its own store)."""
        await self.passthrough.close()
        await self.bare.close()
        await self.raw.close()


async def open_stores(env: Environment) -> Stores:
    """Build and warm every pool."""
    settings = env.settings
    container = await env.store()
    passthrough = EnhancedPostgresStore.from_settings(
        settings, policy=ResiliencePolicy.passthrough("postgres"), name="bench-passthrough"
    )
    bare = PostgresStore.from_settings(settings, name="bench-bare")
    db = settings.db
    raw = await asyncpg.create_pool(
        env.postgres_dsn, min_size=db.min_pool_size, max_size=db.max_pool_size
    )
    for store in (container, passthrough, bare):
        await store.initialize()
    return Stores(container, passthrough, bare, raw)


async def run(
    env: Environment, stores: Stores, plan: Plan, progress: Any = print
) -> ScenarioResult:
    """Measure every variant at every level of ``plan``."""
    modes = env.tracing
    store, raw = stores.container, stores.raw
    assert await store.fetchval(QUERY) == await raw.fetchval(QUERY) == 1
    variants = [
        Variant(BASELINE, lambda: raw.fetchval(QUERY), modes.use_container, "asyncpg pool"),
        Variant(
            HEADLINE, lambda: store.fetchval(QUERY), modes.use_container, "app.postgres.store()"
        ),
        Variant("sampled out", lambda: store.fetchval(QUERY), modes.use_sampled_out, "ratio 0"),
        Variant("sampled in", lambda: store.fetchval(QUERY), modes.use_sampled_in, "ratio 1"),
        Variant(
            "passthrough",
            lambda: stores.passthrough.fetchval(QUERY),
            modes.use_sampled_out,
            "no policy",
        ),
        Variant("bare", lambda: stores.bare.fetchval(QUERY), modes.use_off, "PostgresStore"),
    ]
    try:
        return await measure(
            "postgres_fetchval",
            "PostgreSQL fetchval",
            f"fetchval({QUERY!r}) on a warm pool.",
            variants,
            baseline=BASELINE,
            plan=plan,
            full_calls=1200,
            progress=progress,
        )
    finally:
        modes.use_container()

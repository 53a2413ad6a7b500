"""The cost of a call rejected by an OPEN breaker, through the container's store and cache.

The container's PostgreSQL and Redis policies (``app.postgres.policy()``,
``app.redis.policy()``, the singletons its adapters run under) are forced OPEN; every
call then raises ``CircuitBreakerOpenError`` without reaching a server. What such a call
costs is what a flood of requests costs during an outage, when fail-fast matters most.
Figures are microseconds per rejected call (wall and CPU), one caller, with the
container's logging and tracing as configured -- its log handler writes to ``os.devnull``
meanwhile (formatting and writing still happen; the terminal is spared). The breakers
are forced open again before every batch (with a fresh timeout), so none half-opens.

Variants: **bare breaker** (baseline: ``CircuitBreaker.call`` of a no-op on an open
breaker with no observers), **store (container)** (``store.fetchval``) and **cache
(container)** (``cache.get``). The breakers are reset afterwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.environment import Environment
from benchmarks.harness import Variant
from benchmarks.scenario import Plan, ScenarioResult, measure, resolved
from infra.exceptions import CircuitBreakerOpenError
from infra.resilience import CircuitBreaker, CircuitBreakerConfig

__all__ = ["BASELINE", "CACHE", "STORE", "run"]

BASELINE = "bare breaker"
STORE = "store (container)"
CACHE = "cache (container)"


async def run(env: Environment, plan: Plan, progress: Any = print) -> ScenarioResult:
    """Open the container's breakers, measure rejected calls, close them again."""
    store = await env.store()
    cache = await env.cache()
    policies = [
        await resolved(env.app.postgres.policy()),
        await resolved(env.app.redis.policy()),
    ]
    breakers = [p.breaker for p in policies if p.breaker is not None]
    if len(breakers) != len(policies):
        raise AssertionError("the container's policies have no breaker: nothing to measure")
    bare = CircuitBreaker(CircuitBreakerConfig(), name="bench-bare")
    modes = env.tracing

    async def noop() -> None:
        return None

    def open_all() -> None:
        # Before every batch: an open breaker half-opens after its timeout (60 s by
        # default), and a long run would then let a probe through and close it.
        for breaker in (bare, *breakers):
            breaker.force_open()
        modes.use_container()

    open_all()
    try:
        with env.logs_to_devnull():
            call: Callable[[], Awaitable[Any]]
            for call in (lambda: store.fetchval("SELECT 1"), lambda: cache.get("k")):
                try:
                    await call()
                except CircuitBreakerOpenError:
                    pass
                else:
                    raise AssertionError("an open breaker let a call through")
            variants = [
                Variant(BASELINE, lambda: bare.call(noop), open_all, "no observers"),
                Variant(STORE, lambda: store.fetchval("SELECT 1"), open_all),
                Variant(CACHE, lambda: cache.get("bench:k"), open_all),
            ]
            result = await measure(
                "rejected",
                "Rejected call while OPEN",
                "A call refused by an open breaker (CircuitBreakerOpenError), one caller.",
                variants,
                baseline=BASELINE,
                plan=plan,
                full_calls=2000,
                levels=(1,),
                progress=progress,
            )
        result.expect_errors = True
        for level in result.levels.values():
            for variant in level:
                if variant.errors != variant.calls:
                    raise AssertionError(f"{variant.name}: some calls were not rejected")
        return result
    finally:
        for breaker in breakers:
            breaker.reset()

"""Run an application's own tests without servers: every backend replaced by its fake.

::

    app = ApplicationContainer()
    with use_fakes(app) as fakes:
        await handler(...)                      # talks to FakeRelationalStore, FakeCache ...
        fakes.cache.fail_next(CacheConnectionError())   # script a failure
    # overrides are reset here; the container is back to its real providers

What ``use_fakes`` overrides (one call, reset on exit, nestable):

* backend adapters: ``postgres.store`` -> :class:`FakeRelationalStore`,
  ``redis.cache`` -> :class:`FakeCache`, ``redis.lock`` -> :class:`FakeDistributedLock`,
  ``redis.three_tier`` -> a :class:`ThreeTierCache` over the fake cache (single-process:
  no Redis pub/sub or leases), ``llm.adapter`` -> :class:`FakeLLM` (deterministic chat
  and embeddings; ``llm.embeddings`` caches it in the fake 3-tier cache), (the local embedding
  server is never started: only the real adapter would start it);
* every policy -> ``ResiliencePolicy.instant(...)``: the same breaker and retry decisions
  on a virtual clock, so a test of backoff or breaker recovery never sleeps (the fake
  relational store runs under the PostgreSQL one, so scripted failures are retried and
  counted by its breaker exactly as the real store's would be);
* the observability resources stay real: metrics are recorded in-process, and the health
  registry checks the fakes.

The fakes are the verified ones from :mod:`infra.testing.fakes`: each passes the same
contract suite as its real adapter, so a passing test here says something about
production.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from dependency_injector import providers

from containers.application import ApplicationContainer
from infra.cache import ThreeTierCache
from infra.resilience import ManualClock, ResiliencePolicy
from infra.testing.fakes import FakeCache, FakeDistributedLock, FakeLLM, FakeRelationalStore

__all__ = ["Fakes", "use_fakes"]


@dataclass(frozen=True, slots=True)
class Fakes:
    """The fakes ``use_fakes`` installed, for scripting failures and inspecting calls."""

    relational: FakeRelationalStore
    cache: FakeCache
    lock: FakeDistributedLock
    three_tier: ThreeTierCache
    llm: FakeLLM
    clock: ManualClock


@contextmanager
def use_fakes(app: ApplicationContainer) -> Iterator[Fakes]:
    """Override every backend of ``app`` with a fake and every policy with an instant one."""
    clock = ManualClock()
    cache = FakeCache(clock=clock)
    postgres_policy = ResiliencePolicy.instant("postgres")
    llm_policy = ResiliencePolicy.instant("llm")
    fakes = Fakes(
        relational=FakeRelationalStore(policy=postgres_policy),
        cache=cache,
        lock=FakeDistributedLock(clock=clock),
        three_tier=ThreeTierCache(cache, clock=clock),
        llm=FakeLLM(policy=llm_policy),
        clock=clock,
    )
    with ExitStack() as stack:
        for provider, value in (
            (app.postgres.store, fakes.relational),
            (app.redis.cache, fakes.cache),
            (app.redis.lock, fakes.lock),
            (app.redis.three_tier, fakes.three_tier),
            (app.postgres.policy, postgres_policy),
            (app.redis.policy, ResiliencePolicy.instant("redis")),
            (app.redis.lock_policy, ResiliencePolicy.instant("redis_lock")),
            (app.llm.adapter, fakes.llm),
            (app.llm.policy, llm_policy),
            (app.llm.embedding_policy, ResiliencePolicy.instant("llm_embeddings")),
        ):
            stack.enter_context(provider.override(providers.Object(value)))
        yield fakes

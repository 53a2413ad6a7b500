"""The core container, and the pattern every backend container follows.

``CoreContainer`` provides what every other container needs: the typed
:class:`config.Settings`. It connects to nothing.

The pattern for a backend container (PostgreSQL, Redis, Qdrant, graph, LLM)::

    async def redis_client(settings: Settings) -> AsyncIterator[RedisClient]:
        from infra.cache import build_redis_client, close_redis_client  # on first start
        client = build_redis_client(settings)
        try:
            yield client                       # the container hands this out
        finally:
            await close_redis_client(client)   # runs on shutdown

    class RedisContainer(containers.DeclarativeContainer):
        settings = providers.Dependency(instance_of=Settings)      # declared input
        policy = providers.Singleton(resilience_policy, settings,
                                     component="redis")             # own, overridable
        client = providers.Resource(redis_client, settings)         # lazy, closed on exit
        cache = providers.Singleton(_redis_cache, client=client, policy=policy)

Rules, with their reasons:

* **Nothing connects at import or construction.** A client is a ``providers.Resource``
  built from an async generator: it is created by ``await lifecycle.start(app)`` (or
  lazily on first use) and closed by ``await lifecycle.stop(app)``.
* **Nothing heavy is imported at import time either.** Provider callables are small
  functions of the container module that import their adapter -- and so its driver
  (asyncpg, redis-py, the OpenTelemetry SDK, prometheus-client, aiobreaker, tenacity) --
  when they first run, i.e. when a resource first starts. The adapter types appear in
  annotations only, imported under ``TYPE_CHECKING``. ``from containers.application
  import ApplicationContainer`` therefore costs little more than dependency-injector and
  pydantic-settings themselves (``benchmarks/bench_startup.py`` measures it).
* **Adapters are resources or singletons, never factories**: one instance per started
  container, handed out synchronously once started (see :mod:`containers.lifecycle`), so
  ``@inject`` costs a provider call, not a rebuild.
* **Inputs are declared** with ``providers.Dependency(instance_of=...)``; the application
  container composes backend containers and ``check_dependencies()`` proves the wiring.
* **Policies are providers of their own** (:func:`resilience_policy`), so a deployment or
  a test swaps one with ``container.policy.override(...)`` -- before the adapter is first
  built -- without touching the adapter.
* **Tests replace backends, not code paths**: ``containers.testing`` overrides clients and
  adapters with the verified fakes from ``infra.testing``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from config import Settings
from infra.exceptions import InfraTimeoutError, OperationTimeoutError

if TYPE_CHECKING:
    from infra.resilience import Clock, ResilienceObserver, ResiliencePolicy

__all__ = ["CoreContainer", "resilience_policy"]


def resilience_policy(
    settings: Settings,
    *,
    component: str,
    timeout_error: type[InfraTimeoutError] = OperationTimeoutError,
    hooks: Sequence[ResilienceObserver] = (),
    clock: Clock | None = None,
    pool_size: int | None = None,
) -> ResiliencePolicy:
    """``ResiliencePolicy.from_settings`` for one backend ``component``, imported (with
    aiobreaker and tenacity) when the first policy is built. ``clock`` (default: real
    time) is what ``containers.testing.use_fakes`` replaces with a virtual one.

    ``pool_size``: the connections of the pool this policy's calls hold. While
    ``SEMANTICA_BULKHEAD_MAX_CONCURRENT`` is unset, the bulkhead admits that many calls
    (each backend's bulkhead fits its own pool); set, the variable applies to every
    backend (``Settings`` has checked it fits every pool). Without ``pool_size`` the
    bulkhead takes ``settings.resilience.bulkhead_max_concurrent`` (unset: the smaller
    pool).
    """
    from infra.resilience import ResiliencePolicy  # noqa: PLC0415 - loaded on first start

    resilience = settings.resilience
    if pool_size is not None and "bulkhead_max_concurrent" not in resilience.model_fields_set:
        resilience = resilience.model_copy(update={"bulkhead_max_concurrent": pool_size})
    return ResiliencePolicy.from_settings(
        resilience, component=component, timeout_error=timeout_error, hooks=hooks, clock=clock
    )


class CoreContainer(containers.DeclarativeContainer):
    """Settings for the whole application; override ``settings`` to inject your own.

    Example::

        core = CoreContainer()
        core.settings.override(providers.Object(Settings(database_url="postgresql://...")))
    """

    settings: providers.Singleton[Settings] = providers.Singleton(Settings)

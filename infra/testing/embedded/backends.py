"""All backends at once, embedded or external: what the example and the benchmarks use.

:class:`EmbeddedBackends` starts the backends a program needs and hands back their
:class:`BackendEndpoints`. For each backend an environment variable can name an external
server instead, and then nothing is started for it:

============================  ==========================================  ==============
variable                      value                                       replaces
============================  ==========================================  ==============
``SEMANTICA_TEST_POSTGRES_DSN``  ``postgresql://user:pw@host:5432/db``    EmbeddedPostgres
``SEMANTICA_TEST_REDIS_URL``     ``redis://host:6379/0``                  EmbeddedRedis
``SEMANTICA_TEST_GRAPH_URI``      ``bolt://host:7687``                     FalkorDB Bolt
``SEMANTICA_TEST_QDRANT_URL``    ``http://host:6333`` (or ``:memory:``)   local mode
============================  ==========================================  ==============

Redis and the Bolt graph share one embedded process; it is started when either of them is
wanted and not provided externally. PostgreSQL and Redis start concurrently in
:meth:`EmbeddedBackends.astart`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from infra.exceptions import ConfigurationError
from infra.redaction import redact_text
from infra.testing.embedded._process import EmbeddedServer
from infra.testing.embedded.postgres import EmbeddedPostgres
from infra.testing.embedded.qdrant import MEMORY
from infra.testing.embedded.redis import EmbeddedRedis

__all__ = [
    "ENV_VARS",
    "BackendEndpoints",
    "EmbeddedBackends",
    "external_endpoint",
    "start_embedded_backends",
]

#: Backend name -> the environment variable that points it at an external server.
ENV_VARS: Final[Mapping[str, str]] = {
    "postgres": "SEMANTICA_TEST_POSTGRES_DSN",
    "redis": "SEMANTICA_TEST_REDIS_URL",
    "graph": "SEMANTICA_TEST_GRAPH_URI",
    "qdrant": "SEMANTICA_TEST_QDRANT_URL",
}
_SCHEMES: Final[Mapping[str, tuple[str, ...]]] = {
    "postgres": ("postgres://", "postgresql://"),
    "redis": ("redis://", "rediss://", "unix://"),
    "graph": ("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://"),
    "qdrant": ("http://", "https://"),
}


def external_endpoint(backend: str, env: Mapping[str, str] | None = None) -> str | None:
    """The external endpoint configured for ``backend``, or None to use the embedded one.

    Raises:
        ValueError: ``backend`` is not one of :data:`ENV_VARS`.
        ConfigurationError: the variable is set but its scheme does not fit the backend.
    """
    if backend not in ENV_VARS:
        raise ValueError(f"backend must be one of {sorted(ENV_VARS)}, got {backend!r}")
    name = ENV_VARS[backend]
    value = (os.environ if env is None else env).get(name, "").strip()
    if not value:
        return None
    if backend == "qdrant" and value == MEMORY:
        return value
    if not value.startswith(_SCHEMES[backend]):
        raise ConfigurationError(
            f"{name}={redact_text(value)!r} does not start with one of "
            f"{', '.join(_SCHEMES[backend])}; fix it or unset it to use the embedded server",
            component=backend,
        )
    return value


@dataclass(frozen=True, slots=True)
class BackendEndpoints:
    """Where each backend is reachable; None for a backend that was not requested."""

    postgres_dsn: str | None = None
    redis_url: str | None = None
    bolt_uri: str | None = None
    qdrant_location: str | None = None

    def __repr__(self) -> str:
        fields = ("postgres_dsn", "redis_url", "bolt_uri", "qdrant_location")
        shown = ", ".join(
            f"{name}={redact_text(v) if (v := getattr(self, name)) else v!r}" for name in fields
        )
        return f"BackendEndpoints({shown})"


class EmbeddedBackends:
    """Starts the requested backends (embedded unless an env var names a server).

    Use it as a context manager -- sync or async -- that yields :class:`BackendEndpoints`,
    or call :meth:`start`/:meth:`astart` and :meth:`stop` yourself.

    Args:
        postgres, redis, graph, qdrant: Which backends are wanted.
        use_env: Honour the ``SEMANTICA_TEST_*`` variables (:data:`ENV_VARS`).
        env: The environment to read (default: ``os.environ``).
    """

    def __init__(
        self,
        *,
        postgres: bool = True,
        redis: bool = True,
        graph: bool = True,
        qdrant: bool = True,
        use_env: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> None:
        def external(name: str) -> str | None:
            return external_endpoint(name, env) if use_env else None

        self._wanted = {"postgres": postgres, "redis": redis, "graph": graph, "qdrant": qdrant}
        self._external = {name: external(name) for name, on in self._wanted.items() if on}
        self.postgres = EmbeddedPostgres() if postgres and not self._external["postgres"] else None
        embedded_graph = graph and not self._external["graph"]
        need_redis = (redis and not self._external["redis"]) or embedded_graph
        self.redis = EmbeddedRedis(graph=embedded_graph) if need_redis else None
        self._endpoints: BackendEndpoints | None = None

    @property
    def servers(self) -> list[EmbeddedServer]:
        """The embedded servers this instance starts (external ones are not listed)."""
        return [s for s in (self.postgres, self.redis) if s is not None]

    @property
    def endpoints(self) -> BackendEndpoints:
        """The endpoints, once started."""
        if self._endpoints is None:
            raise RuntimeError("EmbeddedBackends is not started; call start() or astart()")
        return self._endpoints

    def start(self) -> BackendEndpoints:
        """Start the embedded servers one after the other; return the endpoints."""
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.stop()
            raise
        return self._collect()

    async def astart(self) -> BackendEndpoints:
        """Start the embedded servers concurrently (in threads); return the endpoints."""
        results = await asyncio.gather(
            *(asyncio.to_thread(s.start) for s in self.servers), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await asyncio.to_thread(self.stop)
            raise failures[0]
        return self._collect()

    def stop(self) -> None:
        """Stop every embedded server started here (idempotent)."""
        self._endpoints = None
        errors: list[BaseException] = []
        for server in reversed(self.servers):
            try:
                server.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others, then report
                errors.append(exc)
        if errors:
            raise errors[0]

    async def astop(self) -> None:
        """:meth:`stop` without blocking the event loop."""
        await asyncio.to_thread(self.stop)

    def _collect(self) -> BackendEndpoints:
        ext, wanted, pg, rd = self._external, self._wanted, self.postgres, self.redis
        self._endpoints = BackendEndpoints(
            postgres_dsn=ext.get("postgres") or (pg.dsn if pg else None),
            redis_url=ext.get("redis") or (rd.url if rd and wanted["redis"] else None),
            bolt_uri=ext.get("graph") or (rd.bolt_uri if rd and wanted["graph"] else None),
            qdrant_location=ext.get("qdrant") or (MEMORY if wanted["qdrant"] else None),
        )
        return self._endpoints

    def __enter__(self) -> BackendEndpoints:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> BackendEndpoints:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    def __repr__(self) -> str:
        return f"EmbeddedBackends(servers={self.servers!r}, endpoints={self._endpoints!r})"


def start_embedded_backends(
    *,
    postgres: bool = True,
    redis: bool = True,
    graph: bool = True,
    qdrant: bool = True,
    use_env: bool = True,
) -> EmbeddedBackends:
    """The backends as an (async) context manager yielding :class:`BackendEndpoints`::

    async with start_embedded_backends() as endpoints:
        pool = await asyncpg.create_pool(endpoints.postgres_dsn)
    """
    return EmbeddedBackends(
        postgres=postgres, redis=redis, graph=graph, qdrant=qdrant, use_env=use_env
    )

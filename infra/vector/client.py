"""Build the ``AsyncQdrantClient`` that :class:`~infra.vector.qdrant.QdrantVectorStore` uses.

One way to reach Qdrant applies, in this order: ``location`` (local mode: ``":memory:"``
or a directory -- the engine runs in this process), else ``url``, else ``host``/``port``.
Decisions:

* **No retries inside the client**: our policy is the only one that retries (its count
  is the real count; see ``docs/resilience.md``). qdrant-client's REST calls do not
  retry; over gRPC the channel option ``grpc.enable_retries`` is turned off.
* **No version check at construction** (``check_compatibility=False``): it is a
  blocking request from a background thread that warns when the server is away, and a
  client is built before anything may connect.
* The API key is a secret (``SecretStr``): read only here, never logged.
* ``timeout`` is qdrant-client's per-request limit in whole seconds (it takes an int);
  the policy's attempt timeout may be shorter.

qdrant-client is imported when a client is first built, not with this module -- by the
store, in a worker thread (:func:`load_qdrant_client`): the import takes most of a
second, and on the event loop's thread it stalled every other task of the process
(readiness checks timed out behind a first vector call).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from infra._imports import require, require_off_loop

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient

    from config import Settings

__all__ = ["MEMORY", "build_qdrant_client", "load_qdrant_client", "qdrant_client_from_settings"]

MEMORY = ":memory:"


async def load_qdrant_client() -> None:
    """Import qdrant-client in a worker thread unless it is imported already (the event
    loop keeps serving meanwhile)."""
    await require_off_loop("qdrant_client", extra="vector")


def build_qdrant_client(
    *,
    location: str | None = None,
    url: str | None = None,
    host: str = "localhost",
    port: int = 6333,
    grpc_port: int = 6334,
    prefer_grpc: bool = False,
    api_key: str | None = None,
    timeout: float = 10.0,
) -> AsyncQdrantClient:
    """An ``AsyncQdrantClient`` for local mode, a URL or a host (see the module docstring)."""
    require("qdrant_client", extra="vector")
    from qdrant_client import AsyncQdrantClient  # noqa: PLC0415 - heavy import, on first use

    if location is not None:
        if location == MEMORY:
            return AsyncQdrantClient(location=MEMORY)
        return AsyncQdrantClient(path=location)
    options: dict[str, Any] = {
        "api_key": api_key,
        "timeout": max(1, math.ceil(timeout)),
        "prefer_grpc": prefer_grpc,
        "grpc_port": grpc_port,
        "check_compatibility": False,
    }
    if prefer_grpc:
        options["grpc_options"] = {"grpc.enable_retries": 0}
    if url is not None:
        return AsyncQdrantClient(url=url, **options)
    return AsyncQdrantClient(host=host, port=port, **options)


def qdrant_client_from_settings(settings: Settings) -> AsyncQdrantClient:
    """The client ``settings.vector`` describes."""
    vector = settings.vector
    return build_qdrant_client(
        location=vector.location,
        url=vector.url,
        host=vector.host,
        port=vector.port,
        grpc_port=vector.grpc_port,
        prefer_grpc=vector.prefer_grpc,
        api_key=None if vector.api_key is None else vector.api_key.get_secret_value(),
        timeout=vector.timeout,
    )

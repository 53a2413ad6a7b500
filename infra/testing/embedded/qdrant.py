"""Qdrant without a server: qdrant-client's local mode, described by a *location* string.

qdrant-client can run the whole engine in-process (``location=":memory:"``) or persist
it to a directory (``path=...``); no binary is needed. Tests and the example pass Qdrant
around as one string so an external server is a drop-in:

* ``":memory:"`` -- in-process, private to each client instance (nothing shared);
* a filesystem path -- in-process, persisted; one client at a time may open it;
* ``http(s)://host:port`` -- a real Qdrant server (e.g. ``SEMANTICA_TEST_QDRANT_URL``).

:func:`open_qdrant_client` turns such a string into an ``AsyncQdrantClient``.
:class:`QdrantLocal` gives the lifecycle the other embedded backends have; with
``on_disk=True`` it owns a scratch directory that is deleted on stop.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra._imports import require
from infra.testing.embedded._process import EmbeddedServer

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient

__all__ = ["MEMORY", "QdrantLocal", "open_qdrant_client"]

MEMORY = ":memory:"


class QdrantLocal(EmbeddedServer):
    """Qdrant local mode with the embedded-server lifecycle.

    Args:
        on_disk: Persist to a temporary directory (deleted on stop) instead of memory.
    """

    component = "qdrant"

    def __init__(self, *, on_disk: bool = False) -> None:
        super().__init__()
        self.on_disk = on_disk
        self._location = ""

    @property
    def location(self) -> str:
        """``":memory:"``, or the storage directory when ``on_disk``."""
        self._require_running()
        return self._location

    def _uses_scratch(self) -> bool:
        return self.on_disk

    def _start(self, scratch: Path | None) -> None:
        if scratch is None:
            self._location = MEMORY
            return
        storage = scratch / "storage"
        storage.mkdir()
        self._location = str(storage)

    def _stop(self) -> None:
        self._location = ""

    def __repr__(self) -> str:
        if not self.running:
            return "<QdrantLocal stopped>"
        return f"<QdrantLocal running location={self._location!r}>"


def open_qdrant_client(location: str, **kwargs: Any) -> AsyncQdrantClient:
    """An ``AsyncQdrantClient`` for a location string (see the module docstring).

    Extra keyword arguments go to the client (``api_key=``, ``timeout=`` ...). The caller
    closes it with ``await client.close()``.
    """
    if not isinstance(location, str) or not location:
        raise ValueError(
            f"location must be ':memory:', a directory path or an http(s):// URL, got {location!r}"
        )
    require("qdrant_client", extra="vector")
    from qdrant_client import AsyncQdrantClient  # noqa: PLC0415 - heavy import, on demand

    if location == MEMORY:
        return AsyncQdrantClient(location=MEMORY, **kwargs)
    if location.startswith(("http://", "https://")):
        return AsyncQdrantClient(url=location, **kwargs)
    return AsyncQdrantClient(path=location, **kwargs)

"""Vector stores: one behaviour on Qdrant (server or local mode), pgvector and a fake.

* :class:`~infra.vector.qdrant.QdrantVectorStore` -- qdrant-client, REST or gRPC, or the
  in-process local mode;
* :class:`~infra.vector.pgvector.PgVectorStore` -- a table per collection in PostgreSQL
  with pgvector, over the relational store (its pool, policy and telemetry);
* :class:`infra.testing.fakes.vector.FakeVectorStore` -- exact brute force in memory.

All three implement :class:`~infra.ports.VectorStore` and more (``count``, ``scroll``,
``delete_by_filter``, ``collection_info``), through :class:`~infra.vector.base.VectorStoreBase`.
Importing this package imports neither qdrant-client nor asyncpg: the two stores are
loaded when first named (``from infra.vector import QdrantVectorStore``), and their
clients when first used. See ``docs/vector.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infra.vector.base import CollectionSpec, ScrollPage, VectorStoreBase
from infra.vector.batching import UpsertProgress
from infra.vector.errors import (
    CollectionConfigMismatchError,
    EmbeddingModelMismatchError,
    VectorUpsertError,
)
from infra.vector.points import point_id

if TYPE_CHECKING:
    from infra.vector.pgvector import PgVectorStore
    from infra.vector.qdrant import QdrantVectorStore

__all__ = [
    "CollectionConfigMismatchError",
    "CollectionSpec",
    "EmbeddingModelMismatchError",
    "PgVectorStore",
    "QdrantVectorStore",
    "ScrollPage",
    "UpsertProgress",
    "VectorStoreBase",
    "VectorUpsertError",
    "point_id",
]


def __getattr__(name: str) -> Any:
    if name == "QdrantVectorStore":
        from infra.vector.qdrant import QdrantVectorStore  # noqa: PLC0415

        return QdrantVectorStore
    if name == "PgVectorStore":
        from infra.vector.pgvector import PgVectorStore  # noqa: PLC0415

        return PgVectorStore
    raise AttributeError(f"module 'infra.vector' has no attribute {name!r}")

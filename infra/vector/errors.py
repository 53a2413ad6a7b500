"""Errors of the vector stores beyond the shared ones in :mod:`infra.exceptions`.

* :class:`VectorUpsertError` -- an upsert of many points stopped part-way: which batches
  (input index ranges, and their ids) were written and which were not. Nothing is
  silently dropped: every point of the input is in exactly one of the two lists.
* :class:`CollectionConfigMismatchError` -- ``ensure_collection`` found an existing
  collection of another vector size, distance or embedding model. Reusing it would
  store vectors that can never be compared with the ones already there.
* :class:`EmbeddingModelMismatchError` -- a search (or upsert) names an embedding model
  other than the one the collection was built with: same dimension or not, such vectors
  live in another space and the scores would be meaningless.

All are caller-side facts (the engine answered) except ``VectorUpsertError``, whose
``__cause__`` is the batch's last real error and whose ``retryable`` follows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.exceptions import CallerError, InfraError, VectorStoreError

__all__ = [
    "CollectionConfigMismatchError",
    "EmbeddingModelMismatchError",
    "VectorUpsertError",
]

IdRange = tuple[int, int]
"""A half-open range ``[start, stop)`` of positions in the caller's ``points``."""


class CollectionConfigMismatchError(CallerError, VectorStoreError):
    """The collection exists with another vector size, distance or model."""

    default_message = "collection exists with another configuration"
    hint = "use another collection name, or recreate the collection"


class EmbeddingModelMismatchError(CallerError, VectorStoreError):
    """Vectors from another embedding model than the collection's."""

    default_message = "embedding model mismatch"
    hint = "embed the query with the collection's model"


class VectorUpsertError(VectorStoreError):
    """Some batches of an upsert were written, others were not.

    Attributes:
        written: How many points were written.
        failed: How many were not (the failed batches and those never sent).
        written_ranges / failed_ranges: ``[start, stop)`` positions in the input.
        failed_ids: The ids of the points not written, in input order.
    """

    default_message = "upsert stopped part-way"

    def __init__(
        self,
        message: str | None = None,
        *,
        written_ranges: Sequence[IdRange],
        failed_ranges: Sequence[IdRange],
        failed_ids: Sequence[str | int],
        cause: InfraError,
        component: str | None = None,
    ) -> None:
        self.written_ranges: list[IdRange] = [(start, stop) for start, stop in written_ranges]
        self.failed_ranges: list[IdRange] = [(start, stop) for start, stop in failed_ranges]
        self.failed_ids = list(failed_ids)
        self.written = sum(stop - start for start, stop in self.written_ranges)
        self.failed = sum(stop - start for start, stop in self.failed_ranges)
        details: dict[str, Any] = {
            "written": self.written,
            "failed": self.failed,
            "failed_ranges": [list(r) for r in self.failed_ranges[:20]],
            "first_failed_id": self.failed_ids[0] if self.failed_ids else None,
            "cause": type(cause).__name__,
        }
        super().__init__(
            message
            or (
                f"upsert wrote {self.written} points and did not write {self.failed} "
                f"(input positions {_ranges_text(self.failed_ranges)}) after "
                f"{type(cause).__name__}: {cause.message}; upserting the failed points "
                "again is safe (point ids are idempotent)"
            ),
            component=component,
            details=details,
            retryable=cause.retryable,
        )


def _ranges_text(ranges: Sequence[IdRange]) -> str:
    shown = ", ".join(f"{start}..{stop - 1}" for start, stop in ranges[:5])
    return shown + (f" and {len(ranges) - 5} more ranges" if len(ranges) > 5 else "")

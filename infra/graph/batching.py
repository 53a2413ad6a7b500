"""Batched upserts with progress, shared by the store and the fake.

A large import is cut into batches of ``batch_size`` items; each batch is one
``UNWIND`` statement (atomic on every engine), sent one after the other. After each batch
the optional ``on_progress`` callback receives an :class:`~infra.graph.results.
UpsertProgress`. The whole call is not atomic: when batch *k* fails, batches before it
are written -- and since every upsert is a ``MERGE``, running the import again is safe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from infra.graph.results import UpsertProgress

__all__ = ["ProgressCallback", "run_batches"]

T = TypeVar("T")
ProgressCallback = Callable[[UpsertProgress], object]


async def run_batches(
    items: Sequence[T],
    batch_size: int,
    send: Callable[[Sequence[T]], Awaitable[int]],
    on_progress: ProgressCallback | None = None,
) -> int:
    """Send ``items`` in batches through ``send`` (returns what it wrote); the total."""
    written = 0
    total = len(items)
    for batches, start in enumerate(range(0, total, batch_size), start=1):
        batch = items[start : start + batch_size]
        written += await send(batch)
        if on_progress is not None:
            on_progress(UpsertProgress(start + len(batch), total, written, batches))
    return written

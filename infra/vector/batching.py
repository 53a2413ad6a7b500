"""Batched, bounded-concurrency upsert with progress and an exact account of failure.

Every vector store writes through :func:`run_batches`, so they batch, report progress and
fail the same way:

* **Batches** (:func:`plan_batches`) are contiguous slices of the input, at most
  ``max_points`` points and -- past the first point -- at most ``max_bytes`` of
  estimated request body each (Qdrant's guidance is to keep a request under a few MB; a
  large request is parsed and validated in one go on the server and by the client).
* **Concurrency** is ``concurrency`` workers pulling the next batch, each awaiting one
  write at a time: at most ``concurrency`` requests in flight, and no task per batch
  (1M points are 4,000 batches). A batch is retried by the store's resilience policy
  inside ``write`` (point ids make a repeated batch harmless).
* **Failure**: the first batch that still fails after the policy's retries stops the
  scheduling of new batches; batches already in flight finish. If nothing was written
  the batch's error is raised as is; otherwise a
  :class:`~infra.vector.errors.VectorUpsertError` lists the written and not-written
  input ranges and the ids not written -- every input point is in exactly one of them.
* **Progress**: ``on_progress(UpsertProgress)`` after every batch, and an INFO log line
  every ``log_every`` batches. A callback that raises stops the upsert like a failed
  batch, and its error is raised (the caller's own code: its bug is the caller's to see).

Written by hand because no library offers "bounded concurrency with a per-item outcome
ledger": ``asyncio.TaskGroup`` cancels the siblings on the first error (and the ledger of
a cancelled write would be unknown), ``asyncio.Semaphore`` alone needs a task per batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from infra.exceptions import InfraError
from infra.vector.errors import VectorUpsertError

__all__ = ["ProgressCallback", "UpsertProgress", "plan_batches", "run_batches"]

_log = logging.getLogger("infra.vector")


@dataclass(frozen=True, slots=True)
class UpsertProgress:
    """Where an upsert stands after a batch."""

    written: int
    total: int
    batches_done: int
    batches_total: int


ProgressCallback = Callable[[UpsertProgress], object]


def plan_batches(sizes: Sequence[int], *, max_points: int, max_bytes: int) -> list[range]:
    """Contiguous batches of ``sizes`` (estimated bytes per point) within both limits."""
    batches: list[range] = []
    start = 0
    used = 0
    for index, size in enumerate(sizes):
        count = index - start
        if count and (count >= max_points or used + size > max_bytes):
            batches.append(range(start, index))
            start, used = index, 0
        used += size
    if start < len(sizes):
        batches.append(range(start, len(sizes)))
    return batches


@dataclass(slots=True)
class _Ledger:
    written: list[range] = field(default_factory=list)
    error: InfraError | None = None
    callback_error: Exception | None = None
    done: int = 0
    points: int = 0


def _merged(ranges: list[range]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for batch in sorted(ranges, key=lambda r: r.start):
        if merged and merged[-1][1] == batch.start:
            merged[-1] = (merged[-1][0], batch.stop)
        else:
            merged.append((batch.start, batch.stop))
    return merged


def _gaps(written: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    gaps: list[tuple[int, int]] = []
    position = 0
    for start, stop in written:
        if start > position:
            gaps.append((position, start))
        position = stop
    if position < total:
        gaps.append((position, total))
    return gaps


async def run_batches(
    batches: Sequence[range],
    write: Callable[[range], Awaitable[None]],
    *,
    ids: Sequence[str | int],
    concurrency: int,
    on_progress: ProgressCallback | None = None,
    log_every: int = 100,
    component: str | None = None,
) -> int:
    """Write every batch with at most ``concurrency`` in flight; see the module docstring.

    Returns:
        How many points were written (all of them).
    """
    total = len(ids)
    ledger = _Ledger()
    pending: Iterator[range] = iter(batches)

    async def worker() -> None:
        for batch in pending:
            if ledger.error is not None or ledger.callback_error is not None:
                return
            try:
                await write(batch)
            except InfraError as exc:
                if ledger.error is None:
                    ledger.error = exc
                return
            ledger.written.append(batch)
            ledger.done += 1
            ledger.points += len(batch)
            _report(
                ledger,
                total=total,
                batches_total=len(batches),
                on_progress=on_progress,
                log_every=log_every,
                component=component,
            )

    workers = min(concurrency, len(batches))
    if workers <= 1:
        await worker()
    else:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())
    if ledger.callback_error is not None:
        raise ledger.callback_error
    if ledger.error is None:
        return total
    if not ledger.written:
        raise ledger.error
    written = _merged(ledger.written)
    failed = _gaps(written, total)
    raise VectorUpsertError(
        written_ranges=written,
        failed_ranges=failed,
        failed_ids=[ids[index] for start, stop in failed for index in range(start, stop)],
        cause=ledger.error,
        component=component,
    ) from ledger.error


def _report(
    ledger: _Ledger,
    *,
    total: int,
    batches_total: int,
    on_progress: ProgressCallback | None,
    log_every: int,
    component: str | None,
) -> None:
    progress = UpsertProgress(ledger.points, total, ledger.done, batches_total)
    if (
        log_every
        and batches_total >= log_every
        and (ledger.done % log_every == 0 or ledger.done == batches_total)
    ):
        _log.info(
            "upsert progress: %d of %d points in %d of %d batches",
            progress.written,
            total,
            progress.batches_done,
            batches_total,
            extra={"component": component},
        )
    if on_progress is not None:
        try:
            on_progress(progress)
        except Exception as exc:  # noqa: BLE001 -- stops the upsert; raised after in-flight writes end
            ledger.callback_error = exc

"""Timing and statistics: interleaved rounds of batches, per-round ratios, medians.

The measuring rules every scenario follows (and why):

* **A batch** is ``calls`` awaits of one variant spread over ``tasks`` coroutines that
  share the event loop, timed as a whole: wall time (``time.perf_counter``) and this
  process's CPU time (``time.process_time``, every thread of the process, so a span
  exporter thread counts), each divided by the number of calls. CPU time is what our
  layers add on the client; wall time also carries the server and whatever else the
  machine runs.
* **Rounds, interleaved.** One round times one batch of every variant, in an order
  rotated by one position each round, so no variant always runs first (warm) or last.
  A shared machine drifts over minutes; what stays comparable is variants measured
  within the same round.
* **Ratios per round, then the median.** Each variant's batch is divided by the
  baseline's batch of the same round; the report gives the median over rounds and the
  range (min..max) of those ratios, never a ratio of medians.
* **Errors are counted, not hidden.** A call that raises is counted and the batch goes
  on; a variant with errors is reported with them, and a goal is never "met" by it.

Nothing here knows about Redis or PostgreSQL; ``tests/unit/test_benchmarks_harness.py``
checks the statistics on synthetic samples.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Batch",
    "Call",
    "Spread",
    "Variant",
    "VariantResult",
    "rotated",
    "run_batch",
    "run_rounds",
    "spread",
    "summarize",
]

Call = Callable[[], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Batch:
    """One timed batch: seconds per call (wall and CPU) and how many calls raised."""

    wall: float
    cpu: float
    calls: int
    errors: int = 0


@dataclass(frozen=True, slots=True)
class Variant:
    """One way of making the same call.

    Attributes:
        name: Row label in the report.
        call: Makes one call (a fresh coroutine each time).
        setup: Runs before each of the variant's batches, untimed (switches the
            process-wide tracing mode, for instance).
        note: What the variant is, for the report.
    """

    name: str
    call: Call
    setup: Callable[[], None] | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Spread:
    """Median and range of a list of numbers."""

    median: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        """JSON-ready."""
        return {"median": self.median, "min": self.low, "max": self.high}


def spread(values: Sequence[float]) -> Spread:
    """Median, min and max of ``values`` (at least one)."""
    if not values:
        raise ValueError("spread() needs at least one value")
    return Spread(statistics.median(values), min(values), max(values))


@dataclass(frozen=True, slots=True)
class VariantResult:
    """A variant's figures at one concurrency, over all rounds."""

    name: str
    note: str
    wall_us: Spread  #: wall microseconds per call
    cpu_us: Spread  #: CPU microseconds per call (this process)
    wall_ratio: Spread  #: per-round wall time / the baseline's, same round
    cpu_ratio: Spread  #: per-round CPU time / the baseline's, same round
    errors: int  #: calls that raised, all rounds together
    calls: int  #: calls made, all rounds together
    batches: list[Batch] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the raw batches included, so anyone can recompute)."""
        return {
            "name": self.name,
            "note": self.note,
            "wall_us": self.wall_us.as_dict(),
            "cpu_us": self.cpu_us.as_dict(),
            "wall_ratio": self.wall_ratio.as_dict(),
            "cpu_ratio": self.cpu_ratio.as_dict(),
            "errors": self.errors,
            "calls": self.calls,
            "rounds": [
                {"wall_us": b.wall * 1e6, "cpu_us": b.cpu * 1e6, "errors": b.errors}
                for b in self.batches
            ],
        }


def summarize(
    batches: Mapping[str, Sequence[Batch]],
    baseline: str,
    notes: Mapping[str, str] | None = None,
) -> list[VariantResult]:
    """Per-variant figures; ratios are taken round by round against ``baseline``.

    Raises:
        ValueError: ``baseline`` is missing, or the variants ran unequal rounds.
    """
    if baseline not in batches:
        raise ValueError(f"baseline {baseline!r} is not among the variants {list(batches)}")
    base = batches[baseline]
    results = []
    for name, own in batches.items():
        if len(own) != len(base):
            raise ValueError(f"{name!r} ran {len(own)} rounds, the baseline {len(base)}")
        results.append(
            VariantResult(
                name=name,
                note=(notes or {}).get(name, ""),
                wall_us=spread([b.wall * 1e6 for b in own]),
                cpu_us=spread([b.cpu * 1e6 for b in own]),
                wall_ratio=spread([b.wall / r.wall for b, r in zip(own, base, strict=True)]),
                cpu_ratio=spread([b.cpu / r.cpu for b, r in zip(own, base, strict=True)]),
                errors=sum(b.errors for b in own),
                calls=sum(b.calls for b in own),
                batches=list(own),
            )
        )
    return results


def rotated(names: Sequence[str], round_index: int) -> list[str]:
    """``names`` rotated left by ``round_index`` positions (round 0: as given)."""
    if not names:
        return []
    k = round_index % len(names)
    return [*names[k:], *names[:k]]


async def run_batch(call: Call, calls: int, tasks: int, *, collect: bool = True) -> Batch:
    """Time ``calls`` calls made by ``tasks`` concurrent coroutines (each makes an equal
    share, so the count is rounded down to a multiple of ``tasks``, at least one each).
    ``collect``: run the garbage collector first, untimed."""
    if calls < 1 or tasks < 1:
        raise ValueError(f"calls and tasks must be >= 1, got {calls} and {tasks}")
    per_task = max(1, calls // tasks)
    errors = 0

    async def worker() -> None:
        nonlocal errors
        for _ in range(per_task):
            try:
                await call()
            except Exception:  # counted and reported; the batch goes on
                errors += 1

    if collect:
        gc.collect(1)  # the previous batch's young garbage is not this one's cost
    cpu, wall = time.process_time(), time.perf_counter()
    if tasks == 1:
        await worker()
    else:
        await asyncio.gather(*(worker() for _ in range(tasks)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    total = per_task * tasks
    return Batch(wall / total, cpu / total, total, errors)


async def run_rounds(
    variants: Sequence[Variant], *, rounds: int, calls: int, tasks: int, warmup: int = 1
) -> dict[str, list[Batch]]:
    """``warmup`` untimed batches of each variant, then ``rounds`` interleaved rounds."""
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique, got {names}")
    by_name = {v.name: v for v in variants}
    for _ in range(warmup):
        for variant in variants:
            if variant.setup is not None:
                variant.setup()
            await run_batch(variant.call, max(tasks, calls // 4), tasks)
    results: dict[str, list[Batch]] = {name: [] for name in names}
    for index in range(rounds):
        for name in rotated(names, index):
            variant = by_name[name]
            if variant.setup is not None:
                variant.setup()
            results[name].append(await run_batch(variant.call, calls, tasks))
    return results

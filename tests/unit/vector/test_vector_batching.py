"""Batched upsert: batch planning, bounded concurrency, progress, and the exact account
of a partial failure (on the fake, whose requests run through the real call path)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.exceptions import CollectionNotFoundError, VectorStoreConnectionError
from infra.ports import VectorPoint
from infra.resilience import ResiliencePolicy, RetryConfig
from infra.testing.fakes.vector import FakeVectorStore
from infra.vector import UpsertProgress, VectorUpsertError
from infra.vector.batching import plan_batches, run_batches


@given(
    sizes=st.lists(st.integers(1, 500), max_size=60),
    max_points=st.integers(1, 10),
    max_bytes=st.integers(1, 2_000),
)
def test_batches_are_contiguous_cover_everything_and_respect_both_limits(
    sizes: list[int], max_points: int, max_bytes: int
) -> None:
    batches = plan_batches(sizes, max_points=max_points, max_bytes=max_bytes)
    assert [i for batch in batches for i in batch] == list(range(len(sizes)))
    for batch in batches:
        assert 0 < len(batch) <= max_points
        assert len(batch) == 1 or sum(sizes[i] for i in batch) <= max_bytes


@given(
    batches=st.integers(1, 30),
    concurrency=st.integers(1, 8),
    failing=st.sets(st.integers(0, 29), max_size=3),
)
def test_at_most_concurrency_writes_are_in_flight_and_the_ledger_is_exact(
    batches: int, concurrency: int, failing: set[int]
) -> None:
    """Any number of batches, any concurrency, any failing batches: never more than
    ``concurrency`` writes at once; on failure the error's ranges are exactly the
    batches that were written and the rest."""
    plan = [range(3 * i, 3 * i + 3) for i in range(batches)]
    ids = list(range(3 * batches))

    async def scenario() -> None:
        in_flight = 0
        peak = 0
        written: set[int] = set()

        async def write(batch: range) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(0)
                if batch.start // 3 in failing:
                    raise VectorStoreConnectionError("down")
                written.update(batch)
            finally:
                in_flight -= 1

        outcome: int | Exception
        try:
            outcome = await run_batches(plan, write, ids=ids, concurrency=concurrency)
        except (VectorUpsertError, VectorStoreConnectionError) as raised:
            outcome = raised
        if isinstance(outcome, VectorUpsertError):
            said = {i for start, stop in outcome.written_ranges for i in range(start, stop)}
            assert said == written
            assert set(outcome.failed_ids) == set(ids) - written
            assert outcome.written + outcome.failed == len(ids)
        elif isinstance(outcome, Exception):
            assert not written
        else:
            assert outcome == len(ids)
            assert not failing.intersection(range(batches))
        assert peak <= concurrency

    asyncio.run(scenario())


async def test_a_failing_batch_on_the_fake_reports_written_and_failed_ids() -> None:
    """Batches of 10, one at a time; the third upsert request fails on every attempt:
    20 points written, 30 not (the failed batch and those never sent), and the fake
    holds exactly the 20."""
    store = FakeVectorStore(
        policy=ResiliencePolicy.instant("qdrant", retry=RetryConfig(max_attempts=3)),
        batch_size=10,
        concurrency=1,
    )
    await store.ensure_collection("docs", vector_size=2)

    def after_batch(progress: UpsertProgress) -> None:
        if progress.written == 20:  # batches run one at a time: the third is next
            store.fail_next(ConnectionResetError(), times=3, operations={"upsert"})

    points = [VectorPoint(i, [1.0, float(i)]) for i in range(50)]
    with pytest.raises(VectorUpsertError) as caught:
        await store.upsert("docs", points, on_progress=after_batch)
    error = caught.value
    assert (error.written, error.failed) == (20, 30)
    assert error.written_ranges == [(0, 20)]
    assert error.failed_ranges == [(20, 50)]
    assert error.failed_ids == list(range(20, 50))
    assert isinstance(error.__cause__, VectorStoreConnectionError)
    assert await store.count("docs") == 20
    assert [op for op, _ in store.calls].count("upsert") == 2 + 3  # 3 attempts of batch 3


async def test_progress_is_logged_every_n_batches(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeVectorStore(batch_size=1, concurrency=2, log_every=4)
    await store.ensure_collection("docs", vector_size=1)
    seen: list[UpsertProgress] = []
    with caplog.at_level(logging.INFO, logger="infra.vector"):
        await store.upsert(
            "docs", [VectorPoint(i, [1.0]) for i in range(10)], on_progress=seen.append
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "infra.vector"]
    assert lines == [
        "upsert progress: 4 of 10 points in 4 of 10 batches",
        "upsert progress: 8 of 10 points in 8 of 10 batches",
        "upsert progress: 10 of 10 points in 10 of 10 batches",
    ]
    assert [p.written for p in seen] == list(range(1, 11))


async def test_a_progress_callback_that_raises_stops_the_upsert_with_its_error() -> None:
    store = FakeVectorStore(batch_size=2, concurrency=1)
    await store.ensure_collection("docs", vector_size=1)

    def stop_after_two(progress: UpsertProgress) -> None:
        if progress.batches_done == 2:
            raise RuntimeError("enough")

    with pytest.raises(RuntimeError, match="enough"):
        await store.upsert(
            "docs", [VectorPoint(i, [1.0]) for i in range(10)], on_progress=stop_after_two
        )
    assert await store.count("docs") == 4


async def test_the_first_batch_failing_raises_its_own_error() -> None:
    """Nothing written: the caller gets the batch's error itself (here, not found)."""
    store = FakeVectorStore(policy=ResiliencePolicy.instant("qdrant"), batch_size=2)
    await store.ensure_collection("docs", vector_size=1)
    store.fail_next(CollectionNotFoundError("gone"), operations={"upsert"}, times=50)
    with pytest.raises(CollectionNotFoundError):
        await store.upsert("docs", [VectorPoint(i, [1.0]) for i in range(6)])


@settings(max_examples=20)
@given(count=st.integers(0, 60), batch_size=st.integers(1, 16), concurrency=st.integers(1, 5))
def test_every_point_is_written_once_whatever_the_batching(
    count: int, batch_size: int, concurrency: int
) -> None:
    async def scenario() -> None:
        store = FakeVectorStore(batch_size=batch_size, concurrency=concurrency)
        await store.ensure_collection("docs", vector_size=1)
        assert (
            await store.upsert("docs", [VectorPoint(i, [1.0 + i]) for i in range(count)]) == count
        )
        page = await store.scroll("docs", limit=100)
        assert [p.id for p in page.points] == list(range(count))
        expected_requests = -(-count // batch_size)
        assert [op for op, _ in store.calls].count("upsert") == expected_requests

    asyncio.run(scenario())

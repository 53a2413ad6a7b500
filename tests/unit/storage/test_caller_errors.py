"""A caller's mistake is never a backend failure: the PostgreSQL store's side.

The first tests need no server: the store points at a port where nothing listens, so a
call that reached the network would fail with ``DatabaseConnectionError``; a caller
error proves the argument was refused first. The others replay the reported cases on the
embedded server, under the design's default policy (breaker 5 failures, retry 3 attempts) on a
virtual clock, and count retries and breaker failures with a recording observer.
"""

# S608: the only SQL built with f-strings names a generated table (gen_<uuid hex>).
# ruff: noqa: S608

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from infra.exceptions import (
    CallerError,
    DatabaseConnectionError,
    InvalidArgumentError,
    QueryArgumentError,
    QueryDataError,
    QuerySyntaxError,
)
from infra.resilience import BreakerState, RecordingObserver, ResiliencePolicy
from infra.storage import EnhancedPostgresStore

# Nothing listens on port 1: a call that got as far as connecting fails with a
# DatabaseConnectionError, never with a caller error.
DEAD_DSN = "postgresql://app:pw-123@127.0.0.1:1/app"

REFUSED_BEFORE_IO: list[tuple[str, Any, type[CallerError]]] = [
    ("nul", lambda s: s.fetch("SELECT 1\x00"), QueryArgumentError),
    ("surrogate", lambda s: s.fetchrow("SELECT '\ud800'"), QueryArgumentError),
    ("empty", lambda s: s.fetchval("   "), QueryArgumentError),
    ("bytes", lambda s: s.execute(b"SELECT 1"), QueryArgumentError),
    ("rows", lambda s: s.executemany("SELECT $1", "ab"), QueryArgumentError),
    ("column", lambda s: s.fetchval("SELECT 1", column=1.5), QueryArgumentError),
    ("timeout", lambda s: s.fetch("SELECT 1", timeout=0), InvalidArgumentError),
    ("isolation", lambda s: s.transaction(isolation="snapshot"), InvalidArgumentError),
    ("threshold", lambda s: s.health_check(latency_threshold_ms="fast"), InvalidArgumentError),
    ("health-timeout", lambda s: s.health_check(timeout=-1), InvalidArgumentError),
]


@pytest.mark.parametrize(
    ("call", "expected"),
    [case[1:] for case in REFUSED_BEFORE_IO],
    ids=[case[0] for case in REFUSED_BEFORE_IO],
)
async def test_bad_arguments_are_refused_before_the_store_connects(
    call: Any, expected: type[CallerError]
) -> None:
    """No pool is created and no connection is tried: the caller error comes first."""
    observer = RecordingObserver()
    store = EnhancedPostgresStore(
        DEAD_DSN, 1, 2, policy=ResiliencePolicy.instant("postgres", hooks=(observer,))
    )

    async def attempt() -> None:
        result = call(store)  # transaction() refuses at the call, the rest when awaited
        if hasattr(result, "__await__"):
            await result

    with pytest.raises(expected) as caught:
        await attempt()
    assert not isinstance(caught.value, DatabaseConnectionError)
    assert caught.value.component == "postgres"
    assert caught.value.retryable is False
    assert store.is_initialized is False
    assert observer.calls == []
    assert observer.retries == []
    await store.close()


@pytest.fixture
async def observed(postgres_dsn: str) -> AsyncIterator[tuple[EnhancedPostgresStore, Any]]:
    """An EnhancedPostgresStore under the design's policy (virtual clock) and its observer."""
    observer = RecordingObserver()
    policy = ResiliencePolicy.instant("postgres", hooks=(observer,))
    store = EnhancedPostgresStore(postgres_dsn, 1, 2, policy=policy)
    yield store, observer
    await store.close()


@pytest.mark.parametrize(
    ("query", "args", "expected"),
    [
        ("SELECT 1\x00", (), QueryArgumentError),  # was DatabaseConnectionError, retried 3x
        ("SELECT $1::int", (1, 2), QueryArgumentError),  # was a counted DatabaseError
        ("select 1/0", (), QueryDataError),  # was QuerySyntaxError
        ("SELECT $1::int", ("abc",), QueryArgumentError),
    ],
    ids=["nul", "arity", "division-by-zero", "wrong-type"],
)
async def test_reported_cases_neither_retry_nor_count(
    observed: tuple[EnhancedPostgresStore, RecordingObserver],
    query: str,
    args: tuple[Any, ...],
    expected: type[CallerError],
) -> None:
    """Ten times the threshold of bad calls: no retry, no failure, the breaker closed."""
    store, observer = observed
    breaker = store.policy.breaker
    assert breaker is not None
    for _ in range(50):
        with pytest.raises(expected) as caught:
            await store.fetch(query, *args)
        assert not isinstance(caught.value, QuerySyntaxError) or expected is QuerySyntaxError
    assert observer.retries == []
    assert (breaker.state, breaker.failure_count) == (BreakerState.CLOSED, 0)
    assert await store.fetchval("SELECT 1") == 1


async def test_a_division_by_zero_is_a_data_error_not_a_syntax_error(
    observed: tuple[EnhancedPostgresStore, RecordingObserver],
) -> None:
    """SQLSTATE 22012 says a value was wrong, not the statement."""
    store, _ = observed
    with pytest.raises(QueryDataError) as caught:
        await store.fetchval("SELECT 1 / $1::int", 0)
    assert not isinstance(caught.value, QuerySyntaxError)
    assert caught.value.details["sqlstate"] == "22012"
    assert "division by zero" in str(caught.value)


async def test_a_column_past_the_end_of_the_row_names_the_argument(
    observed: tuple[EnhancedPostgresStore, RecordingObserver],
) -> None:
    """fetchval(column=n) past the row's last column: QueryArgumentError('column')."""
    store, _ = observed
    assert await store.fetchval("SELECT 1 AS a, 2 AS b", column=1) == 2
    assert await store.fetchval("SELECT 1 AS a, 2 AS b", column=-1) == 2
    with pytest.raises(QueryArgumentError) as caught:
        await store.fetchval("SELECT 1 AS a, 2 AS b", column=2)
    assert caught.value.argument == "column"
    assert store.policy.breaker is not None
    assert store.policy.breaker.failure_count == 0


async def test_executemany_takes_a_generator_of_rows(
    observed: tuple[EnhancedPostgresStore, RecordingObserver],
) -> None:
    """The rows are read (and checked) once, before the first attempt."""
    store, _ = observed
    table = f"gen_{uuid.uuid4().hex}"
    await store.execute(f"CREATE TABLE {table} (n int)")
    try:
        await store.executemany(
            # The signature promises a Sequence; a generator is accepted at run time (read once).
            f"INSERT INTO {table} VALUES ($1)",
            ((n,) for n in range(3)),  # type: ignore[arg-type]
            idempotent=True,
        )
        assert await store.fetchval(f"SELECT sum(n) FROM {table}") == 3
    finally:
        await store.execute(f"DROP TABLE {table}")

"""RelationalStore contract: FakeRelationalStore and EnhancedPostgresStore (embedded
PostgreSQL) behave the same, within the fake's documented SQL subset.

Each test works in a table of its own (``t_<uuid>``), so tests never see each other's
rows on the shared server. The real store runs under ``ResiliencePolicy.instant`` (the design's
breaker and retry on a virtual clock): the same decisions, no real backoff sleeps.

The last section tests what only the fake has (scripted faults), still through the
public API and with the real retry rules.
"""

# S608: the only SQL built with f-strings here interpolates generated table names
# (t_<uuid hex>), never values -- values always go through $n parameters.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from infra.exceptions import (
    CallerError,
    ConstraintViolationError,
    DatabaseConnectionError,
    DatabaseError,
    InvalidArgumentError,
    QueryArgumentError,
    QueryDataError,
    QuerySyntaxError,
    TransactionStateError,
    UniqueViolationError,
)
from infra.ports import RelationalStore
from infra.resilience import ResiliencePolicy, RetryConfig
from infra.testing.fakes.relational import FakeCall, FakeRelationalStore

Store = Any  # EnhancedPostgresStore | FakeRelationalStore (the real one imports asyncpg)


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A fresh fake, or an EnhancedPostgresStore on the embedded server."""
    policy = ResiliencePolicy.instant("postgres")
    if request.param == "fake":
        fake = FakeRelationalStore(policy=policy)
        yield fake
        await fake.close()
        return
    from infra.storage import EnhancedPostgresStore

    dsn: str = request.getfixturevalue("postgres_dsn")
    real = EnhancedPostgresStore(dsn, 1, 4, policy=policy, name=f"contract-{uuid.uuid4().hex}")
    yield real
    await real.close()


@pytest.fixture
async def table(store: Store) -> AsyncIterator[str]:
    """A fresh ``(id integer primary key, email text unique not null, n integer)`` table."""
    name = f"t_{uuid.uuid4().hex}"
    await store.execute(
        f"CREATE TABLE {name} (id integer PRIMARY KEY, email text UNIQUE NOT NULL, n integer)"
    )
    yield name
    if not store.is_closed:
        await store.execute(f"DROP TABLE IF EXISTS {name}")


async def insert_in_savepoint(tx: Store, table: str, rows: list[tuple[int, str]]) -> None:
    """Insert ``(id, email)`` rows inside a savepoint of ``tx``."""
    async with tx.transaction() as savepoint:
        for row_id, email in rows:
            await savepoint.execute(f"INSERT INTO {table} VALUES ($1, $2, 0)", row_id, email)


async def test_satisfies_the_port(store: Store) -> None:
    """Both are RelationalStores."""
    assert isinstance(store, RelationalStore)


async def test_rows_come_back_as_dicts_with_parameters_bound(store: Store, table: str) -> None:
    """Inserted rows read back as plain dicts; $n parameters bind in order."""
    await store.execute(f"INSERT INTO {table} (id, email, n) VALUES ($1, $2, $3)", 1, "a@x", 10)
    await store.execute(f"INSERT INTO {table} (id, email, n) VALUES ($1, $2, $3)", 2, "b@x", 20)
    rows = await store.fetch(f"SELECT id, email, n FROM {table} WHERE n >= $1 ORDER BY id", 10)
    assert rows == [{"id": 1, "email": "a@x", "n": 10}, {"id": 2, "email": "b@x", "n": 20}]
    assert all(type(row) is dict for row in rows)


async def test_a_parameter_may_be_used_twice(store: Store, table: str) -> None:
    """$1 appearing twice binds the same value twice."""
    await store.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 3), (3, 'b@x', 0)")
    rows = await store.fetch(f"SELECT id FROM {table} WHERE id = $1 OR n = $1 ORDER BY id", 3)
    assert rows == [{"id": 1}, {"id": 3}]


async def test_placeholder_text_inside_a_literal_is_not_a_parameter(store: Store) -> None:
    """'$1' in a string literal stays text."""
    assert await store.fetchval("SELECT '$1;' AS s") == "$1;"


async def test_fetchrow_returns_the_first_row_or_none(store: Store, table: str) -> None:
    """fetchrow gives the first row, and None when nothing matches."""
    await store.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 1)")
    assert await store.fetchrow(f"SELECT id, email FROM {table} WHERE id = $1", 1) == {
        "id": 1,
        "email": "a@x",
    }
    assert await store.fetchrow(f"SELECT id FROM {table} WHERE id = $1", 99) is None


async def test_fetchval_returns_one_value_or_none(store: Store, table: str) -> None:
    """fetchval gives column 0 by default, another column on request, None for no rows."""
    await store.execute(f"INSERT INTO {table} VALUES (7, 'g@x', 70)")
    assert await store.fetchval(f"SELECT count(*) AS c FROM {table}") == 1
    assert await store.fetchval(f"SELECT id, email FROM {table}", column=1) == "g@x"
    assert await store.fetchval(f"SELECT id FROM {table} WHERE id = 0") is None


async def test_fetchval_beyond_the_last_column_is_a_database_error(store: Store) -> None:
    """Asking for a column the row does not have is a (non-retryable) DatabaseError --
    the caller's, naming the argument."""
    with pytest.raises(DatabaseError) as caught:
        await store.fetchval("SELECT 1 AS a", column=3)
    assert caught.value.retryable is False
    assert isinstance(caught.value, QueryArgumentError)
    assert caught.value.argument == "column"


async def test_execute_returns_postgres_status_tags(store: Store) -> None:
    """CREATE/INSERT/UPDATE/DELETE/DROP report PostgreSQL's command tags."""
    name = f"t_{uuid.uuid4().hex}"
    assert await store.execute(f"CREATE TABLE {name} (id integer PRIMARY KEY, n integer)") == (
        "CREATE TABLE"
    )
    assert await store.execute(f"INSERT INTO {name} VALUES ($1, $2)", 1, 0) == "INSERT 0 1"
    assert await store.execute(f"INSERT INTO {name} VALUES (2, 0), (3, 5)") == "INSERT 0 2"
    assert await store.execute(f"UPDATE {name} SET n = n + 1 WHERE n = $1", 0) == "UPDATE 2"
    assert await store.execute(f"DELETE FROM {name} WHERE id > $1", 100) == "DELETE 0"
    assert await store.execute(f"DELETE FROM {name}") == "DELETE 3"
    assert await store.execute(f"DROP TABLE {name}") == "DROP TABLE"


async def test_execute_without_arguments_runs_several_statements(store: Store) -> None:
    """A script of statements runs whole; the tag is the last statement's."""
    name = f"t_{uuid.uuid4().hex}"
    tag = await store.execute(
        f"CREATE TABLE {name} (id integer PRIMARY KEY); INSERT INTO {name} VALUES (1); "
        f"INSERT INTO {name} VALUES (2);"
    )
    assert tag == "INSERT 0 1"
    assert await store.fetchval(f"SELECT count(*) AS c FROM {name}") == 2
    await store.execute(f"DROP TABLE {name}")


async def test_insert_returning_gives_the_new_row(store: Store, table: str) -> None:
    """INSERT ... RETURNING works through fetchrow."""
    row = await store.fetchrow(
        f"INSERT INTO {table} (id, email) VALUES ($1, $2) RETURNING id, email", 5, "r@x"
    )
    assert row == {"id": 5, "email": "r@x"}


async def test_executemany_runs_once_per_argument_tuple(store: Store, table: str) -> None:
    """executemany inserts every tuple and returns None."""
    result = await store.executemany(
        f"INSERT INTO {table} (id, email, n) VALUES ($1, $2, $3)",
        [(i, f"u{i}@x", i * i) for i in range(1, 6)],
    )
    assert result is None
    assert await store.fetchval(f"SELECT sum(n) AS s FROM {table}") == 55


async def test_upsert_on_conflict_updates_in_place(store: Store, table: str) -> None:
    """ON CONFLICT ... DO UPDATE is part of the portable core."""
    upsert = (
        f"INSERT INTO {table} (id, email, n) VALUES ($1, $2, $3) "
        "ON CONFLICT (id) DO UPDATE SET n = excluded.n"
    )
    await store.execute(upsert, 1, "a@x", 1)
    await store.execute(upsert, 1, "a@x", 2)
    assert await store.fetch(f"SELECT id, n FROM {table}") == [{"id": 1, "n": 2}]


# ---------------------------------------------------------------------- transactions
async def test_a_transaction_commits_when_the_block_ends(store: Store, table: str) -> None:
    """Writes inside the block are visible to it and persist after it."""
    async with store.transaction() as tx:
        await tx.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 1)")
        assert await tx.fetchval(f"SELECT count(*) AS c FROM {table}") == 1
    assert await store.fetchval(f"SELECT count(*) AS c FROM {table}") == 1


async def test_an_exception_rolls_the_transaction_back(store: Store, table: str) -> None:
    """An error escaping the block undoes its writes and propagates unchanged."""

    async def failing_block() -> None:
        async with store.transaction() as tx:
            await tx.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 1)")
            raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        await failing_block()
    assert await store.fetchval(f"SELECT count(*) AS c FROM {table}") == 0


async def test_a_failed_savepoint_rolls_back_only_itself(store: Store, table: str) -> None:
    """A nested block that fails is undone; the outer transaction still commits."""
    async with store.transaction() as tx:
        await tx.execute(f"INSERT INTO {table} VALUES (1, 'outer@x', 1)")
        with pytest.raises(UniqueViolationError):
            await insert_in_savepoint(tx, table, [(2, "inner@x"), (3, "outer@x")])
        await tx.execute(f"INSERT INTO {table} VALUES (4, 'after@x', 4)")
    rows = await store.fetch(f"SELECT id FROM {table} ORDER BY id")
    assert rows == [{"id": 1}, {"id": 4}]


async def test_a_committed_savepoint_is_kept_with_its_transaction(store: Store, table: str) -> None:
    """Savepoints that succeed are part of the committed transaction."""
    async with store.transaction() as tx:
        async with tx.transaction() as savepoint:
            await savepoint.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 1)")
        async with tx.transaction() as savepoint:
            await savepoint.execute(f"INSERT INTO {table} VALUES (2, 'b@x', 2)")
    assert await store.fetchval(f"SELECT count(*) AS c FROM {table}") == 2


async def test_after_a_failed_statement_the_transaction_refuses_more(
    store: Store, table: str
) -> None:
    """PostgreSQL's rule: the first error aborts the transaction (SQLSTATE 25P02)."""

    async def go_on_after_an_error() -> None:
        async with store.transaction() as tx:
            await tx.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 1)")
            with pytest.raises(UniqueViolationError):
                await tx.execute(f"INSERT INTO {table} VALUES (1, 'b@x', 1)")
            await tx.execute(f"INSERT INTO {table} VALUES (2, 'c@x', 1)")

    with pytest.raises(DatabaseError) as caught:
        await go_on_after_an_error()
    assert caught.value.details["sqlstate"] == "25P02"
    assert await store.fetchval(f"SELECT count(*) AS c FROM {table}") == 0


async def test_a_block_that_swallowed_an_error_is_rolled_back_loudly(
    store: Store, table: str
) -> None:
    """Catching a statement's error and ending normally does not commit silently."""

    async def swallow_an_error() -> None:
        async with store.transaction() as tx:
            await tx.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 1)")
            with contextlib.suppress(UniqueViolationError):
                await tx.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 1)")

    with pytest.raises(DatabaseError, match="rolled back") as caught:
        await swallow_an_error()
    assert caught.value.details["cause"] == "UniqueViolationError"
    assert isinstance(caught.value.__cause__, UniqueViolationError)
    assert await store.fetchval(f"SELECT count(*) AS c FROM {table}") == 0


async def test_a_finished_transaction_refuses_statements(store: Store) -> None:
    """The store a block yielded is unusable after the block."""
    async with store.transaction() as tx:
        assert await tx.fetchval("SELECT 1 AS one") == 1
    with pytest.raises(DatabaseError, match="ended"):
        await tx.fetchval("SELECT 1 AS one")


async def test_a_read_only_transaction_refuses_writes(store: Store, table: str) -> None:
    """readonly=True: reads work, a write raises DatabaseError (25006), nothing written."""

    async def write_in_a_read_only_transaction() -> None:
        async with store.transaction(readonly=True) as tx:
            assert await tx.fetchval(f"SELECT count(*) AS c FROM {table}") == 0
            await tx.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 1)")

    with pytest.raises(TransactionStateError) as caught:
        await write_in_a_read_only_transaction()
    assert caught.value.details["sqlstate"] == "25006"
    await store.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 1)")  # writable again


async def test_an_unknown_isolation_level_is_rejected_at_the_call(store: Store) -> None:
    """isolation= is checked when transaction() is called."""
    with pytest.raises(ValueError, match="isolation must be"):
        store.transaction(isolation="chaos")


# ---------------------------------------------------------------------------- errors
async def test_duplicate_key_is_a_unique_violation(store: Store, table: str) -> None:
    """A duplicate unique key raises UniqueViolationError (23505), not retryable."""
    await store.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 1)")
    with pytest.raises(UniqueViolationError) as caught:
        await store.execute(f"INSERT INTO {table} VALUES (2, 'a@x', 1)")
    error = caught.value
    assert isinstance(error, ConstraintViolationError)
    assert error.retryable is False
    assert error.details["sqlstate"] == "23505"
    assert error.component == "postgres"


async def test_not_null_is_a_constraint_violation(store: Store, table: str) -> None:
    """A NULL in a NOT NULL column is a ConstraintViolationError (23502), not unique."""
    with pytest.raises(ConstraintViolationError) as caught:
        await store.execute(f"INSERT INTO {table} (id, email) VALUES ($1, $2)", 1, None)
    assert not isinstance(caught.value, UniqueViolationError)
    assert caught.value.details["sqlstate"] == "23502"


@pytest.mark.parametrize(
    ("query", "sqlstate"),
    [
        ("SELEC 1", "42601"),
        ("SELECT * FROM no_such_table_anywhere", "42P01"),
    ],
)
async def test_bad_sql_is_a_query_syntax_error(store: Store, query: str, sqlstate: str) -> None:
    """Invalid SQL and unknown tables raise QuerySyntaxError, not retryable."""
    with pytest.raises(QuerySyntaxError) as caught:
        await store.fetch(query)
    assert caught.value.retryable is False
    assert caught.value.details["sqlstate"] == sqlstate


async def test_an_unknown_column_is_a_query_syntax_error(store: Store, table: str) -> None:
    """Selecting a column the table lacks raises QuerySyntaxError (42703)."""
    with pytest.raises(QuerySyntaxError) as caught:
        await store.fetch(f"SELECT nope FROM {table}")
    assert caught.value.details["sqlstate"] == "42703"


# ------------------------------------------------------------------ hostile input
#: (id, call, expected type, the argument named -- or None where the real store cannot say).
#: ``t`` is the test's table. Every case must be a typed caller error on both stores.
HOSTILE: list[tuple[str, Any, type[CallerError], str | None]] = [
    ("nul-in-sql", lambda s, _: s.fetch("SELECT 1\x00"), QueryArgumentError, "query"),
    ("surrogate-in-sql", lambda s, _: s.fetch("SELECT '\ud800'"), QueryArgumentError, "query"),
    ("empty-sql", lambda s, _: s.fetch(""), QueryArgumentError, "query"),
    ("blank-sql", lambda s, _: s.execute(" \n\t"), QueryArgumentError, "query"),
    ("bytes-sql", lambda s, _: s.fetchrow(b"SELECT 1"), QueryArgumentError, "query"),
    ("none-sql", lambda s, _: s.fetchval(None), QueryArgumentError, "query"),
    (
        "too-many-args",
        lambda s, t: s.fetch(f"SELECT id FROM {t} WHERE id = $1", 1, 2),
        QueryArgumentError,
        "args",
    ),
    (
        "too-few-args",
        lambda s, t: s.fetch(f"SELECT id FROM {t} WHERE id = $1 AND n = $2", 1),
        QueryArgumentError,
        "args",
    ),
    (
        "dict-arg",
        lambda s, t: s.fetch(f"SELECT id FROM {t} WHERE id = $1", {"a": 1}),
        QueryArgumentError,
        None,
    ),
    (
        "int-beyond-int64",
        lambda s, t: s.execute(f"INSERT INTO {t} VALUES ($1, 'a@x', 0)", 2**70),
        QueryArgumentError,
        None,
    ),
    (
        "text-for-integer",
        lambda s, t: s.execute(f"INSERT INTO {t} VALUES ($1, 'a@x', 0)", "abc"),
        QueryArgumentError,
        None,
    ),
    (
        "surrogate-arg",
        lambda s, t: s.execute(f"INSERT INTO {t} VALUES (1, $1, 0)", "a\ud800"),
        QueryArgumentError,
        None,
    ),
    (
        "nul-in-text-arg",
        lambda s, t: s.execute(f"INSERT INTO {t} VALUES (1, $1, 0)", "a\x00b"),
        QueryDataError,
        None,
    ),
    (
        "rows-as-str",
        lambda s, t: s.executemany(f"INSERT INTO {t} VALUES ($1, 'x', 0)", "abc"),
        QueryArgumentError,
        "args",
    ),
    (
        "row-not-a-sequence",
        lambda s, t: s.executemany(f"INSERT INTO {t} VALUES ($1, 'x', 0)", [1, 2]),
        QueryArgumentError,
        "args[0]",
    ),
    (
        "rows-not-iterable",
        lambda s, t: s.executemany(f"INSERT INTO {t} VALUES ($1, 'x', 0)", 5),
        QueryArgumentError,
        "args",
    ),
    (
        "column-not-int",
        lambda s, _: s.fetchval("SELECT 1 AS a", column="0"),
        QueryArgumentError,
        "column",
    ),
    (
        "column-bool",
        lambda s, _: s.fetchval("SELECT 1 AS a", column=True),
        QueryArgumentError,
        "column",
    ),
    (
        "timeout-negative",
        lambda s, _: s.fetch("SELECT 1 AS a", timeout=-1),
        InvalidArgumentError,
        "timeout",
    ),
    (
        "timeout-str",
        lambda s, _: s.fetch("SELECT 1 AS a", timeout="1"),
        InvalidArgumentError,
        "timeout",
    ),
    (
        "timeout-infinite",
        lambda s, _: s.execute("SELECT 1 AS a", timeout=float("inf")),
        InvalidArgumentError,
        "timeout",
    ),
    (
        "health-threshold",
        lambda s, _: s.health_check(latency_threshold_ms=-1.0),
        InvalidArgumentError,
        "latency_threshold_ms",
    ),
]


@pytest.mark.parametrize(
    ("call", "expected", "argument"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
async def test_hostile_input_is_a_typed_caller_error_that_no_breaker_counts(
    store: Store, table: str, call: Any, expected: type[CallerError], argument: str | None
) -> None:
    """Bad SQL text, arity, types, values, rows, columns and timeouts raise the same
    caller error on both stores: not retryable, not counted, the store still serving."""
    breaker = store.policy.breaker
    with pytest.raises(expected) as caught:
        await call(store, table)
    error = caught.value
    assert error.retryable is False
    assert error.component == "postgres"
    if argument is not None:
        assert error.details["argument"] == argument
    assert (breaker.state.value, breaker.failure_count) == ("closed", 0)
    assert await store.fetchval("SELECT 1 AS one") == 1


async def test_rejected_arguments_never_reach_the_fake_backend() -> None:
    """Checks run before any I/O: the fake records no attempt for a rejected call."""
    fake = FakeRelationalStore(policy=ResiliencePolicy.instant("postgres"))
    for query in ("SELECT 1\x00", "", b"SELECT 1", "SELECT '\ud800'"):
        with pytest.raises(QueryArgumentError):
            await fake.fetch(query)  # type: ignore[arg-type]
    with pytest.raises(QueryArgumentError):
        await fake.executemany("SELECT $1", ["a", "b"])
    assert fake.calls == []


async def test_a_rejected_statement_does_not_abort_the_transaction(
    store: Store, table: str
) -> None:
    """Nothing was sent, so the transaction goes on and commits (no 25P02)."""
    async with store.transaction() as tx:
        with pytest.raises(QueryArgumentError):
            await tx.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 1)\x00")
        with pytest.raises(InvalidArgumentError):
            await tx.fetch(f"SELECT id FROM {table}", timeout=0)
        await tx.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 1)")
    assert await store.fetchval(f"SELECT count(*) AS c FROM {table}") == 1


async def test_a_block_that_swallows_a_server_side_caller_error_is_a_transaction_state_error(
    store: Store, table: str
) -> None:
    """The aborted transaction is the caller's doing: TransactionStateError (25P02),
    itself a caller error, and nothing counted by the breaker."""

    async def swallow_a_duplicate() -> None:
        async with store.transaction() as tx:
            await tx.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 1)")
            with pytest.raises(UniqueViolationError):
                await tx.execute(f"INSERT INTO {table} VALUES (2, 'a@x', 1)")

    with pytest.raises(TransactionStateError) as caught:
        await swallow_a_duplicate()
    assert caught.value.details["sqlstate"] == "25P02"
    assert store.policy.breaker.failure_count == 0
    assert await store.fetchval(f"SELECT count(*) AS c FROM {table}") == 0


# ----------------------------------------------------------------- health, lifecycle
async def test_health_check_reports_the_documented_shape(store: Store) -> None:
    """(True, details) with status, latency, pool counts and the breaker state."""
    ok, details = await store.health_check(latency_threshold_ms=10_000.0)
    assert ok is True
    assert details["status"] == "healthy"
    assert details["latency_ms"] >= 0.0
    assert details["pool_size"] >= 1
    assert 0 <= details["pool_free"] <= details["pool_size"]
    assert details["circuit_breaker"] == "closed"
    assert "error" not in details


async def test_a_round_trip_slower_than_the_threshold_is_degraded(store: Store) -> None:
    """Threshold 0 ms: the ping is slower, so degraded -- still serving, so True."""
    ok, details = await store.health_check(latency_threshold_ms=0.0)
    assert (ok, details["status"]) == (True, "degraded")


async def test_a_closed_store_is_unhealthy_and_refuses_calls(store: Store) -> None:
    """After close(): unhealthy, and calls raise a non-retryable connection error."""
    await store.close()
    await store.close()  # idempotent
    ok, details = await store.health_check()
    assert (ok, details["status"]) == (False, "unhealthy")
    assert "closed" in details["error"]
    with pytest.raises(DatabaseConnectionError, match="closed") as caught:
        await store.fetchval("SELECT 1 AS one")
    assert caught.value.retryable is False


# ------------------------------------------------------------ fake only: fault scripts
async def test_fake_reads_are_retried_through_scripted_faults() -> None:
    """Two injected connection resets, then success: the read retries and succeeds."""
    store = FakeRelationalStore(policy=ResiliencePolicy.instant("postgres"))
    store.fail_next(ConnectionResetError("reset"), times=2, operations={"fetchval"})
    assert await store.fetchval("SELECT 7 AS n") == 7
    assert [call.operation for call in store.calls] == ["fetchval"] * 3


async def test_fake_plain_writes_are_attempted_once() -> None:
    """A retryable failure of a plain execute is not retried."""
    store = FakeRelationalStore(policy=ResiliencePolicy.instant("postgres"))
    store.fail_next(ConnectionResetError("reset"), operations={"execute"})
    with pytest.raises(DatabaseConnectionError) as caught:
        await store.execute("CREATE TABLE t (id integer)")
    assert caught.value.retryable is True
    assert store.calls == [FakeCall("execute", "CREATE TABLE t (id integer)", ())]


async def test_fake_idempotent_writes_are_retried() -> None:
    """execute(..., idempotent=True) retries like a read."""
    store = FakeRelationalStore(policy=ResiliencePolicy.instant("postgres"))
    store.fail_next(DatabaseConnectionError("gone"), operations={"execute"})
    assert await store.execute("CREATE TABLE t (id integer)", idempotent=True) == "CREATE TABLE"
    assert len(store.calls) == 2


async def test_fake_exhausted_retries_raise_the_last_real_error() -> None:
    """More failures than attempts: the caller sees the backend's error, not a wrapper."""
    policy = ResiliencePolicy.instant("postgres", retry=RetryConfig(max_attempts=2))
    store = FakeRelationalStore(policy=policy)
    store.fail_next(TimeoutError(), times=5)
    with pytest.raises(DatabaseError) as caught:
        await store.fetch("SELECT 1 AS one")
    assert type(caught.value).__name__ == "QueryTimeoutError"
    assert len(store.calls) == 2


async def test_fake_scripted_health_failure_is_unhealthy() -> None:
    """A fault scripted for health_check turns the check unhealthy, without raising."""
    store = FakeRelationalStore()
    store.fail_next(ConnectionRefusedError("refused"), operations={"health_check"})
    ok, details = await store.health_check()
    assert (ok, details["status"]) == (False, "unhealthy")
    assert "DatabaseConnectionError" in details["error"]
    assert (await store.health_check())[0] is True


async def test_fake_statements_wait_for_an_open_transaction_then_give_up() -> None:
    """One connection: a statement outside an open transaction raises PoolExhaustedError."""
    from infra.exceptions import PoolExhaustedError

    store = FakeRelationalStore(acquire_timeout=0.05)
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE t (id integer)")
        with pytest.raises(PoolExhaustedError) as caught:
            await store.fetch("SELECT 1 AS one")
    assert caught.value.details["max_size"] == 1
    assert await store.fetchval("SELECT count(*) AS c FROM t") == 0


async def test_fake_rejects_bad_fault_scripts() -> None:
    """fail_next validates its arguments."""
    store = FakeRelationalStore()
    with pytest.raises(ValueError, match="times"):
        store.fail_next(ConnectionResetError(), times=0)
    with pytest.raises(TypeError, match="Exception"):
        store.fail_next("boom")  # type: ignore[arg-type]

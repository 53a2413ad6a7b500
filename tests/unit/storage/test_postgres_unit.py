"""PostgreSQL store logic, mostly without a server: arguments, masking, timeouts,
policies, span endpoints, lifecycle before the first connection, and the fake's SQL
plumbing; the dead-peer deadline runs against the real server behind a ChaosProxy."""

from __future__ import annotations

import asyncio
import typing

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import infra.storage
from config import Settings
from infra.exceptions import DatabaseConnectionError, DatabaseError, QueryTimeoutError
from infra.observability import TracingState
from infra.resilience import CircuitBreakerConfig, ResiliencePolicy, RetryConfig
from infra.storage import (
    EnhancedPostgresStore,
    PostgresStore,
    PostgresTransaction,
    Timeouts,
)
from infra.testing.chaos import ChaosProxy
from infra.testing.fakes.relational import FakeRelationalStore, FakeTransaction

# Nothing listens on port 1; none of these tests may try to connect (they would fail).
DSN = "postgresql://app:pw-123@127.0.0.1:1/app"


def test_public_api_is_pinned() -> None:
    """infra.storage exports exactly its documented names."""
    assert sorted(infra.storage.__all__) == [
        "EnhancedPostgresStore",
        "InvalidDsnError",
        "IsolationLevel",
        "PostgresStore",
        "PostgresTransaction",
        "StoreOptions",
        "Timeouts",
        "build_postgres_policy",
    ]


@pytest.mark.parametrize(
    "cls", [PostgresStore, EnhancedPostgresStore, PostgresTransaction, FakeRelationalStore]
)
def test_type_hints_resolve_at_run_time(cls: type) -> None:
    """Wiring and pydantic read annotations at run time: every public method's resolve."""
    for name in ("__init__", "fetch", "fetchrow", "fetchval", "execute", "health_check"):
        assert typing.get_type_hints(getattr(cls, name))


# ----------------------------------------------------------------------- arguments
def test_dsn_must_be_a_string() -> None:
    """A non-string DSN is a TypeError naming the argument."""
    with pytest.raises(TypeError, match="dsn must be a str"):
        PostgresStore(123)  # type: ignore[arg-type]


def test_dsn_must_be_a_postgres_url_and_the_error_masks_its_password() -> None:
    """Another scheme (or a libpq key=value string) is rejected without showing secrets."""
    with pytest.raises(ValueError, match=r"postgresql://") as caught:
        PostgresStore("mysql://root:topsecret@db/app")
    assert "topsecret" not in str(caught.value)
    with pytest.raises(ValueError, match="key=value"):
        PostgresStore("host=db user=app")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_size": 3, "max_size": 2}, "must not exceed max_size"),
        ({"min_size": -1}, "min_size must be an int >= 0"),
        ({"max_size": 0}, "max_size must be an int >= 1"),
        ({"max_size": True}, "max_size must be an int"),
        ({"statement_timeout": 0}, "statement_timeout must be None or a positive"),
        ({"statement_timeout": -1.0}, "statement_timeout"),
        ({"acquire_timeout": None}, "acquire_timeout must be a positive"),
        ({"command_timeout": float("inf")}, "command_timeout"),
        ({"close_timeout": 0}, "close_timeout"),
        ({"health_timeout": "5"}, "health_timeout"),
        ({"name": ""}, "name must be a non-empty string"),
        ({"server_settings": {"statement_timeout": "5s"}}, "pass statement_timeout="),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(
    kwargs: dict[str, object], message: str
) -> None:
    """Each invalid argument fails at construction with a message naming it."""
    with pytest.raises(ValueError, match=message):
        PostgresStore(DSN, **kwargs)  # type: ignore[arg-type]


def test_server_settings_must_be_strings() -> None:
    """A non-string session setting is a TypeError."""
    with pytest.raises(TypeError, match="server_settings must map str to str"):
        PostgresStore(DSN, server_settings={"application_name": 5})  # type: ignore[dict-item]


def test_policy_must_be_a_resilience_policy() -> None:
    """policy= takes a ResiliencePolicy only."""
    with pytest.raises(TypeError, match="ResiliencePolicy"):
        PostgresStore(DSN, policy="retry")  # type: ignore[arg-type]


def test_timeouts_are_derived_from_the_arguments() -> None:
    """The client limit defaults to statement_timeout + 1 s; errors report the smaller."""
    store = PostgresStore(DSN, statement_timeout=2.0, acquire_timeout=0.5)
    assert store.timeouts == Timeouts(statement=2.0, client=3.0, acquire=0.5)
    assert store.timeouts.reported(None) == 2.0
    assert store.timeouts.reported(0.25) == 0.25
    assert store.timeouts.reported(9.0) == 2.0
    no_server_limit = PostgresStore(DSN, statement_timeout=None, command_timeout=4.0)
    assert no_server_limit.timeouts.reported(None) == 4.0
    unlimited = PostgresStore(DSN, statement_timeout=None)
    assert unlimited.timeouts.reported(None) is None


@pytest.mark.parametrize(
    ("seconds", "setting"), [(0.05, "50ms"), (1.5, "1500ms"), (0.0001, "1ms"), (30.0, "30s")]
)
async def test_statement_timeout_setting_is_whole_milliseconds_never_zero(
    postgres_dsn: str, seconds: float, setting: str
) -> None:
    """statement_timeout reaches the server in ms, rounded up, and never 0 (which
    disables it): read back from a real server session."""
    async with PostgresStore(
        postgres_dsn, min_size=1, max_size=1, statement_timeout=seconds
    ) as store:
        for _ in range(50):  # a 1 ms limit can cancel the SHOW itself on a loaded machine
            try:
                shown = await store.fetchval("SHOW statement_timeout")
            except QueryTimeoutError:  # the server's own limit fired: it is not 0
                continue
            assert shown == setting
            break
        else:
            pytest.fail("SHOW statement_timeout never finished within the limit")


def test_from_settings_reads_the_db_view() -> None:
    """PostgresStore.from_settings uses settings.db's URL, pool sizes and timeouts."""
    settings = Settings(
        database_url=DSN,
        postgres_min_pool_size=2,
        postgres_max_pool_size=7,
        postgres_statement_timeout=3.0,
        postgres_pool_acquire_timeout=0.5,
        postgres_command_timeout=4.0,
    )
    store = PostgresStore.from_settings(settings, name="orders")
    assert store.timeouts == Timeouts(statement=3.0, client=4.0, acquire=0.5)
    assert "pool=2..7" in repr(store)
    assert store.name == "orders"


# ------------------------------------------------------------------------- policies
def test_enhanced_store_builds_breaker_and_retry_from_its_arguments() -> None:
    """Configs reach the policy; disabling a layer leaves it out."""
    store = EnhancedPostgresStore(
        DSN,
        circuit_breaker_config=CircuitBreakerConfig(failure_threshold=7, timeout=9.0),
        retry_config=RetryConfig(max_attempts=4, base_delay=0.5),
    )
    breaker, retry = store.policy.breaker, store.policy.retry
    assert breaker is not None
    assert breaker.config.failure_threshold == 7
    assert retry is not None
    assert retry.config.max_attempts == 4
    bare = EnhancedPostgresStore(DSN, enable_circuit_breaker=False, enable_retry=False)
    assert bare.policy.breaker is None
    assert bare.policy.retry is None


def test_operation_timeout_adds_an_overall_timeout_layer() -> None:
    """operation_timeout= bounds the whole call: one more layer in the policy."""
    plain = EnhancedPostgresStore(DSN)
    bounded = EnhancedPostgresStore(DSN, operation_timeout=5.0)
    assert len(bounded.policy.layers()) == len(plain.policy.layers()) + 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"policy": ResiliencePolicy.passthrough(), "retry_config": RetryConfig()},
        {"policy": ResiliencePolicy.passthrough(), "operation_timeout": 1.0},
        {"enable_retry": False, "retry_config": RetryConfig()},
        {"enable_circuit_breaker": False, "circuit_breaker_config": CircuitBreakerConfig()},
    ],
)
def test_contradictory_resilience_arguments_are_rejected(kwargs: dict[str, object]) -> None:
    """A config that would be silently ignored is a ValueError."""
    with pytest.raises(ValueError, match=r"drop one|not both"):
        EnhancedPostgresStore(DSN, **kwargs)  # type: ignore[arg-type]


def test_an_injected_policy_wins() -> None:
    """policy= is used as is."""
    policy = ResiliencePolicy.instant("postgres")
    assert EnhancedPostgresStore(DSN, policy=policy).policy is policy
    assert PostgresStore(DSN, policy=policy).policy is policy


def test_enhanced_from_settings_follows_the_resilience_settings() -> None:
    """Without a policy, from_settings builds the one settings.resilience describes."""
    store = EnhancedPostgresStore.from_settings(
        Settings(database_url=DSN, retry_enabled=False, circuit_breaker_enabled=True)
    )
    assert store.policy.retry is None
    assert store.policy.breaker is not None
    assert store.policy.bulkhead is not None


# ---------------------------------------------------------------- dead-peer deadline
# A peer that stops answering, made with ChaosProxy.blackhole("to_client"): the request
# reaches the server, no reply comes back. No assertion here measures time. The client
# limit is 1 s: statements that ARE answered must get their answer within it, and a
# loaded machine can take longer than 0.2-0.3 s for a round trip now and then.
LIMIT = 1.0


async def backend_pid(store: PostgresStore) -> int:
    """The server process of the connection a one-connection store holds."""
    pid: int = await store.fetchval("SELECT pg_backend_pid()")
    return pid


async def test_the_deadline_cuts_off_a_dead_peer_and_spares_answered_statements(
    postgres_dsn: str,
) -> None:
    """Statements that get their answer keep their connection; one whose peer stopped
    answering fails with QueryTimeoutError(client limit), retryable, chained to the
    driver's error, its connection terminated and replaced; the next call is not
    reported as a timeout again."""
    async with (
        ChaosProxy.for_url(postgres_dsn) as proxy,
        PostgresStore(proxy.url, 1, 1, statement_timeout=0.05, command_timeout=LIMIT) as store,
    ):
        first = await backend_pid(store)
        for _ in range(3):
            assert await backend_pid(store) == first  # answered: never terminated
        proxy.blackhole("to_client")
        with pytest.raises(QueryTimeoutError) as caught:
            await store.fetchval("SELECT 1")
        proxy.heal()
        error = caught.value
        assert error.details["timeout"] == LIMIT
        assert error.retryable is True
        assert "connection was terminated" in str(error)
        assert error.__cause__ is not None  # the driver's failure on the cut connection
        replaced = await backend_pid(store)
        assert replaced != first
        assert await backend_pid(store) == replaced


async def test_the_deadline_covers_statements_in_a_transaction(postgres_dsn: str) -> None:
    """A transaction's statement on a dead peer: the same QueryTimeoutError(limit)."""
    async with (
        ChaosProxy.for_url(postgres_dsn) as proxy,
        PostgresStore(proxy.url, 1, 1, statement_timeout=0.05, command_timeout=LIMIT) as store,
    ):

        async def statement_in_a_transaction() -> None:
            async with store.transaction() as tx:
                proxy.blackhole("to_client")
                await tx.fetchval("SELECT 3")

        with pytest.raises(QueryTimeoutError) as caught:
            await statement_in_a_transaction()
        proxy.heal()
        assert caught.value.details["timeout"] == LIMIT
        assert "connection was terminated" in str(caught.value)
        assert caught.value.__cause__ is not None
        assert await store.fetchval("SELECT 4") == 4


async def test_nothing_keeps_running_once_the_statements_ended(postgres_dsn: str) -> None:
    """No task outlives the statements it watched, answered or cut off."""

    def left_running(before: set[asyncio.Task[typing.Any]]) -> set[str]:
        coros = (task.get_coro() for task in asyncio.all_tasks() - before if not task.done())
        names = {getattr(coro, "__qualname__", repr(coro)) for coro in coros}
        # The proxy serves the store's connections: the test's tool, not the store's.
        return {name for name in names if not name.startswith(f"{ChaosProxy.__qualname__}.")}

    async def until_nothing_left(before: set[asyncio.Task[typing.Any]]) -> None:
        """Wait for the watchers to end (a fixed sleep is no barrier on a loaded
        machine); one that never ends fails the test after 30 s."""
        try:
            async with asyncio.timeout(30.0):
                while left_running(before):  # noqa: ASYNC110 -- polling the task set
                    await asyncio.sleep(0.01)
        except TimeoutError:
            assert left_running(before) == set()
            raise

    async with ChaosProxy.for_url(postgres_dsn) as proxy:
        before = asyncio.all_tasks()
        async with PostgresStore(
            proxy.url, 1, 1, statement_timeout=0.05, command_timeout=LIMIT
        ) as store:
            await asyncio.gather(*(store.fetchval("SELECT 1") for _ in range(3)))
            await until_nothing_left(before)
            proxy.blackhole("to_client")
            with pytest.raises(QueryTimeoutError):
                await store.fetchval("SELECT 1")
            proxy.heal()
            await until_nothing_left(before)
            assert await store.fetchval("SELECT 2") == 2


@pytest.mark.parametrize(
    ("statement", "command", "terminated"),
    [
        (0.05, LIMIT, True),
        (LIMIT, LIMIT, True),
        (0.05, None, True),  # the client limit is statement_timeout + 1 s
        (3 * LIMIT, LIMIT, False),
        (None, LIMIT, False),
    ],
)
async def test_the_connection_is_terminated_only_when_the_server_limit_fires_first(
    postgres_dsn: str, statement: float | None, command: float | None, terminated: bool
) -> None:
    """With statement_timeout set and a client limit not shorter, a dead peer's connection
    is terminated at the client limit; otherwise the driver's own timer (with its cancel
    request) ends the call. Either way: QueryTimeoutError naming the client limit."""
    async with (
        ChaosProxy.for_url(postgres_dsn) as proxy,
        PostgresStore(
            proxy.url, 1, 1, statement_timeout=statement, command_timeout=command
        ) as store,
    ):
        await store.fetchval("SELECT 1")
        proxy.blackhole("to_client")
        with pytest.raises(QueryTimeoutError) as caught:
            await store.fetchval("SELECT 1")
        proxy.heal()
        assert caught.value.details["timeout"] == store.timeouts.client
        assert ("connection was terminated" in str(caught.value)) is terminated


# ------------------------------------------------------------- secrets, endpoints
def test_repr_masks_the_password_wherever_the_dsn_carries_it() -> None:
    """repr shows neither a userinfo password nor a password= parameter."""
    store = PostgresStore("postgresql://app:hunter2@db:5432/app?password=hunter3&sslmode=off")
    text = repr(store)
    assert "hunter2" not in text
    assert "hunter3" not in text
    assert "app:***@db:5432" in text
    assert "state=not connected" in text


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        ("postgresql://u:p@h/d", "postgresql://u:***@h/d"),
        ("postgres://u@h/d?password=x&a=b", "postgres://u@h/d?password=***&a=b"),
        ("postgresql:///d?host=/run/pg", "postgresql:///d?host=/run/pg"),
    ],
)
def test_mask_dsn(dsn: str, masked: str) -> None:
    """Passwords are replaced by *** and nothing else changes (as the repr shows it)."""
    assert f"(dsn={masked!r}, " in repr(PostgresStore(dsn))


@pytest.mark.parametrize(
    ("dsn", "endpoint"),
    [
        ("postgresql://u:p@localhost:1/app", {"server.address": "localhost", "server.port": 1}),
        ("postgresql://u@localhost/app", {"server.address": "localhost"}),
        ("postgresql://postgres:@/postgres?host=/nonexistent", {"server.address": "/nonexistent"}),
        ("postgresql://u@[::1]:1/app", {"server.address": "::1", "server.port": 1}),
        (
            "postgresql://u@127.0.0.1:1,localhost:2/app",
            {"server.address": "127.0.0.1", "server.port": 1},
        ),
        (
            "postgresql:///app?host=localhost&port=1",
            {"server.address": "localhost", "server.port": 1},
        ),
    ],
)
async def test_spans_name_the_first_host_of_the_dsn(dsn: str, endpoint: dict[str, object]) -> None:
    """A call's span carries server.address (TCP host or socket directory) and
    server.port (when the DSN gives one) of the DSN's first host. Nothing listens there:
    the call fails, and its span is still recorded."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    store = PostgresStore(dsn, tracing=TracingState(provider.get_tracer("test"), 1.0))
    with pytest.raises(DatabaseError):
        await store.fetchval("SELECT 1")
    await store.close()
    spans = exporter.get_finished_spans()
    assert spans
    for span in spans:
        attributes = dict(span.attributes or {})
        shown = {key: attributes.get(key) for key in ("server.address", "server.port")}
        assert shown == {"server.port": None} | endpoint
    provider.shutdown()


# ------------------------------------------------------------ lifecycle, no server
async def test_construction_and_validation_touch_no_server() -> None:
    """A bad per-call timeout fails before any I/O; the pool is still not created."""
    store = PostgresStore(DSN)
    with pytest.raises(ValueError, match="timeout must be None or a positive"):
        await store.fetch("SELECT 1", timeout=0)
    assert store.is_initialized is False
    await store.close()


async def test_a_store_closed_before_use_refuses_everything() -> None:
    """close() on an unused store is fine; every later call raises, not retryable."""
    store = EnhancedPostgresStore(DSN)
    await store.close()
    await store.close()
    for call in (
        store.initialize(),
        store.fetch("SELECT 1"),
        store.fetchval("SELECT 1"),
        store.execute("SELECT 1"),
        store.executemany("SELECT $1", [(1,)]),
    ):
        with pytest.raises(DatabaseConnectionError, match="is closed") as caught:
            await call
        assert caught.value.retryable is False
    with pytest.raises(DatabaseConnectionError):
        store.transaction()


async def test_health_check_validates_its_threshold() -> None:
    """A negative or non-numeric threshold is a programming error, raised."""
    store = PostgresStore(DSN)
    await store.close()
    with pytest.raises(ValueError, match=">= 0"):
        await store.health_check(latency_threshold_ms=-1.0)
    with pytest.raises(TypeError, match="milliseconds"):
        await store.health_check(latency_threshold_ms="fast")  # type: ignore[arg-type]


async def test_health_check_with_an_open_breaker_does_not_ping() -> None:
    """An open breaker reports unhealthy at once, without opening a connection."""
    store = EnhancedPostgresStore(DSN)
    breaker = store.policy.breaker
    assert breaker is not None
    breaker.force_open()
    ok, details = await store.health_check()
    assert ok is False
    assert details == {
        "status": "unhealthy",
        "latency_ms": None,
        "pool_size": 0,
        "pool_free": 0,
        "circuit_breaker": "open",
        "error": "circuit breaker is open; the database is failing",
    }
    assert store.is_initialized is False
    await store.close()


def test_the_fake_imports_no_database_driver() -> None:
    """Users' test suites get the fake without asyncpg (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys; import infra.testing.fakes.relational; "
        "assert 'asyncpg' not in sys.modules, sorted(m for m in sys.modules if 'pg' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # noqa: S603


async def test_the_fake_is_a_drop_in_for_the_lifecycle() -> None:
    """The fake supports async with, initialize and close like the real store."""
    async with FakeRelationalStore() as fake:
        assert await fake.fetchval("SELECT 1 AS one") == 1
        async with fake.transaction() as tx:
            assert isinstance(tx, FakeTransaction)
    assert fake.is_closed


# --------------------------------------------------------------- fake SQL plumbing
async def fake_with_rows(*values: int) -> FakeRelationalStore:
    """An open fake holding table ``t (a int)`` with ``values``, one row each."""
    store = FakeRelationalStore()
    await store.initialize()
    await store.execute("CREATE TABLE t (a int)")
    for value in values:
        await store.execute("INSERT INTO t VALUES ($1)", value)
    return store


@pytest.mark.parametrize(
    ("query", "args", "row"),
    [
        ("SELECT $1 AS a, $2 AS b, $1 AS c", ("u", "v"), {"a": "u", "b": "v", "c": "u"}),
        ("SELECT '$1' AS a, $1 AS b", (5,), {"a": "$1", "b": 5}),
        ("SELECT 'it''s $2' AS s, $1 AS b", (5,), {"s": "it's $2", "b": 5}),
        ('SELECT "$1" AS q FROM t WHERE a = $10', tuple(range(1, 11)), {"q": "$1"}),
        ("SELECT a -- $2\nFROM t WHERE a = $1", (10,), {"a": 10}),
        ("SELECT /* $2 */ $1 AS a", (5,), {"a": 5}),
    ],
)
async def test_placeholders_are_bound_outside_literals_and_comments(
    query: str, args: tuple[object, ...], row: dict[str, object]
) -> None:
    """The fake binds $n except inside strings, quoted identifiers and comments."""
    store = await fake_with_rows(10)
    assert await store.fetchrow(query, *args) == row
    await store.close()


async def test_a_script_splits_only_at_top_level_semicolons() -> None:
    """A ';' inside a literal or comment does not split; empty statements vanish."""
    store = await fake_with_rows()
    script = "CREATE TABLE s (a text); INSERT INTO s VALUES ('x;y'); -- a;b\n ;"
    assert await store.execute(script) == "INSERT 0 1"
    assert await store.fetch("SELECT a FROM s") == [{"a": "x;y"}]
    await store.close()


@pytest.mark.parametrize(
    ("statement", "tag"),
    [
        ("insert into t values (1)", "INSERT 0 1"),
        ("  -- note\n UPDATE t SET a = 1", "UPDATE 4"),
        ("DELETE FROM t WHERE a < 0", "DELETE 0"),
        ("SELECT * FROM t", "SELECT 4"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "SELECT 1"),
        ("CREATE UNIQUE INDEX IF NOT EXISTS i ON t (a)", "CREATE INDEX"),
        ("CREATE TEMP TABLE tt (a int)", "CREATE TABLE"),
        ("DROP TABLE IF EXISTS t", "DROP TABLE"),
        ("ALTER TABLE t ADD COLUMN b int", "ALTER TABLE"),
    ],
)
async def test_status_tags_follow_postgres(statement: str, tag: str) -> None:
    """The fake reports PostgreSQL's command tag for each kind of statement."""
    store = await fake_with_rows(1, 2, 3, 4)
    assert await store.execute(statement) == tag
    await store.close()

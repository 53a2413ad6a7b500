"""PostgreSQL store logic that needs no server: arguments, masking, timeouts, policies,
lifecycle before the first connection, and the fake's SQL plumbing."""

from __future__ import annotations

import asyncio
import typing

import pytest

import infra.storage
from config import Settings
from infra.exceptions import DatabaseConnectionError, QueryTimeoutError
from infra.resilience import CircuitBreakerConfig, ResiliencePolicy, RetryConfig
from infra.storage import (
    EnhancedPostgresStore,
    PostgresStore,
    PostgresTransaction,
    Timeouts,
)
from infra.storage._deadpeer import DeadPeerWatchdog
from infra.storage._dsn import server_endpoint
from infra.storage._pool import ManagedPool
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
        assert await store.fetchval("SHOW statement_timeout") == setting


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


# ---------------------------------------------------------------- dead-peer watchdog
class _Connection:
    """Stands in for an asyncpg connection: the watchdog only calls terminate()."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    @property
    def terminated(self) -> bool:
        return self.closed.is_set()

    def terminate(self) -> None:
        self.closed.set()


async def test_watchdog_terminates_a_connection_past_its_deadline() -> None:
    """A statement still running after the limit has its connection terminated, once."""
    watchdog = DeadPeerWatchdog(0.02)
    late, quick = _Connection(), _Connection()
    watchdog.watch(late)
    watchdog.watch(quick)
    watchdog.done(quick)
    await asyncio.sleep(0.06)
    assert late.terminated
    assert not quick.terminated
    assert watchdog.expired(late) is True
    assert watchdog.expired(late) is False  # asked once, then forgotten
    assert watchdog.expired(quick) is False
    await watchdog.aclose()


async def test_watchdog_call_turns_a_termination_into_query_timeout() -> None:
    """call(): the statement's failure after a termination is QueryTimeoutError(limit)."""
    watchdog = DeadPeerWatchdog(0.02)
    conn = _Connection()

    async def hangs_until_terminated(c: _Connection) -> None:
        await c.closed.wait()
        raise ConnectionResetError("connection was closed in the middle of operation")

    with pytest.raises(QueryTimeoutError) as caught:
        await watchdog.call("postgres", conn, hangs_until_terminated)
    assert caught.value.details["timeout"] == 0.02
    assert isinstance(caught.value.__cause__, ConnectionResetError)
    await watchdog.aclose()


async def test_watchdog_resolution_and_idle_exit() -> None:
    """Resolution is a quarter of the limit (at most 1 s); the watcher stops when idle."""
    assert DeadPeerWatchdog(31.0).resolution == 1.0
    watchdog = DeadPeerWatchdog(0.02)
    assert watchdog.resolution == 0.005
    before = asyncio.all_tasks()
    watchdog.watch(_Connection())
    watcher = asyncio.all_tasks() - before
    assert len(watcher) == 1  # watching starts one task
    watchdog.done(_Connection())  # unknown connection: ignored
    await asyncio.sleep(0.06)
    assert all(task.done() for task in watcher)  # the one expired connection left; idle
    with pytest.raises(ValueError, match="limit must be > 0"):
        DeadPeerWatchdog(0)


@pytest.mark.parametrize(
    ("statement", "command", "watched"),
    [
        (30.0, None, True),
        (1.0, 5.0, True),
        (30.0, 30.0, True),  # the settings' defaults
        (1.0, 0.5, False),
        (None, 5.0, False),
    ],
)
def test_the_watchdog_applies_only_when_the_server_limit_fires_first(
    statement: float | None, command: float | None, watched: bool
) -> None:
    """Watchdog iff statement_timeout is set and the client limit is not shorter."""
    store = PostgresStore(DSN, statement_timeout=statement, command_timeout=command)
    pool = ManagedPool(
        DSN,
        min_size=1,
        max_size=1,
        timeouts=store.timeouts,
        server_settings={},
        close_timeout=1.0,
        component="postgres",
        name="unit",
        closed_error=RuntimeError,
    )
    assert (pool.watchdog is not None) is watched


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
        ("postgresql://u:p@db.internal:6432/app", ("db.internal", 6432)),
        ("postgresql://u@db/app", ("db", None)),
        ("postgresql://postgres:@/postgres?host=/run/postgresql", ("/run/postgresql", None)),
        ("postgresql://u@[::1]:5433/app", ("::1", 5433)),
        ("postgresql://u@h1:5432,h2:5433/app", ("h1", 5432)),
        ("postgresql:///app?host=db&port=5439", ("db", 5439)),
    ],
)
def test_server_endpoint_names_the_first_host(
    dsn: str, endpoint: tuple[str | None, int | None]
) -> None:
    """Span attributes come from the DSN's first host, TCP or socket directory."""
    assert server_endpoint(dsn) == endpoint


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

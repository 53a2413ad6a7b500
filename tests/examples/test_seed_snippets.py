"""The original design's usage snippets run as written, against the embedded servers.

Each test below holds one usage form of the design document, copied with only its import
prefix changed (``src.infra.`` -> ``infra.`` / ``config.``). Names the document leaves
to the reader are bound by the test: ``connection_string`` (the document writes the
literal ``"postgresql://localhost/db"``; here it is the embedded server's DSN, with a
``users`` table in a schema of its own), ``user_id``, ``redis``, ``key``,
``api_client``, ``TransientError``, ``logger`` (the project's structured logger,
``infra.observability.get_logger``) and ``fallback_value``. Around each form the test
checks that it did what the document says it does.

Not covered, because those components do not exist in this repository yet: the
document's vector store (``infra/vector/qdrant.py``), graph stores
(``infra/graph/memgraph.py``, ``infra/graph/cached_store.py``) and LLM modules
(``infra/llm/litellm_adapter.py``, ``rate_limiter.py``, ``embedding_cache.py``). Their
settings (``SEMANTICA_QDRANT_*``) and the LLM cost counter are covered.
"""

# The snippets are kept exactly as the document writes them, so three style rules they
# do not follow are off for this file: a lambda around one call, logger.error inside an
# except block, and comments the linter mistakes for code.
# ruff: noqa: PLW0108, TRY400, ERA001

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest
import structlog
from redis.asyncio import Redis

from infra.observability import (
    MetricsCollector,
    configure_logging,
    get_logger,
    reset_metrics_collector,
    set_metrics_collector,
)
from infra.resilience import redis_no_retry_kwargs
from infra.resilience.clock import MonotonicClock
from infra.testing.chaos import ChaosProxy


# -------------------------------------------------------------------------- fixtures
class Logs:
    """The JSON lines the project's logging configuration writes."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line]


@pytest.fixture
def logs() -> Iterator[Logs]:
    """JSON logging to a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging(level="DEBUG", stream=stream, service_name="seed")
    yield Logs(stream)
    root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture
def collector() -> Iterator[MetricsCollector]:
    """A fresh metrics collector, installed as the current one."""
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    yield fresh
    reset_metrics_collector()


@pytest.fixture
async def connection_string(postgres_dsn: str) -> AsyncIterator[str]:
    """The reader's DSN: a fresh schema on the embedded server holding ``users``."""
    schema = f"seed_{uuid.uuid4().hex}"
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(f"CREATE TABLE {schema}.users (id integer PRIMARY KEY, name text)")
        await conn.execute(f"INSERT INTO {schema}.users VALUES (42, 'ada'), (7, 'alan')")  # noqa: S608 -- generated name
        parts = urlsplit(postgres_dsn)
        query = urlencode([*parse_qsl(parts.query), ("search_path", schema)])
        yield urlunsplit(parts._replace(query=query))
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


# ------------------------------------------------------------------- basic usage
async def test_basic_usage(connection_string: str) -> None:
    """PostgresStore(dsn); initialize(); fetch with a positional parameter."""
    user_id = 42
    from infra.storage.postgres import PostgresStore

    store = PostgresStore(connection_string)
    await store.initialize()
    rows = await store.fetch("SELECT * FROM users WHERE id = $1", user_id)

    assert [dict(row) for row in rows] == [{"id": 42, "name": "ada"}]
    await store.close()


# ----------------------------------------------------------------- resilient store
async def test_resilient_store(connection_string: str, capsys: pytest.CaptureFixture[str]) -> None:
    """EnhancedPostgresStore with both configs; fetch; the health check's four prints."""
    user_id = 7
    from infra.resilience import CircuitBreakerConfig, RetryConfig
    from infra.storage.postgres_enhanced import EnhancedPostgresStore

    store = EnhancedPostgresStore(
        connection_string,
        enable_circuit_breaker=True,
        enable_retry=True,
        circuit_breaker_config=CircuitBreakerConfig(
            failure_threshold=5,  # OPEN after 5 failures
            timeout=60.0,  # HALF_OPEN after 60 s
        ),
        retry_config=RetryConfig(
            max_attempts=3,  # at most 3 attempts
            base_delay=1.0,  # starting at 1 s
            exponential_base=2.0,  # doubling (1 s, 2 s, 4 s)
        ),
    )
    await store.initialize()

    # automatic retry and circuit breaker
    rows = await store.fetch("SELECT * FROM users WHERE id = $1", user_id)

    # latency-aware health check
    is_healthy, details = await store.health_check(latency_threshold_ms=100.0)
    print(f"Status: {details['status']}, Latency: {details['latency_ms']:.2f}ms")
    print(f"Pool: {details['pool_size']} total, {details['pool_free']} free")
    print(f"Circuit breaker: {details['circuit_breaker']}")

    assert [row["name"] for row in rows] == ["alan"]
    assert is_healthy is True
    out = capsys.readouterr().out
    assert f"Status: {details['status']}, Latency: " in out
    assert "Pool: 5 total, " in out
    assert "Circuit breaker: closed" in out
    breaker, retry = store.policy.breaker, store.policy.retry
    assert breaker is not None
    assert retry is not None
    assert (breaker.config.failure_threshold, breaker.config.timeout) == (5, 60.0)
    assert retry.config.backoff(1) == 1.0
    assert retry.config.backoff(3) == 4.0
    await store.close()


# ------------------------------------------------------------ breaker, standalone
async def test_circuit_breaker_standalone(redis_client: Redis) -> None:
    """CircuitBreaker("redis", config) -- name first, positional -- and `async with`."""
    redis, key = redis_client, f"seed:{uuid.uuid4().hex}"
    await redis.set(key, b"value")
    from infra.resilience import CircuitBreaker, CircuitBreakerConfig

    breaker = CircuitBreaker("redis", CircuitBreakerConfig(failure_threshold=5, timeout=60.0))

    async with breaker:
        # after 5 failures of this block the circuit OPENs;
        # while OPEN, CircuitBreakerOpenError is raised at once
        result = await redis.get(key)

    assert result == b"value"
    assert breaker.name == "redis"
    assert breaker.config == CircuitBreakerConfig(failure_threshold=5, timeout=60.0)


async def test_circuit_breaker_standalone_opens_after_five_failed_blocks(redis_url: str) -> None:
    """The snippet's comment: five failing blocks open it; then the block is refused at
    once, without a connection attempt, with CircuitBreakerOpenError."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from infra.exceptions import CircuitBreakerOpenError
    from infra.resilience import CircuitBreaker, CircuitBreakerConfig

    async with ChaosProxy.for_url(redis_url) as proxy:
        redis = Redis.from_url(proxy.url_for(redis_url), **redis_no_retry_kwargs())
        key = "k"
        proxy.refuse()
        breaker = CircuitBreaker("redis", CircuitBreakerConfig(failure_threshold=5, timeout=60.0))
        try:
            for _ in range(5):
                with pytest.raises(RedisConnectionError):
                    async with breaker:
                        result = await redis.get(key)
            refused = proxy.stats.refused
            with pytest.raises(CircuitBreakerOpenError) as caught:
                async with breaker:
                    result = await redis.get(key)
        finally:
            await redis.aclose()
    assert refused == 5
    assert proxy.stats.refused == refused
    assert caught.value.details["failure_count"] == 5
    assert "result" not in locals()


# -------------------------------------------------------------- retry, standalone
async def test_retry_standalone(logs: Logs, monkeypatch: pytest.MonkeyPatch) -> None:
    """RetryPolicy(RetryConfig(...jitter=True)).execute(lambda, retryable=predicate,
    on_retry=logging lambda); the real clock's sleeps are recorded instead of slept."""
    slept: list[float] = []

    async def no_sleep(self: MonotonicClock, seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(MonotonicClock, "sleep", no_sleep)

    class TransientError(Exception):
        pass

    class ApiClient:
        calls = 0

        async def call(self) -> str:
            self.calls += 1
            if self.calls < 3:
                raise TransientError(f"blip {self.calls}")
            return "answer"

    api_client = ApiClient()
    logger = get_logger("app")
    from infra.resilience import RetryConfig, RetryPolicy

    policy = RetryPolicy(
        RetryConfig(
            max_attempts=3,
            base_delay=1.0,
            exponential_base=2.0,
            jitter=True,  # random jitter against thundering herds
        )
    )

    result = await policy.execute(
        lambda: api_client.call(),
        retryable=lambda e: isinstance(e, TransientError),
        on_retry=lambda e, attempt, delay: logger.warning(
            f"Retry {attempt} after {delay:.2f}s: {e}"
        ),
    )

    assert result == "answer"
    assert api_client.calls == 3
    assert len(slept) == 2
    assert 0.5 <= slept[0] <= 1.0  # equal jitter: [d/2, d] of 1 s, then of 2 s
    assert 1.0 <= slept[1] <= 2.0
    events = [r["event"] for r in logs.records() if r["logger"] == "app"]
    assert events == [
        f"Retry 1 after {slept[0]:.2f}s: blip 1",
        f"Retry 2 after {slept[1]:.2f}s: blip 2",
    ]


# ------------------------------------------------------------- exception handling
async def _handle(store: Any, logger: Any, fallback_value: object, query: str) -> object:
    """The document's try/except, verbatim; only its query text is the reader's."""
    from infra.exceptions import (
        CircuitBreakerOpenError,
        DatabaseError,
        QueryTimeoutError,
    )

    result = None  # the wrapper's: a handled timeout leaves no result
    try:
        result = await store.fetch(query)
    except QueryTimeoutError as e:
        # timeout (retryable)
        logger.error(f"Query timeout: {e.details['timeout']}s")
        if e.retryable:
            pass  # retry logic
    except CircuitBreakerOpenError as e:
        # circuit OPEN (service down)
        logger.error(f"Circuit open: {e.component} ({e.details['failure_count']} failures)")
        return fallback_value
    except DatabaseError as e:
        # general DB error
        logger.error(f"Database error: {e.message}")
        raise
    return result


async def test_exception_handling(connection_string: str, logs: Logs) -> None:
    """Each branch of the handler is reached with the attributes it reads."""
    from infra.exceptions import DatabaseConnectionError, QuerySyntaxError
    from infra.resilience import CircuitBreakerConfig, ResiliencePolicy, RetryConfig
    from infra.storage import EnhancedPostgresStore, PostgresStore

    logger = get_logger("app")
    fallback_value = "cached answer"
    async with PostgresStore(connection_string, statement_timeout=0.05) as store:
        # the general branch: "SELECT ..." is not SQL
        with pytest.raises(QuerySyntaxError):
            await _handle(store, logger, fallback_value, "SELECT ...")
        # the timeout branch: the statement outlives statement_timeout
        assert await _handle(store, logger, fallback_value, "SELECT pg_sleep(1)") is None
    policy = ResiliencePolicy.instant(
        "postgres",
        breaker=CircuitBreakerConfig(failure_threshold=1),
        retry=RetryConfig(max_attempts=1),
    )
    dead = "postgresql://app:pw@127.0.0.1:1/app"
    down = EnhancedPostgresStore(dead, policy=policy)  # connects on first use
    try:
        with pytest.raises(DatabaseConnectionError):
            await _handle(down, logger, fallback_value, "SELECT 1")
        # the open-circuit branch
        assert await _handle(down, logger, fallback_value, "SELECT 1") == fallback_value
    finally:
        await down.close()
    errors = [r["event"] for r in logs.records() if r["logger"] == "app"]
    assert errors[0].startswith("Database error: ")
    assert errors[1] == "Query timeout: 0.05s"
    assert errors[2].startswith("Database error: ")
    assert errors[3] == "Circuit open: postgres (1 failures)"


async def test_structured_logger_takes_keyword_context(logs: Logs) -> None:
    """The migration guide's logger calls: keyword context lands as JSON fields."""
    from infra.exceptions import DatabaseError

    logger = get_logger("app")
    e = DatabaseError("relation users is locked", details={"sqlstate": "55P03"})
    details = {"status": "degraded", "latency_ms": 123.4}

    logger.error(f"Database error: {e.message}", details=e.details)
    logger.warning("Database is slow", latency=details["latency_ms"])

    first, second = (r for r in logs.records() if r["logger"] == "app")
    assert (first["event"], first["level"]) == ("Database error: relation users is locked", "error")
    assert first["details"] == {"sqlstate": "55P03"}
    assert (second["event"], second["level"], second["latency"]) == (
        "Database is slow",
        "warning",
        123.4,
    )


# ------------------------------------------------------------------------ metrics
async def test_metrics(
    connection_string: str, collector: MetricsCollector, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pool gauges, query-latency percentiles (read by key) and the LLM cost counter."""
    from infra.storage import PostgresStore

    async with PostgresStore(connection_string, 2, 4) as store:
        for user in (42, 7, 1):
            await store.fetch("SELECT * FROM users WHERE id = $1", user)
        from infra.observability import get_metrics_collector

        collector = get_metrics_collector()

        # connection pool metrics
        print(f"Pool size: {collector.get_gauge('postgres_pool_size')}")
        print(f"Active connections: {collector.get_gauge('postgres_pool_active')}")
        print(f"Pool utilization: {collector.get_gauge('postgres_pool_utilization')}%")

        # query latency
        stats = collector.get_histogram_stats("postgres_query_latency_ms")
        print(f"P50: {stats['p50']:.2f}ms")
        print(f"P95: {stats['p95']:.2f}ms")
        print(f"P99: {stats['p99']:.2f}ms")

        # LLM cost tracking
        total_cost = collector.get_counter("llm_cost_usd_total")
        print(f"Total LLM cost: ${total_cost:.2f}")

        assert collector.get_gauge("postgres_pool_size") >= 2
    out = capsys.readouterr().out
    assert "Active connections: " in out
    assert "Pool utilization: " in out
    assert stats.count >= 3  # the three fetches (and the pool's connect)
    assert 0 < stats["p50"] <= stats["p95"] <= stats["p99"]
    assert f"P99: {stats['p99']:.2f}ms" in out
    assert "Total LLM cost: $0.00" in out


# ------------------------------------------------------- programmatic configuration
def test_programmatic_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    """Settings from keyword arguments, read through the grouped views."""
    from config.settings import Settings  # the source had src.infra.config.settings

    settings = Settings(
        database_url="postgresql://localhost/db",
        postgres_min_pool_size=10,
        postgres_max_pool_size=50,
    )

    # grouped access
    print(settings.db.url)
    print(settings.vector.host)
    print(settings.llm.model)

    assert capsys.readouterr().out.splitlines() == [
        "postgresql://localhost/db",
        settings.vector.host,
        settings.llm.model,
    ]
    assert (settings.db.min_pool_size, settings.db.max_pool_size) == (10, 50)


ENVIRONMENT = {
    "SEMANTICA_DATABASE_URL": "postgresql://user:pass@localhost:5432/db",
    "SEMANTICA_POSTGRES_MIN_POOL_SIZE": "5",
    "SEMANTICA_POSTGRES_MAX_POOL_SIZE": "20",
    "SEMANTICA_REDIS_HOST": "localhost",
    "SEMANTICA_REDIS_PORT": "6379",
    "SEMANTICA_QDRANT_HOST": "localhost",
    "SEMANTICA_QDRANT_PORT": "6333",
    "SEMANTICA_QDRANT_PREFER_GRPC": "true",
    "SEMANTICA_QDRANT_UPSERT_CONCURRENCY": "4",
    "SEMANTICA_CIRCUIT_BREAKER_ENABLED": "true",
    "SEMANTICA_RETRY_ENABLED": "true",
    "SEMANTICA_RETRY_MAX_ATTEMPTS": "3",
}


@pytest.mark.parametrize(
    ("variable", "value", "read"),
    [
        ("SEMANTICA_DATABASE_URL", "postgresql://u:p@db.example:6000/x", lambda s: s.db.url),
        ("SEMANTICA_POSTGRES_MIN_POOL_SIZE", "6", lambda s: s.db.min_pool_size),
        ("SEMANTICA_POSTGRES_MAX_POOL_SIZE", "21", lambda s: s.db.max_pool_size),
        ("SEMANTICA_REDIS_HOST", "cache.example", lambda s: s.redis.host),
        ("SEMANTICA_REDIS_PORT", "6380", lambda s: s.redis.port),
        ("SEMANTICA_QDRANT_HOST", "vectors.example", lambda s: s.vector.host),
        ("SEMANTICA_QDRANT_PORT", "6334", lambda s: s.vector.port),
        ("SEMANTICA_QDRANT_PREFER_GRPC", "false", lambda s: s.vector.prefer_grpc),
        ("SEMANTICA_QDRANT_UPSERT_CONCURRENCY", "8", lambda s: s.vector.upsert_concurrency),
        ("SEMANTICA_CIRCUIT_BREAKER_ENABLED", "false", lambda s: s.resilience.breaker_enabled),
        ("SEMANTICA_RETRY_ENABLED", "false", lambda s: s.resilience.retry_enabled),
        ("SEMANTICA_RETRY_MAX_ATTEMPTS", "4", lambda s: s.resilience.retry_max_attempts),
    ],
)
def test_every_documented_environment_variable_is_honoured(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, read: Any
) -> None:
    """The document's block of variables, as written, is accepted; then each variable
    alone, set to another value, changes the setting it names."""
    from config import Settings

    for name, documented in ENVIRONMENT.items():
        monkeypatch.setenv(name, documented)
    documented_settings = Settings(_env_file=None)
    assert str(read(documented_settings)).lower() == ENVIRONMENT[variable].lower()
    monkeypatch.setenv(variable, value)
    changed = Settings(_env_file=None)
    assert str(read(changed)).lower() == value.lower()


# --------------------------------------------------------------------- migration
async def test_migration_before_and_after(connection_string: str, logs: Logs) -> None:
    """Before: health_check() with no argument, `if is_healthy:` reads naturally (also when
    unhealthy). After: the enhanced store and the latency-aware form."""
    logger = get_logger("app")
    from infra.storage import EnhancedPostgresStore, PostgresStore

    # before
    store = PostgresStore(connection_string)
    is_healthy: object = await store.health_check()  # a result, later a bool
    assert is_healthy
    if is_healthy:
        reached = True
    assert reached
    await store.close()
    is_healthy = await store.health_check()  # a closed store: unhealthy, and falsy
    assert not is_healthy

    # after
    store = EnhancedPostgresStore(connection_string, enable_circuit_breaker=True, enable_retry=True)
    is_healthy, details = await store.health_check(latency_threshold_ms=100.0)
    if details["status"] == "degraded":
        logger.warning("Database is slow", latency=details["latency_ms"])
    assert is_healthy is True
    assert details["status"] in ("healthy", "degraded")
    slow = [r for r in logs.records() if r["event"] == "Database is slow"]
    assert len(slow) == (1 if details["status"] == "degraded" else 0)
    _, forced = await store.health_check(latency_threshold_ms=0.0)  # every ping is slower
    if forced["status"] == "degraded":
        logger.warning("Database is slow", latency=forced["latency_ms"])
    assert [r for r in logs.records() if r["event"] == "Database is slow"][-1]["latency"] == (
        forced["latency_ms"]
    )
    await store.close()

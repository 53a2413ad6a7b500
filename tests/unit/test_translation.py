"""The translation seam: real driver exception classes in, infra.exceptions out.

Driver exceptions are built the way each driver builds them (asyncpg's
``PostgresError.new`` from protocol fields, litellm/openai constructors with an
``httpx.Response``), or raised for real: against a closed loopback port, qdrant's local
mode, and -- for neo4j's server errors, which the driver builds only from a ``FAILURE``
message -- a scripted loopback Bolt server (``FailingBoltServer``). No database is needed.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import grpc
import grpc.aio
import httpx
import neo4j
import pytest
import redis.asyncio
import redis.exceptions as rx
from asyncpg import exceptions as pgx
from asyncpg.exceptions import _base as pg_base
from neo4j import exceptions as nx
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from infra.exceptions import (
    BackendAuthenticationError,
    BackendConnectionError,
    BudgetExceededError,
    CacheConnectionError,
    CacheError,
    CallerError,
    CollectionNotFoundError,
    ConfigurationError,
    ConstraintViolationError,
    ContentFilteredError,
    ContextWindowExceededError,
    DatabaseConnectionError,
    DatabaseError,
    DimensionMismatchError,
    GraphConnectionError,
    GraphError,
    GraphQueryError,
    GraphTransientError,
    InfraError,
    InfraTimeoutError,
    InvalidArgumentError,
    InvalidKeyError,
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMError,
    LLMTimeoutError,
    LockError,
    LockNotOwnedError,
    OperationTimeoutError,
    PoolExhaustedError,
    ProviderUnavailableError,
    QueryArgumentError,
    QueryDataError,
    QuerySyntaxError,
    QueryTimeoutError,
    RateLimitedError,
    SerializationFailureError,
    TransactionStateError,
    UniqueViolationError,
    VectorStoreConnectionError,
    VectorStoreError,
)
from infra.testing.bolt_server import FailingBoltServer
from infra.translation import (
    Family,
    TranslationContext,
    register_driver_table,
    to,
    translate_exception,
    translated,
)

PASSWORD = "hunter2-s3cret"
DSN = f"postgresql://app:{PASSWORD}@db.internal:5432/app"
REPO = Path(__file__).resolve().parents[2]


def tr(exc: BaseException, family: Family = "generic", **kwargs: Any) -> InfraError:
    return translate_exception(exc, component="test", family=family, **kwargs)


def pg_error(sqlstate: str, message: str = "boom", **fields: str) -> Exception:
    """An asyncpg error built from protocol fields, exactly as asyncpg does on the wire."""
    codes = {"constraint": "n", "table": "t", "detail": "D", "column": "c"}
    wire = {"C": sqlstate, "M": message} | {codes[k]: v for k, v in fields.items()}
    error: Exception = pgx.PostgresError.new(wire)
    return error


def rpc_error(code: grpc.StatusCode, details: str = "boom") -> Exception:
    error: Exception = grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details
    )
    return error


def qdrant_response(status: int, error: str = "boom", **headers: str) -> UnexpectedResponse:
    body = json.dumps({"status": {"error": error}, "time": 0.0}).encode()
    return UnexpectedResponse(status, "reason", body, httpx.Headers(headers))


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def lx() -> ModuleType:
    """litellm.exceptions, imported offline (no remote model-cost-map fetch)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm.exceptions

    return litellm.exceptions


REQUEST = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")


# ------------------------------------------------------------------------------ the seam
def test_importing_translation_imports_no_driver() -> None:
    """import infra.translation pulls in no driver (litellm alone takes seconds)."""
    drivers = (
        "asyncpg",
        "redis",
        "neo4j",
        "qdrant_client",
        "httpx",
        "httpx2",
        "grpc",
        "litellm",
        "openai",
    )
    code = (
        "import sys, infra.translation\n"
        f"loaded = [m for m in {drivers!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    # Fixed argv, no shell: the interpreter running these tests on a literal script.
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_result_is_chained_to_the_driver_error_and_names_it() -> None:
    """__cause__ is the original; details carry operation and the driver class."""
    original = ConnectionResetError(errno.ECONNRESET, "reset by peer")
    error = tr(original, "database", operation="fetch")
    assert error.__cause__ is original
    assert error.__suppress_context__ is True
    assert error.component == "test"
    assert error.details["operation"] == "fetch"
    assert error.details["driver_error"] == "builtins.ConnectionResetError"


def test_infra_error_passes_through_unchanged() -> None:
    """An InfraError is returned as the same object, untouched."""
    original = QueryTimeoutError(timeout=1.0, component="postgres")
    assert tr(original, "cache", operation="get") is original
    assert original.details == {"timeout": 1.0}
    assert original.component == "postgres"


@pytest.mark.parametrize(
    "control",
    [
        asyncio.CancelledError(),
        KeyboardInterrupt(),
        SystemExit(1),
        GeneratorExit(),
        StopIteration(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_translate_exception_refuses_control_flow(control: BaseException) -> None:
    """Cancellation, exits and iterator control flow are not failures to translate."""
    with pytest.raises(TypeError, match="control flow"):
        tr(control)


@pytest.mark.parametrize(
    "control",
    [
        asyncio.CancelledError,
        KeyboardInterrupt,
        SystemExit,
        GeneratorExit,
        StopIteration,
        StopAsyncIteration,
    ],
)
async def test_scope_lets_control_flow_through_untouched(control: type[BaseException]) -> None:
    """Both with and async with re-raise control-flow exceptions as the same object."""
    raised = control()
    with pytest.raises(control) as sync_info, translated("postgres", family="database"):
        raise raised
    assert sync_info.value is raised
    with pytest.raises(control) as async_info:
        async with translated("postgres", family="database"):
            raise raised
    assert async_info.value is raised


async def test_cancelling_a_task_inside_a_scope_cancels_it() -> None:
    """A real task cancellation propagates through async with translated(...)."""
    started = asyncio.Event()

    async def call() -> None:
        async with translated("redis", family="cache", operation="get"):
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(call())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


def test_sync_scope_raises_translation_from_the_original() -> None:
    """with translated(...) re-raises a driver error as its translation, chained."""
    original = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    scope = translated("postgres", family="database", operation="connect")
    with pytest.raises(DatabaseConnectionError) as info, scope:
        raise original
    assert info.value.__cause__ is original
    assert info.value.details["operation"] == "connect"
    assert info.value.retryable is True


async def test_async_scope_raises_translation_and_passes_values_through(
    closed_port: int,
) -> None:
    """async with translated(...) leaves successful code alone and translates failures."""
    async with translated("asyncio", operation="noop"):
        value = await asyncio.sleep(0, result=42)
    assert value == 42
    with pytest.raises(BackendConnectionError) as info:
        async with translated("asyncio", operation="open_connection"):
            await asyncio.open_connection("127.0.0.1", closed_port)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


async def test_scope_passes_infra_error_unchanged() -> None:
    """An InfraError raised inside the scope propagates as the same object."""
    original = CacheError("already ours", component="redis")
    with pytest.raises(CacheError) as info:
        async with translated("postgres", family="database"):
            raise original
    assert info.value is original


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"component": ""}, "component"),
        ({"component": "pg", "family": "sql"}, "family"),
        ({"component": "pg", "timeout": -1.0}, "timeout"),
    ],
)
def test_bad_arguments_are_rejected_at_construction(kwargs: dict[str, Any], argument: str) -> None:
    """A bad component, family or timeout raises ValueError naming the argument."""
    component = kwargs.pop("component")
    with pytest.raises(ValueError, match=argument):
        translated(component, **kwargs)
    with pytest.raises(ValueError, match=argument):
        translate_exception(RuntimeError(), component=component, **kwargs)


def test_non_numeric_timeout_is_a_type_error() -> None:
    """timeout must be seconds as a number, not a string or bool."""
    with pytest.raises(TypeError, match="timeout"):
        translated("pg", timeout="5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timeout"):
        translated("pg", timeout=True)


def test_to_rejects_targets_that_are_not_errors_or_roles() -> None:
    """to() fails at table-build time, not at translation time."""
    with pytest.raises(ValueError, match="target"):
        to("socket")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="target"):
        to(ValueError)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("family", "connection", "timeout", "base"),
    [
        ("database", DatabaseConnectionError, QueryTimeoutError, DatabaseError),
        ("cache", CacheConnectionError, OperationTimeoutError, CacheError),
        ("vector", VectorStoreConnectionError, OperationTimeoutError, VectorStoreError),
        ("graph", GraphConnectionError, OperationTimeoutError, GraphError),
        ("llm", ProviderUnavailableError, LLMTimeoutError, LLMError),
        ("generic", BackendConnectionError, OperationTimeoutError, InfraError),
    ],
)
def test_family_chooses_the_type_of_generic_os_errors(
    family: Family,
    connection: type[InfraError],
    timeout: type[InfraError],
    base: type[InfraError],
) -> None:
    """TimeoutError, refused connections and unknown errors map per family."""
    timed_out = tr(TimeoutError(), family, timeout=2.5)
    assert type(timed_out) is timeout
    assert timed_out.retryable is True
    assert timed_out.details["timeout"] == 2.5
    refused = tr(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), family)
    assert type(refused) is connection
    assert refused.retryable is True
    unknown = tr(KeyError("surprise"), family)
    assert type(unknown) is base
    assert unknown.retryable is False


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionResetError(errno.ECONNRESET, "reset"),
        BrokenPipeError(errno.EPIPE, "broken pipe"),
        ConnectionAbortedError(errno.ECONNABORTED, "aborted"),
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        OSError("Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.1', 5432)"),
    ],
    ids=lambda e: f"{type(e).__name__}-{getattr(e, 'errno', None)}",
)
def test_connection_class_os_errors_are_retryable_connection_errors(exc: OSError) -> None:
    """Reset, broken pipe, DNS failure and unreachable hosts are connection errors."""
    error = tr(exc, "cache")
    assert type(error) is CacheConnectionError
    assert error.retryable is True


def test_other_os_errors_are_the_family_base_error() -> None:
    """An OSError that is not about the connection is not retryable."""
    error = tr(FileNotFoundError(errno.ENOENT, "no such file"), "database")
    assert type(error) is DatabaseError
    assert error.retryable is False


async def test_real_asyncio_timeout_becomes_query_timeout() -> None:
    """asyncio.wait_for's TimeoutError is a QueryTimeoutError for a database call."""
    scope = translated("postgres", family="database", timeout=0.01)
    with pytest.raises(QueryTimeoutError) as info, scope:
        await asyncio.wait_for(asyncio.sleep(1), timeout=0.01)
    assert info.value.details["timeout"] == 0.01
    assert isinstance(info.value, DatabaseError)


def test_driver_message_secrets_never_render() -> None:
    """A DSN password or API key in a driver message is masked in str, repr and to_dict."""
    for exc in (
        pgx.InvalidPasswordError(f"could not authenticate with {DSN}"),
        OSError(f"connect {DSN} failed"),
        rx.ConnectionError(f"Error connecting to redis://:{PASSWORD}@cache:6379/0"),
    ):
        error = tr(exc, "database")
        rendered = (str(error), repr(error), json.dumps(error.to_dict()), error.message)
        for text in rendered:
            assert PASSWORD not in text
            assert "***" in text


def test_long_driver_messages_are_cut_after_redaction() -> None:
    """Messages become one bounded line; a password past the cut is still masked."""
    error = tr(RuntimeError("x" * 280 + f" {DSN}\nsecond line"), "database")
    assert PASSWORD not in str(error)
    assert "\n" not in error.message
    assert len(error.message) < 400


# ---------------------------------------------------------------------------- registry
def fake_classes(root: str) -> tuple[type[Exception], type[Exception]]:
    base = type("FakeBase", (Exception,), {"__module__": f"{root}.errors"})
    derived = type("FakeDerived", (base,), {"__module__": f"{root}.errors"})
    return base, derived


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    removers: list[Any] = []
    yield removers
    for remove in removers:
        remove()


def test_most_derived_class_wins_whatever_the_row_order(cleanup: list[Any]) -> None:
    """Rows listed base-first still resolve the derived class to its own row."""
    base, derived = fake_classes("fakedriver_order")
    rows = [(base, to(CacheError)), (derived, to(LockError))]
    cleanup.append(register_driver_table("fakedriver_order", lambda: rows))
    assert type(tr(derived())) is LockError
    assert type(tr(base())) is CacheError


def test_declining_translator_falls_through_to_the_base_row(cleanup: list[Any]) -> None:
    """A translator returning None lets the MRO walk continue to the next class."""
    base, derived = fake_classes("fakedriver_decline")
    rows = [(derived, lambda _exc, _ctx: None), (base, to(GraphQueryError))]
    cleanup.append(register_driver_table("fakedriver_decline", lambda: rows))
    assert type(tr(derived())) is GraphQueryError


def test_later_registration_refines_an_earlier_row(cleanup: list[Any]) -> None:
    """For the same class, the newest registration is tried first."""
    base, _ = fake_classes("fakedriver_refine")
    cleanup.append(register_driver_table("fakedriver_refine", lambda: [(base, to(CacheError))]))
    assert type(tr(base())) is CacheError
    cleanup.append(register_driver_table("fakedriver_refine", lambda: [(base, to(LockError))]))
    assert type(tr(base())) is LockError


def test_unregistering_removes_the_table() -> None:
    """The function register_driver_table returns takes the table out again."""
    base, _ = fake_classes("fakedriver_remove")
    remove = register_driver_table("fakedriver_remove", lambda: [(base, to(LockError))])
    assert type(tr(base())) is LockError
    remove()
    assert type(tr(base())) is InfraError


def test_loader_runs_once_and_only_for_its_own_exceptions(cleanup: list[Any]) -> None:
    """Tables load lazily, on the first exception from their module root, once."""
    base, derived = fake_classes("fakedriver_lazy")
    calls: list[int] = []

    def loader() -> list[tuple[type[BaseException], Any]]:
        calls.append(1)
        return [(base, to("connection"))]

    cleanup.append(register_driver_table("fakedriver_lazy", loader))
    tr(ValueError("unrelated"))
    assert calls == []
    assert type(tr(derived(), "graph")) is GraphConnectionError
    assert type(tr(base(), "cache")) is CacheConnectionError
    assert calls == [1]


def test_loader_import_error_means_an_empty_table(cleanup: list[Any]) -> None:
    """A loader whose driver is missing contributes nothing and breaks nothing."""
    base, _ = fake_classes("fakedriver_missing")

    def loader() -> list[tuple[type[BaseException], Any]]:
        raise ModuleNotFoundError("No module named 'fakedriver_missing'")

    cleanup.append(register_driver_table("fakedriver_missing", loader))
    assert type(tr(base(), "cache")) is CacheError


@pytest.mark.parametrize(
    ("root", "loader", "error"),
    [
        ("asyncpg.exceptions", list, ValueError),
        ("", list, ValueError),
        ("fakedriver", "not callable", TypeError),
    ],
)
def test_register_driver_table_validates_its_arguments(
    root: str, loader: Any, error: type[Exception]
) -> None:
    """The root must be a top-level module name and the loader callable."""
    with pytest.raises(error, match=r"module_root|loader"):
        register_driver_table(root, loader)


def test_translation_context_fills_generic_family_only() -> None:
    """with_default_family never overrides a family the caller chose."""
    assert TranslationContext("x").with_default_family("cache").family == "cache"
    assert TranslationContext("x", "graph").with_default_family("cache").family == "graph"


# ------------------------------------------------------------------------------ asyncpg
@pytest.mark.parametrize(
    ("sqlstate", "expected", "retryable"),
    [
        ("23505", UniqueViolationError, False),
        ("23503", ConstraintViolationError, False),  # foreign key
        ("23502", ConstraintViolationError, False),  # not null
        ("23514", ConstraintViolationError, False),  # check
        ("23P01", ConstraintViolationError, False),  # exclusion
        ("42601", QuerySyntaxError, False),  # syntax error
        ("42P01", QuerySyntaxError, False),  # undefined table
        ("42703", QuerySyntaxError, False),  # undefined column
        ("42883", QuerySyntaxError, False),  # undefined function
        ("0A000", QuerySyntaxError, False),  # feature not supported
        ("54001", QuerySyntaxError, False),  # statement too complex
        ("22P02", QueryDataError, False),  # invalid text representation (DataError)
        ("22012", QueryDataError, False),  # division by zero
        ("22021", QueryDataError, False),  # NUL in a text value
        ("22003", QueryDataError, False),  # numeric value out of range
        ("21000", QueryDataError, False),  # more than one row from a scalar subquery
        ("P0001", QueryDataError, False),  # RAISE EXCEPTION in a function
        ("44000", ConstraintViolationError, False),  # WITH CHECK OPTION
        ("25P02", TransactionStateError, False),  # in failed SQL transaction
        ("25006", TransactionStateError, False),  # read-only transaction
        ("3B001", TransactionStateError, False),  # invalid savepoint
        ("40001", SerializationFailureError, True),
        ("40P01", SerializationFailureError, True),  # deadlock
        ("57014", QueryTimeoutError, True),  # statement_timeout
        ("28P01", BackendAuthenticationError, False),  # invalid password
        ("28000", BackendAuthenticationError, False),
        ("42501", BackendAuthenticationError, False),  # insufficient privilege
        ("08003", DatabaseConnectionError, True),  # connection does not exist
        ("08006", DatabaseConnectionError, True),  # connection failure
        ("57P03", DatabaseConnectionError, True),  # cannot connect now
        ("53300", DatabaseConnectionError, True),  # too many connections
        ("57P01", DatabaseConnectionError, True),  # admin shutdown
        ("57P02", DatabaseConnectionError, True),  # crash shutdown
        ("53200", DatabaseError, True),  # out of memory: class 53 fallback
        ("40003", DatabaseError, True),  # class 40 fallback
        ("55P03", DatabaseError, False),  # lock not available
        ("XX000", DatabaseError, False),  # internal error
    ],
)
def test_asyncpg_errors_map_by_sqlstate(
    sqlstate: str, expected: type[InfraError], retryable: bool
) -> None:
    """Each SQLSTATE lands on the documented type with the documented retryable."""
    error = tr(pg_error(sqlstate), "database")
    assert type(error) is expected
    assert error.retryable is retryable
    assert error.details["sqlstate"] == sqlstate


def test_unique_violation_keeps_constraint_but_not_row_values() -> None:
    """Constraint and table are kept as facts; the DETAIL quoting row data is not."""
    exc = pg_error(
        "23505",
        'duplicate key value violates unique constraint "users_email_key"',
        constraint="users_email_key",
        table="users",
        detail="Key (email)=(alice@example.com) already exists.",
    )
    error = tr(exc, "database", operation="execute")
    assert isinstance(error, ConstraintViolationError)
    assert error.details["constraint"] == "users_email_key"
    assert error.details["table"] == "users"
    assert error.details["driver_error"] == "asyncpg.exceptions.UniqueViolationError"
    assert "alice@example.com" not in str(error)
    assert "users_email_key" in error.message


def test_statement_timeout_is_a_query_timeout_with_the_limit() -> None:
    """57014 becomes QueryTimeoutError, both DatabaseError and InfraTimeoutError."""
    error = tr(pg_error("57014", "canceling statement due to statement timeout"), timeout=3.0)
    assert isinstance(error, QueryTimeoutError)
    assert isinstance(error, InfraTimeoutError)
    assert error.details["timeout"] == 3.0
    assert error.timeout == 3.0


@pytest.mark.parametrize(
    ("exc", "expected", "retryable"),
    [
        (pgx.InterfaceError("connection is closed"), DatabaseConnectionError, True),
        (pgx.InterfaceError("pool is closed"), DatabaseConnectionError, False),
        (pgx.InterfaceError("another operation is in progress"), DatabaseError, False),
        (pg_base.DataError("invalid input for query argument $1"), QueryArgumentError, False),
        (
            pgx.InterfaceError("the server expects 1 argument for this query, 2 were passed"),
            QueryArgumentError,
            False,
        ),
        (
            pgx.InterfaceError("the number of query arguments cannot exceed 32767"),
            QueryArgumentError,
            False,
        ),
        (pg_base.ClientConfigurationError("sslmode is invalid"), ConfigurationError, False),
        (pg_base.OutdatedSchemaCacheError("cached statement plan is invalid"), DatabaseError, True),
        # A protocol state that no longer adds up: asyncpg drops the connection.
        (pg_base.ProtocolError("unexpected message"), DatabaseConnectionError, True),
        (
            pg_base.InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress"
            ),
            DatabaseConnectionError,
            True,
        ),
        (
            pg_base.InternalClientError(
                'cannot switch to state 3; protocol is in the "failed" state'
            ),
            DatabaseConnectionError,
            True,
        ),
        (
            UnicodeEncodeError("utf-8", "a\ud800", 1, 2, "surrogates not allowed"),
            QueryArgumentError,
            False,
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_asyncpg_client_side_errors(
    exc: Exception, expected: type[InfraError], retryable: bool
) -> None:
    """Interface, encoding and configuration errors raised by asyncpg itself."""
    error = tr(exc, "database")
    assert type(error) is expected
    assert error.retryable is retryable


async def test_real_asyncpg_connect_to_closed_port(closed_port: int) -> None:
    """A refused asyncpg connect is a retryable DatabaseConnectionError, DSN masked."""
    dsn = f"postgresql://app:{PASSWORD}@127.0.0.1:{closed_port}/app"
    with pytest.raises(DatabaseConnectionError) as info:
        async with translated("postgres", family="database", operation="connect"):
            await asyncpg.connect(dsn, timeout=2)
    assert info.value.retryable is True
    assert PASSWORD not in repr(info.value)


# -------------------------------------------------------------------------------- redis
@pytest.mark.parametrize(
    ("exc", "expected", "retryable"),
    [
        (rx.ConnectionError("Error 111 connecting"), CacheConnectionError, True),
        (rx.BusyLoadingError("loading"), CacheConnectionError, True),
        (rx.ReadOnlyError("read only replica"), CacheConnectionError, True),
        (rx.AuthenticationError("wrong password"), BackendAuthenticationError, False),
        (rx.AuthenticationWrongNumberOfArgsError("wrong args"), BackendAuthenticationError, False),
        (rx.NoPermissionError("this user has no permissions"), BackendAuthenticationError, False),
        (rx.TimeoutError("Timeout reading from socket"), OperationTimeoutError, True),
        (rx.MaxConnectionsError("Too many connections"), PoolExhaustedError, False),
        (rx.NoScriptError("No matching script."), CacheError, True),
        (rx.WatchError("Watched variable changed."), CacheError, True),
        (rx.ResponseError("WRONGTYPE wrong kind of value"), CacheError, False),
        (rx.DataError("Invalid input of type: 'dict'."), InvalidKeyError, False),
        (rx.LockNotOwnedError("not owned"), LockNotOwnedError, False),
        (rx.LockError("Cannot release an unlocked lock"), LockError, False),
        (rx.RedisError("something else"), CacheError, False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_redis_errors(exc: Exception, expected: type[InfraError], retryable: bool) -> None:
    """redis-py exceptions map to cache/lock/auth types; generic family means cache."""
    error = tr(exc)
    assert type(error) is expected
    assert error.retryable is retryable


def test_redis_response_error_keeps_the_server_error_code() -> None:
    """details['code'] is the server's error prefix."""
    error = tr(rx.ResponseError("WRONGTYPE Operation against a key"), "cache")
    assert error.details["code"] == "WRONGTYPE"


def test_redis_errors_in_the_graph_family_are_graph_errors() -> None:
    """FalkorDB over the Redis protocol: query errors and connection errors are graph's."""
    assert type(tr(rx.ResponseError("errMsg: Invalid input"), "graph")) is GraphQueryError
    assert type(tr(rx.ConnectionError("Error 111"), "graph")) is GraphConnectionError


def test_redis_timeout_carries_the_known_limit() -> None:
    """A redis socket timeout is an OperationTimeoutError with details['timeout']."""
    error = tr(rx.TimeoutError("Timeout reading from socket"), "cache", timeout=0.5)
    assert isinstance(error, OperationTimeoutError)
    assert error.details["timeout"] == 0.5


async def test_real_redis_ping_to_closed_port(closed_port: int) -> None:
    """A real refused redis connection becomes CacheConnectionError, password masked."""
    client = redis.asyncio.Redis(
        host="127.0.0.1", port=closed_port, password=PASSWORD, retry=Retry(NoBackoff(), 0)
    )
    try:
        with pytest.raises(CacheConnectionError) as info:
            async with translated("redis", family="cache", operation="ping"):
                await client.ping()
    finally:
        await client.aclose()
    assert isinstance(info.value.__cause__, rx.ConnectionError)
    assert info.value.retryable is True
    assert PASSWORD not in str(info.value)


# ----------------------------------------------------------------- qdrant / httpx / grpc
@pytest.mark.parametrize(
    ("response", "expected", "retryable"),
    [
        (qdrant_response(404, "Collection `docs` doesn't exist!"), CollectionNotFoundError, False),
        (
            qdrant_response(400, "Vector dimension error: expected dim: 384, got 3"),
            DimensionMismatchError,
            False,
        ),
        (qdrant_response(400, "Wrong input: bad filter"), VectorStoreError, False),
        (qdrant_response(401, "Must provide an API key"), BackendAuthenticationError, False),
        (qdrant_response(429, "Too many requests"), VectorStoreError, True),
        (qdrant_response(500, "Service internal error"), VectorStoreError, True),
        (qdrant_response(502, "bad gateway"), VectorStoreConnectionError, True),
        (qdrant_response(503, "unavailable"), VectorStoreConnectionError, True),
        (qdrant_response(504, "gateway timeout"), OperationTimeoutError, True),
    ],
    ids=lambda v: str(v.status_code) if isinstance(v, UnexpectedResponse) else None,
)
def test_qdrant_rest_errors_map_by_status(
    response: UnexpectedResponse, expected: type[InfraError], retryable: bool
) -> None:
    """UnexpectedResponse: 404 collection, 400 dimension, 429/5xx retryable."""
    error = tr(response)
    assert type(error) is expected
    assert error.retryable is retryable
    assert error.details["status_code"] == response.status_code


def test_qdrant_dimension_mismatch_records_expected_and_got() -> None:
    """The sizes from Qdrant's message become facts."""
    body = "Vector dimension error: expected dim: 384, got 3"
    error = tr(qdrant_response(400, body), "vector")
    assert error.details["expected_dim"] == 384
    assert error.details["got_dim"] == 3
    assert "expected dim: 384" in error.message


def test_qdrant_429_and_resource_exhausted_carry_retry_after() -> None:
    """Throttling keeps the server's Retry-After."""
    throttled = tr(qdrant_response(429, "slow down", **{"retry-after": "3"}), "vector")
    assert throttled.details["retry_after"] == 3.0
    exhausted = tr(ResourceExhaustedResponse("Too many requests", 5), "vector")
    assert type(exhausted) is VectorStoreError
    assert exhausted.retryable is True
    assert exhausted.details["retry_after"] == 5


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (httpx.ConnectError("All connection attempts failed"), VectorStoreConnectionError),
        (httpx.RemoteProtocolError("Server disconnected"), VectorStoreConnectionError),
        (httpx.ReadTimeout("timed out"), OperationTimeoutError),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_qdrant_response_handling_exception_translates_its_source(
    source: Exception, expected: type[InfraError]
) -> None:
    """The wrapped transport error decides the type; both classes are recorded."""
    error = tr(ResponseHandlingException(source), "vector", timeout=4.0)
    assert type(error) is expected
    assert error.retryable is True
    assert error.details["source_error"] == f"httpx.{type(source).__name__}"
    assert error.details["driver_error"].endswith("ResponseHandlingException")


@pytest.mark.parametrize(
    ("exc", "expected", "retryable"),
    [
        (httpx.ConnectError("refused"), VectorStoreConnectionError, True),
        (httpx.ReadError("reset"), VectorStoreConnectionError, True),
        (httpx.RemoteProtocolError("Server disconnected"), VectorStoreConnectionError, True),
        (httpx.ConnectTimeout("timed out"), OperationTimeoutError, True),
        # The wait for a pooled connection already ran out: never retried.
        (httpx.PoolTimeout("no connection"), PoolExhaustedError, False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_raw_httpx_errors_map_by_family(
    exc: Exception, expected: type[InfraError], retryable: bool
) -> None:
    """httpx transport errors become the caller family's connection/timeout errors."""
    error = tr(exc, "vector")
    assert type(error) is expected
    assert error.retryable is retryable


def test_httpx_status_error_maps_by_status() -> None:
    """raise_for_status() errors follow the status table; 429 keeps Retry-After."""
    response = httpx.Response(429, headers={"Retry-After": "2"}, request=REQUEST)
    exc = httpx.HTTPStatusError("429", request=REQUEST, response=response)
    error = tr(exc, "llm")
    assert type(error) is RateLimitedError
    assert error.details["retry_after"] == 2.0


async def test_real_httpx_connect_error(closed_port: int) -> None:
    """A real refused httpx request is a retryable connection error of the family."""
    async with httpx.AsyncClient() as client:
        with pytest.raises(VectorStoreConnectionError) as info:
            async with translated("qdrant", family="vector", operation="get"):
                await client.get(f"http://127.0.0.1:{closed_port}/collections")
    assert isinstance(info.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    ("code", "details", "expected", "retryable"),
    [
        (grpc.StatusCode.UNAVAILABLE, "failed to connect", VectorStoreConnectionError, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", OperationTimeoutError, True),
        (grpc.StatusCode.NOT_FOUND, "Collection docs not found", CollectionNotFoundError, False),
        (grpc.StatusCode.INVALID_ARGUMENT, "Vector dimension error", DimensionMismatchError, False),
        (grpc.StatusCode.INVALID_ARGUMENT, "bad filter", VectorStoreError, False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many requests", VectorStoreError, True),
        (grpc.StatusCode.UNAUTHENTICATED, "invalid api key", BackendAuthenticationError, False),
        (grpc.StatusCode.INTERNAL, "panic", VectorStoreError, False),
    ],
    ids=lambda v: v.name if isinstance(v, grpc.StatusCode) else None,
)
def test_grpc_errors_map_by_status_code(
    code: grpc.StatusCode, details: str, expected: type[InfraError], retryable: bool
) -> None:
    """AioRpcError (qdrant prefer_grpc) maps by status code; generic family means vector."""
    error = tr(rpc_error(code, details))
    assert type(error) is expected
    assert error.retryable is retryable
    assert error.details["grpc_status"] == code.name


async def test_real_qdrant_local_mode_value_errors() -> None:
    """Local mode's ValueErrors become CollectionNotFound / DimensionMismatch for vector."""
    from qdrant_client import AsyncQdrantClient, models

    client = AsyncQdrantClient(location=":memory:")
    try:
        with pytest.raises(CollectionNotFoundError) as missing:
            async with translated("qdrant", family="vector", operation="get_collection"):
                await client.get_collection("missing")
        await client.create_collection(
            "docs", vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE)
        )
        with pytest.raises(DimensionMismatchError) as wrong_size:
            async with translated("qdrant", family="vector", operation="upsert"):
                await client.upsert("docs", points=[models.PointStruct(id=1, vector=[1.0, 2.0])])
        with pytest.raises(DimensionMismatchError):
            async with translated("qdrant", family="vector", operation="query_points"):
                await client.query_points("docs", query=[1.0, 2.0])
    finally:
        await client.close()
    assert isinstance(missing.value.__cause__, ValueError)
    assert wrong_size.value.details["expected_dim"] == 3
    assert wrong_size.value.details["got_dim"] == 2


def test_value_error_heuristic_applies_only_to_the_vector_family() -> None:
    """Outside family='vector' a ValueError stays a generic, non-retryable error."""
    error = tr(ValueError("Collection missing not found"), "database")
    assert type(error) is DatabaseError
    assert type(tr(ValueError("bad input"), "vector")) is VectorStoreError


# -------------------------------------------------------------------------------- neo4j
@pytest.mark.parametrize(
    ("code", "expected", "retryable"),
    [
        ("Neo.ClientError.Statement.SyntaxError", GraphQueryError, False),
        ("Neo.ClientError.Statement.TypeError", GraphQueryError, False),
        ("Neo.ClientError.Schema.ConstraintValidationFailed", GraphQueryError, False),
        ("Neo.ClientError.Security.Unauthorized", BackendAuthenticationError, False),
        ("Neo.ClientError.Security.Forbidden", BackendAuthenticationError, False),
        ("Neo.TransientError.Transaction.DeadlockDetected", GraphTransientError, True),
        ("Neo.TransientError.General.DatabaseUnavailable", GraphTransientError, True),
        ("Neo.ClientError.Cluster.NotALeader", GraphTransientError, True),
        # The driver rewrites this transient code to a client error: not retryable.
        ("Neo.TransientError.Transaction.Terminated", GraphQueryError, False),
        ("Neo.DatabaseError.General.UnknownError", GraphError, False),
    ],
)
async def test_neo4j_server_errors_map_by_code(
    bolt_failures: FailingBoltServer, code: str, expected: type[InfraError], retryable: bool
) -> None:
    """Server errors (a FAILURE message the driver hydrates) follow the class the driver
    picks and its is_retryable(); the code is the one the driver reports."""
    raised = await bolt_failures.server_error(code, "Invalid input 'X'")
    error = tr(raised)
    assert type(error) is expected
    assert error.retryable is retryable
    assert error.details["code"] == raised.code
    assert error.message.endswith("Invalid input 'X'")


@pytest.mark.parametrize(
    ("exc", "expected", "retryable"),
    [
        (nx.ServiceUnavailable("Couldn't connect to localhost:7687"), GraphConnectionError, True),
        (nx.SessionExpired("Failed to read from defunct connection"), GraphConnectionError, True),
        (nx.IncompleteCommit("Connection lost during commit"), GraphConnectionError, False),
        (nx.ConnectionAcquisitionTimeoutError("pool is full"), PoolExhaustedError, False),
        (nx.ConfigurationError("trust settings are invalid"), ConfigurationError, False),
        (nx.ResultConsumedError(object(), "result was consumed"), GraphError, False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_neo4j_driver_errors(exc: Exception, expected: type[InfraError], retryable: bool) -> None:
    """Driver-side errors: IncompleteCommit is a connection error that is NOT retryable."""
    error = tr(exc, "graph")
    assert type(error) is expected
    assert error.retryable is retryable


async def test_real_neo4j_connect_to_closed_port(closed_port: int) -> None:
    """A real refused Bolt connection is a retryable GraphConnectionError."""
    driver = neo4j.AsyncGraphDatabase.driver(
        f"bolt://127.0.0.1:{closed_port}", auth=("neo4j", PASSWORD)
    )
    try:
        with pytest.raises(GraphConnectionError) as info:
            async with translated("memgraph", family="graph", operation="verify_connectivity"):
                await driver.verify_connectivity()
    finally:
        await driver.close()
    assert isinstance(info.value.__cause__, nx.ServiceUnavailable)
    assert info.value.retryable is True


# ------------------------------------------------------------------------------ litellm
def test_litellm_rate_limit_keeps_retry_after_and_provider(lx: ModuleType) -> None:
    """RateLimitError -> RateLimitedError with retry_after from the response header."""
    response = httpx.Response(429, headers={"retry-after": "7"}, request=REQUEST)
    exc = lx.RateLimitError(
        message="Rate limit reached", llm_provider="openai", model="gpt-4o-mini", response=response
    )
    error = tr(exc, "llm", operation="completion")
    assert type(error) is RateLimitedError
    assert isinstance(error, RateLimitedError)
    assert error.retryable is True
    assert error.retry_after == 7.0
    assert error.details["status_code"] == 429
    assert error.details["llm_provider"] == "openai"
    assert error.details["model"] == "gpt-4o-mini"
    assert error.__cause__ is exc


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
    ids=["milliseconds", "past-http-date", "unparseable", "absent"],
)
def test_litellm_retry_after_header_forms(
    lx: ModuleType, headers: dict[str, str], expected: float | None
) -> None:
    """retry-after-ms and HTTP dates are understood; junk is ignored, not guessed."""
    response = httpx.Response(429, headers=headers, request=REQUEST)
    exc = lx.RateLimitError(message="slow", llm_provider="openai", model="m", response=response)
    error = tr(exc, "llm")
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == expected


def test_litellm_explicit_headers_supply_retry_after(lx: ModuleType) -> None:
    """litellm's own headers= (set by its router/proxy) are read too."""
    exc = lx.RateLimitError(
        message="slow", llm_provider="openai", model="m", headers={"retry-after": "4"}
    )
    error = tr(exc, "llm")
    assert error.details["retry_after"] == 4.0


def _litellm_cases(lx: ModuleType) -> list[tuple[Exception, type[InfraError], bool]]:
    common = {"llm_provider": "openai", "model": "gpt-4o-mini"}

    def resp(status: int) -> httpx.Response:
        return httpx.Response(status, request=REQUEST)

    return [
        (
            lx.ContextWindowExceededError(message="long", **common),
            ContextWindowExceededError,
            False,
        ),
        (lx.AuthenticationError(message="bad key", **common), LLMAuthenticationError, False),
        (lx.BadRequestError(message="bad", **common), LLMBadRequestError, False),
        (lx.ContentPolicyViolationError(message="policy", **common), ContentFilteredError, False),
        (lx.NotFoundError(message="no such model", **common), LLMBadRequestError, False),
        (
            lx.UnprocessableEntityError(message="bad", response=resp(422), **common),
            LLMBadRequestError,
            False,
        ),
        (lx.Timeout(message="took too long", **common), LLMTimeoutError, True),
        (lx.ServiceUnavailableError(message="busy", **common), ProviderUnavailableError, True),
        (lx.InternalServerError(message="oops", **common), ProviderUnavailableError, True),
        (lx.APIConnectionError(message="reset", **common), ProviderUnavailableError, True),
        (lx.BadGatewayError(message="502", **common), ProviderUnavailableError, True),
        (
            lx.APIError(status_code=500, message="upstream", **common),
            ProviderUnavailableError,
            True,
        ),
        (lx.APIError(status_code=418, message="teapot", **common), LLMBadRequestError, False),
        (lx.BudgetExceededError(current_cost=2.0, max_budget=1.0), BudgetExceededError, False),
    ]


def test_litellm_exceptions_map_to_the_most_derived_row(lx: ModuleType) -> None:
    """Each litellm class (subclassing openai's) lands on its own documented type."""
    for exc, expected, retryable in _litellm_cases(lx):
        error = tr(exc, "llm", timeout=30.0)
        assert (type(error), error.retryable) == (expected, retryable), type(exc).__name__
        assert error.__cause__ is exc


def test_litellm_timeout_and_budget_keep_their_facts(lx: ModuleType) -> None:
    """Timeout keeps the caller's limit; BudgetExceeded keeps cost and budget."""
    timed_out = tr(lx.Timeout(message="t", model="m", llm_provider="openai"), "llm", timeout=30.0)
    assert timed_out.details["timeout"] == 30.0
    budget = tr(lx.BudgetExceededError(current_cost=2.0, max_budget=1.0), "llm")
    assert budget.details["current_cost"] == 2.0
    assert budget.details["max_budget"] == 1.0


def test_litellm_api_key_in_message_is_masked(lx: ModuleType) -> None:
    """A provider key echoed in an error message never renders."""
    key = "sk-proj-AbCdEfGhIjKlMnOpQrStUv"
    exc = lx.AuthenticationError(
        message=f"Incorrect API key provided: {key}", llm_provider="openai", model="m"
    )
    error = tr(exc, "llm")
    assert isinstance(error, LLMAuthenticationError)
    for text in (str(error), repr(error), json.dumps(error.to_dict())):
        assert key not in text


def test_plain_openai_errors_are_translated_too() -> None:
    """openai's own classes (built on httpx2, not wrapped by litellm) use the openai rows."""
    import httpx2
    import openai

    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(429, headers={"retry-after": "1"}, request=request)
    limited = tr(openai.RateLimitError("slow", response=response, body=None), "llm")
    assert type(limited) is RateLimitedError
    assert limited.details["retry_after"] == 1.0
    assert type(tr(openai.APITimeoutError(request=request), "llm")) is LLMTimeoutError
    overloaded = httpx2.Response(529, request=request)
    unavailable = openai.APIStatusError("overloaded", response=overloaded, body=None)
    assert type(tr(unavailable, "llm")) is ProviderUnavailableError
    assert type(tr(httpx2.ConnectError("refused"), "llm")) is ProviderUnavailableError
    assert type(tr(httpx2.ReadTimeout("slow"), "llm")) is LLMTimeoutError


# ------------------------------------------------------- real servers (session fixtures)
@pytest.mark.postgres
async def test_real_postgres_errors_translate(pg_pool: asyncpg.Pool) -> None:
    """A live server's unique violation, syntax error and statement timeout map as documented."""
    async with pg_pool.acquire() as conn:
        await conn.execute("CREATE TEMP TABLE people (email text CONSTRAINT people_email UNIQUE)")
        await conn.execute("INSERT INTO people VALUES ('a@example.com')")
        with pytest.raises(UniqueViolationError) as duplicate:
            async with translated("postgres", family="database", operation="execute"):
                await conn.execute("INSERT INTO people VALUES ('a@example.com')")
        with pytest.raises(QuerySyntaxError):
            async with translated("postgres", family="database", operation="fetch"):
                await conn.fetch("SELEC 1")
        await conn.execute("SET statement_timeout = 50")
        with pytest.raises(QueryTimeoutError) as slow:
            async with translated("postgres", family="database", timeout=0.05):
                await conn.execute("SELECT pg_sleep(1)")
        await conn.execute("RESET statement_timeout")
    assert duplicate.value.details["constraint"] == "people_email"
    assert duplicate.value.details["sqlstate"] == "23505"
    assert "a@example.com" not in str(duplicate.value)
    assert slow.value.retryable is True
    assert slow.value.details["sqlstate"] == "57014"
    assert slow.value.details["timeout"] == 0.05


@pytest.mark.redis
async def test_real_redis_errors_translate(redis_client: redis.asyncio.Redis) -> None:
    """A live server's WRONGTYPE and NOSCRIPT replies map to CacheError (NOSCRIPT retryable)."""
    await redis_client.set("translation:key", "value")
    with pytest.raises(CacheError) as wrong_type:
        async with translated("redis", family="cache", operation="lpush"):
            await redis_client.lpush("translation:key", "x")
    with pytest.raises(CacheError) as no_script:
        async with translated("redis", family="cache", operation="evalsha"):
            await redis_client.evalsha("0" * 40, 0)
    assert wrong_type.value.details["code"] == "WRONGTYPE"
    assert wrong_type.value.retryable is False
    assert isinstance(no_script.value.__cause__, rx.NoScriptError)
    assert no_script.value.retryable is True


@pytest.mark.redis
async def test_real_graph_query_error_over_the_redis_protocol(
    redis_client: redis.asyncio.Redis,
) -> None:
    """With family='graph', a ResponseError to GRAPH.QUERY is a GraphQueryError."""
    with pytest.raises(GraphQueryError) as info:
        async with translated("falkordb", family="graph", operation="query"):
            # redis-py leaves execute_command unannotated.
            await redis_client.execute_command("GRAPH.QUERY", "g", "MATC (n) RETURN n")  # type: ignore[no-untyped-call]
    assert info.value.retryable is False
    assert isinstance(info.value.__cause__, rx.ResponseError)


@pytest.mark.graph
async def test_real_bolt_query_error_is_a_non_retryable_graph_error(
    graph_driver: neo4j.AsyncDriver,
) -> None:
    """Invalid Cypher over Bolt is a GraphError carrying the server's status code.

    (FalkorDB reports it as Neo.DatabaseError.General.UnknownError -> GraphError; Neo4j
    and Memgraph as a syntax ClientError -> GraphQueryError, a GraphError subclass.)
    """

    async def run_invalid_cypher() -> None:
        async with graph_driver.session() as session:
            result = await session.run("MATC (n) RETURN n")
            await result.consume()

    with pytest.raises(GraphError) as info:
        async with translated("graph", family="graph", operation="run"):
            await run_invalid_cypher()
    assert info.value.retryable is False
    assert str(info.value.details["code"]).startswith("Neo.")
    assert isinstance(info.value.__cause__, nx.Neo4jError)


# --------------------------------------------- caller errors, measured on the real drivers
#: (SQL, arguments, expected type, SQLSTATE or None, the argument named or None): what the
#: embedded PostgreSQL and asyncpg actually raise for a caller's mistake.
def _case(*values: Any, id: str) -> Any:  # noqa: A002 -- pytest.param's own name
    return pytest.param(values, id=id)


REAL_POSTGRES_CALLER_ERRORS = [
    _case("SELECT $1::int", (1, 2), QueryArgumentError, None, "args", id="too-many-args"),
    _case("SELECT $1::int, $2::int", (1,), QueryArgumentError, None, "args", id="too-few"),
    _case("SELECT $1::int", ("abc",), QueryArgumentError, None, "$1", id="str-for-int"),
    _case("SELECT $1::text", (7,), QueryArgumentError, None, "$1", id="int-for-text"),
    _case("SELECT $1::int", (2**40,), QueryArgumentError, None, "$1", id="int32-range"),
    _case("SELECT $1::bigint", (2**70,), QueryArgumentError, None, "$1", id="int64-range"),
    _case("SELECT $1::text", ("a\ud800",), QueryArgumentError, None, "$1", id="surrogate"),
    _case("SELECT $1::text", ({"a": 1},), QueryArgumentError, None, "$1", id="dict"),
    _case("SELECT $1::text", ("a\x00b",), QueryDataError, "22021", None, id="nul-arg"),
    _case("SELECT 1/0", (), QueryDataError, "22012", None, id="division-by-zero"),
    _case("SELECT 'x'::int", (), QueryDataError, "22P02", None, id="bad-cast"),
    _case(
        "SELECT (SELECT x FROM generate_series(1, 2) x)",
        (),
        QueryDataError,
        "21000",
        None,
        id="scalar-subquery-rows",
    ),
    _case(
        "DO $$BEGIN RAISE EXCEPTION 'nope'; END$$", (), QueryDataError, "P0001", None, id="raise"
    ),
    _case("SELEC 1", (), QuerySyntaxError, "42601", None, id="syntax"),
    _case("SELECT " + "1+" * 100_000 + "1", (), QuerySyntaxError, "54001", None, id="too-complex"),
]


@pytest.mark.parametrize("case", REAL_POSTGRES_CALLER_ERRORS)
async def test_real_asyncpg_caller_mistakes_are_typed_caller_errors(
    pg_pool: asyncpg.Pool, case: tuple[Any, ...]
) -> None:
    """Wrong arity, unencodable or out-of-range values, data the server refuses and SQL it
    cannot run are caller errors -- never retryable -- and the connection stays usable."""
    query, args, expected, sqlstate, argument = case
    async with pg_pool.acquire() as conn:
        with pytest.raises(expected) as info:
            async with translated("postgres", family="database", operation="fetch"):
                await conn.fetch(query, *args)
        assert await conn.fetchval("SELECT 1") == 1
    error = info.value
    assert isinstance(error, CallerError)
    assert error.retryable is False
    assert error.details.get("sqlstate") == sqlstate
    assert error.details.get("argument") == argument


async def test_real_asyncpg_encoding_error_names_the_parameter_not_the_value(
    pg_pool: asyncpg.Pool,
) -> None:
    """The client-side DataError quotes the value; ours names $n and the reason only."""
    async with pg_pool.acquire() as conn:
        with pytest.raises(QueryArgumentError) as info:
            async with translated("postgres", family="database"):
                await conn.fetch("SELECT $1::int, $2::int", 1, "tok-hunter2-value")
    text = f"{info.value} {info.value!r}"
    assert "tok-hunter2-value" not in text
    assert info.value.argument == "$2"
    assert "$2" in str(info.value)


async def test_real_asyncpg_refuses_nul_and_surrogates_in_sql_text_in_ways_we_must_preempt(
    pg_pool: asyncpg.Pool,
) -> None:
    """Why the store checks SQL text before any I/O: a NUL reaches the server as a
    protocol violation (SQLSTATE 08P01, which reads as a lost connection), and a lone
    surrogate makes asyncpg raise UnicodeEncodeError and close the connection."""
    async with pg_pool.acquire() as conn:
        with pytest.raises(DatabaseConnectionError) as nul:
            async with translated("postgres", family="database"):
                await conn.fetch("SELECT 1\x00")
        assert nul.value.details["sqlstate"] == "08P01"
        with pytest.raises(QueryArgumentError) as surrogate:
            async with translated("postgres", family="database"):
                await conn.fetch("SELECT '\ud800'")
        assert isinstance(surrogate.value.__cause__, UnicodeEncodeError)
        assert conn.is_closed()


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("database", QueryArgumentError),
        ("cache", InvalidKeyError),
        ("vector", InvalidArgumentError),
        ("generic", InvalidArgumentError),
    ],
)
def test_unicode_encode_errors_are_the_familys_argument_error(
    family: Family, expected: type[InfraError]
) -> None:
    """A string the driver cannot encode is the caller's; a decode error is not."""
    encode = UnicodeEncodeError("utf-8", "a\ud800", 1, 2, "surrogates not allowed")
    assert type(tr(encode, family)) is expected
    decode = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    assert not isinstance(tr(decode, family), CallerError)


@pytest.mark.parametrize(
    ("call", "driver_error"),
    [
        pytest.param(lambda r: r.get("user:\ud800"), UnicodeEncodeError, id="surrogate-key"),
        pytest.param(lambda r: r.get(None), rx.DataError, id="none-key"),
        pytest.param(lambda r: r.set("k", {"a": 1}), rx.DataError, id="dict-value"),
        pytest.param(lambda r: r.mget(["ok", b"ok", object()]), rx.DataError, id="object-key"),
    ],
)
async def test_real_redis_encoding_errors_are_invalid_key_errors(
    redis_client: redis.asyncio.Redis, call: Any, driver_error: type[Exception]
) -> None:
    """redis-py refuses these before sending (RESP2 and RESP3 alike): caller errors."""
    with pytest.raises(InvalidKeyError) as info:
        async with translated("redis", family="cache", operation="get"):
            await call(redis_client)
    assert isinstance(info.value.__cause__, driver_error)
    assert info.value.retryable is False
    assert await redis_client.ping()

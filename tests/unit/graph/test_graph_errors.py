"""Driver errors on the graph call path (the fake runs the store's: BackendCalls, the
policy, the neo4j translation table): auth and client errors are final and not counted by
the breaker, connection and transient errors are retried."""

from __future__ import annotations

import pytest
from neo4j import exceptions as nx

from infra.exceptions import (
    BackendAuthenticationError,
    CallerError,
    GraphConnectionError,
    GraphQueryError,
    GraphTransientError,
    InfraError,
)
from infra.resilience import BreakerState, CircuitBreakerConfig, ResiliencePolicy, RetryConfig
from infra.testing.bolt_server import FailingBoltServer
from infra.testing.fakes.graph import FakeGraphStore


def store() -> FakeGraphStore:
    policy = ResiliencePolicy.instant(
        "graph",
        breaker=CircuitBreakerConfig(failure_threshold=2, timeout=60.0),
        retry=RetryConfig(max_attempts=3),
    )
    return FakeGraphStore(policy=policy)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("Neo.ClientError.Security.Unauthorized", BackendAuthenticationError),
        ("Neo.ClientError.Statement.SyntaxError", GraphQueryError),
        ("Neo.ClientError.Schema.ConstraintValidationFailed", GraphQueryError),
    ],
    ids=["auth", "syntax", "constraint"],
)
async def test_final_errors_are_typed_tried_once_and_leave_the_breaker_closed(
    bolt_failures: FailingBoltServer, code: str, expected: type[InfraError]
) -> None:
    """Three calls each failing with a final server error (as the driver raises it): one
    attempt each, the breaker stays closed for caller errors (auth is not retried either)."""
    error = await bolt_failures.server_error(code)
    graph = store()
    for _ in range(3):
        graph.fail_next(error)
        with pytest.raises(expected) as caught:
            await graph.get_node(1)
        assert caught.value.retryable is False
    assert len(graph.calls) == 3
    breaker = graph.policy.breaker
    assert breaker is not None
    if issubclass(expected, CallerError):
        assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (nx.ServiceUnavailable("gone"), GraphConnectionError),
        (nx.SessionExpired("expired"), GraphConnectionError),
        ("Neo.TransientError.Transaction.DeadlockDetected", GraphTransientError),
        (ConnectionResetError(), GraphConnectionError),
    ],
    ids=["unavailable", "session-expired", "transient", "reset"],
)
async def test_connection_and_transient_errors_are_retried(
    bolt_failures: FailingBoltServer, error: Exception | str, expected: type[InfraError]
) -> None:
    """Two failures then success: the read returns; a write that is not idempotent fails
    on the first with the typed, retryable error. (A string is a server status code.)"""
    if isinstance(error, str):
        error = await bolt_failures.server_error(error)
    graph = store()
    await graph.upsert_nodes("P", [{"id": 1}])
    graph.fail_next(error, times=2, operations={"get_node"})
    assert await graph.get_node(1) is not None
    assert [c.operation for c in graph.calls[1:]] == ["get_node"] * 3
    graph.respond("CREATE (:X)", [])
    graph.fail_next(error, operations={"write"})
    with pytest.raises(expected) as caught:
        await graph.write("CREATE (:X)")
    assert caught.value.retryable is True
    assert [c.operation for c in graph.calls].count("write") == 1


async def test_the_scripted_bolt_server_answers_as_neo4j_does(
    bolt_failures: FailingBoltServer,
) -> None:
    """The driver's own error for the scripted code: class, code, message, retryable --
    including a code the driver rewrites; bad scripts and an unstarted server are refused."""
    error = await bolt_failures.server_error("Neo.ClientError.Statement.SyntaxError", "bad")
    assert (type(error), error.code, error.message) == (
        nx.CypherSyntaxError,
        "Neo.ClientError.Statement.SyntaxError",
        "bad",
    )
    assert error.is_retryable() is False
    rewritten = await bolt_failures.server_error("Neo.TransientError.Transaction.Terminated")
    assert (type(rewritten), rewritten.code) == (
        nx.ClientError,
        "Neo.ClientError.Transaction.Terminated",
    )
    transient = await bolt_failures.server_error("Neo.TransientError.General.OutOfMemoryError")
    assert type(transient) is nx.TransientError
    assert transient.is_retryable() is True
    with pytest.raises(ValueError, match="code must be a Neo4j status code"):
        bolt_failures.fail_with("")
    with pytest.raises(RuntimeError, match="not started"):
        _ = FailingBoltServer().uri

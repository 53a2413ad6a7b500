"""neo4j driver (Bolt: Neo4j, Memgraph, FalkorDB's Bolt port).

``retryable`` comes from the driver's own ``is_retryable()`` wherever it exists: the driver
knows which transient codes are safe to repeat (it rewrites e.g. ``Transaction.Terminated``
to a client error) and that ``IncompleteCommit`` is **not** safe -- the commit may have
happened, so repeating a non-idempotent write could apply it twice. We do not second-guess
it. Facts: ``details["code"]`` (the Neo4j status code) and ``details["gql_status"]``.

Decisions:

* ``ServiceUnavailable`` (and subclasses, incl. ``IncompleteCommit``) and ``SessionExpired``
  -> ``GraphConnectionError`` (retryable per the driver).
* ``TransientError`` -> ``GraphTransientError``.
* ``ClientError`` (``CypherSyntaxError``, ``CypherTypeError``, ``ConstraintError`` ...) ->
  ``GraphQueryError``. A graph constraint violation stays a ``GraphQueryError`` (its code
  says which) rather than ``ConstraintViolationError``, because that class is a relational
  ``DatabaseError`` and ``except DatabaseError`` around SQL must not catch graph failures.
* ``AuthError`` and ``Forbidden`` -> ``BackendAuthenticationError``.
* ``ConnectionAcquisitionTimeoutError`` -> ``PoolExhaustedError``.
* The driver's ``ConfigurationError`` -> our ``ConfigurationError``.
* Anything else from neo4j (``DatabaseError``, result/session misuse) -> ``GraphError``.
"""

from __future__ import annotations

from typing import Any

from infra.exceptions import (
    BackendAuthenticationError,
    ConfigurationError,
    GraphConnectionError,
    GraphError,
    GraphQueryError,
    GraphTransientError,
    InfraError,
    PoolExhaustedError,
)
from infra.translation._context import DriverTable, Translator, to

__all__ = ["load"]


def _retryable(exc: BaseException) -> bool | None:
    check = getattr(exc, "is_retryable", None)
    return bool(check()) if callable(check) else None


def _facts(exc: BaseException) -> dict[str, Any]:
    return {"code": getattr(exc, "code", None), "gql_status": getattr(exc, "gql_status", None)}


def _text(exc: BaseException) -> str:
    # Neo4jError.__str__ appends GQL diagnostics; the server's message is the useful part.
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) and message else str(exc)


def _neo(cls: type[InfraError], *, driver_retryable: bool = True) -> Translator:
    return to(cls, retryable=_retryable if driver_retryable else None, facts=_facts, text=_text)


def load() -> DriverTable:
    """Rows for ``neo4j.exceptions``."""
    from neo4j import exceptions as n  # noqa: PLC0415 -- lazy by design

    auth = _neo(BackendAuthenticationError)
    return [
        (n.ConnectionAcquisitionTimeoutError, _neo(PoolExhaustedError, driver_retryable=False)),
        (n.ServiceUnavailable, _neo(GraphConnectionError)),
        (n.SessionExpired, _neo(GraphConnectionError)),
        (n.TransientError, _neo(GraphTransientError)),
        (n.AuthError, auth),
        (n.Forbidden, auth),
        (n.ClientError, _neo(GraphQueryError)),
        (n.ConfigurationError, _neo(ConfigurationError)),
        (n.GqlError, _neo(GraphError)),
    ]

"""Relational storage: PostgreSQL stores implementing :class:`infra.ports.RelationalStore`.

* :class:`PostgresStore` -- asyncpg pool, parameterised statements, transactions with
  savepoints, statement/acquire timeouts, pool gauges, latency-aware health check.
* :class:`EnhancedPostgresStore` -- the same with circuit breaker and retry (reads and
  explicitly idempotent writes only).
* :class:`PostgresTransaction` -- the store a ``transaction()`` block yields.
* :class:`InvalidDsnError` -- what a store raises for a DSN asyncpg would misread (a
  ``ConfigurationError`` and a ``ValueError``; the message never shows the password).

The in-memory fake for tests is :class:`infra.testing.fakes.relational.FakeRelationalStore`.
See ``docs/postgres.md``.
"""

from infra.storage import _requires  # noqa: F401 - first: a missing asyncpg names its extra
from infra.storage._dsn import InvalidDsnError
from infra.storage._options import StoreOptions
from infra.storage._statements import Timeouts
from infra.storage._transaction import IsolationLevel, PostgresTransaction
from infra.storage.postgres import PostgresStore
from infra.storage.postgres_enhanced import EnhancedPostgresStore, build_postgres_policy

__all__ = [
    "EnhancedPostgresStore",
    "InvalidDsnError",
    "IsolationLevel",
    "PostgresStore",
    "PostgresTransaction",
    "StoreOptions",
    "Timeouts",
    "build_postgres_policy",
]

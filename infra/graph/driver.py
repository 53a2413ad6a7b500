"""Building the neo4j async driver for a Bolt graph database (Memgraph, Neo4j, FalkorDB).

:func:`build_graph_driver` is the one place a driver is configured from settings; the
container's resource and :meth:`MemgraphGraphStore.from_settings` both use it. neo4j is
imported here, on first call (the ``graph`` extra).

Driver options, and why:

* ``max_transaction_retry_time=0``: the driver's own retry loop (for managed transaction
  functions, ``execute_read``/``execute_write``) is off, also for code that uses the
  driver directly. The store never uses managed transactions anyway -- every statement
  runs in an explicit transaction of its own session (``begin_transaction``), which the
  driver never repeats -- so our resilience policy is the only thing deciding retries,
  and a write is repeated only when its caller marked it idempotent.
* ``bolt://`` gives a direct driver (one server), ``neo4j://`` a routing one (a cluster:
  the store's read sessions go to readers, write sessions to the leader).
* ``max_connection_pool_size`` from ``settings.graph_max_pool_size``;
  ``connection_acquisition_timeout`` (waiting for a pooled connection,
  ``PoolExhaustedError``) and ``connection_timeout`` (opening one) are bounded.
* Credentials: an empty ``graph_user`` means no authentication; the password is read
  from its ``SecretStr`` here, at the moment of use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infra._imports import require

if TYPE_CHECKING:
    from config import Settings

__all__ = ["build_graph_driver", "open_driver"]


def open_driver(
    uri: str,
    *,
    user: str = "",
    password: str = "",
    max_pool_size: int = 50,
    acquire_timeout: float = 5.0,
    connect_timeout: float = 5.0,
) -> Any:
    """A ``neo4j.AsyncDriver`` for ``uri`` with the options above (no I/O yet)."""
    neo4j = require("neo4j", extra="graph")
    auth = (user, password) if user else None
    return neo4j.AsyncGraphDatabase.driver(
        uri,
        auth=auth,
        max_connection_pool_size=max_pool_size,
        connection_acquisition_timeout=acquire_timeout,
        connection_timeout=connect_timeout,
        max_transaction_retry_time=0,
    )


def build_graph_driver(settings: Settings) -> Any:
    """The driver ``settings.graph`` describes (URI, user, password, pool size)."""
    graph = settings.graph
    password = graph.password.get_secret_value() if graph.password is not None else ""
    return open_driver(
        graph.uri, user=graph.user, password=password, max_pool_size=graph.max_pool_size
    )

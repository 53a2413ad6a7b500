"""``MemgraphGraphStore``: the graph store over the neo4j async Bolt driver.

Works with Memgraph, Neo4j and FalkorDB's Bolt server (the embedded test engine)::

    store = MemgraphGraphStore.from_settings(settings, policy=policy)   # owns its driver
    await store.ensure_index()
    await store.upsert_nodes("Person", [{"id": "ada", "name": "Ada"}])
    await store.upsert_edges("KNOWS", [("ada", "alan", {"since": 1936})])
    [neighbour] = await store.neighbours("ada")            # typed: Neighbour(node, rel)
    paths = await store.paths("ada", "kurt", max_hops=3)   # shortest first
    rows = await store.query("MATCH (n:Person) RETURN n.name AS name")
    await store.close()

Design decisions:

* **The data model.** Every node the store writes carries the base label ``_Node`` with a
  graph-wide unique ``id`` (``str`` or ``int``), indexed by :meth:`ensure_index`, plus
  its own labels. Relationships are directed and typed, one per (start, type, end).
* **One statement per call, a session per call, no managed transactions.** Each
  operation is one Cypher statement (``UNWIND $rows ... MERGE`` for batches), so it is
  atomic on every engine (multi-statement transactions are not atomic on FalkorDB).
  Each runs in an explicit transaction whose ``BEGIN`` carries the access mode (routing
  reads to readers on a ``neo4j://`` cluster) and the timeout. It is not a managed
  transaction function, so the driver's own retry loop never engages (it is also
  switched off: ``max_transaction_retry_time=0``).
* **One call path, our retries only.** Every call goes through
  :class:`~infra.calls.BackendCalls` (telemetry -> policy -> translation through
  :mod:`infra.translation`). Reads (``query``, ``get_node``, ``neighbours``, ``paths``,
  ``count_nodes``) are retried under the policy; writes only when idempotent: the
  ``MERGE`` upserts and the deletes are, a raw :meth:`write` is not unless the caller
  passes ``idempotent=True`` (a ``CREATE`` repeated after a lost answer would create
  twice).
* **Caller errors before I/O.** Labels and relationship types must match a strict
  identifier pattern (they cannot be parameters); ids, properties, limits, hops, Cypher
  text and parameters are checked too (:mod:`infra.graph.identifiers`). A bad one raises
  ``InvalidArgumentError`` naming it; nothing is sent, nothing retried or counted. The
  public methods, and so these checks, live in :class:`~infra.graph.base.GraphStoreBase`,
  which the fake shares: this module supplies only the Bolt primitives.
* **Typed results.** :class:`~infra.graph.results.Node`, ``Relationship``,
  ``Neighbour``, ``Path`` -- never driver objects, also inside raw query rows.
* **Timeouts.** Each statement carries ``query_timeout`` as its transaction timeout
  (enforced by Neo4j and Memgraph) and is bounded client-side by the same limit plus a
  second (``OperationTimeoutError``, retryable).
* **Errors.** neo4j's exceptions are translated in one place (:mod:`infra.translation`):
  auth -> ``BackendAuthenticationError``, unavailable/session expired ->
  ``GraphConnectionError`` (retryable), transient -> ``GraphTransientError``
  (retryable), client errors (syntax, constraint) -> ``GraphQueryError`` (a caller
  error: not retried, not counted by the breaker). FalkorDB reports syntax errors as a
  generic ``DatabaseError``: that is a ``GraphError``, not retryable (see docs/graph.md).
* **Pool gauges and health.** ``graph_pool_*`` gauges (connections in use / idle) are
  sampled from the driver while the store is open; :meth:`health_check` is the shared
  latency-aware check (:mod:`infra.health_check`) with a ``RETURN 1`` probe.

neo4j itself is imported when a driver is built (:mod:`infra.graph.driver`), never when
this module is imported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from infra.calls import BackendCalls
from infra.exceptions import GraphError
from infra.graph import base, cypher
from infra.graph._decode import decode_neighbours, decode_node, decode_paths, plain_row
from infra.graph._params import (
    PROBE_QUERY,
    PROBE_VALUE,
    check_inline_size,
    fit,
    prepare_inline,
)
from infra.graph._pool import driver_pool_stats
from infra.graph.driver import build_graph_driver
from infra.graph.identifiers import COMPONENT, NodeId
from infra.graph.results import Neighbour, Node, Path
from infra.observability import MetricsCollector, register_pool
from infra.observability.tracing import TracingState
from infra.resilience import ResiliencePolicy
from infra.validation import check_timeout

if TYPE_CHECKING:
    from config import Settings

__all__ = ["MemgraphGraphStore"]

#: Client-side grace beyond the server's transaction timeout.
_GRACE = 1.0


class MemgraphGraphStore(base.GraphStoreBase):
    """A property graph over a neo4j ``AsyncDriver``; see the module docstring.

    Args:
        driver: A ``neo4j.AsyncDriver`` (see :func:`infra.graph.driver.open_driver`).
        database: Session database (``None``: the server's default; FalkorDB honours
            only the default).
        policy: The resilience policy every call runs under (default: passthrough).
        batch_size: Items per ``UNWIND`` statement in upserts.
        query_timeout: Per-statement limit in seconds.
        health_timeout: Deadline of one health probe.
        name: The pool's name in metrics.
        owns_driver: Whether :meth:`close` closes ``driver`` (``from_settings``: yes).
        max_pool_size: The driver's pool size, for the utilisation gauge.
    """

    def __init__(
        self,
        driver: Any,
        *,
        database: str | None = None,
        policy: ResiliencePolicy | None = None,
        batch_size: int = 1000,
        query_timeout: float = 30.0,
        health_timeout: float = 5.0,
        name: str = "default",
        owns_driver: bool = False,
        max_pool_size: int = 100,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        import neo4j  # noqa: PLC0415 - imported already: a driver exists

        if not isinstance(driver, neo4j.AsyncDriver):
            raise TypeError(f"driver must be a neo4j.AsyncDriver, got {type(driver).__name__}")
        limit = check_timeout(query_timeout, argument="query_timeout", component=COMPONENT)
        self._query_timeout = limit if limit is not None else 30.0
        self._driver = driver
        self._database = database
        self._owns_driver = owns_driver
        self._read_mode, self._write_mode = neo4j.READ_ACCESS, neo4j.WRITE_ACCESS
        # The driver keeps its first server address privately; spans only need it.
        address = getattr(driver, "_address", None)
        host = getattr(address, "host", None)
        port = getattr(address, "port", None)
        calls = BackendCalls(
            COMPONENT,
            family="graph",
            system="memgraph",
            policy=base.check_policy(policy),
            server_address=host if isinstance(host, str) else None,
            server_port=port if isinstance(port, int) else None,
            collector=collector,
            tracing=tracing,
        )
        super().__init__(
            calls=calls, batch_size=batch_size, health_timeout=health_timeout, name=name
        )
        self._sampler = driver_pool_stats(driver, max_pool_size)
        self._unregister = register_pool(COMPONENT, name, self._sampler)
        self._inlines: bool | None = None  # probed on the first call

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        policy: ResiliencePolicy | None = None,
        batch_size: int | None = None,
        query_timeout: float | None = None,
        name: str = "default",
    ) -> Self:
        """A store on a new driver ``settings.graph`` describes (URI, user, password,
        database, pool size, batch size, query timeout; ``batch_size``/``query_timeout``
        given here win); :meth:`close` closes that driver."""
        graph = settings.graph
        return cls(
            build_graph_driver(settings),
            database=graph.database,
            policy=policy,
            batch_size=graph.batch_size if batch_size is None else batch_size,
            query_timeout=graph.query_timeout if query_timeout is None else query_timeout,
            name=name,
            owns_driver=True,
            max_pool_size=graph.max_pool_size,
        )

    # ----------------------------------------------------------------- introspection
    @property
    def driver(self) -> Any:
        """The neo4j ``AsyncDriver`` (for what the store does not offer)."""
        return self._driver

    @property
    def query_timeout(self) -> float:
        """Per-statement limit, seconds."""
        return self._query_timeout

    def __repr__(self) -> str:
        address = self._calls.server_address
        where = f"{address}:{self._calls.server_port}" if address else "?"
        state = "closed" if self._closed else "open"
        return (
            f"{type(self).__name__}(server={where!r}, name={self._name!r}, state={state}, "
            f"policy={self.policy.describe()!r})"
        )

    async def _release(self) -> None:
        """Stop sampling the pool; close the driver if this store owns it."""
        self._unregister()
        if self._owns_driver:
            await self._driver.close()

    # -------------------------------------------------------------------- the one path
    async def _rows(
        self, cypher_text: str, parameters: Mapping[str, Any], write: bool
    ) -> list[Any]:
        """One attempt: a session of its own, one explicit transaction, every record read.

        ``BEGIN`` carries the access mode (a cluster routes reads to readers) and the
        transaction timeout. An auto-commit ``RUN`` would carry them in its own metadata,
        which FalkorDB misreads as the graph name (see docs/graph.md).
        """
        inlines = self._inlines
        if inlines is None:
            inlines = await self._server_inlines()
        if inlines:
            prepared = prepare_inline(parameters)  # names, floats, types checked; escaped
            check_inline_size(parameters)  # measured as fit() measures: unescaped
            parameters = prepared
        else:
            parameters = dict(parameters)  # the driver gets a dict of its own
        mode = self._write_mode if write else self._read_mode
        async with (
            asyncio.timeout(self._query_timeout + _GRACE),
            self._driver.session(database=self._database, default_access_mode=mode) as session,
        ):
            tx = await session.begin_transaction(timeout=self._query_timeout)
            async with tx:
                result = await tx.run(cypher_text, parameters)
                records = [record async for record in result]
                await tx.commit()
                return records

    async def _server_inlines(self) -> bool:
        """Whether the server inlines parameters; probed once, outside the policy."""
        if self._inlines is None:
            self._inlines = await self._health_calls.run("probe", self._probe_inlining)
        return self._inlines

    async def _parts(self, rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """One batch as the statements to send: itself, or for an inlining server cut to
        its size limit (see :mod:`infra.graph._params`)."""
        return fit(rows) if await self._server_inlines() else [list(rows)]

    async def _probe_inlining(self) -> bool:
        """Whether the server inlines string parameters (see :mod:`infra.graph._params`)."""
        async with (
            asyncio.timeout(self._health_timeout),
            self._driver.session(database=self._database) as session,
        ):
            tx = await session.begin_transaction()
            async with tx:
                result = await tx.run(PROBE_QUERY, {"p": PROBE_VALUE})
                record = await result.single()
                await tx.commit()
        return record is None or record["p"] != PROBE_VALUE

    async def _run(
        self,
        operation: str,
        cypher_text: str,
        parameters: Mapping[str, Any],
        *,
        write: bool,
        idempotent: bool = True,
    ) -> list[Any]:
        self._check_open()
        return await self._calls.run(
            operation,
            self._rows,
            cypher_text,
            parameters,
            write,
            idempotent=idempotent,
            timeout=self._query_timeout,
        )

    # ------------------------------------------------------------------- primitives
    async def _raw(
        self, operation: str, text: str, params: dict[str, Any], *, idempotent: bool
    ) -> list[dict[str, Any]]:
        write = operation == "write"
        records = await self._run(operation, text, params, write=write, idempotent=idempotent)
        return [plain_row(record) for record in records]

    async def ensure_index(self) -> None:
        """Create the index on the base label's ``id`` if it is missing.

        Engines spell it differently (see :data:`infra.graph.cypher.INDEX_STATEMENTS`), so
        the forms are tried in turn. An administrative call, so it runs outside the
        policy (like the health probe): the refused spellings must not count toward the
        breaker. Raises the first refusal when no form was accepted and no index exists.
        """
        self._check_open()
        first: GraphError | None = None
        for statement in cypher.INDEX_STATEMENTS:
            if statement is cypher.INDEX_STATEMENTS[1] and await self._index_exists():
                return  # FalkorDB: no IF NOT EXISTS, and a second CREATE is refused
            try:
                await self._admin("ensure_index", statement, True)
            except GraphError as exc:
                first = first or exc
                continue
            return
        if first is not None:
            raise first

    async def _index_exists(self) -> bool:
        try:
            rows = await self._admin("ensure_index", cypher.LIST_INDEXES, True)
        except GraphError:
            return False
        return any(cypher.is_base_index(row) for row in rows)

    async def _admin(self, operation: str, statement: str, write: bool) -> list[Any]:
        return await self._health_calls.run(operation, self._rows, statement, {}, write)

    async def _send_rows(self, operation: str, statement: str, rows: list[dict[str, Any]]) -> int:
        """One upsert batch (cut to the server's size limit if it inlines); written."""
        written = 0
        for part in await self._parts(rows):
            records = await self._run(operation, statement, {"rows": part}, write=True)
            written += int(records[0]["written"]) if records else 0
        return written

    async def _write_nodes(self, label: str, batch: Sequence[base.NodeRow]) -> int:
        rows = [{"id": i, "props": p} for i, p in batch]
        return await self._send_rows("upsert_nodes", cypher.upsert_nodes(label), rows)

    async def _write_edges(self, rel_type: str, batch: Sequence[base.EdgeRow]) -> int:
        rows = [{"start": s, "end": e, "props": p} for s, e, p in batch]
        return await self._send_rows("upsert_edges", cypher.upsert_edges(rel_type), rows)

    async def _delete_nodes(self, ids: list[NodeId]) -> int:
        records = await self._run("delete_nodes", cypher.delete_nodes(), {"ids": ids}, write=True)
        return int(records[0]["deleted"]) if records else 0

    async def _delete_edges(self, rel_type: str, pairs: list[tuple[NodeId, NodeId]]) -> int:
        rows = [{"start": s, "end": e} for s, e in pairs]
        records = await self._run(
            "delete_edges", cypher.delete_edges(rel_type), {"rows": rows}, write=True
        )
        return int(records[0]["deleted"]) if records else 0

    async def _get_node(self, node_id: NodeId) -> Node | None:
        records = await self._run("get_node", cypher.GET_NODE, {"id": node_id}, write=False)
        return decode_node(records[0]) if records else None

    async def _neighbours(self, query: base.NeighbourQuery) -> list[Neighbour]:
        statement = cypher.neighbours(query.direction, query.rel_type)
        params = {"id": query.node_id, "limit": query.limit}
        return decode_neighbours(await self._run("neighbours", statement, params, write=False))

    async def _paths(self, query: base.PathQuery) -> list[Path]:
        statement = cypher.paths(query.direction, query.rel_type, query.max_hops)
        params = {"start": query.start, "end": query.end, "limit": query.limit}
        return decode_paths(await self._run("paths", statement, params, write=False))

    async def _count_nodes(self, label: str | None) -> int:
        records = await self._run("count_nodes", cypher.count_nodes(label), {}, write=False)
        return int(records[0]["n"]) if records else 0

    def _pool_details(self) -> dict[str, int]:
        stats = self._sampler()
        return {"pool_size": stats.size, "pool_in_use": stats.used, "pool_idle": stats.idle}

    async def _probe(self) -> None:
        await self._health_calls.run("health_check", self._rows, cypher.PING, {}, False)

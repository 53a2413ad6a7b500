"""Ports: one small :class:`typing.Protocol` per backend role.

Application code depends on these, never on an adapter class or a driver. Each real
adapter (``infra.storage``, ``infra.cache``, ``infra.vector``, ``infra.graph``,
``infra.llm``) and each fake in ``infra.testing`` satisfies its port structurally; a
contract test suite per port runs against both.

Design notes:

* Ports are ``runtime_checkable`` so a container or a test can assert
  ``isinstance(adapter, RelationalStore)``; that check only looks at method names, which
  is why the contract suites exist.
* Values crossing a port are plain Python types (``Mapping``, ``Sequence``, ``float``), not
  driver types (``asyncpg.Record``, ``qdrant_client.models.ScoredPoint``), so a fake needs
  no driver and an adapter can be swapped without touching callers.
* Every port method is a coroutine, except where a context manager is the natural shape
  (``transaction``, ``lock``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "CacheStore",
    "ChatMessage",
    "Completion",
    "DistributedLock",
    "EmbeddingModel",
    "GraphStore",
    "HealthCheckable",
    "HealthStatus",
    "LLMCompletion",
    "LockLease",
    "RelationalStore",
    "Row",
    "TokenUsage",
    "VectorHit",
    "VectorPoint",
    "VectorStore",
]

Row = Mapping[str, Any]
"""One result row: column name to value."""

HealthStatus = Literal["healthy", "degraded", "unhealthy"]


@runtime_checkable
class HealthCheckable(Protocol):
    """Anything that can report its own health, latency-aware."""

    async def health_check(
        self, latency_threshold_ms: float = 100.0
    ) -> tuple[bool, dict[str, Any]]:
        """Return ``(is_healthy, details)``; ``details["status"]`` is a :data:`HealthStatus`
        and ``details["latency_ms"]`` the measured round trip."""
        ...


@runtime_checkable
class RelationalStore(HealthCheckable, Protocol):
    """A SQL database reached through parameterised statements only."""

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Row]:
        """All rows of ``query``."""
        ...

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Row | None:
        """The first row, or ``None``."""
        ...

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        """One value of the first row, or ``None``."""
        ...

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        """Run a statement; returns the server's status tag (``"INSERT 0 1"``)."""
        ...

    async def executemany(
        self, query: str, args: Sequence[Sequence[Any]], *, timeout: float | None = None
    ) -> None:
        """Run a statement once per argument tuple, in one round trip where possible."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[RelationalStore]:
        """A transaction; nesting opens a savepoint. Yields a store bound to it."""
        ...


@runtime_checkable
class CacheStore(HealthCheckable, Protocol):
    """A key-value cache with per-key TTL. Values are serialised by the adapter."""

    async def get(self, key: str) -> Any | None:
        """The value, or ``None`` when absent or expired."""
        ...

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` in seconds (``None`` = no expiry)."""
        ...

    async def delete(self, *keys: str) -> int:
        """Remove keys; returns how many existed."""
        ...

    async def mget(self, keys: Sequence[str]) -> list[Any | None]:
        """Values in the order of ``keys`` (``None`` for misses)."""
        ...

    async def mset(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        """Store several values with one TTL."""
        ...


@dataclass(frozen=True, slots=True)
class LockLease:
    """Proof of holding a lock: its owner token and a fencing token.

    ``fencing_token`` strictly increases with every grant of the same lock name, so a
    storage write path can reject writes from a holder whose lease has since expired.
    """

    name: str
    owner: str
    fencing_token: int
    lease_seconds: float


@runtime_checkable
class DistributedLock(Protocol):
    """A named lease-based lock shared by processes."""

    def hold(
        self, name: str, *, lease: float | None = None, wait: float | None = None
    ) -> AbstractAsyncContextManager[LockLease]:
        """Acquire ``name`` (waiting at most ``wait`` s), release on exit."""
        ...

    async def acquire(
        self, name: str, *, lease: float | None = None, wait: float | None = None
    ) -> LockLease:
        """Acquire or raise ``LockAcquireTimeoutError``."""
        ...

    async def release(self, lease: LockLease) -> None:
        """Release; raises ``LockNotOwnedError`` if ``lease`` no longer owns the lock."""
        ...

    async def extend(self, lease: LockLease, *, lease_seconds: float | None = None) -> LockLease:
        """Renew the lease; raises ``LockNotOwnedError`` if it was lost."""
        ...


@dataclass(frozen=True, slots=True)
class VectorPoint:
    """A vector with its id and payload."""

    id: str | int
    vector: Sequence[float]
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VectorHit:
    """One search result."""

    id: str | int
    score: float
    payload: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorStore(HealthCheckable, Protocol):
    """A vector collection store with similarity search."""

    async def ensure_collection(
        self, name: str, *, vector_size: int, distance: str = "cosine"
    ) -> None:
        """Create the collection if missing; checks ``vector_size`` if present."""
        ...

    async def upsert(self, collection: str, points: Sequence[VectorPoint]) -> int:
        """Insert or replace points (batched, concurrent); returns how many were written."""
        ...

    async def search(
        self,
        collection: str,
        vector: Sequence[float],
        *,
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,  # noqa: A002 - the domain's own word
    ) -> list[VectorHit]:
        """Nearest points, best first."""
        ...

    async def delete(self, collection: str, ids: Sequence[str | int]) -> None:
        """Remove points by id."""
        ...


@runtime_checkable
class GraphStore(HealthCheckable, Protocol):
    """A property-graph database queried with Cypher."""

    async def query(
        self, cypher: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run a read query; rows as dicts keyed by the RETURN aliases."""
        ...

    async def write(
        self, cypher: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run a write query in its own transaction."""
        ...


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat turn."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens consumed by one call."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """A model's answer with its usage and cost (``None`` when the model is unpriced)."""

    text: str
    model: str
    usage: TokenUsage
    cost_usd: float | None
    finish_reason: str | None = None


@runtime_checkable
class LLMCompletion(Protocol):
    """Chat completion through a provider."""

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        caller: str | None = None,
    ) -> Completion:
        """One completion; ``caller`` attributes cost to a tenant/caller."""
        ...

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        caller: str | None = None,
    ) -> AsyncIterator[str]:
        """Text chunks as the model produces them."""
        ...


@runtime_checkable
class EmbeddingModel(Protocol):
    """Text to vectors."""

    @property
    def dimensions(self) -> int:
        """Length of every returned vector."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...

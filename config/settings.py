"""Typed settings for every backend, read from ``SEMANTICA_*`` environment variables.

:class:`Settings` nests one group per backend family (``settings.db``, ``.redis``,
``.vector``, ``.graph``, ``.llm``, ``.cache``, ``.resilience``, ``.observability``). Each
setting is declared once, in its group (:mod:`config.groups`), with an alias: its flat
name. Everything flat is derived from those declarations:

* the environment variable is ``SEMANTICA_`` + the upper-cased flat name;
* ``Settings(database_url=..., redis_port=...)`` accepts flat keyword arguments (and
  whole groups: ``Settings(db=DatabaseSettings(...))``);
* ``settings.database_url`` reads the same value as ``settings.db.url``: one read-only
  property per flat name is generated from the groups when this module is imported. For
  type checkers, the block between the ``flat reads`` markers below declares them; it is
  written by :func:`render_flat_reads` (``python tools/write_flat_reads.py`` rewrites it) and a
  test fails when it is out of date.

Sources, highest priority first: keyword arguments, environment variables, a ``.env``
file in the working directory, the defaults in :mod:`config.groups`. The defaults are a
working local setup (PostgreSQL, Redis, Qdrant and a Bolt server on localhost).

Design decisions:

* **Unknown ``SEMANTICA_*`` variables and ``.env`` keys are ignored**: a deployment
  configured for a newer release, with variables this release does not know, must still
  start. Unknown *keyword arguments* are different -- they are a typo in code -- and raise
  ``TypeError`` naming the closest flat name.
* **An empty variable counts as unset** (``env_ignore_empty``): ``SEMANTICA_REDIS_URL=`` in
  a compose file means "no URL", not "invalid URL".
* **One error for everything wrong**: pydantic collects every problem of every group;
  ``Settings()`` re-raises them as a single :class:`~config.errors.SettingsError` (a
  ``ConfigurationError``) naming each environment variable, with secrets masked.
* **Reading flat variables into groups** is pydantic-settings' own environment and
  ``.env`` sources, run over a class generated from the aliases (``_Variables``), whose
  flat output is regrouped; pydantic-settings has no per-field environment name for
  fields of a nested model, only ``env_nested_delimiter`` names such as
  ``SEMANTICA_DB__URL``, which would rename every variable.
* **Secrets**: passwords and API keys are ``SecretStr``. ``repr``/``str`` of the settings,
  of every group and :meth:`Settings.safe_dump` mask URL passwords and secret query
  parameters via :mod:`infra.redaction`. Every secret value the settings hold is also
  **registered** there when the settings are built, so it is masked wherever it is
  printed -- a driver error, a log line -- for as long as the settings live.
* **Frozen**: settings are read once at startup; use ``model_copy(update=...)`` (flat
  names or groups) or build a new ``Settings`` to change one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Final, Self, Union, get_args, get_origin

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from config.errors import SettingsError, reject_unknown_keywords
from config.groups import (
    ENV_PREFIX,
    GROUPS,
    CacheSettings,
    DatabaseSettings,
    GraphSettings,
    LLMSettings,
    LogLevel,
    ObservabilitySettings,
    RedisSettings,
    ResilienceSettings,
    SettingsGroup,
    VectorSettings,
    env_var,
    pool_limits,
)
from infra.redaction import redact_mapping, register_secret, register_secrets_in

if TYPE_CHECKING:
    from config.groups import LogFormat, RedisMode, VectorBackend

__all__ = ["Settings", "render_flat_reads", "write_flat_reads"]

#: flat name -> (group attribute, field name), every setting in declaration order.
FLAT_NAMES: Final[dict[str, tuple[str, str]]] = {
    alias: (group.settings_attribute, name)
    for group in GROUPS
    for name, alias in group.aliases().items()
}
_GROUPS: Final = {group.settings_attribute: group for group in GROUPS}
_GROUP_NAMES: Final = frozenset(_GROUPS)
_SECRET_FLAT_NAMES: Final = frozenset(
    alias
    for group in GROUPS
    for name, alias in group.aliases().items()
    if SecretStr
    in (group.model_fields[name].annotation, *get_args(group.model_fields[name].annotation))
)
_CONFIG: Final = SettingsConfigDict(
    env_prefix=ENV_PREFIX,
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    env_ignore_empty=True,
)


class _VariablesBase(BaseSettings):
    # Never validated, so its validator is never built (one field per setting: the largest
    # schema of config); pydantic-settings' sources read only its field names.
    model_config = SettingsConfigDict(**_CONFIG, defer_build=True)


# One field per flat name, only so pydantic-settings' sources know which variables to read;
# never validated here (the groups validate), hence ``Any``.
_Variables: Final[type[BaseSettings]] = create_model(
    "_Variables",
    __base__=_VariablesBase,
    **dict.fromkeys(FLAT_NAMES, (Any, None)),  # type: ignore[call-overload]
)


def _regroup(given: Mapping[str, Any]) -> dict[str, Any]:
    """Flat names and groups -> groups keyed by flat name, so that sources merge key by key:
    ``{"database_url": u, "db": {"max_pool_size": 9}}`` ->
    ``{"db": {"postgres_max_pool_size": 9, "database_url": u}}``. A whole group object is
    kept as it is (it replaces what lower-priority sources say about that group) unless
    flat names amend it."""
    groups: dict[str, Any] = {}
    for key, value in given.items():
        if key in _GROUPS and isinstance(value, Mapping):
            aliases = _GROUPS[key].aliases()
            groups[key] = {aliases.get(k, k): v for k, v in value.items()}
        elif key in _GROUPS:
            groups[key] = value
    for key, value in given.items():
        owner = FLAT_NAMES.get(key.lower())
        if owner is None:
            continue
        group = groups.get(owner[0], {})
        if isinstance(group, SettingsGroup):
            group = group.model_dump(by_alias=True)
        groups[owner[0]] = {**group, key.lower(): value}
    return groups


class _GroupedSource(PydanticBaseSettingsSource):
    """A pydantic-settings source over flat names, handing its values over grouped."""

    def __init__(self, settings_cls: type[BaseSettings], flat: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._flat = flat

    def get_field_value(
        self,
        field: FieldInfo,  # noqa: ARG002 -- the abstract method's signature
        field_name: str,
    ) -> tuple[Any, str, bool]:
        return self().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return _regroup(self._flat())


class Settings(BaseSettings):
    """All settings of Semantica Infra: one group per backend family (module docstring)."""

    model_config = SettingsConfigDict(
        **_CONFIG,
        frozen=True,
        hide_input_in_errors=True,  # a rejected value may be a secret
        defer_build=True,  # built by the first Settings(), like the groups
    )

    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    """PostgreSQL settings."""
    redis: RedisSettings = Field(default_factory=RedisSettings)
    """Redis settings; ``url`` is resolved from redis_url or host/port/db/ssl."""
    vector: VectorSettings = Field(default_factory=VectorSettings)
    """Qdrant settings."""
    graph: GraphSettings = Field(default_factory=GraphSettings)
    """Bolt graph database settings."""
    llm: LLMSettings = Field(default_factory=LLMSettings)
    """LLM and embedding settings."""
    cache: CacheSettings = Field(default_factory=CacheSettings)
    """Cache TTLs and sizes."""
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    """Breaker, retry, bulkhead and timeout defaults."""
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    """Logging, tracing, metrics and health settings."""

    # --- flat reads: generated by render_flat_reads() from config.groups; do not edit ---
    if TYPE_CHECKING:

        @property
        def database_url(self) -> str: ...
        @property
        def postgres_min_pool_size(self) -> int: ...
        @property
        def postgres_max_pool_size(self) -> int: ...
        @property
        def postgres_statement_timeout(self) -> float: ...
        @property
        def postgres_pool_acquire_timeout(self) -> float: ...
        @property
        def postgres_command_timeout(self) -> float: ...
        @property
        def redis_url(self) -> str: ...
        @property
        def redis_host(self) -> str: ...
        @property
        def redis_port(self) -> int: ...
        @property
        def redis_db(self) -> int: ...
        @property
        def redis_password(self) -> SecretStr | None: ...
        @property
        def redis_mode(self) -> RedisMode: ...
        @property
        def redis_sentinel_master(self) -> str: ...
        @property
        def redis_ssl(self) -> bool: ...
        @property
        def redis_max_connections(self) -> int: ...
        @property
        def redis_pool_acquire_timeout(self) -> float: ...
        @property
        def redis_socket_timeout(self) -> float: ...
        @property
        def vector_backend(self) -> VectorBackend: ...
        @property
        def qdrant_url(self) -> str | None: ...
        @property
        def qdrant_host(self) -> str: ...
        @property
        def qdrant_port(self) -> int: ...
        @property
        def qdrant_grpc_port(self) -> int: ...
        @property
        def qdrant_prefer_grpc(self) -> bool: ...
        @property
        def qdrant_api_key(self) -> SecretStr | None: ...
        @property
        def qdrant_location(self) -> str | None: ...
        @property
        def qdrant_upsert_batch_size(self) -> int: ...
        @property
        def qdrant_upsert_concurrency(self) -> int: ...
        @property
        def qdrant_vector_size(self) -> int: ...
        @property
        def qdrant_timeout(self) -> float: ...
        @property
        def graph_uri(self) -> str: ...
        @property
        def graph_user(self) -> str: ...
        @property
        def graph_password(self) -> SecretStr | None: ...
        @property
        def graph_database(self) -> str | None: ...
        @property
        def graph_max_pool_size(self) -> int: ...
        @property
        def graph_batch_size(self) -> int: ...
        @property
        def graph_query_timeout(self) -> float: ...
        @property
        def llm_model(self) -> str: ...
        @property
        def llm_api_base(self) -> str | None: ...
        @property
        def llm_api_key(self) -> SecretStr | None: ...
        @property
        def llm_request_timeout(self) -> float: ...
        @property
        def llm_max_retries_inner(self) -> int: ...
        @property
        def llm_rpm_limit(self) -> int | None: ...
        @property
        def llm_tpm_limit(self) -> int | None: ...
        @property
        def llm_monthly_budget_usd(self) -> float | None: ...
        @property
        def llm_first_token_timeout(self) -> float | None: ...
        @property
        def llm_default_max_tokens(self) -> int: ...
        @property
        def llm_rate_limit_max_wait(self) -> float: ...
        @property
        def llm_rate_limit_shared(self) -> bool: ...
        @property
        def embedding_model(self) -> str: ...
        @property
        def embedding_api_base(self) -> str | None: ...
        @property
        def embedding_dimensions(self) -> int | None: ...
        @property
        def embedding_api_key(self) -> SecretStr | None: ...
        @property
        def cache_l1_ttl(self) -> float: ...
        @property
        def cache_l1_max_size(self) -> int: ...
        @property
        def cache_l2_ttl(self) -> float: ...
        @property
        def cache_negative_ttl(self) -> float: ...
        @property
        def cache_ttl_jitter(self) -> float: ...
        @property
        def cache_max_staleness(self) -> float: ...
        @property
        def cache_fallback_timeout(self) -> float: ...
        @property
        def embedding_cache_ttl(self) -> float: ...
        @property
        def circuit_breaker_enabled(self) -> bool: ...
        @property
        def circuit_breaker_failure_threshold(self) -> int: ...
        @property
        def circuit_breaker_timeout(self) -> float: ...
        @property
        def circuit_breaker_half_open_max_calls(self) -> int: ...
        @property
        def retry_enabled(self) -> bool: ...
        @property
        def retry_max_attempts(self) -> int: ...
        @property
        def retry_base_delay(self) -> float: ...
        @property
        def retry_max_delay(self) -> float: ...
        @property
        def retry_exponential_base(self) -> float: ...
        @property
        def retry_jitter(self) -> bool: ...
        @property
        def retry_budget_ratio(self) -> float: ...
        @property
        def bulkhead_max_concurrent(self) -> int: ...
        @property
        def bulkhead_max_queue(self) -> int: ...
        @property
        def bulkhead_max_wait(self) -> float: ...
        @property
        def operation_timeout(self) -> float: ...
        @property
        def attempt_timeout(self) -> float: ...
        @property
        def service_name(self) -> str: ...
        @property
        def environment(self) -> str: ...
        @property
        def log_level(self) -> LogLevel: ...
        @property
        def log_format(self) -> LogFormat: ...
        @property
        def log_sample_burst(self) -> int: ...
        @property
        def log_sample_window(self) -> float: ...
        @property
        def otlp_endpoint(self) -> str | None: ...
        @property
        def trace_sample_ratio(self) -> float: ...
        @property
        def metrics_enabled(self) -> bool: ...
        @property
        def metrics_port(self) -> int: ...
        @property
        def health_check_timeout(self) -> float: ...
    # --- end of flat reads ---

    def __init__(self, **values: Any) -> None:
        """Read the sources and validate; raise one ``SettingsError`` listing all problems.

        Raises:
            TypeError: A keyword argument names no setting (a typo in code).
            SettingsError: Any value is invalid, wherever it came from.
        """
        reject_unknown_keywords(type(self).__name__, values, {*FLAT_NAMES, *_GROUP_NAMES})
        options = {key: value for key, value in values.items() if key.startswith("_")}
        given = {key: value for key, value in values.items() if not key.startswith("_")}
        try:
            super().__init__(**options, **_regroup(given))
        except ValidationError as exc:
            raise SettingsError.from_validation_error(
                exc, env_prefix=ENV_PREFIX, secret_fields=_SECRET_FLAT_NAMES, field_of=_flat_name
            ) from exc
        self._register_secrets()

    @model_validator(mode="wrap")
    @classmethod
    def _groups_see_the_pools(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # The bulkhead limit depends on two other groups' pool sizes (config.groups).
        with pool_limits(data if isinstance(data, dict) else {}):
            return handler(data)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment, then ``.env``; read by flat name.

        pydantic-settings' environment source is replaced by one over the flat names;
        there is no secrets-directory source (none was ever configured)."""
        del env_settings, file_secret_settings
        env_file = getattr(dotenv_settings, "env_file", _CONFIG["env_file"])
        return (
            init_settings,
            _GroupedSource(settings_cls, EnvSettingsSource(_Variables)),
            _GroupedSource(settings_cls, DotEnvSettingsSource(_Variables, env_file=env_file)),
        )

    def _register_secrets(self) -> None:
        """Mask every secret these settings hold wherever it is printed, for as long as
        they live (see :mod:`infra.redaction`): secret fields by value, and passwords or
        secret parameters inside any string (``database_url``'s password ...)."""
        for value in self._values():
            if isinstance(value, SecretStr):
                register_secret(value, owner=self)
            elif isinstance(value, str):
                register_secrets_in(value, owner=self)

    def _values(self) -> Iterator[Any]:
        for group, name in FLAT_NAMES.values():
            yield getattr(getattr(self, group), name)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (pydantic's, unvalidated) with ``update`` applied by flat name or group;
        its secrets are registered like ours."""
        groups: dict[str, Any] = {}
        for key, value in (update or {}).items():
            if key in _GROUP_NAMES:
                groups[key] = value
                continue
            if key.lower() not in FLAT_NAMES:
                raise ValueError(f"{key!r} is not a setting; see docs/configuration.md")
            group, name = FLAT_NAMES[key.lower()]
            current = groups.get(group, getattr(self, group))
            groups[group] = current.model_copy(update={name: value})
        copy = super().model_copy(update=groups, deep=deep)
        copy._register_secrets()
        return copy

    @classmethod
    def env_var(cls, field: str) -> str:
        """The environment variable of a flat name (``"redis_port"`` ->
        ``"SEMANTICA_REDIS_PORT"``)."""
        if field not in FLAT_NAMES:
            raise ValueError(f"{field!r} is not a Settings field")
        return env_var(field)

    @classmethod
    def variables(cls) -> dict[str, tuple[type[SettingsGroup], str]]:
        """Every setting: environment variable -> (its group, its field name there)."""
        return {env_var(a): (_GROUPS[g], n) for a, (g, n) in FLAT_NAMES.items()}

    def safe_dump(self) -> dict[str, Any]:
        """Every setting by flat name as JSON-ready data, secrets masked (for logs)."""
        flat: dict[str, Any] = {}
        for group in GROUPS:
            values = getattr(self, group.settings_attribute)
            flat.update(values.model_dump(mode="json", by_alias=True))
        return redact_mapping(flat)


def _flat_name(loc: tuple[int | str, ...]) -> str:
    """The flat name an error location points at: ``("db", "database_url")`` or
    ``("db", "url")`` -> ``"database_url"``."""
    if len(loc) >= 2 and loc[0] in _GROUP_NAMES:
        name = str(loc[1])
        for alias, (group, field) in FLAT_NAMES.items():
            if group == loc[0] and name in (alias, field):
                return alias
        return name
    return str(loc[0]) if loc else ""


def _flat_read(group: str, name: str) -> property:
    def read(self: Settings) -> Any:
        return getattr(getattr(self, group), name)

    read.__doc__ = f"Same as ``settings.{group}.{name}``."
    return property(read)


for _alias, (_group, _name) in FLAT_NAMES.items():
    setattr(Settings, _alias, _flat_read(_group, _name))


def render_flat_reads() -> str:
    """The type checkers' declaration of the flat reads (the marked block of ``Settings``)."""
    lines = ["    if TYPE_CHECKING:", ""]
    for group in GROUPS:
        for name, alias in group.aliases().items():
            annotation = _annotation_text(group, name)
            lines += [
                "        @property",
                f"        def {alias}(self) -> {annotation}: ...",
            ]
    return "\n".join(lines) + "\n"


def _annotation_text(group: type[SettingsGroup], name: str) -> str:
    return _type_text(group.model_fields[name].annotation)


def _type_text(hint: Any) -> str:
    """``Optional[Annotated[str, ...]]`` -> ``"str | None"``: the type a reader gets."""
    if hint is type(None):
        return "None"
    if hint == LogLevel:
        return "LogLevel"
    origin = get_origin(hint)
    if origin is Annotated:
        return _type_text(get_args(hint)[0])
    if origin in (Union, UnionType):
        return " | ".join(_type_text(arg) for arg in get_args(hint))
    return str(hint.__name__)


FLAT_READS_BEGIN: Final = (
    "    # --- flat reads: generated by render_flat_reads() from config.groups; do not edit ---\n"
)
FLAT_READS_END: Final = "    # --- end of flat reads ---\n"


def write_flat_reads(path: Path) -> bool:
    """Write the current flat reads into the marked block of ``path`` (this module's
    source); whether anything changed. ``python tools/write_flat_reads.py`` calls it."""
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(FLAT_READS_BEGIN, 1)
    _, tail = rest.split(FLAT_READS_END, 1)
    new = head + FLAT_READS_BEGIN + render_flat_reads() + FLAT_READS_END + tail
    path.write_text(new, encoding="utf-8")
    return new != text

"""Settings: sources, defaults, validation errors, secret masking, views and docs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

import config
import config.settings
from config import (
    CacheSettings,
    DatabaseSettings,
    GraphSettings,
    LLMSettings,
    LogFormat,
    ObservabilitySettings,
    RedisMode,
    RedisSettings,
    ResilienceSettings,
    Settings,
    SettingsError,
    VectorSettings,
)
from infra.exceptions import ConfigurationError, InfraError
from infra.redaction import redact_text
from infra.resilience import ResiliencePolicy

REPO_ROOT = Path(__file__).resolve().parents[2]
VIEWS: dict[str, type[Any]] = {
    "db": DatabaseSettings,
    "redis": RedisSettings,
    "vector": VectorSettings,
    "graph": GraphSettings,
    "llm": LLMSettings,
    "cache": CacheSettings,
    "resilience": ResilienceSettings,
    "observability": ObservabilitySettings,
}

# Distinct secrets, so a leak of any one of them is caught by name.
DB_PASSWORD = "hunter2-db-pass"
REDIS_PASSWORD = "s3cret-redis-pass"
LLM_KEY = "sk-abcdefghijklmnop123456"
QDRANT_KEY = "qdrant-key-98765"
GRAPH_PASSWORD = "graph-pass-4242"
ALL_SECRETS = (DB_PASSWORD, REDIS_PASSWORD, LLM_KEY, QDRANT_KEY, GRAPH_PASSWORD)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No real SEMANTICA_* variable or .env file of the developer can leak in."""
    for key in list(os.environ):
        if key.upper().startswith("SEMANTICA_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def settings_error(**kwargs: Any) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        Settings(**kwargs)
    return info.value


def envs_of(error: SettingsError) -> list[str]:
    return [problem["env"] for problem in error.errors]


# ------------------------------------------------------------------------ sources


def test_empty_environment_gives_local_defaults() -> None:
    """With no variables and no .env, every backend points at localhost defaults."""
    settings = Settings()
    assert settings.database_url == "postgresql://postgres@localhost:5432/postgres"
    assert settings.redis.url == "redis://localhost:6379/0"
    assert settings.vector.host == "localhost"
    assert settings.graph.uri == "bolt://localhost:7687"
    assert settings.llm.model == "gpt-4o-mini"
    assert settings.redis.mode is RedisMode.STANDALONE
    assert settings.observability.log_format is LogFormat.JSON
    assert settings.observability.log_level == "INFO"


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("postgres_min_pool_size", 5),
        ("postgres_max_pool_size", 20),
        ("redis_port", 6379),
        ("qdrant_port", 6333),
        ("qdrant_upsert_concurrency", 4),
        ("qdrant_upsert_batch_size", 256),
        ("retry_max_attempts", 3),
        ("circuit_breaker_enabled", True),
        ("retry_enabled", True),
        ("qdrant_prefer_grpc", False),
    ],
)
def test_spec_documented_defaults(field: str, expected: object) -> None:
    """The defaults docs/design.md lists for SEMANTICA_* variables hold."""
    assert getattr(Settings(), field) == expected


def test_prefixed_environment_variables_set_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """SEMANTICA_<FIELD> sets a field; the same name without the prefix does not."""
    monkeypatch.setenv("SEMANTICA_REDIS_PORT", "6380")
    monkeypatch.setenv("SEMANTICA_QDRANT_PREFER_GRPC", "true")
    monkeypatch.setenv("SEMANTICA_LLM_RPM_LIMIT", "120")
    monkeypatch.setenv("QDRANT_PORT", "7000")
    settings = Settings()
    assert settings.redis_port == 6380
    assert settings.qdrant_prefer_grpc is True
    assert settings.llm_rpm_limit == 120
    assert settings.qdrant_port == 6333


def test_dotenv_file_in_working_directory_is_loaded(isolated_env: Path) -> None:
    """A .env file in the working directory is read, unknown keys in it are ignored."""
    (isolated_env / ".env").write_text(
        "SEMANTICA_REDIS_HOST=cache.internal\n"
        "SEMANTICA_RETRY_MAX_ATTEMPTS=5\n"
        "SEMANTICA_FEATURE_FROM_THE_FUTURE=1\n"
        "UNRELATED_TOOL_SETTING=x\n",
        encoding="utf-8",
    )
    settings = Settings()
    assert settings.redis_host == "cache.internal"
    assert settings.retry_max_attempts == 5
    assert Settings(_env_file=None).redis_host == "localhost"


def test_precedence_is_kwargs_then_environment_then_dotenv(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyword arguments beat the environment, which beats the .env file."""
    (isolated_env / ".env").write_text(
        "SEMANTICA_REDIS_HOST=from-dotenv\nSEMANTICA_QDRANT_HOST=from-dotenv\n"
        "SEMANTICA_GRAPH_USER=from-dotenv\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("SEMANTICA_REDIS_HOST", "from-env")
    monkeypatch.setenv("SEMANTICA_QDRANT_HOST", "from-env")
    settings = Settings(redis_host="from-kwargs")
    assert settings.redis_host == "from-kwargs"
    assert settings.qdrant_host == "from-env"
    assert settings.graph_user == "from-dotenv"


def test_unknown_semantica_variable_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable a newer release introduced does not break this one."""
    monkeypatch.setenv("SEMANTICA_SOME_NEW_KNOB", "whatever")
    assert Settings().redis_port == 6379


def test_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """SEMANTICA_X= (empty) keeps the default instead of failing validation."""
    monkeypatch.setenv("SEMANTICA_REDIS_URL", "")
    monkeypatch.setenv("SEMANTICA_LLM_RPM_LIMIT", "")
    monkeypatch.setenv("SEMANTICA_REDIS_PORT", "")
    settings = Settings()
    assert settings.redis_url == settings.redis.url == "redis://localhost:6379/0"  # built
    assert settings.llm_rpm_limit is None
    assert settings.redis_port == 6379


def test_unknown_keyword_argument_raises_type_error_with_suggestion() -> None:
    """A typo in a keyword argument is a programming error, reported at once."""
    with pytest.raises(
        TypeError, match=r"'postgres_max_pool'.*did you mean 'postgres_max_pool_size'"
    ):
        Settings(postgres_max_pool=50)


def test_spec_example_builds_views() -> None:
    """The design's settings snippet works: pool sizes from kwargs, views readable."""
    settings = Settings(
        database_url="postgresql://localhost/db",
        postgres_min_pool_size=10,
        postgres_max_pool_size=50,
    )
    assert settings.db.url == "postgresql://localhost/db"
    assert (settings.db.min_pool_size, settings.db.max_pool_size) == (10, 50)
    assert settings.vector.host == "localhost"
    assert settings.llm.model == "gpt-4o-mini"


# -------------------------------------------------------------------------- views


def test_views_carry_the_settings_values() -> None:
    """Each view renames its fields; values pass through unchanged."""
    settings = Settings(
        postgres_statement_timeout=12.5,
        qdrant_upsert_batch_size=64,
        graph_database="memgraph",
        embedding_dimensions=256,
        embedding_cache_ttl=3600.0,
        circuit_breaker_failure_threshold=20,
        attempt_timeout=2.5,
        trace_sample_ratio=0.25,
        redis_password=REDIS_PASSWORD,
    )
    assert settings.db.statement_timeout == 12.5
    assert settings.vector.upsert_batch_size == 64
    assert settings.graph.database == "memgraph"
    assert settings.llm.embedding_dimensions == 256
    assert settings.cache.embedding_ttl == 3600.0
    assert settings.resilience.breaker_failure_threshold == 20
    assert settings.resilience.attempt_timeout == 2.5
    assert settings.observability.trace_sample_ratio == 0.25
    password = settings.redis.password
    assert isinstance(password, SecretStr)
    assert password.get_secret_value() == REDIS_PASSWORD


@pytest.mark.parametrize(
    ("kwargs", "url"),
    [
        ({}, "redis://localhost:6379/0"),
        ({"redis_host": "r1", "redis_port": 6380, "redis_db": 2}, "redis://r1:6380/2"),
        ({"redis_ssl": True}, "rediss://localhost:6379/0"),
        ({"redis_host": "::1"}, "redis://[::1]:6379/0"),
        (
            {"redis_url": "unix:///run/redis.sock", "redis_host": "ignored"},
            "unix:///run/redis.sock",
        ),
    ],
)
def test_redis_view_url_is_always_resolved(kwargs: dict[str, Any], url: str) -> None:
    """redis.url is SEMANTICA_REDIS_URL when set, else built from host/port/db/ssl."""
    assert Settings(**kwargs).redis.url == url


def test_redis_view_url_never_embeds_the_password() -> None:
    """A built Redis URL carries no password; it is passed separately."""
    assert REDIS_PASSWORD not in Settings(redis_password=REDIS_PASSWORD).redis.url


def test_settings_and_views_are_read_only() -> None:
    """Settings and views are frozen snapshots."""
    settings = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.redis_port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.db.url = "postgresql://elsewhere/db"  # type: ignore[misc]


def test_model_copy_yields_fresh_views() -> None:
    """Views are rebuilt from the copy, never stale values of the original."""
    copy = Settings().model_copy(update={"qdrant_host": "vectors.internal"})
    assert copy.vector.host == "vectors.internal"


# ----------------------------------------------------------------------- validation


def test_invalid_environment_raises_one_error_naming_every_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two bad variables give one ConfigurationError listing both, with the bad values."""
    monkeypatch.setenv("SEMANTICA_POSTGRES_MAX_POOL_SIZE", "abc")
    monkeypatch.setenv("SEMANTICA_REDIS_PORT", "99999")
    error = settings_error()
    assert isinstance(error, ConfigurationError)
    assert isinstance(error, InfraError)
    text = str(error)
    assert "SEMANTICA_POSTGRES_MAX_POOL_SIZE" in text
    assert "SEMANTICA_REDIS_PORT" in text
    assert "'abc'" in text
    assert "99999" in text
    assert error.details["errors"] == [
        {
            "env": "SEMANTICA_POSTGRES_MAX_POOL_SIZE",
            "field": "postgres_max_pool_size",
            "expected": "a valid integer, unable to parse string as an integer",
            "got": "abc",
        },
        {
            "env": "SEMANTICA_REDIS_PORT",
            "field": "redis_port",
            "expected": "a value less than or equal to 65535",
            "got": "99999",
        },
    ]
    assert isinstance(error.__cause__, ValidationError)


def test_keyword_argument_errors_name_field_and_variable() -> None:
    """Errors from keyword arguments are reported like environment errors."""
    error = settings_error(redis_port=0, retry_max_attempts=0)
    assert [(p["env"], p["field"]) for p in error.errors] == [
        ("SEMANTICA_REDIS_PORT", "redis_port"),
        ("SEMANTICA_RETRY_MAX_ATTEMPTS", "retry_max_attempts"),
    ]
    assert "SEMANTICA_REDIS_PORT (redis_port)" in str(error)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("redis_port", 0),
        ("qdrant_port", 65536),
        ("metrics_port", -1),
        ("database_url", "mysql://localhost/db"),
        ("database_url", "not a url"),
        ("database_url", "postgresql://localhost:99999/db"),
        ("redis_url", "http://localhost:6379"),
        ("qdrant_url", "grpc://localhost:6334"),
        ("qdrant_url", "http://"),
        ("graph_uri", "http://localhost:7687"),
        ("graph_uri", "bolt://"),
        ("otlp_endpoint", "ftp://collector"),
        ("llm_api_base", "localhost:8000"),
        ("postgres_statement_timeout", 0),
        ("llm_request_timeout", -1.0),
        ("operation_timeout", "inf"),
        ("retry_max_attempts", 0),
        ("trace_sample_ratio", 1.5),
        ("trace_sample_ratio", -0.1),
        ("retry_budget_ratio", 2),
        ("cache_ttl_jitter", -0.5),
        ("retry_exponential_base", 0.5),
        ("log_level", "verbose"),
        ("log_format", "xml"),
        ("redis_mode", "replica"),
        ("service_name", ""),
    ],
)
def test_invalid_value_is_rejected_under_its_variable(field: str, value: object) -> None:
    """Each invalid value is reported under its SEMANTICA_ variable name."""
    assert envs_of(settings_error(**{field: value})) == [Settings.env_var(field)]


@pytest.mark.parametrize(
    ("field", "value", "stored"),
    [
        ("database_url", "postgres://u@db:5432/app", "postgres://u@db:5432/app"),
        ("database_url", "postgresql:///app?host=/run/pg", "postgresql:///app?host=/run/pg"),
        ("redis_url", "rediss://cache:6380/1", "rediss://cache:6380/1"),
        ("graph_uri", "neo4j+s://graph.example:7687", "neo4j+s://graph.example:7687"),
        ("otlp_endpoint", "https://otel.example:4318", "https://otel.example:4318"),
        ("log_level", "warn", "WARNING"),
        ("log_level", "debug", "DEBUG"),
        ("log_format", "Console", LogFormat.CONSOLE),
        ("redis_mode", "SENTINEL", RedisMode.SENTINEL),
        ("trace_sample_ratio", 0, 0.0),
        ("retry_base_delay", 0, 0.0),
    ],
)
def test_valid_value_is_accepted_and_normalised(field: str, value: object, stored: object) -> None:
    """Accepted spellings are stored verbatim (URLs) or canonically (enums, levels)."""
    assert getattr(Settings(**{field: value}), field) == stored


def test_min_pool_above_max_names_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """min_pool_size > max_pool_size is reported naming both variables."""
    monkeypatch.setenv("SEMANTICA_POSTGRES_MIN_POOL_SIZE", "30")
    monkeypatch.setenv("SEMANTICA_POSTGRES_MAX_POOL_SIZE", "10")
    error = settings_error()
    assert envs_of(error) == ["SEMANTICA_POSTGRES_MAX_POOL_SIZE"]
    assert "SEMANTICA_POSTGRES_MIN_POOL_SIZE" in error.errors[0]["expected"]
    assert "SEMANTICA_POSTGRES_MIN_POOL_SIZE" in str(error)


def test_min_pool_above_default_max_is_rejected() -> None:
    """Raising only the minimum above the default maximum (20) is caught too."""
    error = settings_error(postgres_min_pool_size=30)
    assert envs_of(error) == ["SEMANTICA_POSTGRES_MAX_POOL_SIZE"]
    assert Settings(postgres_min_pool_size=20).db.max_pool_size == 20


def test_cross_field_and_field_errors_are_collected_together() -> None:
    """A cross-field problem is reported alongside unrelated field problems."""
    error = settings_error(postgres_min_pool_size=30, redis_port=0)
    assert set(envs_of(error)) == {"SEMANTICA_POSTGRES_MAX_POOL_SIZE", "SEMANTICA_REDIS_PORT"}


# The bulkhead admits calls that each hold a pooled connection, so it must fit both pools.
POOLS = ("SEMANTICA_POSTGRES_MAX_POOL_SIZE", "SEMANTICA_REDIS_MAX_CONNECTIONS")


def test_default_bulkhead_fits_both_default_pools() -> None:
    """Unset, the bulkhead is the smaller pool (20): the old default of 100 exceeded both."""
    settings = Settings()
    assert settings.bulkhead_max_concurrent == settings.resilience.bulkhead_max_concurrent == 20
    assert settings.resilience.bulkhead_max_concurrent <= settings.db.max_pool_size
    assert settings.resilience.bulkhead_max_concurrent <= settings.redis.max_connections
    for component in ("postgres", "redis"):
        policy = ResiliencePolicy.from_settings(settings, component=component)
        assert policy.bulkhead is not None
        assert policy.bulkhead.max_concurrent == 20


def test_old_default_bulkhead_is_rejected_naming_both_pools() -> None:
    """100 concurrent calls on pools of 20 and 50: one error names every variable and the fix."""
    error = settings_error(bulkhead_max_concurrent=100)
    assert envs_of(error) == ["SEMANTICA_BULKHEAD_MAX_CONCURRENT"]
    expected = error.errors[0]["expected"]
    assert "SEMANTICA_POSTGRES_MAX_POOL_SIZE (postgres_max_pool_size) = 20" in expected
    assert "SEMANTICA_REDIS_MAX_CONNECTIONS (redis_max_connections) = 50" in expected
    assert "Lower SEMANTICA_BULKHEAD_MAX_CONCURRENT to 20 or less" in expected
    assert "raise SEMANTICA_POSTGRES_MAX_POOL_SIZE and SEMANTICA_REDIS_MAX_CONNECTIONS" in str(
        error
    )
    assert error.errors[0]["got"] == 100


def test_bulkhead_above_the_redis_pool_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the pool that is exceeded is named; environment values are checked the same way."""
    monkeypatch.setenv("SEMANTICA_REDIS_MAX_CONNECTIONS", "8")
    monkeypatch.setenv("SEMANTICA_BULKHEAD_MAX_CONCURRENT", "16")
    error = settings_error()
    assert envs_of(error) == ["SEMANTICA_BULKHEAD_MAX_CONCURRENT"]
    text = str(error)
    assert "SEMANTICA_REDIS_MAX_CONNECTIONS (redis_max_connections) = 8" in text
    assert "SEMANTICA_POSTGRES_MAX_POOL_SIZE" not in text
    assert "to 8 or less" in text


def test_lowering_a_pool_lowers_the_default_bulkhead() -> None:
    """Setting only a pool size never makes the defaults invalid."""
    assert Settings(redis_max_connections=4).resilience.bulkhead_max_concurrent == 4
    settings = Settings(postgres_min_pool_size=1, postgres_max_pool_size=2)
    assert settings.resilience.bulkhead_max_concurrent == 2
    assert Settings(bulkhead_max_concurrent=7).resilience.bulkhead_max_concurrent == 7


def test_bulkhead_error_is_collected_with_others_and_skips_invalid_pools() -> None:
    """An invalid pool size is reported alone (no comparison against garbage); the
    bulkhead check is listed alongside unrelated problems."""
    error = settings_error(postgres_max_pool_size="abc", bulkhead_max_concurrent=30)
    assert envs_of(error) == ["SEMANTICA_POSTGRES_MAX_POOL_SIZE"]
    error = settings_error(redis_port=0, bulkhead_max_concurrent=51)
    assert envs_of(error) == ["SEMANTICA_REDIS_PORT", "SEMANTICA_BULKHEAD_MAX_CONCURRENT"]


@given(
    postgres=st.integers(1, 300),
    redis=st.integers(1, 300),
    bulkhead=st.none() | st.integers(1, 400),
)
def test_effective_bulkhead_never_exceeds_a_pool(
    postgres: int, redis: int, bulkhead: int | None
) -> None:
    """Any combination: either settings build and the effective bulkhead fits both pools
    (the value set, else the smaller pool), or the error names exactly the pools exceeded."""
    values: dict[str, Any] = {
        "postgres_min_pool_size": 1,
        "postgres_max_pool_size": postgres,
        "redis_max_connections": redis,
        "bulkhead_max_concurrent": bulkhead,
    }
    exceeded = {
        env
        for env, size in zip(POOLS, (postgres, redis), strict=True)
        if bulkhead is not None and bulkhead > size
    }
    if exceeded:
        error = settings_error(**values)
        assert envs_of(error) == ["SEMANTICA_BULKHEAD_MAX_CONCURRENT"]
        assert {env for env in POOLS if env in error.errors[0]["expected"]} == exceeded
        return
    limit = Settings(**values).resilience.bulkhead_max_concurrent
    assert limit == (bulkhead if bulkhead is not None else min(postgres, redis))
    assert limit <= postgres
    assert limit <= redis


def test_redis_pool_acquire_timeout_is_validated_and_viewed() -> None:
    """The Redis pool's wait is a positive, finite number of seconds."""
    assert Settings().redis.pool_acquire_timeout == 5.0
    assert Settings(redis_pool_acquire_timeout=0.25).redis.pool_acquire_timeout == 0.25
    for bad in (0, -1.0, "inf"):
        error = settings_error(redis_pool_acquire_timeout=bad)
        assert envs_of(error) == ["SEMANTICA_REDIS_POOL_ACQUIRE_TIMEOUT"]


def test_qdrant_location_and_url_exclude_each_other() -> None:
    """Local mode and a server URL together are ambiguous and rejected."""
    error = settings_error(qdrant_url="http://qdrant:6333", qdrant_location=":memory:")
    assert envs_of(error) == ["SEMANTICA_QDRANT_LOCATION"]
    assert "SEMANTICA_QDRANT_URL" in str(error)


def test_env_var_rejects_unknown_field() -> None:
    """env_var() maps fields to variable names and refuses unknown fields."""
    assert Settings.env_var("redis_port") == "SEMANTICA_REDIS_PORT"
    with pytest.raises(ValueError, match="not a Settings field"):
        Settings.env_var("redis_portt")


# -------------------------------------------------------------------------- secrets


def secret_settings() -> Settings:
    return Settings(
        database_url=f"postgresql://app:{DB_PASSWORD}@db:5432/app",
        redis_password=REDIS_PASSWORD,
        llm_api_key=LLM_KEY,
        qdrant_api_key=QDRANT_KEY,
        graph_password=GRAPH_PASSWORD,
    )


def test_secrets_absent_from_settings_repr_str_and_safe_dump() -> None:
    """repr, str and safe_dump of Settings mask every secret."""
    settings = secret_settings()
    rendered = [repr(settings), str(settings), json.dumps(settings.safe_dump())]
    for text in rendered:
        for secret in ALL_SECRETS:
            assert secret not in text
    dump = settings.safe_dump()
    assert dump["database_url"] == "postgresql://app:***@db:5432/app"
    assert dump["redis_password"] == "***"
    assert {Settings.env_var(name) for name in dump} == set(Settings.variables())


def test_secrets_absent_from_every_view_repr() -> None:
    """No view's repr or str shows a secret, though the values are usable."""
    settings = secret_settings()
    for name in VIEWS:
        view = getattr(settings, name)
        for text in (repr(view), str(view)):
            for secret in ALL_SECRETS:
                assert secret not in text, (name, secret)
    assert DB_PASSWORD in settings.db.url
    assert "app:***@db" in repr(settings.db)
    api_key = settings.llm.api_key
    assert api_key is not None
    assert api_key.get_secret_value() == LLM_KEY


def test_secrets_absent_from_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rejected secrets are masked in the message, details, repr and the chained cause."""
    monkeypatch.setenv("SEMANTICA_DATABASE_URL", f"mysql://app:{DB_PASSWORD}@db/app")
    monkeypatch.setenv("SEMANTICA_QDRANT_URL", f"ftp://u:{QDRANT_KEY}@q")
    with pytest.raises(SettingsError) as info:
        Settings(graph_password=1234, llm_api_key=[LLM_KEY])
    error = info.value
    assert set(envs_of(error)) == {
        "SEMANTICA_DATABASE_URL",
        "SEMANTICA_QDRANT_URL",
        "SEMANTICA_GRAPH_PASSWORD",
        "SEMANTICA_LLM_API_KEY",
    }
    texts = [str(error), repr(error), json.dumps(error.to_dict()), str(error.__cause__)]
    for text in texts:
        for secret in (DB_PASSWORD, QDRANT_KEY, LLM_KEY, "1234"):
            assert secret not in text
    by_env = {p["env"]: p["got"] for p in error.errors}
    assert by_env["SEMANTICA_GRAPH_PASSWORD"] == "***"
    assert by_env["SEMANTICA_DATABASE_URL"] == "mysql://app:***@db/app"


ODD_PASSWORD = DB_PASSWORD + "/@ #?"


@pytest.mark.parametrize(
    ("url", "password"),
    [
        (f"postgresql://app@db:5432/app?password={DB_PASSWORD}", DB_PASSWORD),
        (
            f"postgresql://app@db:5432/app?sslmode=require&SSLPASSWORD={DB_PASSWORD}&a=b",
            DB_PASSWORD,
        ),
        (f"postgresql://app:{quote(ODD_PASSWORD, safe='')}@db:5432/app", ODD_PASSWORD),
    ],
)
def test_database_url_password_absent_wherever_the_url_carries_it(url: str, password: str) -> None:
    """A ?password= / sslpassword= parameter or an encoded password is masked in repr,
    str, safe_dump and the db view, and registered so it is masked anywhere else."""
    settings = Settings(database_url=url)
    texts = [repr(settings), str(settings), json.dumps(settings.safe_dump()), repr(settings.db)]
    for text in texts:
        assert DB_PASSWORD not in text
        assert "***" in text
    assert redact_text(f"server said {password}") == "server said ***"


def test_url_passwords_a_parser_would_misread_are_refused() -> None:
    """A raw '/' anywhere, or a second '@' in the database URL, is named with the fix and
    never quoted; a raw '@' in a Redis password is fine (redis-py splits at the last)."""
    db_url = f"postgresql://app:{DB_PASSWORD}@x@db:5432/app"
    redis_url = f"redis://:{REDIS_PASSWORD}/x@cache:6379/0"
    error = settings_error(database_url=db_url, redis_url=redis_url)
    assert set(envs_of(error)) == {"SEMANTICA_DATABASE_URL", "SEMANTICA_REDIS_URL"}
    for text in (str(error), repr(error), json.dumps(error.to_dict())):
        assert DB_PASSWORD not in text
        assert REDIS_PASSWORD not in text
        assert "%40" in text
    settings = Settings(redis_url=f"redis://:{REDIS_PASSWORD}@x@cache:6379/0")
    assert REDIS_PASSWORD not in repr(settings.redis)
    assert "redis://:***@cache:6379/0" in repr(settings.redis)


# ----------------------------------------------------------------- typing and package


@pytest.mark.parametrize("cls", [Settings, *VIEWS.values()])
def test_type_hints_resolve_at_run_time(cls: type[Any]) -> None:
    """typing.get_type_hints() resolves (pydantic and DI wiring read annotations)."""
    hints = typing.get_type_hints(cls)
    assert hints


def test_public_api_is_pinned() -> None:
    """config.__all__ lists exactly the supported names."""
    assert sorted(config.__all__) == [
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
        "Settings",
        "SettingsError",
        "VectorBackend",
        "VectorSettings",
    ]


def test_config_imports_no_driver() -> None:
    """Importing config (and building Settings) loads no backend driver."""
    drivers = ("asyncpg", "redis", "litellm", "qdrant_client", "neo4j")
    code = (
        "import sys; from config import Settings; Settings(_env_file=None); "
        f"print([m for m in {drivers!r} if m in sys.modules])"
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SEMANTICA_")}
    result = subprocess.run(  # noqa: S603 -- fixed argv, our own interpreter
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ docs

_ROW = re.compile(
    r"^\|\s*`(?P<env>SEMANTICA_\w+)`\s*\|\s*`(?P<view>\w+)\.(?P<attr>\w+)`\s*\|"
    r"[^|]*\|\s*(?P<default>[^|]*?)\s*\|\s*(?P<meaning>.*?)\s*\|$"
)


def documented_rows() -> list[re.Match[str]]:
    text = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    return [m for line in text.splitlines() if (m := _ROW.match(line.replace(r"\|", "/")))]


def rendered_default(value: object) -> str:
    """How docs/configuration.md writes a default value."""
    if value is None:
        return "*unset*"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, Enum):
        value = value.value
    return '`""`' if value == "" else f"`{value}`"


def test_docs_list_exactly_the_settings_fields() -> None:
    """docs/configuration.md has one row per setting: same names, same defaults, and the
    meaning is the declaration's docstring."""
    rows = documented_rows()
    documented = [row["env"] for row in rows]
    assert len(documented) == len(set(documented)), "a variable is documented twice"
    assert set(documented) == set(Settings.variables())
    for row in rows:
        group, name = Settings.variables()[row["env"]]
        declared = group.model_fields[name]
        assert row["default"] == rendered_default(declared.default), row["env"]
        meaning = group.descriptions().get(name, "")
        assert row["meaning"] == " ".join(meaning.split()), row["env"]


#: View attributes resolved from other settings when their variable is unset.
RESOLVED_WHEN_UNSET = {("redis", "url"), ("resilience", "bulkhead_max_concurrent")}


def test_docs_view_attributes_match_the_views() -> None:
    """The documented view attribute of each variable exists and covers every view field."""
    rows = documented_rows()
    documented = {(row["view"], row["attr"]) for row in rows}
    actual = {(name, field) for name, cls in VIEWS.items() for field in cls.model_fields}
    assert documented == actual
    for row in rows:
        group, name = Settings.variables()[row["env"]]
        assert (row["view"], row["attr"]) == (group.settings_attribute, name), row["env"]
    defaults = Settings()
    for row in rows:
        field = row["env"].removeprefix("SEMANTICA_").lower()
        if (row["view"], row["attr"]) in RESOLVED_WHEN_UNSET:
            continue  # the view holds the effective value; checked by their own tests
        view_value = getattr(getattr(defaults, row["view"]), row["attr"])
        assert view_value == getattr(defaults, field), row["env"]


# ------------------------------------------------------------- one declaration


def test_flat_reads_for_type_checkers_are_generated_from_the_groups() -> None:
    """The marked block of config/settings.py is exactly what the groups generate
    (rewrite it with ``python tools/write_flat_reads.py``)."""
    source = (REPO_ROOT / "config" / "settings.py").read_text(encoding="utf-8")
    block = source.split(config.settings.FLAT_READS_BEGIN)[1]
    block = block.split(config.settings.FLAT_READS_END)[0]
    assert block == config.settings.render_flat_reads()


def test_every_flat_name_reads_its_group_attribute() -> None:
    """settings.<flat name> and settings.<group>.<attribute> are one value for every
    variable, and every group attribute has exactly one variable."""
    settings = secret_settings()
    variables = Settings.variables()
    for env, (group, name) in variables.items():
        flat = env.removeprefix("SEMANTICA_").lower()
        assert getattr(settings, flat) is getattr(getattr(settings, group.settings_attribute), name)
    grouped = {(group, name) for group, name in variables.values()}
    assert grouped == {(cls, field) for cls in VIEWS.values() for field in cls.model_fields}


def test_a_whole_group_can_be_given_and_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Settings(db=DatabaseSettings(...)) is a keyword argument like the flat ones."""
    monkeypatch.setenv("SEMANTICA_POSTGRES_MAX_POOL_SIZE", "7")
    monkeypatch.setenv("SEMANTICA_REDIS_PORT", "6390")
    group = DatabaseSettings(url="postgresql://app@db/app", max_pool_size=30)
    settings = Settings(db=group)
    assert settings.db == group
    assert settings.postgres_max_pool_size == 30
    assert settings.redis_port == 6390
    assert Settings(db={"max_pool_size": 9}).postgres_max_pool_size == 9


def test_a_group_given_by_attribute_names_is_checked_under_its_variables() -> None:
    """Errors inside a group given whole still name the environment variable."""
    error = settings_error(db={"max_pool_size": 0}, redis={"redis_port": 0})
    assert envs_of(error) == ["SEMANTICA_POSTGRES_MAX_POOL_SIZE", "SEMANTICA_REDIS_PORT"]


def test_groups_built_alone_resolve_like_the_settings() -> None:
    """A group on its own validates its fields and resolves what it can."""
    assert RedisSettings(port=6380, ssl=True).url == "rediss://localhost:6380/0"
    assert (
        RedisSettings.model_validate({"redis_url": "unix:///run/r.sock"}).url
        == "unix:///run/r.sock"
    )
    assert ResilienceSettings().bulkhead_max_concurrent == 20  # the pools' defaults
    with pytest.raises(ValidationError, match="postgres_min_pool_size"):
        DatabaseSettings(min_pool_size=30)


def test_model_copy_takes_flat_names_and_groups() -> None:
    """model_copy(update=...) accepts flat names and whole groups, and refuses typos."""
    settings = Settings()
    copy = settings.model_copy(update={"redis_port": 6390, "cache": CacheSettings(l1_ttl=5.0)})
    assert (copy.redis.port, copy.cache.l1_ttl, copy.cache_l1_ttl) == (6390, 5.0, 5.0)
    assert settings.redis.port == 6379
    with pytest.raises(ValueError, match="'redis_portt' is not a setting"):
        settings.model_copy(update={"redis_portt": 1})

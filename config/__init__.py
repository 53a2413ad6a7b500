"""Typed settings of Semantica Infra: ``from config import Settings``.

``Settings()`` reads ``SEMANTICA_*`` environment variables (and an optional ``.env``),
validates all of them at once and offers grouped views such as ``settings.db.url``.
See ``docs/configuration.md`` for every variable.
"""

from config.errors import SettingsError
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
    "Settings",
    "SettingsError",
    "VectorSettings",
]

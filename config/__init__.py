"""Typed settings of Semantica Infra: ``from config import Settings``.

``Settings()`` reads ``SEMANTICA_*`` environment variables (and an optional ``.env``),
validates all of them at once and nests one group per backend family
(``settings.db.url``; ``settings.database_url`` reads the same value). See
``docs/configuration.md`` for every variable.

Public names: :class:`Settings`; its groups :class:`DatabaseSettings`,
:class:`RedisSettings`, :class:`VectorSettings`, :class:`GraphSettings`,
:class:`LLMSettings`, :class:`CacheSettings`, :class:`ResilienceSettings`,
:class:`ObservabilitySettings` (each declares its settings once, :mod:`config.groups`);
the value types :class:`RedisMode`, :class:`VectorBackend`, :class:`LogFormat`,
:data:`LogLevel`; and
:class:`SettingsError`, the one error naming every invalid variable.
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
    VectorBackend,
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
    "VectorBackend",
    "VectorSettings",
]

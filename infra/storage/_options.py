"""Constructor arguments of the PostgreSQL stores: validation and derived values.

Checked at construction, so a wrong pool size or timeout fails where it is written, with
a message naming the argument -- not at the first query in production.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.resilience import ResiliencePolicy
from infra.storage._statements import CLIENT_GRACE_S, Timeouts, statement_timeout_setting

__all__ = ["StoreOptions", "ValidatedOptions", "validate_options"]


class StoreOptions(TypedDict, total=False):
    """Keyword options shared by ``PostgresStore`` and ``EnhancedPostgresStore``
    (documented on :class:`~infra.storage.PostgresStore`)."""

    statement_timeout: float | None
    acquire_timeout: float
    command_timeout: float | None
    close_timeout: float
    health_timeout: float
    server_settings: Mapping[str, str] | None
    name: str
    collector: MetricsCollector | None
    tracing: TracingState | None


@dataclass(frozen=True, slots=True)
class ValidatedOptions:
    """What the store keeps from its arguments."""

    timeouts: Timeouts
    server_settings: dict[str, str]


def _seconds(name: str, value: object, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        hint = "None or " if optional else ""
        raise ValueError(f"{name} must be {hint}a positive number of seconds, got {value!r}")
    return float(value)


def validate_options(
    *,
    min_size: object,
    max_size: object,
    statement_timeout: object,
    acquire_timeout: object,
    command_timeout: object,
    close_timeout: object,
    health_timeout: object,
    server_settings: Mapping[str, str] | None,
    policy: object,
    name: object,
) -> ValidatedOptions:
    """Check every argument; returns the derived timeouts and session settings.

    Raises:
        ValueError: A size, timeout or name is out of range, or ``server_settings`` sets
            ``statement_timeout`` (use the argument of that name).
        TypeError: ``policy`` is not a ``ResiliencePolicy`` or ``server_settings`` holds
            a non-string.
    """
    for label, size, low in (("min_size", min_size, 0), ("max_size", max_size, 1)):
        if isinstance(size, bool) or not isinstance(size, int) or size < low:
            raise ValueError(f"{label} must be an int >= {low}, got {size!r}")
    assert isinstance(min_size, int)  # noqa: S101 -- narrowed by the loop above
    assert isinstance(max_size, int)  # noqa: S101
    if min_size > max_size:
        raise ValueError(f"min_size ({min_size}) must not exceed max_size ({max_size})")
    statement = _seconds("statement_timeout", statement_timeout, optional=True)
    acquire = _seconds("acquire_timeout", acquire_timeout)
    command = _seconds("command_timeout", command_timeout, optional=True)
    _seconds("close_timeout", close_timeout)
    _seconds("health_timeout", health_timeout)
    if policy is not None and not isinstance(policy, ResiliencePolicy):
        raise TypeError(f"policy must be a ResiliencePolicy or None, got {type(policy).__name__}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string (the pool's metric label), got {name!r}")
    settings = dict(server_settings or {})
    if "statement_timeout" in settings:
        raise ValueError(
            "server_settings must not set statement_timeout; pass statement_timeout= "
            "(seconds) so the store can report it in QueryTimeoutError"
        )
    for key, value in settings.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"server_settings must map str to str, got {key!r}: {value!r}")
    if statement is not None:
        settings["statement_timeout"] = statement_timeout_setting(statement)
    if command is None and statement is not None:
        command = statement + CLIENT_GRACE_S
    assert acquire is not None  # noqa: S101 -- not optional
    return ValidatedOptions(Timeouts(statement, command, acquire), settings)

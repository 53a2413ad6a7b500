"""What a ResiliencePolicy is built from: layer configs, and how settings map onto them.

:func:`configs_from_settings` builds the layer configs from ``settings.resilience``
without a list of names: a layer's settings are the group's fields named
``<layer>_<config field>`` (``breaker_failure_threshold`` is
``CircuitBreakerConfig.failure_threshold``, ``retry_max_delay`` is ``RetryConfig.max_delay``,
``bulkhead_max_wait`` is ``BulkheadConfig.max_wait``), so a setting added to the group
under that name reaches its layer with no edit here. The group
(``config.ResilienceSettings``) is the one declaration of these settings; this module
reads it structurally, and :class:`ResilienceSettingsLike` names only the five fields it
reads by name (the switches, the retry budget and the two timeouts), not the layers'
fields. It does not import ``config``: ``config`` is built on ``infra``'s core, so
``infra.resilience`` importing it would point the layering upwards, make
``import infra.resilience`` fail for an application that has its own ``config`` module,
and (imported only for type checking) leave its type hints unresolvable at run time --
see docs/decisions.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any, Final, Protocol, cast

from infra.exceptions import ConfigurationError
from infra.resilience.breaker import CircuitBreakerConfig
from infra.resilience.bulkhead import Bulkhead, BulkheadHooks
from infra.resilience.retry import RetryConfig

__all__ = [
    "BulkheadConfig",
    "HasResilienceSettings",
    "LayerConfigs",
    "ResilienceSettingsLike",
    "configs_from_settings",
    "settings_errors",
]


@dataclass(frozen=True, slots=True)
class BulkheadConfig:
    """Bulkhead limits as a value (a ``Bulkhead`` is a live object holding permits).

    Validated by :class:`~infra.resilience.bulkhead.Bulkhead` when a policy is built.
    """

    max_concurrent: int
    max_queue: int = 0
    max_wait: float | None = None

    def build(self, name: str, hooks: BulkheadHooks | None = None) -> Bulkhead:
        """A fresh bulkhead with these limits."""
        return Bulkhead(
            self.max_concurrent,
            max_queue=self.max_queue,
            max_wait=self.max_wait,
            name=name,
            hooks=hooks,
        )


class ResilienceSettingsLike(Protocol):
    """What is read by name from ``settings.resilience`` (``config.ResilienceSettings``);
    each layer's own fields are found by its config's field names (:func:`_layer_settings`)."""

    @property
    def breaker_enabled(self) -> bool:
        """Whether the breaker layer is built."""

    @property
    def retry_enabled(self) -> bool:
        """Whether the retry layer is built."""

    @property
    def retry_budget_ratio(self) -> float:
        """Retries allowed as a fraction of recent calls."""

    @property
    def operation_timeout(self) -> float:
        """The whole call's limit, seconds."""

    @property
    def attempt_timeout(self) -> float:
        """One attempt's limit, seconds."""


class HasResilienceSettings(Protocol):
    """Anything with a ``resilience`` view, i.e. ``config.Settings``."""

    @property
    def resilience(self) -> ResilienceSettingsLike: ...


@dataclass(frozen=True, slots=True)
class LayerConfigs:
    """The layer configs one ``settings.resilience`` describes (``None`` = layer off)."""

    breaker: CircuitBreakerConfig | None
    retry: RetryConfig | None
    retry_budget_ratio: float | None
    bulkhead: BulkheadConfig
    timeout: float
    attempt_timeout: float


def configs_from_settings(
    settings: HasResilienceSettings | ResilienceSettingsLike, *, component: str
) -> LayerConfigs:
    """Map ``settings.resilience`` (or the view itself) onto layer configs.

    ``breaker_enabled=False`` / ``retry_enabled=False`` switch those layers off;
    ``bulkhead_max_wait=0`` means "do not queue".

    Raises:
        ConfigurationError: A combination the layers reject (e.g. ``retry_max_delay``
            below ``retry_base_delay``), naming the environment variables to fix.
    """
    res = cast("ResilienceSettingsLike", getattr(settings, "resilience", settings))
    breaker = retry = None
    with settings_errors(component, "SEMANTICA_CIRCUIT_BREAKER_*"):
        if res.breaker_enabled:
            breaker = CircuitBreakerConfig(**_layer_settings(res, "breaker", CircuitBreakerConfig))
    with settings_errors(component, "SEMANTICA_RETRY_*"):
        if res.retry_enabled:
            retry = RetryConfig(**_layer_settings(res, "retry", RetryConfig))
    bulkhead = BulkheadConfig(**_layer_settings(res, "bulkhead", BulkheadConfig))
    if bulkhead.max_wait == 0:  # "do not queue"
        bulkhead = replace(bulkhead, max_queue=0, max_wait=None)
    return LayerConfigs(
        breaker=breaker,
        retry=retry,
        retry_budget_ratio=res.retry_budget_ratio if retry is not None else None,
        bulkhead=bulkhead,
        timeout=res.operation_timeout,
        attempt_timeout=res.attempt_timeout,
    )


def _layer_settings(res: object, layer: str, config: type[Any]) -> dict[str, Any]:
    """The settings of one layer: each field of ``config`` that the group declares as
    ``<layer>_<field>`` (``breaker_timeout`` -> ``CircuitBreakerConfig.timeout``); the
    config's own defaults cover the rest."""
    values = {f.name: getattr(res, f"{layer}_{f.name}", _UNSET) for f in fields(config)}
    return {name: value for name, value in values.items() if value is not _UNSET}


_UNSET: Final = object()


@contextmanager
def settings_errors(component: str, variables: str) -> Iterator[None]:
    """Turn a layer's ValueError/TypeError into a ConfigurationError naming the settings."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"invalid resilience settings for {component!r}: {exc}; fix {variables}",
            component=component,
            details={"settings": variables},
        ) from exc

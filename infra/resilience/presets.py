"""Presets: the design's operational guidance as ready-made, validated configs.

Breakers (failure threshold / recovery timeout):

* ``HIGH_TRAFFIC`` 20 / 30 s -- many calls per second: a handful of failures is noise,
  and with plenty of traffic a short probe interval finds recovery quickly;
* ``LOW_TRAFFIC`` 5 / 60 s -- few calls: five in a row is already a pattern;
* ``CRITICAL`` 10 / 120 s -- a backend whose overload is expensive: trip reasonably
  early and give it a long rest before probing.

Retries (attempts include the first):

* ``IDEMPOTENT`` 5 attempts -- reads and writes that are safe to repeat;
* ``NON_IDEMPOTENT`` 1 attempt, i.e. no retry -- a repeated write may apply twice;
* ``EXPENSIVE`` 2 attempts, 5 s base delay -- calls that cost money or heavy work (LLM
  completions): one more try, after a real pause.

Use them with :meth:`ResiliencePolicy.build
<infra.resilience.policy.ResiliencePolicy.build>`, or look one up by name (e.g. from a
config file) with :func:`breaker_preset` / :func:`retry_preset`.
"""

from __future__ import annotations

from typing import Final

from infra.resilience.breaker import CircuitBreakerConfig
from infra.resilience.retry import RetryConfig

__all__ = ["BreakerPresets", "RetryPresets", "breaker_preset", "retry_preset"]


class BreakerPresets:
    """Circuit-breaker presets from the design (docs/design.md) (threshold / recovery timeout)."""

    HIGH_TRAFFIC: Final = CircuitBreakerConfig(failure_threshold=20, timeout=30.0)
    LOW_TRAFFIC: Final = CircuitBreakerConfig(failure_threshold=5, timeout=60.0)
    CRITICAL: Final = CircuitBreakerConfig(failure_threshold=10, timeout=120.0)


class RetryPresets:
    """Retry presets from the design (docs/design.md) (attempts include the first)."""

    IDEMPOTENT: Final = RetryConfig(max_attempts=5)
    NON_IDEMPOTENT: Final = RetryConfig(max_attempts=1)
    EXPENSIVE: Final = RetryConfig(max_attempts=2, base_delay=5.0)


def _lookup(namespace: type, name: str) -> object:
    choices = sorted(k.lower() for k in vars(namespace) if k.isupper())
    key = name.strip().upper().replace("-", "_")
    if key.lower() not in choices:
        raise ValueError(
            f"unknown {namespace.__name__} name {name!r}; choose one of {', '.join(choices)}"
        )
    return getattr(namespace, key)


def breaker_preset(name: str) -> CircuitBreakerConfig:
    """The breaker preset called ``name`` (``"high_traffic"``, ``"low-traffic"`` ...)."""
    preset = _lookup(BreakerPresets, name)
    assert isinstance(preset, CircuitBreakerConfig)  # noqa: S101 -- narrows the type
    return preset


def retry_preset(name: str) -> RetryConfig:
    """The retry preset called ``name`` (``"idempotent"``, ``"non_idempotent"`` ...)."""
    preset = _lookup(RetryPresets, name)
    assert isinstance(preset, RetryConfig)  # noqa: S101 -- narrows the type
    return preset

"""Every resilience setting reaches its layer, and switched-off layers are really off.

``configs_from_settings`` maps each ``SEMANTICA_*`` resilience variable onto the layer
config it names (checked field by field with values that differ from the defaults);
``breaker_enabled``/``retry_enabled`` remove the layer (and the retry budget with the
retry); ``bulkhead_max_wait=0`` means "reject instead of queueing"; a contradictory
combination is a ``ConfigurationError`` naming the variables and the component.
"""

from __future__ import annotations

import pytest

from config import Settings
from infra.exceptions import ConfigurationError
from infra.resilience import CircuitBreakerConfig, ManualClock, ResiliencePolicy, RetryConfig
from infra.resilience.policy_config import BulkheadConfig, configs_from_settings

CUSTOM = {
    "circuit_breaker_failure_threshold": 7,
    "circuit_breaker_timeout": 12.5,
    "circuit_breaker_half_open_max_calls": 3,
    "retry_max_attempts": 4,
    "retry_base_delay": 0.5,
    "retry_max_delay": 9.0,
    "retry_exponential_base": 3.0,
    "retry_jitter": False,
    "retry_budget_ratio": 0.35,
    "bulkhead_max_concurrent": 11,
    "bulkhead_max_queue": 22,
    "bulkhead_max_wait": 1.5,
    "operation_timeout": 40.0,
    "attempt_timeout": 8.0,
}


@pytest.mark.parametrize("source", ["settings", "view"])
def test_each_setting_reaches_its_layer(source: str) -> None:
    settings = Settings(**CUSTOM)
    layers = configs_from_settings(
        settings if source == "settings" else settings.resilience, component="pg"
    )
    assert layers.breaker == CircuitBreakerConfig(
        failure_threshold=7, timeout=12.5, half_open_max_calls=3
    )
    assert layers.retry == RetryConfig(
        max_attempts=4, base_delay=0.5, max_delay=9.0, exponential_base=3.0, jitter=False
    )
    assert layers.retry_budget_ratio == 0.35
    assert layers.bulkhead == BulkheadConfig(11, max_queue=22, max_wait=1.5)
    assert (layers.timeout, layers.attempt_timeout) == (40.0, 8.0)


def test_switched_off_layers_are_absent() -> None:
    layers = configs_from_settings(
        Settings(circuit_breaker_enabled=False, retry_enabled=False), component="pg"
    )
    assert layers.breaker is None
    assert layers.retry is None
    assert layers.retry_budget_ratio is None  # no retry, no budget
    policy = ResiliencePolicy.from_settings(
        Settings(circuit_breaker_enabled=False, retry_enabled=False),
        component="pg",
        clock=ManualClock(),
    )
    assert policy.breaker is None
    assert policy.retry is None
    assert policy.bulkhead is not None


def test_a_zero_bulkhead_wait_means_no_queue() -> None:
    layers = configs_from_settings(
        Settings(bulkhead_max_wait=0, bulkhead_max_queue=50), component="pg"
    )
    # left unset, the bulkhead admits what the smaller pool holds (20 connections)
    assert layers.bulkhead == BulkheadConfig(20, max_queue=0, max_wait=None)
    bulkhead = layers.bulkhead.build("pg")
    assert (bulkhead.max_concurrent, bulkhead.max_queue, bulkhead.max_wait) == (20, 0, None)
    assert bulkhead.name == "pg"


def test_the_defaults_as_documented() -> None:
    layers = configs_from_settings(Settings(), component="pg")
    assert layers.breaker == CircuitBreakerConfig(failure_threshold=5, timeout=60.0)
    assert layers.retry == RetryConfig()
    assert layers.retry_budget_ratio == 0.2
    assert layers.bulkhead == BulkheadConfig(20, max_queue=1000, max_wait=5.0)  # smaller pool
    assert (layers.timeout, layers.attempt_timeout) == (30.0, 10.0)


def test_contradicting_retry_settings_name_the_variables_and_component() -> None:
    with pytest.raises(ConfigurationError) as raised:
        configs_from_settings(Settings(retry_base_delay=5.0, retry_max_delay=1.0), component="pg")
    assert raised.value.component == "pg"
    assert raised.value.details["settings"] == "SEMANTICA_RETRY_*"
    assert "invalid resilience settings for 'pg': max_delay (1.0) must be >= base_delay" in str(
        raised.value
    )
    assert "; fix SEMANTICA_RETRY_*" in str(raised.value)
    assert isinstance(raised.value.__cause__, ValueError)


def test_a_layer_refusing_its_values_is_named_by_the_policy_factory() -> None:
    """A view with values the layers refuse (built by hand: Settings would refuse first)."""
    view = Settings().resilience.model_copy(update={"bulkhead_max_concurrent": 0})
    with pytest.raises(ConfigurationError) as raised:
        ResiliencePolicy.from_settings(view, component="pg", clock=ManualClock())
    assert raised.value.component == "pg"
    assert "max_concurrent must be >= 1" in str(raised.value)
    assert "fix SEMANTICA_BULKHEAD_* / SEMANTICA_*_TIMEOUT" in str(raised.value)


def test_contradicting_breaker_settings_name_the_breaker_variables() -> None:
    view = Settings().resilience.model_copy(update={"breaker_failure_threshold": 0})
    with pytest.raises(ConfigurationError) as raised:
        configs_from_settings(view, component="redis")
    assert raised.value.details["settings"] == "SEMANTICA_CIRCUIT_BREAKER_*"
    assert "failure_threshold must be an integer >= 1" in str(raised.value)


@pytest.mark.parametrize(
    ("attempt", "overall", "deadline"),
    [(10.0, 10.0, 10.0), (5.0, 10.0, 10.0), (10.0, 9.0, None)],
    ids=["bound-equals-overall", "bound-below", "bound-above"],
)
def test_the_retry_gets_the_overall_deadline_when_attempts_fit_inside_it(
    attempt: float, overall: float, deadline: float | None
) -> None:
    """When every attempt fits in the overall timeout, the retry must not sleep past it."""
    policy = ResiliencePolicy.build(
        "pg", retry=RetryConfig(), timeout=overall, attempt_timeout=attempt, clock=ManualClock()
    )
    assert policy.component == "pg"
    assert policy.retry is not None
    assert policy.retry.config.deadline == deadline


@pytest.mark.parametrize(
    ("limiter_wait", "bulkhead", "deadline"),
    [
        (None, None, None),  # an unbounded limiter wait: attempts do not fit
        (4.0, None, 10.0),  # 5 + 4 <= 10
        (6.0, None, None),  # 5 + 6 > 10
        (None, BulkheadConfig(5, max_queue=0), None),  # the limiter is still unbounded
    ],
)
def test_queue_waits_count_toward_the_attempt_bound(
    limiter_wait: float | None, bulkhead: BulkheadConfig | None, deadline: float | None
) -> None:
    from infra.resilience.rate_limit import TokenBucketLimiter

    clock = ManualClock()
    policy = ResiliencePolicy.build(
        "pg",
        retry=RetryConfig(),
        timeout=10.0,
        attempt_timeout=5.0,
        rate_limiter=TokenBucketLimiter(rate=100, capacity=10, clock=clock),
        rate_limit_wait=limiter_wait,
        bulkhead=bulkhead,
        clock=clock,
    )
    assert policy.retry is not None
    assert policy.retry.config.deadline == deadline


@pytest.mark.parametrize(
    ("bulkhead", "deadline"),
    [
        (BulkheadConfig(5, max_queue=0), 10.0),  # no queue: no queue wait
        (BulkheadConfig(5, max_queue=3, max_wait=5.0), 10.0),  # 5 + 5 <= 10
        (BulkheadConfig(5, max_queue=3, max_wait=5.5), None),
        (BulkheadConfig(5, max_queue=3), None),  # queued without a bound
    ],
)
def test_a_bulkhead_queue_counts_toward_the_attempt_bound(
    bulkhead: BulkheadConfig, deadline: float | None
) -> None:
    policy = ResiliencePolicy.build(
        "pg",
        retry=RetryConfig(),
        timeout=10.0,
        attempt_timeout=5.0,
        bulkhead=bulkhead,
        clock=ManualClock(),
    )
    assert policy.retry is not None
    assert policy.retry.config.deadline == deadline


def test_every_layer_setting_of_the_group_names_a_field_of_its_layer() -> None:
    """The group is the one declaration: each ``<layer>_<field>`` setting is found by the
    layer config's field name, so a field the config does not have would be ignored
    silently -- none is; and the group satisfies what is read by name (mypy checks the
    assignment, the loop reads each member)."""
    from dataclasses import fields

    from config import ResilienceSettings
    from infra.resilience.policy_config import ResilienceSettingsLike

    layers = {"breaker": CircuitBreakerConfig, "retry": RetryConfig, "bulkhead": BulkheadConfig}
    read_by_name = {"breaker_enabled", "retry_enabled", "retry_budget_ratio"}
    for name in ResilienceSettings.model_fields:
        layer, _, field = name.partition("_")
        if layer in layers and name not in read_by_name:
            assert field in {f.name for f in fields(layers[layer])}, name
    view: ResilienceSettingsLike = Settings().resilience
    for member in (*read_by_name, "operation_timeout", "attempt_timeout"):
        assert getattr(view, member) == getattr(Settings().resilience, member)

"""TtlPolicy: validation naming the argument, the L1 <= L2 rule, negative TTLs, jitter.

The property tests pin the documented rules for any TTLs and random draws: an L2
lifetime is the TTL scaled by a factor in ``[1 - j, 1 + j]`` (exactly the TTL without
jitter), an absence lives ``negative_ttl`` in L2 and ``min(negative_ttl, l1_ttl)`` in L1,
and an L1 lifetime never exceeds the cap it is given (its entry's L2 lifetime).
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.groups import CacheSettings
from infra.cache.l1 import ABSENT
from infra.cache.ttl_policy import TtlPolicy, check_cache_settings, check_seconds
from infra.exceptions import ConfigurationError, InvalidArgumentError

SECONDS = st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False)


class Fixed(random.Random):
    """A random source whose uniform() always answers one end of the interval."""

    def __init__(self, end: str) -> None:
        super().__init__(0)
        self.end = end

    def uniform(self, a: float, b: float) -> float:
        return a if self.end == "low" else b


def policy(**overrides: Any) -> TtlPolicy:
    values: dict[str, Any] = {"l1_ttl": 10.0, "l2_ttl": 100.0, "negative_ttl": 5.0, "jitter": 0.0}
    values.update(overrides)
    return TtlPolicy(**values)


@given(l1=SECONDS, extra=SECONDS, negative=SECONDS, seed=st.integers(0, 2**32))
def test_without_jitter_lifetimes_are_exactly_the_ttls(
    l1: float, extra: float, negative: float, seed: int
) -> None:
    ttl = TtlPolicy(
        l1_ttl=l1, l2_ttl=l1 + extra, negative_ttl=negative, jitter=0, rng=random.Random(seed)
    )
    assert ttl.l2("v") == l1 + extra
    assert ttl.l2(ABSENT) == negative
    assert ttl.l2("v", 7.5) == 7.5  # a per-write TTL overrides the default
    assert ttl.l2(ABSENT, 7.5) == 7.5
    assert ttl.l1("v") == l1
    assert ttl.l1(ABSENT) == min(negative, l1)
    assert ttl.l1("v", cap=l1 / 2) == l1 / 2
    assert ttl.l1("v", cap=l1 * 2) == l1


@given(
    l1=SECONDS,
    extra=SECONDS,
    jitter=st.floats(min_value=0.01, max_value=0.99),
    seed=st.integers(0, 2**32),
)
def test_jitter_stays_within_its_fraction_and_l1_within_its_cap(
    l1: float, extra: float, jitter: float, seed: int
) -> None:
    l2_ttl = l1 + extra
    ttl = TtlPolicy(
        l1_ttl=l1, l2_ttl=l2_ttl, negative_ttl=1.0, jitter=jitter, rng=random.Random(seed)
    )
    slack = 1e-12  # relative: float rounding of the scaled TTL
    for _ in range(20):
        l2 = ttl.l2("v")
        assert l2_ttl * (1 - jitter) * (1 - slack) <= l2 <= l2_ttl * (1 + jitter) * (1 + slack)
        local = ttl.l1("v", cap=l2)
        assert local <= l2
        one = ttl.l1("v")
        assert l1 * (1 - jitter) * (1 - slack) <= one <= l1 * (1 + jitter) * (1 + slack)


@pytest.mark.parametrize(("end", "factor"), [("low", 0.8), ("high", 1.2)])
def test_jitter_reaches_both_ends_of_its_range(end: str, factor: float) -> None:
    ttl = policy(jitter=0.2, rng=Fixed(end))
    assert ttl.l2("v") == pytest.approx(100.0 * factor)
    assert ttl.l2(ABSENT) == pytest.approx(5.0 * factor)
    assert ttl.l1("v") == pytest.approx(10.0 * factor)
    assert ttl.l1(ABSENT) == pytest.approx(5.0 * factor)


def test_an_l1_longer_than_l2_is_refused_naming_both() -> None:
    with pytest.raises(ValueError, match=r"l1_ttl \(101\.0\) must be <= l2_ttl \(100\.0\)"):
        policy(l1_ttl=101.0)
    assert policy(l1_ttl=100.0).l1("v") == 100.0  # equal is fine


@pytest.mark.parametrize("arg", ["l1_ttl", "l2_ttl", "negative_ttl"])
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (True, TypeError),
        ("5", TypeError),
        (None, TypeError),
    ],
)
def test_each_ttl_is_validated_by_name(arg: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=f"^{arg} must be"):
        policy(**{arg: value})


@pytest.mark.parametrize("jitter", [-0.1, 1, 1.5, True, "0.1", math.nan])
def test_jitter_must_be_a_fraction_below_one(jitter: object) -> None:
    with pytest.raises(ValueError, match="ttl_jitter must be a fraction in"):
        policy(jitter=jitter)


def test_check_seconds_accepts_ints_and_floats() -> None:
    check_seconds("x", 1)
    check_seconds("x", 0.001)
    with pytest.raises(
        InvalidArgumentError,
        match=r"^x must be a positive, finite number of seconds, got 0 \(argument='x'\)$",
    ) as raised:
        check_seconds("x", 0)
    assert raised.value.details["argument"] == "x"
    with pytest.raises(
        InvalidArgumentError,
        match=r"^x must be seconds as int or float, got str \(argument='x'\)$",
    ):
        check_seconds("x", "1")  # type: ignore[arg-type]


def _view(**overrides: float) -> CacheSettings:
    values: dict[str, Any] = {
        "l1_ttl": 60.0,
        "l1_max_size": 100,
        "l2_ttl": 300.0,
        "negative_ttl": 30.0,
        "ttl_jitter": 0.1,
        "max_staleness": 1.0,
        "fallback_timeout": 0.25,
        "embedding_ttl": 3600.0,
    }
    values.update(overrides)
    return CacheSettings(**values)


def test_settings_that_contradict_are_configuration_errors() -> None:
    check_cache_settings(_view())
    check_cache_settings(_view(l1_ttl=300.0))  # equal is fine
    check_cache_settings(_view(ttl_jitter=0.99))
    with pytest.raises(ConfigurationError, match="SEMANTICA_CACHE_L1_TTL") as raised:
        check_cache_settings(_view(l1_ttl=301.0))
    assert "SEMANTICA_CACHE_L2_TTL (300.0)" in str(raised.value)
    assert raised.value.component == "cache"
    with pytest.raises(ConfigurationError, match=r"SEMANTICA_CACHE_TTL_JITTER \(1\.0\)") as raised:
        check_cache_settings(_view(ttl_jitter=1.0))
    assert raised.value.component == "cache"


def test_repr_lists_the_ttls() -> None:
    assert repr(policy(jitter=0.25)) == (
        "TtlPolicy(l1_ttl=10.0, l2_ttl=100.0, negative_ttl=5.0, jitter=0.25)"
    )

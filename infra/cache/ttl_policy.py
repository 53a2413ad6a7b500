"""TTLs: validation and conversion to Redis milliseconds (:func:`ttl_to_ms`, shared by
the Redis adapter and its fake), and the three-tier cache's rules -- the L1 <= L2 rule,
negative TTLs and jitter.

* ``l1_ttl <= l2_ttl`` is checked once, at construction (``ValueError`` naming both
  arguments; ``ConfigurationError`` naming both variables when the numbers come from
  settings). Each write then keeps its L1 lifetime at most its jittered L2 lifetime, so
  jitter cannot break the rule either.
* A cached absence lives ``negative_ttl`` in L2 and ``min(negative_ttl, l1_ttl)`` in L1.
* Jitter scales a TTL by a uniform factor in ``[1 - j, 1 + j]`` (``0 <= j < 1``), so
  entries written in one burst do not all expire in the same instant and stampede the
  loader together. The random source is injectable for deterministic tests.
"""

from __future__ import annotations

import math
import random
from typing import Final

from config.groups import CacheSettings
from infra.cache.l1 import ABSENT
from infra.exceptions import ConfigurationError, InvalidArgumentError
from infra.validation import shown

__all__ = ["MAX_TTL_S", "TtlPolicy", "check_cache_settings", "check_seconds", "ttl_to_ms"]

#: Longest TTL accepted (~31,700 years). Redis refuses ``PX`` beyond a signed 64-bit
#: millisecond count with a server error; a TTL that long is a mistake (``None`` means
#: "no expiry"), so it is refused here, as the caller's error.
MAX_TTL_S: Final = 1e12


def ttl_to_ms(ttl: float | None) -> int | None:
    """Validate a TTL in seconds and convert it to ``PX`` milliseconds (``None`` = none).

    Rounded to the nearest millisecond, at least 1 ms (Redis rejects ``PX 0``).

    Raises:
        InvalidArgumentError: ``ttl`` is not an int or float (``bool`` included), or is
            zero, negative, NaN, infinite or above :data:`MAX_TTL_S` (also a
            ``TypeError`` and a ``ValueError``).
    """
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise InvalidArgumentError(
            f"ttl must be seconds as int or float (or None), got {type(ttl).__name__}",
            argument="ttl",
        )
    if not math.isfinite(ttl) or not 0 < ttl <= MAX_TTL_S:
        raise InvalidArgumentError(
            f"ttl must be a positive, finite number of seconds up to {MAX_TTL_S:g} or None "
            f"(no expiry), got {shown(ttl)}",
            argument="ttl",
        )
    return max(1, round(ttl * 1000))


def check_seconds(arg: str, value: float) -> None:
    """Raise :class:`InvalidArgumentError` (a ``TypeError`` and ``ValueError``) unless
    ``value`` is a positive, finite number of seconds (named ``arg``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(
            f"{arg} must be seconds as int or float, got {type(value).__name__}", argument=arg
        )
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgumentError(
            f"{arg} must be a positive, finite number of seconds, got {value!r}", argument=arg
        )


def check_cache_settings(view: CacheSettings) -> None:
    """Raise :class:`ConfigurationError` for ``settings.cache`` values that contradict."""
    if view.l1_ttl > view.l2_ttl:
        raise ConfigurationError(
            f"SEMANTICA_CACHE_L1_TTL ({view.l1_ttl}) must be <= SEMANTICA_CACHE_L2_TTL "
            f"({view.l2_ttl}); lower the first or raise the second",
            component="cache",
        )
    if view.ttl_jitter >= 1:
        raise ConfigurationError(
            f"SEMANTICA_CACHE_TTL_JITTER ({view.ttl_jitter}) must be below 1: a jitter of "
            "100 % could make a TTL zero; use e.g. 0.1",
            component="cache",
        )


class TtlPolicy:
    """Lifetimes for each write.

    Args:
        l1_ttl, l2_ttl: Seconds; ``l1_ttl <= l2_ttl``.
        negative_ttl: Seconds a cached absence lives.
        jitter: Fraction in ``[0, 1)``.
        rng: Random source (default: a fresh :class:`random.Random`).
    """

    __slots__ = ("_rng", "jitter", "l1_ttl", "l2_ttl", "negative_ttl")

    def __init__(
        self,
        *,
        l1_ttl: float,
        l2_ttl: float,
        negative_ttl: float,
        jitter: float,
        rng: random.Random | None = None,
    ) -> None:
        check_seconds("l1_ttl", l1_ttl)
        check_seconds("l2_ttl", l2_ttl)
        check_seconds("negative_ttl", negative_ttl)
        if l1_ttl > l2_ttl:
            raise ValueError(
                f"l1_ttl ({l1_ttl!r}) must be <= l2_ttl ({l2_ttl!r}): an L1 entry must not "
                "outlive L2; lower l1_ttl or raise l2_ttl"
            )
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise ValueError(f"ttl_jitter must be a fraction in [0, 1), got {jitter!r}")
        self.l1_ttl, self.l2_ttl, self.negative_ttl = l1_ttl, l2_ttl, negative_ttl
        self.jitter = jitter
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter only

    def l2(self, value: object, ttl: float | None = None) -> float:
        """The jittered L2 lifetime of ``value`` (``ttl`` overrides the default)."""
        if ttl is None:
            ttl = self.negative_ttl if value is ABSENT else self.l2_ttl
        return self._jittered(ttl)

    def l1(self, value: object, cap: float | None = None) -> float:
        """The jittered L1 lifetime of ``value``, at most ``cap`` (its L2 lifetime)."""
        ttl = self._jittered(
            min(self.negative_ttl, self.l1_ttl) if value is ABSENT else self.l1_ttl
        )
        return ttl if cap is None else min(ttl, cap)

    def _jittered(self, ttl: float) -> float:
        if not self.jitter:
            return ttl
        return ttl * (1.0 + self._rng.uniform(-self.jitter, self.jitter))

    def __repr__(self) -> str:
        return (
            f"TtlPolicy(l1_ttl={self.l1_ttl!r}, l2_ttl={self.l2_ttl!r}, "
            f"negative_ttl={self.negative_ttl!r}, jitter={self.jitter!r})"
        )

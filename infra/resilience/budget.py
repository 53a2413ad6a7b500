"""Retry budget: retries may add at most a fixed fraction to recent load.

Per-call attempt limits do not stop a retry storm: during an outage every caller retries
``max_attempts - 1`` times, multiplying load on the backend exactly when it is weakest.
A budget caps retries *across* calls, as gRPC retry throttling and Finagle's
``RetryBudget`` do: within any ``ttl`` window, retries may not exceed
``ratio * calls + min_per_second * ttl``. The reserve (``min_per_second``) keeps
low-traffic clients able to retry at all. When the budget is spent, the policy re-raises
the last real error at once instead of sleeping.

Written here because neither tenacity nor aiobreaker has a budget, and the algorithm is a
handful of counters: the window is a ring of ``slots`` buckets, each holding the calls
and retries seen in ``ttl / slots`` seconds; buckets older than ``ttl`` are zeroed as
time advances. Each operation is O(1) amortised and reads the injected clock once.
"""

from __future__ import annotations

import math

from infra.resilience.clock import Clock, MonotonicClock

__all__ = ["RetryBudget"]


def _check_number(name: str, value: object, *, minimum: float, inclusive: bool) -> float:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= minimum if inclusive else value > minimum)
    )
    if not ok:
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)  # type: ignore[arg-type]  # checked just above


class RetryBudget:
    """A sliding-window budget shared by every call of one (or several) retry policies.

    Args:
        ratio: Retries allowed per call made (0.2 = retries may add 20 % load).
        min_per_second: Reserve of retries per second, whatever the traffic.
        ttl: Length of the sliding window, in seconds.
        slots: Buckets the window is divided into (its time resolution).
        clock: Time source; monotonic unless a test injects a ManualClock.
    """

    __slots__ = (
        "_calls",
        "_clock",
        "_current",
        "_position",
        "_ratio",
        "_reserve",
        "_retries",
        "_slot_end",
        "_slot_width",
        "_total_calls",
        "_total_retries",
        "min_per_second",
        "ttl",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        *,
        min_per_second: float = 10.0,
        ttl: float = 10.0,
        slots: int = 10,
        clock: Clock | None = None,
    ) -> None:
        self._ratio = _check_number("ratio", ratio, minimum=0.0, inclusive=True)
        self.min_per_second = _check_number(
            "min_per_second", min_per_second, minimum=0.0, inclusive=True
        )
        self.ttl = _check_number("ttl", ttl, minimum=0.0, inclusive=False)
        if not isinstance(slots, int) or isinstance(slots, bool) or slots < 1:
            raise ValueError(f"slots must be an integer >= 1, got {slots!r}")
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._reserve = self.min_per_second * self.ttl
        self._slot_width = self.ttl / slots
        self._calls = [0] * slots
        self._retries = [0] * slots
        self._total_calls = 0
        self._total_retries = 0
        self._current = math.floor(self._clock.now() / self._slot_width)
        self._position = self._current % slots
        self._slot_end = (self._current + 1) * self._slot_width

    @property
    def ratio(self) -> float:
        """Retries allowed per call made."""
        return self._ratio

    def _index(self) -> int:
        """Bucket index for now; past the current bucket's end, advance the window."""
        now = self._clock.now()
        if now >= self._slot_end:
            self._advance(now)
        return self._position

    def _advance(self, now: float) -> None:
        """Zero the buckets that fell out of the window and move to ``now``'s bucket."""
        absolute = math.floor(now / self._slot_width)
        slots = len(self._calls)
        stale = min(absolute - self._current, slots)
        for step in range(1, stale + 1):
            i = (self._current + step) % slots
            self._total_calls -= self._calls[i]
            self._total_retries -= self._retries[i]
            self._calls[i] = 0
            self._retries[i] = 0
        self._current = absolute
        self._position = absolute % slots
        self._slot_end = (absolute + 1) * self._slot_width

    def record_call(self) -> None:
        """Deposit: one call (a first attempt) was made."""
        i = self._index()
        self._calls[i] += 1
        self._total_calls += 1

    def try_acquire(self) -> bool:
        """Withdraw one retry if the window allows it; ``False`` when exhausted."""
        i = self._index()
        if self._total_retries + 1 > self._ratio * self._total_calls + self._reserve:
            return False
        self._retries[i] += 1
        self._total_retries += 1
        return True

    @property
    def available(self) -> int:
        """Retries that would be granted now."""
        self._index()
        return max(
            0, math.floor(self._ratio * self._total_calls + self._reserve) - self._total_retries
        )

    def describe(self) -> str:
        """Short human description, e.g. ``budget 20% + 10/s``."""
        return f"budget {self._ratio:.0%} + {self.min_per_second:g}/s over {self.ttl:g}s"

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self._ratio!r}, min_per_second={self.min_per_second!r}, "
            f"ttl={self.ttl!r}, available={self.available})"
        )

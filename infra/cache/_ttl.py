"""TTL validation shared by the Redis adapter and its fake (no driver import here)."""

from __future__ import annotations

import math

__all__ = ["ttl_to_ms"]


def ttl_to_ms(ttl: float | None) -> int | None:
    """Validate a TTL in seconds and convert it to ``PX`` milliseconds (``None`` = none).

    Rounded to the nearest millisecond, at least 1 ms (Redis rejects ``PX 0``).

    Raises:
        TypeError: ``ttl`` is not an int or float (``bool`` included).
        ValueError: ``ttl`` is zero, negative, NaN or infinite.
    """
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError(f"ttl must be seconds as int or float (or None), got {type(ttl).__name__}")
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"ttl must be a positive, finite number of seconds or None, got {ttl!r}")
    return max(1, round(ttl * 1000))

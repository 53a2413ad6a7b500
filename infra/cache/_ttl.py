"""TTL validation shared by the Redis adapter and its fake (no driver import here)."""

from __future__ import annotations

import math
from typing import Final

from infra.exceptions import InvalidArgumentError
from infra.validation import shown

__all__ = ["MAX_TTL_S", "ttl_to_ms"]

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

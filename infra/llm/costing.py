"""Cost bookkeeping of one LLM call, shared by the litellm adapter and its fake.

An LLM client may run without a :class:`~infra.observability.cost.CostTracker` (nothing
is costed); these functions take the tracker or ``None`` so both clients reserve before a
call, release a reservation the call did not use, and record what it spent the same way.
"""

from __future__ import annotations

from infra.observability.cost import CostTracker, Reservation
from infra.ports import TokenUsage

__all__ = ["release", "reserve", "spend"]


def reserve(
    cost: CostTracker | None, model: str, prompt_tokens: int, limit: int, who: str
) -> Reservation | None:
    """Reserve the worst case (prompt + ``limit`` completion tokens) against the budget."""
    if cost is None:
        return None
    return cost.reserve(model, input_tokens=prompt_tokens, max_output_tokens=limit, caller=who)


def release(cost: CostTracker | None, reservation: Reservation | None) -> None:
    """Give back a reservation the call never used (it failed before any usage)."""
    if cost is not None and reservation is not None:
        cost.release(reservation)


def spend(
    cost: CostTracker | None,
    model: str,
    usage: TokenUsage,
    who: str,
    reservation: Reservation | None,
) -> float | None:
    """Record what the call used (settling ``reservation``); its cost, or ``None``."""
    if cost is None:
        return None
    try:
        return cost.record(
            model,
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            caller=who,
            reservation=reservation,
        )
    except BaseException:
        # Recording failed (a pricer's error): the reservation must not outlive the
        # call -- held, it would shrink the budget for the rest of the period.
        release(cost, reservation)
        raise

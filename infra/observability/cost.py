"""LLM cost tracking and budgets, priced by litellm's own tables.

Design decisions:

* **litellm prices, we count.** :class:`LiteLLMPricer` asks ``litellm.cost_per_token`` (the
  same ``model_cost`` table ``completion_cost`` uses) and, for a full response,
  ``litellm.completion_cost``. litellm is imported on first use only: it is slow to import
  (seconds) and, unless ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set, fetches its price map
  over the network at import.
* **Never silently zero.** A model litellm cannot price (unknown, self-hosted, renamed) is
  counted in ``llm_unpriced_calls_total{model}`` and logged once per model; its spend is
  recorded as unknown, not as 0. A model litellm prices at 0 (a local model) *is* priced.
* **Cache hits are saved spend.** ``record(..., cached=True)`` adds what the call would have
  cost to ``llm_cost_saved_usd_total`` and nothing to spend.
* **Budgets: reserve, then reconcile.** Before a call, :meth:`CostTracker.reserve` prices
  the worst case (prompt tokens + ``max_tokens`` of completion) and refuses with
  :class:`~infra.exceptions.BudgetExceededError` if spent + reserved + estimate would pass
  a budget; otherwise the estimate is held as *reserved* so concurrent calls cannot
  overspend together. After the call :meth:`~CostTracker.record` replaces the reservation
  by the real cost (or :meth:`~CostTracker.release` drops it on failure). ``reserve`` and
  ``record`` never await, so on one event loop each is atomic. Budgets are per period
  (``day``/``month`` in UTC, or ``total``) and either global or for one caller/tenant; the
  clock is injectable.
* Metrics: ``llm_cost_usd_total{model,caller}`` (docs/design.md), ``llm_cost_saved_usd_total``,
  ``llm_unpriced_calls_total{model}``, ``llm_budget_rejections_total{period}``. Callers
  and models are bounded by the collector's label cap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from config import Settings
from infra._litellm import import_litellm
from infra.exceptions import BudgetExceededError
from infra.observability import attributes as attr
from infra.observability.metrics import MetricsCollector, get_metrics_collector

__all__ = ["Budget", "CostBudget", "CostTracker", "LiteLLMPricer", "Pricer", "Reservation"]

_log = logging.getLogger("infra.observability.cost")
Period = Literal["day", "month", "total"]


class Pricer(Protocol):
    """Prices a call in USD; ``None`` means the model is not priced."""

    def price(self, model: str, *, input_tokens: int, output_tokens: int) -> float | None:
        """Cost of ``input_tokens`` prompt and ``output_tokens`` completion tokens."""
        ...


class LiteLLMPricer:
    """:class:`Pricer` backed by litellm's model price map (imported lazily)."""

    def price(self, model: str, *, input_tokens: int, output_tokens: int) -> float | None:
        litellm = import_litellm()
        try:
            prompt, completion = litellm.cost_per_token(
                model=model, prompt_tokens=input_tokens, completion_tokens=output_tokens
            )
        # litellm raises several unrelated types for an unmapped model (its own
        # ModelNotMappedError, a BadRequestError when no provider matches, ValueError ...).
        except Exception:  # noqa: BLE001
            return None
        return float(prompt) + float(completion)

    def response_cost(self, response: Any) -> float | None:
        """Cost of a litellm response object via ``litellm.completion_cost``."""
        litellm = import_litellm()
        try:
            return float(litellm.completion_cost(completion_response=response))
        except Exception:  # noqa: BLE001 - same reason as in price()
            return None


@dataclass(frozen=True, slots=True)
class CostBudget:
    """A spend limit in US dollars per period, for everyone (``caller=None``) or one
    caller/tenant. (Money; not :class:`~infra.resilience.RetryBudget`, which limits
    retries.)"""

    limit_usd: float
    period: Period = "month"
    caller: str | None = None

    def __post_init__(self) -> None:
        if not self.limit_usd > 0:
            raise ValueError(f"limit_usd must be > 0, got {self.limit_usd!r}")
        if self.period not in ("day", "month", "total"):
            raise ValueError(f"period must be 'day', 'month' or 'total', got {self.period!r}")

    def key(self, now: datetime) -> str:
        """The period this instant falls in (``2025-06``, ``2025-06-01`` or ``total``)."""
        if self.period == "day":
            return now.strftime("%Y-%m-%d")
        if self.period == "month":
            return now.strftime("%Y-%m")
        return "total"


#: The earlier name of :class:`CostBudget` (shown in earlier docs); the same class.
Budget = CostBudget


@dataclass(frozen=True, slots=True)
class Reservation:
    """Worst-case spend held against budgets until :meth:`CostTracker.record`/``release``."""

    model: str
    caller: str
    estimate_usd: float
    held: tuple[tuple[int, str], ...] = field(default=())


@dataclass(slots=True)
class _Ledger:
    spent: float = 0.0
    reserved: float = 0.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CostTracker:
    """Per-model and per-caller LLM spend, with optional budgets.

    Args:
        collector: Where the cost counters go (default: :func:`get_metrics_collector`).
        pricer: Prices calls (default: :class:`LiteLLMPricer`).
        budgets: Limits checked by :meth:`reserve`.
        now: UTC clock for budget periods (inject one in tests).
    """

    def __init__(
        self,
        collector: MetricsCollector | None = None,
        *,
        pricer: Pricer | None = None,
        budgets: Sequence[CostBudget] = (),
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        metrics = collector if collector is not None else get_metrics_collector()
        self._pricer: Pricer = pricer if pricer is not None else LiteLLMPricer()
        self._budgets = tuple(budgets)
        self._now = now
        self._ledgers: dict[tuple[int, str], _Ledger] = {}
        self._by_model: dict[str, float] = {}
        self._by_caller: dict[str, float] = {}
        self._saved = 0.0
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._cost = metrics.counter(
            attr.LLM_COST_USD_TOTAL, "LLM spend in USD (litellm pricing).", ("model", "caller")
        )
        self._cost_saved = metrics.counter(
            attr.LLM_COST_SAVED_USD_TOTAL,
            "LLM spend avoided by cached responses, USD.",
            ("model", "caller"),
        )
        self._unpriced = metrics.counter(
            attr.LLM_UNPRICED_CALLS_TOTAL, "LLM calls whose model has no known price.", ("model",)
        )
        self._rejected = metrics.counter(
            attr.LLM_BUDGET_REJECTIONS_TOTAL, "LLM calls refused by a budget.", ("period",)
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, collector: MetricsCollector | None = None
    ) -> CostTracker:
        """A tracker with a monthly budget of ``settings.llm.monthly_budget_usd``, if set."""
        limit = settings.llm.monthly_budget_usd
        budgets = [CostBudget(limit_usd=limit, period="month")] if limit else []
        return cls(collector, budgets=budgets)

    @property
    def has_budgets(self) -> bool:
        """Whether any budget is set (callers count a call's tokens beforehand only then)."""
        return bool(self._budgets)

    # ------------------------------------------------------------------ pricing
    def estimate(self, model: str, *, input_tokens: int, max_output_tokens: int) -> float | None:
        """Worst-case cost of a call, or ``None`` when the model is not priced."""
        _check_count("input_tokens", input_tokens)
        _check_count("max_output_tokens", max_output_tokens)
        return self._pricer.price(model, input_tokens=input_tokens, output_tokens=max_output_tokens)

    def reserve(
        self, model: str, *, input_tokens: int, max_output_tokens: int, caller: str = "default"
    ) -> Reservation:
        """Check every applicable budget and hold the estimate; raises
        :class:`~infra.exceptions.BudgetExceededError` when a budget would be exceeded
        (or is already used up, for an unpriced model). With no budget for ``caller``
        nothing is priced or held."""
        _check_count("input_tokens", input_tokens)
        _check_count("max_output_tokens", max_output_tokens)
        applicable = [
            (index, budget)
            for index, budget in enumerate(self._budgets)
            if budget.caller is None or budget.caller == caller
        ]
        if not applicable:  # pricing is a price-map lookup: skip it when nothing is held
            return Reservation(model, caller, 0.0)
        estimate = self.estimate(
            model, input_tokens=input_tokens, max_output_tokens=max_output_tokens
        )
        amount = estimate or 0.0
        now = self._now()
        with self._lock:
            held = []
            for index, budget in applicable:
                key = (index, budget.key(now))
                ledger = self._ledger(key)
                committed = ledger.spent + ledger.reserved
                if committed + amount > budget.limit_usd or committed >= budget.limit_usd:
                    self._rejected.labels(budget.period).inc()
                    raise BudgetExceededError(
                        component="llm",
                        details={
                            "limit_usd": budget.limit_usd,
                            "spent_usd": round(ledger.spent, 6),
                            "reserved_usd": round(ledger.reserved, 6),
                            "estimate_usd": estimate,
                            "period": key[1],
                            "caller": budget.caller,
                            "model": model,
                        },
                    )
                held.append(key)
            for key in held:
                self._ledgers[key].reserved += amount
        return Reservation(model, caller, amount, tuple(held))

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation without spending (the call failed before it was billed)."""
        with self._lock:
            self._unhold(reservation)

    def record(
        self,
        model: str,
        *,
        input_tokens: int,
        output_tokens: int,
        caller: str = "default",
        cost_usd: float | None = None,
        cached: bool = False,
        reservation: Reservation | None = None,
    ) -> float | None:
        """Record a finished call and reconcile its reservation.

        ``cost_usd`` is the provider-reported cost when known (litellm's response cost);
        otherwise the call is priced from the token counts. A ``cached`` call spends
        nothing and its price is counted as saved. Returns the cost, ``None`` if unpriced.
        """
        cost = cost_usd
        if cost is None:
            _check_count("input_tokens", input_tokens)
            _check_count("output_tokens", output_tokens)
            cost = self._pricer.price(model, input_tokens=input_tokens, output_tokens=output_tokens)
        if cost is None:
            self._unpriced.labels(model).inc()
            self._warn_unpriced(model)
        now = self._now()
        with self._lock:
            if reservation is not None:
                self._unhold(reservation)
            if cost is None:
                return None
            if cached:
                self._saved += cost
                self._cost_saved.labels(model, caller).inc(cost)
                return cost
            self._by_model[model] = self._by_model.get(model, 0.0) + cost
            self._by_caller[caller] = self._by_caller.get(caller, 0.0) + cost
            for index, budget in enumerate(self._budgets):
                if budget.caller is None or budget.caller == caller:
                    self._ledger((index, budget.key(now))).spent += cost
        self._cost.labels(model, caller).inc(cost)
        return cost

    # -------------------------------------------------------------------- reads
    def spent(self, *, model: str | None = None, caller: str | None = None) -> float:
        """Lifetime spend (USD), overall or for one model or caller."""
        with self._lock:
            if model is not None:
                return self._by_model.get(model, 0.0)
            if caller is not None:
                return self._by_caller.get(caller, 0.0)
            return sum(self._by_model.values())

    @property
    def saved(self) -> float:
        """Spend avoided by cached responses (USD)."""
        return self._saved

    def budget_status(self) -> list[dict[str, Any]]:
        """Each budget's current period: limit, spent, reserved, remaining (JSON-ready)."""
        now = self._now()
        with self._lock:
            rows = []
            for index, budget in enumerate(self._budgets):
                key = budget.key(now)
                ledger = self._ledger((index, key))
                rows.append(
                    {
                        "period": budget.period,
                        "period_key": key,
                        "caller": budget.caller,
                        "limit_usd": budget.limit_usd,
                        "spent_usd": ledger.spent,
                        "reserved_usd": ledger.reserved,
                        "remaining_usd": max(
                            0.0, budget.limit_usd - ledger.spent - ledger.reserved
                        ),
                    }
                )
            return rows

    # ----------------------------------------------------------------- internals
    def _ledger(self, key: tuple[int, str]) -> _Ledger:
        ledger = self._ledgers.get(key)
        if ledger is None:
            # A new period began for this budget: forget its previous periods.
            for old in [k for k in self._ledgers if k[0] == key[0]]:
                del self._ledgers[old]
            ledger = self._ledgers[key] = _Ledger()
        return ledger

    def _unhold(self, reservation: Reservation) -> None:
        for key in reservation.held:
            ledger = self._ledgers.get(key)
            if ledger is not None:
                ledger.reserved = max(0.0, ledger.reserved - reservation.estimate_usd)

    def _warn_unpriced(self, model: str) -> None:
        if model in self._warned:
            return
        self._warned.add(model)
        _log.warning(
            "no price known for LLM model %r; its calls are counted in %s, not as $0",
            model,
            attr.LLM_UNPRICED_CALLS_TOTAL,
            extra={"component": "llm", "model": model},
        )


def _check_count(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")

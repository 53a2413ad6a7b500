"""LLM cost tracking: pricing, unpriced models, cache savings, budgets."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from config import Settings
from infra.exceptions import BudgetExceededError
from infra.observability import CostBudget, CostTracker, LiteLLMPricer, MetricsCollector

# USD per token (input, output) for the table pricer below.
PRICES = {"cheap": (1e-6, 2e-6), "pricey": (1e-4, 2e-4), "free-local": (0.0, 0.0)}


class TablePricer:
    """A fixed price table standing in for litellm's (an external data source)."""

    def price(self, model: str, *, input_tokens: int, output_tokens: int) -> float | None:
        if model not in PRICES:
            return None
        inp, out = PRICES[model]
        return inp * input_tokens + out * output_tokens


class Clock:
    def __init__(self, when: datetime) -> None:
        self.when = when

    def __call__(self) -> datetime:
        return self.when


def _tracker(
    collector: MetricsCollector, *budgets: CostBudget, clock: Clock | None = None
) -> CostTracker:
    return CostTracker(
        collector,
        pricer=TablePricer(),
        budgets=budgets,
        now=clock or Clock(datetime(2025, 6, 15, tzinfo=UTC)),
    )


def test_record_counts_spend_per_model_and_caller(collector: MetricsCollector) -> None:
    """Spend lands in llm_cost_usd_total{model,caller} and the in-process ledger."""
    tracker = _tracker(collector)
    cost = tracker.record("cheap", input_tokens=1000, output_tokens=500, caller="search")
    tracker.record("pricey", input_tokens=10, output_tokens=10, caller="chat")
    assert cost == pytest.approx(0.002)
    assert collector.get_counter("llm_cost_usd_total", model="cheap", caller="search") == (
        pytest.approx(0.002)
    )
    assert collector.get_counter("llm_cost_usd_total") == pytest.approx(0.002 + 0.003)
    assert tracker.spent(caller="chat") == pytest.approx(0.003)
    assert tracker.spent(model="cheap") == pytest.approx(0.002)
    assert tracker.spent() == pytest.approx(0.005)


def test_provider_reported_cost_wins_over_token_pricing(collector: MetricsCollector) -> None:
    """cost_usd (litellm's response cost) is used as-is."""
    tracker = _tracker(collector)
    assert tracker.record("cheap", input_tokens=1, output_tokens=1, cost_usd=0.5) == 0.5
    assert collector.get_counter("llm_cost_usd_total") == 0.5


def test_unpriced_model_is_counted_and_logged_once_never_zero(
    collector: MetricsCollector, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown model increments llm_unpriced_calls_total; one warning per model."""
    tracker = _tracker(collector)
    with caplog.at_level(logging.WARNING, logger="infra.observability.cost"):
        assert tracker.record("mystery", input_tokens=5, output_tokens=5) is None
        assert tracker.record("mystery", input_tokens=5, output_tokens=5) is None
    assert collector.get_counter("llm_unpriced_calls_total", model="mystery") == 2
    assert collector.get_counter("llm_cost_usd_total") == 0.0
    assert len([r for r in caplog.records if "mystery" in r.getMessage()]) == 1


def test_model_priced_at_zero_is_priced_not_unpriced(collector: MetricsCollector) -> None:
    """A free local model costs 0 and is not an unpriced call."""
    tracker = _tracker(collector)
    assert tracker.record("free-local", input_tokens=100, output_tokens=100) == 0.0
    assert collector.get_counter("llm_unpriced_calls_total") == 0


def test_cached_response_is_saved_spend(collector: MetricsCollector) -> None:
    """cached=True adds the price to llm_cost_saved_usd_total, not to spend."""
    tracker = _tracker(collector)
    tracker.record("pricey", input_tokens=100, output_tokens=0, cached=True, caller="a")
    assert collector.get_counter("llm_cost_saved_usd_total", caller="a") == pytest.approx(0.01)
    assert tracker.saved == pytest.approx(0.01)
    assert tracker.spent() == 0.0
    assert collector.get_counter("llm_cost_usd_total") == 0.0


def test_reserve_refuses_a_call_whose_estimate_exceeds_the_budget(
    collector: MetricsCollector,
) -> None:
    """prompt + max completion priced over the limit raises BudgetExceededError."""
    tracker = _tracker(collector, CostBudget(limit_usd=0.05, period="month"))
    with pytest.raises(BudgetExceededError) as caught:
        tracker.reserve("pricey", input_tokens=100, max_output_tokens=500, caller="chat")
    details = caught.value.details
    assert details["limit_usd"] == 0.05
    assert details["estimate_usd"] == pytest.approx(0.11)
    assert details["period"] == "2025-06"
    assert collector.get_counter("llm_budget_rejections_total", period="month") == 1


def test_reservations_hold_budget_until_reconciled(collector: MetricsCollector) -> None:
    """Concurrent reservations cannot overspend; record() swaps estimate for actual."""
    tracker = _tracker(collector, CostBudget(limit_usd=0.25))
    first = tracker.reserve("pricey", input_tokens=0, max_output_tokens=1000)  # 0.20 held
    with pytest.raises(BudgetExceededError):
        tracker.reserve("pricey", input_tokens=0, max_output_tokens=1000)
    tracker.record("pricey", input_tokens=0, output_tokens=100, reservation=first)  # 0.02 real
    (status,) = tracker.budget_status()
    assert status["spent_usd"] == pytest.approx(0.02)
    assert status["reserved_usd"] == 0.0
    assert status["remaining_usd"] == pytest.approx(0.23)
    tracker.reserve("pricey", input_tokens=0, max_output_tokens=1000)  # fits again


def test_release_drops_a_reservation_without_spending(collector: MetricsCollector) -> None:
    """A failed call releases its hold."""
    tracker = _tracker(collector, CostBudget(limit_usd=0.25))
    held = tracker.reserve("pricey", input_tokens=0, max_output_tokens=1000)
    tracker.release(held)
    (status,) = tracker.budget_status()
    assert (status["reserved_usd"], status["spent_usd"]) == (0.0, 0.0)


def test_budget_period_rolls_over_with_the_clock(collector: MetricsCollector) -> None:
    """Spend in June does not count against July."""
    clock = Clock(datetime(2025, 6, 30, 23, 59, tzinfo=UTC))
    tracker = _tracker(collector, CostBudget(limit_usd=0.01, period="month"), clock=clock)
    tracker.record("pricey", input_tokens=100, output_tokens=0)  # 0.01: June exhausted
    with pytest.raises(BudgetExceededError):
        tracker.reserve("cheap", input_tokens=1, max_output_tokens=1)
    clock.when = datetime(2025, 7, 1, 0, 0, tzinfo=UTC)
    tracker.reserve("cheap", input_tokens=1, max_output_tokens=1)
    (status,) = tracker.budget_status()
    assert status["period_key"] == "2025-07"


def test_daily_budget_uses_the_utc_date(collector: MetricsCollector) -> None:
    """period='day' keys by date."""
    tracker = _tracker(collector, CostBudget(limit_usd=1.0, period="day"))
    assert tracker.budget_status()[0]["period_key"] == "2025-06-15"


def test_caller_budget_applies_only_to_that_caller(collector: MetricsCollector) -> None:
    """A tenant budget does not limit other callers."""
    tracker = _tracker(collector, CostBudget(limit_usd=0.01, period="total", caller="tenant-a"))
    tracker.record("pricey", input_tokens=100, output_tokens=0, caller="tenant-a")
    with pytest.raises(BudgetExceededError):
        tracker.reserve("cheap", input_tokens=1, max_output_tokens=1, caller="tenant-a")
    tracker.reserve("pricey", input_tokens=1000, max_output_tokens=1000, caller="tenant-b")


def test_unpriced_model_is_refused_only_when_the_budget_is_used_up(
    collector: MetricsCollector,
) -> None:
    """Without an estimate, a call passes while budget remains and fails once it is spent."""
    tracker = _tracker(collector, CostBudget(limit_usd=0.01))
    tracker.reserve("mystery", input_tokens=10, max_output_tokens=10)
    tracker.record("pricey", input_tokens=100, output_tokens=0)
    with pytest.raises(BudgetExceededError):
        tracker.reserve("mystery", input_tokens=10, max_output_tokens=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"limit_usd": 0}, "limit_usd"), ({"limit_usd": 1, "period": "week"}, "period")],
)
def test_invalid_budgets_are_rejected(kwargs: dict[str, object], message: str) -> None:
    """Non-positive limits and unknown periods raise ValueError."""
    with pytest.raises(ValueError, match=message):
        CostBudget(**kwargs)  # type: ignore[arg-type]


def test_negative_token_counts_are_rejected(collector: MetricsCollector) -> None:
    """Token counts cannot be negative."""
    with pytest.raises(ValueError, match="input_tokens"):
        _tracker(collector).estimate("cheap", input_tokens=-1, max_output_tokens=1)


def test_from_settings_installs_the_monthly_budget(collector: MetricsCollector) -> None:
    """settings.llm.monthly_budget_usd becomes a monthly budget."""
    tracker = CostTracker.from_settings(Settings(llm_monthly_budget_usd=12.5), collector)
    (status,) = tracker.budget_status()
    assert (status["limit_usd"], status["period"]) == (12.5, "month")
    assert CostTracker.from_settings(Settings(), collector).budget_status() == []


def test_litellm_pricer_uses_litellm_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteLLMPricer agrees with litellm.cost_per_token and returns None for unknown models."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    pricer = LiteLLMPricer()
    expected = sum(
        litellm.cost_per_token(model="gpt-4o-mini", prompt_tokens=1000, completion_tokens=500)
    )
    assert expected > 0
    assert pricer.price("gpt-4o-mini", input_tokens=1000, output_tokens=500) == expected
    assert pricer.price("openai/no-such-model-xyz", input_tokens=1, output_tokens=1) is None
    assert pricer.response_cost(object()) is None
    response = litellm.ModelResponse(
        model="gpt-4o-mini",
        choices=[{"message": {"role": "assistant", "content": "hi"}}],
        usage={"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
    )
    assert pricer.response_cost(response) == pytest.approx(expected)


def test_budget_is_the_earlier_name_of_cost_budget() -> None:
    """Code written against the earlier docs (``Budget``) gets the same class."""
    from infra.observability import Budget

    assert Budget is CostBudget
    assert Budget(limit_usd=1.0) == CostBudget(limit_usd=1.0)

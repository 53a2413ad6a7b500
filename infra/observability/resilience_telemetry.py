"""Metrics (and a few logs) for resilience decisions, through the resilience hooks.

:class:`MetricsResilienceObserver` implements the observer protocols that the resilience
package calls -- :class:`~infra.resilience.hooks.ResilienceObserver` (breakers and retry
policies) and :class:`~infra.resilience.bulkhead.BulkheadHooks` -- plus
:meth:`~MetricsResilienceObserver.on_limiter_wait` for rate limiters, which expose no hook
yet (whoever wires a limiter calls it with the time ``acquire`` waited). It never wraps a
policy: each decision is reported once, by the component that made it.

Metrics (label values are breaker/policy/bulkhead names, a bounded set of components):

* ``circuit_breaker_state{breaker}``: 0 closed, 1 half-open, 2 open (the alert rules page
  on 2);
* ``circuit_breaker_transitions_total{breaker,from_state,to_state}`` and
  ``circuit_breaker_calls_total{breaker,outcome}``;
* ``retry_attempts_total{policy}`` (one per retry scheduled) and
  ``retry_give_ups_total{policy,reason}``;
* ``bulkhead_in_flight{bulkhead}``, ``bulkhead_queued{bulkhead}``,
  ``bulkhead_rejections_total{bulkhead,reason}``;
* ``rate_limiter_wait_ms{limiter}`` (histogram).

A breaker opening is logged as a warning and closing again as info -- every transition,
never sampled -- so the log tells the story the gauge shows. Retries (DEBUG) and give-ups
(DEBUG when the error was not retryable, INFO after retries) are sampled per (policy,
kind) through :mod:`~infra.observability.log_sampling`, and nothing is formatted or
redacted for a line that is not written.

Hooks run on the hot path, so each method is a dict lookup and one update.
:meth:`~MetricsResilienceObserver.on_call` runs on *every* call through a breaker (a
success included), so it keeps the resolved counter series per (breaker, outcome) and
pays one dict lookup, one identity check of the metrics epoch (the cache is dropped when a
collector is reset) and one increment (lock-free on the event-loop thread).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from infra.observability import attributes as attr
from infra.observability import metrics as _metrics
from infra.observability.log_sampling import log_sampler
from infra.observability.metrics import MetricsCollector, get_metrics_collector
from infra.observability.series import CounterSeries
from infra.redaction import redact_text
from infra.resilience.hooks import BreakerState, CallOutcome, GiveUpReason

if TYPE_CHECKING:
    from infra.resilience.bulkhead import BulkheadHooks
    from infra.resilience.hooks import ResilienceObserver

__all__ = ["BREAKER_STATE_VALUES", "MetricsResilienceObserver"]

_log = logging.getLogger("infra.observability.resilience")

_MAX_CACHED_CALL_SERIES = 1024

#: Gauge value per breaker state.
BREAKER_STATE_VALUES: dict[BreakerState, float] = {
    BreakerState.CLOSED: 0.0,
    BreakerState.HALF_OPEN: 1.0,
    BreakerState.OPEN: 2.0,
}


class MetricsResilienceObserver:
    """Records breaker, retry, bulkhead and rate-limiter decisions as metrics.

    Args:
        collector: Target collector (default: :func:`get_metrics_collector` at creation).
    """

    def __init__(self, collector: MetricsCollector | None = None) -> None:
        metrics = collector if collector is not None else get_metrics_collector()
        self._state = metrics.gauge(
            attr.CIRCUIT_BREAKER_STATE,
            "Breaker state: 0 closed, 1 half-open, 2 open.",
            ("breaker",),
        )
        self._transitions = metrics.counter(
            attr.CIRCUIT_BREAKER_TRANSITIONS_TOTAL,
            "Breaker state transitions.",
            ("breaker", "from_state", "to_state"),
        )
        self._calls = metrics.counter(
            attr.CIRCUIT_BREAKER_CALLS_TOTAL,
            "Calls through a breaker by outcome.",
            ("breaker", "outcome"),
        )
        # on_call's cache: (breaker, outcome) -> series, valid for one metrics epoch.
        self._call_series: dict[tuple[str, CallOutcome], CounterSeries] = {}
        self._call_epoch: object = _metrics._epoch
        # on_give_up's cache (every call a breaker rejects gives up): same epoch rule.
        self._give_up_series: dict[tuple[str, GiveUpReason], CounterSeries] = {}
        self._retries = metrics.counter(
            attr.RETRY_ATTEMPTS_TOTAL, "Retries scheduled after a failed attempt.", ("policy",)
        )
        self._give_ups = metrics.counter(
            attr.RETRY_GIVE_UPS_TOTAL,
            "Retry policies that re-raised, by reason.",
            ("policy", "reason"),
        )
        self._in_flight = metrics.gauge(
            attr.BULKHEAD_IN_FLIGHT, "Calls running inside a bulkhead.", ("bulkhead",)
        )
        self._queued = metrics.gauge(
            attr.BULKHEAD_QUEUED, "Calls waiting for a bulkhead slot.", ("bulkhead",)
        )
        self._rejections = metrics.counter(
            attr.BULKHEAD_REJECTIONS_TOTAL,
            "Calls a bulkhead refused, by reason.",
            ("bulkhead", "reason"),
        )
        self._limiter_wait = metrics.histogram(
            attr.RATE_LIMITER_WAIT_MS, "Time spent waiting for rate-limit tokens, ms.", ("limiter",)
        )

    # ------------------------------------------------------------ BreakerObserver
    def on_state_change(self, name: str, old: BreakerState, new: BreakerState) -> None:
        """Set the state gauge, count the transition and log it (every transition, never
        sampled); a breaker closing first writes the pending "suppressed N similar"
        summaries of its component, so the outage's lines end with their totals."""
        self._state.labels(name).set(BREAKER_STATE_VALUES[new])
        self._transitions.labels(name, str(old), str(new)).inc()
        if new is BreakerState.CLOSED:
            log_sampler().flush(name)
        level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
        _log.log(
            level,
            "circuit breaker %s: %s -> %s",
            name,
            old,
            new,
            extra={"component": name, "from_state": str(old), "to_state": str(new)},
        )

    def on_call(self, name: str, outcome: CallOutcome) -> None:
        """Count one call through the breaker."""
        series = self._call_series.get((name, outcome))
        if series is None or self._call_epoch is not _metrics._epoch:
            series = self._call_series_for(name, outcome)
        series.inc()

    def _call_series_for(self, name: str, outcome: CallOutcome) -> CounterSeries:
        self._check_epoch()
        series = self._calls.labels(name, str(outcome))
        # The "opened" transition series exist at 0 from a breaker's first call, so the
        # alert's increase(...[15m]) counts its first trip (a series born at 1 would not).
        self._transitions.labels(name, str(BreakerState.CLOSED), str(BreakerState.OPEN))
        self._transitions.labels(name, str(BreakerState.HALF_OPEN), str(BreakerState.OPEN))
        if len(self._call_series) < _MAX_CACHED_CALL_SERIES:  # breaker names are bounded
            self._call_series[name, outcome] = series
        return series

    def _check_epoch(self) -> None:
        """Drop the cached series when a collector was reset (its series were dropped)."""
        epoch = _metrics._epoch
        if self._call_epoch is not epoch:
            self._call_series.clear()
            self._give_up_series.clear()
            self._call_epoch = epoch

    # ------------------------------------------------------------- RetryObserver
    def on_retry(self, name: str, attempt: int, delay: float, error: BaseException) -> None:
        """Count one scheduled retry (logged at DEBUG, sampled)."""
        self._retries.labels(name).inc()
        if not _log.isEnabledFor(logging.DEBUG):
            return
        error_type = type(error).__name__
        if log_sampler().admit(_log, logging.DEBUG, (name, "retry", error_type)):
            _log.debug(
                "retrying %s after attempt %d in %.3f s: %s",
                name,
                attempt,
                delay,
                error_type,
                extra={"component": name, "attempt": attempt, "delay_s": delay},
            )

    def on_give_up(
        self, name: str, attempts: int, reason: GiveUpReason, error: BaseException
    ) -> None:
        """Count a policy giving up, by reason; log it (sampled).

        A call that was not retried because its error is not retryable (a caller error,
        an open breaker) is logged at DEBUG: the call's own failure line says everything
        already. Giving up after retries (attempts, deadline, budget) is INFO.
        """
        series = self._give_up_series.get((name, reason))
        if series is None or self._call_epoch is not _metrics._epoch:
            series = self._give_up_series_for(name, reason)
        series.inc()
        level = logging.DEBUG if reason is GiveUpReason.NOT_RETRYABLE else logging.INFO
        if not _log.isEnabledFor(level) or not log_sampler().admit(
            _log, level, (name, "give_up", str(reason))
        ):
            return
        _log.log(
            level,
            "retry policy %s gave up after %d attempt(s) (%s)",
            name,
            attempts,
            reason,
            extra={
                "component": name,
                "attempts": attempts,
                "reason": str(reason),
                "error_type": type(error).__name__,
                "error": redact_text(str(error)),
            },
        )

    def _give_up_series_for(self, name: str, reason: GiveUpReason) -> CounterSeries:
        self._check_epoch()
        series = self._give_ups.labels(name, str(reason))
        if len(self._give_up_series) < _MAX_CACHED_CALL_SERIES:
            self._give_up_series[name, reason] = series
        return series

    # ------------------------------------------------------------- BulkheadHooks
    def on_bulkhead_change(self, name: str, in_flight: int, queued: int) -> None:
        """Mirror the bulkhead's in-flight and queued counts."""
        self._in_flight.labels(name).set(in_flight)
        self._queued.labels(name).set(queued)

    def on_bulkhead_reject(self, name: str, reason: Literal["full", "max_wait"]) -> None:
        """Count a refused call."""
        self._rejections.labels(name, reason).inc()

    # -------------------------------------------------------------- rate limiter
    def on_limiter_wait(self, name: str, waited_s: float) -> None:
        """Record how long an ``acquire`` on limiter ``name`` waited, in seconds."""
        self._limiter_wait.labels(name).observe(waited_s * 1000.0)


if TYPE_CHECKING:

    def _conforms(
        observer: MetricsResilienceObserver,
    ) -> tuple[ResilienceObserver, BulkheadHooks]:
        """mypy proves here that the observer matches both hook protocols."""
        return observer, observer

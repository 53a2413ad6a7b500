"""The lock's own metrics, labelled by ``component`` only -- never by lock name.

Per-call latency, call and error counts come from :class:`~infra.calls.BackendCalls`;
these add what only the lock knows: how long acquiring took including waits, how often
``wait`` ran out, and how often a held lease was found lost (alert on that one).
Families are looked up once per collector (``get_metrics_collector()`` may be replaced
by a container or a test), so a grant costs one dict lookup and one ``observe``.
"""

from __future__ import annotations

from typing import Final

from infra.observability.metrics import (
    Counter,
    Histogram,
    MetricsCollector,
    get_metrics_collector,
)

__all__ = [
    "LOCK_ACQUIRE_TIMEOUTS_TOTAL",
    "LOCK_ACQUIRE_WAIT_MS",
    "LOCK_LOST_TOTAL",
    "LockMetrics",
]

#: Histogram: time from ``acquire`` to grant, waits included, in milliseconds.
LOCK_ACQUIRE_WAIT_MS: Final = "lock_acquire_wait_ms"
#: Counter: ``acquire`` calls that ran out of ``wait``.
LOCK_ACQUIRE_TIMEOUTS_TOTAL: Final = "lock_acquire_timeouts_total"
#: Counter: leases found lost while held (watchdog, or release at ``hold`` exit).
LOCK_LOST_TOTAL: Final = "lock_lost_total"


class _Families:
    __slots__ = ("collector", "lost", "timeouts", "wait")

    def __init__(self, collector: MetricsCollector) -> None:
        self.collector = collector
        self.wait: Histogram = collector.histogram(
            LOCK_ACQUIRE_WAIT_MS, "Time from acquire to grant, waits included, ms.", ("component",)
        )
        self.timeouts: Counter = collector.counter(
            LOCK_ACQUIRE_TIMEOUTS_TOTAL, "Acquires that ran out of wait.", ("component",)
        )
        self.lost: Counter = collector.counter(
            LOCK_LOST_TOTAL, "Leases found lost while held.", ("component",)
        )


class LockMetrics:
    """Records one lock's events under ``component``."""

    __slots__ = ("_collector", "_component", "_families")

    def __init__(self, component: str, collector: MetricsCollector | None = None) -> None:
        self._component = component
        self._collector = collector  # injected by the container; None: the current one
        self._families: _Families | None = None

    def granted(self, waited_ms: float) -> None:
        """A grant, ``waited_ms`` after ``acquire`` was called."""
        self._current().wait.labels(self._component).observe(waited_ms)

    def timed_out(self) -> None:
        """An ``acquire`` ran out of ``wait``."""
        self._current().timeouts.labels(self._component).inc()

    def lost(self) -> None:
        """A held lease was found lost."""
        self._current().lost.labels(self._component).inc()

    def _current(self) -> _Families:
        collector = self._collector or get_metrics_collector()
        families = self._families
        if families is None or families.collector is not collector:
            families = self._families = _Families(collector)
        return families

"""Connection-pool gauges, sampled from the real pools when read -- no polling loop.

Adapters register a *sampler* (a cheap, synchronous callable returning
:class:`PoolStats`) for each pool they own::

    unregister = register_pool("postgres", "default", asyncpg_pool_stats(pool))
    ...
    unregister()          # on shutdown

:class:`PoolMetrics` is a :class:`~infra.observability.metrics.MetricSource`: each
Prometheus scrape and each ``get_gauge`` call samples every pool once, so values are
current and nothing runs between reads. Per pool it exports the OpenTelemetry gauges
(``db_client_connection_count{state=idle|used}``, ``db_client_connection_max``,
``db_client_connection_pending_requests``), labelled with the pool name
``<component>/<pool>``: one family per concept, whatever the component. The design's
gauges (``postgres_pool_size``, ``postgres_pool_active``, ``postgres_pool_utilization``
in percent, plus ``_idle``, ``_max``, ``_pending``; the prefix is the component, the
label ``pool``) are the same values under other names, so they are in-process reads
(``get_gauge``) and not exported (``GaugeSample.exported=False``). A sampler that raises
is skipped for that read and logged once, so one broken pool cannot fail a scrape.

asyncpg exposes no count of waiting acquirers, so :func:`asyncpg_pool_stats` takes an
optional ``pending`` callable the adapter can back with its own counter.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from infra.observability import attributes as attr
from infra.observability.metrics import GaugeSample, MetricsCollector, get_metrics_collector

__all__ = [
    "PoolMetrics",
    "PoolSampler",
    "PoolStats",
    "asyncpg_pool_stats",
    "pool_metrics_for",
    "register_pool",
]

_log = logging.getLogger("infra.observability.pools")
_POOL_LABEL = attr.prometheus_label(attr.DB_CLIENT_CONNECTION_POOL_NAME)
_STATE_LABEL = attr.prometheus_label(attr.DB_CLIENT_CONNECTION_STATE)


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A pool's state at one instant. ``used + idle == size <= max``."""

    size: int
    used: int
    idle: int
    max: int
    pending: int = 0

    @property
    def utilization_percent(self) -> float:
        """``used / max`` as a percentage (the design's ``*_pool_utilization``)."""
        return 100.0 * self.used / self.max if self.max > 0 else 0.0


PoolSampler = Callable[[], PoolStats]


class PoolMetrics:
    """Registry of pool samplers; a metric source of one collector."""

    def __init__(self) -> None:
        self._samplers: dict[tuple[str, str], PoolSampler] = {}
        self._failing: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def register(self, component: str, name: str, sampler: PoolSampler) -> Callable[[], None]:
        """Sample ``sampler`` as pool ``name`` of ``component``; returns an unregister
        function. Registering the same (component, name) again replaces the sampler."""
        if not component or not name:
            raise ValueError("component and name must be non-empty (e.g. 'postgres', 'default')")
        if not callable(sampler):
            raise TypeError(f"sampler must be a callable returning PoolStats, got {sampler!r}")
        key = (component, name)
        with self._lock:
            self._samplers[key] = sampler

        def unregister() -> None:
            with self._lock:
                if self._samplers.get(key) is sampler:
                    del self._samplers[key]

        return unregister

    def sample(self) -> dict[tuple[str, str], PoolStats]:
        """Every pool's stats now (pools whose sampler raised are left out)."""
        with self._lock:
            samplers = list(self._samplers.items())
        result = {}
        for key, sampler in samplers:
            try:
                result[key] = sampler()
            # A sampler reads a third-party pool; its failure must not fail a scrape.
            except Exception:  # noqa: BLE001
                if key not in self._failing:
                    self._failing.add(key)
                    _log.warning("pool sampler %s/%s raised; skipped", *key, exc_info=True)
        return result

    def collect_samples(self) -> Iterator[GaugeSample]:
        """Semantic-convention gauges (exported) and the design's (read in-process) for
        every registered pool."""
        for (component, name), stats in self.sample().items():
            pool = {"pool": name}
            for field, value, doc in (
                ("size", stats.size, "open connections"),
                ("active", stats.used, "connections in use"),
                ("idle", stats.idle, "idle connections"),
                ("max", stats.max, "maximum connections"),
                ("pending", stats.pending, "callers waiting for a connection"),
                ("utilization", stats.utilization_percent, "connections in use, % of max"),
            ):
                yield GaugeSample(
                    attr.pool_metric(component, field),
                    f"{component} pool: {doc}",
                    pool,
                    value,
                    exported=False,
                )
            semconv = {_POOL_LABEL: f"{component}/{name}"}
            for state, value in (("idle", stats.idle), ("used", stats.used)):
                yield GaugeSample(
                    attr.PROM_DB_CLIENT_CONNECTION_COUNT,
                    "Connections by state (semconv db.client.connection.count).",
                    {**semconv, _STATE_LABEL: state},
                    value,
                )
            yield GaugeSample(
                attr.PROM_DB_CLIENT_CONNECTION_MAX,
                "Maximum open connections allowed (semconv).",
                semconv,
                stats.max,
            )
            yield GaugeSample(
                attr.PROM_DB_CLIENT_CONNECTION_PENDING_REQUESTS,
                "Pending requests for an open connection (semconv).",
                semconv,
                stats.pending,
            )


_attach_lock = threading.Lock()


def pool_metrics_for(collector: MetricsCollector) -> PoolMetrics:
    """The :class:`PoolMetrics` attached to ``collector`` (attached on first call)."""
    with _attach_lock:
        for source in collector.sources():
            if isinstance(source, PoolMetrics):
                return source
        pools = PoolMetrics()
        collector.add_source(pools)
        return pools


def register_pool(
    component: str,
    name: str,
    sampler: PoolSampler,
    collector: MetricsCollector | None = None,
) -> Callable[[], None]:
    """Register a pool with ``collector`` (default: :func:`get_metrics_collector`)."""
    target = collector if collector is not None else get_metrics_collector()
    return pool_metrics_for(target).register(component, name, sampler)


def asyncpg_pool_stats(pool: Any, pending: Callable[[], int] | None = None) -> PoolSampler:
    """A sampler for an ``asyncpg.Pool`` (public ``get_size``/``get_idle_size``/
    ``get_max_size``); ``pending`` reports waiting acquirers if the adapter counts them."""

    def sample() -> PoolStats:
        size = int(pool.get_size())
        idle = int(pool.get_idle_size())
        return PoolStats(
            size=size,
            used=size - idle,
            idle=idle,
            max=int(pool.get_max_size()),
            pending=pending() if pending is not None else 0,
        )

    return sample

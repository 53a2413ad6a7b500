"""Pool gauges for the neo4j driver: connections in use and idle.

The driver has no public pool statistics, so the sampler reads its pool's connection
table (``driver._pool.connections``: address -> connections, each with ``in_use``),
defensively: if a driver version changes that shape, the gauges read zero instead of
failing a metrics scrape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infra.observability import PoolStats

__all__ = ["driver_pool_stats"]


def driver_pool_stats(driver: Any, max_size: int) -> Callable[[], PoolStats]:
    """A sampler of ``driver``'s pool (``max_size`` per server address)."""

    def sample() -> PoolStats:
        table: Any = getattr(getattr(driver, "_pool", None), "connections", None)
        try:
            connections = [c for queue in list(table.values()) for c in list(queue)]
        except (AttributeError, TypeError):
            connections = []
        used = sum(1 for c in connections if getattr(c, "in_use", False))
        return PoolStats(
            size=len(connections), used=used, idle=len(connections) - used, max=max_size
        )

    return sample

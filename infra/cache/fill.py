"""Loading a missing key once across processes, and writing it back.

Called by :class:`~infra.cache.three_tier_cache.ThreeTierCache` inside its in-process
single flight, after an L2 miss (the first round trip: ``GET``), so at most one
:class:`Filler` call per key runs in each process. Across processes:

1. One script reads the key again and, if it is still missing, takes its fill lease
   (second round trip; :mod:`infra.cache.singleflight`). If another process filled it
   meanwhile, that value is the answer.
2. The lease holder runs the loader, then one script writes the value *if the lease is
   still its own*, deletes the lease and publishes ``filled`` (third round trip). A
   writer's ``set``/``delete`` deletes the lease in the same atomic step as its value
   change, so a load that a write overtook is never written back (nor kept in L1): it
   is returned to the callers, who asked before the write.
3. The others wait for the ``filled`` message (or ``lease_poll_interval``, whichever
   comes first; polling alone when the subscription is down) and run step 1 again, so a
   holder that crashed delays them by at most the lease, and then one of them loads.
4. When Redis is unreachable (or becomes so), there is no lease: the loader runs here
   (the in-process single flight still coalesces this process's callers), and its result
   is **never written back to L2** -- without a lease, nothing tells it from a value a
   concurrent writer has replaced. It goes to L1 with the staleness bound as lifetime.

The lease is released on every path: the loader raised, the write-back failed, the
caller was cancelled at any ``await`` (in a background task then), or Redis was down
(on recovery, before the cache uses L2 again).

In single-process mode (no raw client) there are no leases: the loader runs and its
value is written back unless the key's L1 fill was voided by a local write meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, NamedTuple, TypeVar

from infra.cache.coherence import InvalidationBus
from infra.cache.l1 import ABSENT, L1Cache
from infra.cache.l2 import L2Tier
from infra.cache.singleflight import LEASE_GRANTED, LEASE_NO_ANSWER, LEASE_VALUE, RedisFillLease
from infra.cache.tier_metrics import TierMetrics
from infra.cache.ttl_policy import TtlPolicy
from infra.resilience.clock import Clock

__all__ = ["Filled", "Filler", "Loader"]

T = TypeVar("T")
Loader = Callable[[], Awaitable[T | None]]
"""An L3 read: returns the value, or ``None`` when it does not exist."""


class Filled(NamedTuple):
    """What a fill produced for the callers and for L1."""

    value: object
    """The answer (``ABSENT`` for a loader's ``None``)."""
    l2_ttl: float | None
    """The L2 lifetime we wrote it with (``None``: we did not write it)."""
    keep: bool
    """Whether L1 may keep it (not when a write overtook the load)."""


class Filler:
    """Runs loaders under the cross-process fill lease; see the module docstring."""

    __slots__ = ("_bus", "_clock", "_l1", "_l2", "_metrics", "_poll_interval", "_ttls")

    def __init__(
        self,
        *,
        l1: L1Cache,
        l2: L2Tier,
        bus: InvalidationBus | None,
        metrics: TierMetrics,
        ttls: TtlPolicy,
        clock: Clock,
        poll_interval: float,
    ) -> None:
        self._l1, self._l2, self._bus = l1, l2, bus
        self._metrics, self._ttls, self._clock = metrics, ttls, clock
        self._poll_interval = poll_interval

    async def load(self, key: str, loader: Loader[Any], token: int | None) -> Filled:
        """The loader's answer or another process's, after an L2 miss of ``key``."""
        if not self._l2.distributed:
            return await self._load_single_process(key, loader, token)
        while not self._l2.degraded:
            lease = RedisFillLease.new_token()
            status, value = await self._l2.lease_or_read(key, lease)
            if status == LEASE_VALUE:
                self._metrics.coalesced_cluster.inc()
                return Filled(value, None, keep=True)
            if status == LEASE_GRANTED:
                return await self._load_leased(key, loader, token, lease)
            if status == LEASE_NO_ANSWER:
                break  # Redis failed (or refused) while we asked: load without a lease
            if self._bus is not None and self._bus.connected:
                await self._bus.wait_filled(key, self._poll_interval)
            else:
                await self._clock.sleep(self._poll_interval)
        value = await self._run_loader(loader)
        return Filled(value, None, keep=True)  # never written back: see the docstring

    async def _load_leased(
        self, key: str, loader: Loader[Any], token: int | None, lease: str
    ) -> Filled:
        try:
            value = await self._run_loader(loader)
        except asyncio.CancelledError:
            self._l2.release_later(key, lease)  # a cancelled task must not wait
            raise
        except BaseException:
            await self._l2.release(key, lease)  # gone before the caller sees the error
            raise
        if token is not None and not self._l1.fill_is_valid(key, token):
            # A local write or an invalidation arrived during the load: it may be older.
            await self._l2.release(key, lease)
            return Filled(value, None, keep=False)
        ttl = self._ttls.l2(value)
        if await self._l2.fill(key, lease, value, ttl):
            return Filled(value, ttl, keep=True)
        # Not written. Redis failed: the load is fresh, L1 may keep it (for the staleness
        # bound). Otherwise a writer intervened (or the lease expired): the value may be
        # older than that write, so it is only the answer of the callers who asked before.
        return Filled(value, None, keep=self._l2.degraded)

    async def _load_single_process(
        self, key: str, loader: Loader[Any], token: int | None
    ) -> Filled:
        value = await self._run_loader(loader)
        if token is not None and not self._l1.fill_is_valid(key, token):
            return Filled(value, None, keep=False)
        ttl = self._ttls.l2(value)
        written = await self._l2.write(key, value, ttl, (), quiet=True)
        return Filled(value, ttl if written else None, keep=True)

    async def _run_loader(self, loader: Loader[Any]) -> object:
        """The loader's answer, ``None`` turned into :data:`ABSENT`; timed and counted."""
        start = perf_counter()
        result = await loader()
        self._metrics.l3_latency.observe((perf_counter() - start) * 1000.0)
        if result is None:
            self._metrics.l3_misses.inc()
            return ABSENT
        self._metrics.l3_hits.inc()
        return result

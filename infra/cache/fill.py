"""Loading a missing key once across processes, and writing it back.

Called by :class:`~infra.cache.three_tier_cache.ThreeTierCache` inside its in-process
single flight, after an L2 miss, so at most one :class:`Filler` call per key runs in each
process. Across processes:

1. ``SET <ns>:lock:<key> token NX PX fill_lease``. The winner re-reads L2 (another
   process may have filled it between our miss and our lease), runs the loader, writes
   the value to L2 unless a write intervened, publishes a ``filled`` message and
   releases the lease (owner-checked, :class:`~infra.cache.singleflight.RedisFillLease`).
2. The others wait for the ``filled`` message (or ``lease_poll_interval``, whichever
   comes first; polling alone when the subscription is down), re-read L2, and try the
   lease again if it is still empty -- so a holder that crashed or failed delays them by
   at most the lease, and then one of them loads.
3. When Redis fails, the lease is skipped and the loader runs here (the in-process
   single flight still coalesces this process's callers).

"A write intervened" means: the key's L1 fill token was voided (a local write, or an
invalidation message from another process) or the lease is no longer ours (a writer
deleted it, or it expired). The loaded value is then returned to the callers but not
written to L2: it may be older than that write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, TypeVar

from infra.cache.coherence import InvalidationBus, Message, encode_message
from infra.cache.l1 import ABSENT, MISS, L1Cache
from infra.cache.l2 import L2Tier
from infra.cache.tier_metrics import TierMetrics
from infra.cache.ttl_policy import TtlPolicy
from infra.resilience.clock import Clock

__all__ = ["Filler", "Loader"]

T = TypeVar("T")
Loader = Callable[[], Awaitable[T | None]]
"""An L3 read: returns the value, or ``None`` when it does not exist."""


class Filler:
    """Runs loaders under the cross-process fill lease; see the module docstring."""

    __slots__ = ("_bus", "_clock", "_l1", "_l2", "_metrics", "_poll_interval", "_ttls", "origin")

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
        origin: str,
    ) -> None:
        self._l1, self._l2, self._bus = l1, l2, bus
        self._metrics, self._ttls, self._clock = metrics, ttls, clock
        self._poll_interval = poll_interval
        self.origin = origin

    async def load(
        self, key: str, loader: Loader[Any], token: int | None
    ) -> tuple[object, float | None]:
        """``(value, l2_ttl)``: the loader's answer or another process's, and the L2
        lifetime we wrote it with (``None`` when we did not write it)."""
        while self._lease_usable():
            lease = await self._l2.acquire_lease(key)
            if lease is not None:
                try:
                    value = await self._l2.read(key, record=False)  # filled meanwhile?
                    if value is MISS:
                        return await self._run_loader(key, loader, token, lease)
                    self._metrics.coalesced_cluster.inc()
                    return value, None
                finally:
                    await self._l2.release_lease(key, lease)
            if not self._lease_usable():
                break  # Redis failed while we asked: load without a lease
            if self._bus is not None and self._bus.connected:
                await self._bus.wait_filled(key, self._poll_interval)
            else:
                await self._clock.sleep(self._poll_interval)
            value = await self._l2.read(key, record=False)
            if value is not MISS:
                self._metrics.coalesced_cluster.inc()
                return value, None
        return await self._run_loader(key, loader, token, None)

    def _lease_usable(self) -> bool:
        return self._l2.distributed and not self._l2.degraded

    async def _run_loader(
        self, key: str, loader: Loader[Any], token: int | None, lease: str | None
    ) -> tuple[object, float | None]:
        """The loader's answer (``None`` becomes ``ABSENT``), written back to L2 unless a
        write intervened; with the L2 lifetime it was written with."""
        start = perf_counter()
        result = await loader()
        self._metrics.l3_latency.observe((perf_counter() - start) * 1000.0)
        value: object
        if result is None:
            value = ABSENT
            self._metrics.l3_misses.inc()
        else:
            value = result
            self._metrics.l3_hits.inc()
        # A write or invalidation during the load means our value may be older than it:
        # hand it to the callers, but do not cache it.
        if token is not None and not self._l1.fill_is_valid(key, token):
            return value, None
        if lease is not None and not await self._l2.holds_lease(key, lease):
            return value, None
        ttl = self._ttls.l2(value)
        written = await self._l2.write(key, value, ttl)
        if written and lease is not None:
            await self._l2.announce(encode_message(Message(self.origin, filled=key)))
        return value, ttl

"""An in-process :class:`~infra.ports.DistributedLock` for tests: no Redis, same answers.

::

    clock = ManualClock()
    lock = FakeDistributedLock(clock=clock)
    lease = await lock.acquire("job", lease=5)
    clock.advance(6)                                  # the lease runs out
    await lock.release(lease)                         # -> LockNotOwnedError

:class:`FakeDistributedLock` shares its waiting, cancellation, ``hold`` and watchdog
code with :class:`~infra.cache.distributed_lock.RedisDistributedLock` (both build on
:class:`~infra.cache.lease_lock.LeaseLockBase`); only the four primitive operations
differ, and here they act on a :class:`FakeLockServer` -- the state Redis would hold,
with leases measured on an injectable clock. The contract suite
(``tests/contract/test_lock_contract.py``) runs the same tests on both.

Several ``FakeDistributedLock`` objects on one ``FakeLockServer`` behave like several
processes sharing one Redis. Each fake lock can also misbehave on purpose:

* ``unavailable = True`` -- every call raises ``CacheConnectionError`` (Redis is down);
* :meth:`~FakeDistributedLock.fail_next` -- the next call(s) of an operation raise an
  error, either before reaching the "server" or *after* it applied the change (a lost
  reply);
* :meth:`~FakeDistributedLock.stall_next` -- the next call applies its change, then
  waits for an event before answering (a reply in flight; cancel the caller meanwhile);
* :meth:`FakeLockServer.delete` -- the key vanishes, as if an operator deleted it.

Every call yields to the event loop once before it reaches the server, like real I/O,
and runs through :class:`~infra.calls.BackendCalls` as the Redis lock's calls do
(operations ``acquire``, ``release``, ``extend``, ``abandon``, with the same retry rules:
``acquire`` and ``extend`` may be retried, ``release`` and ``abandon`` never): the
injected ``policy`` retries and breaks, and the injected ``collector`` records, exactly as
for :class:`~infra.cache.RedisDistributedLock` (see :mod:`infra.testing.fakes._backend`).
This module imports no driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from infra.cache.lease_lock import LeaseLockBase, LockBackoff, LockMetrics
from infra.exceptions import CacheConnectionError
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.resilience import ResiliencePolicy
from infra.resilience.clock import Clock, MonotonicClock
from infra.testing.fakes._backend import FaultScript, fake_calls

__all__ = ["FakeDistributedLock", "FakeLockServer", "LockOperation"]

T = TypeVar("T")
LockOperation = Literal["acquire", "release", "extend", "abandon"]
_OPERATIONS: frozenset[str] = frozenset({"acquire", "release", "extend", "abandon"})


class FakeLockServer:
    """What Redis would store for the locks: holders with lease deadlines, fencing
    counters (never expire) and abandoned-owner markers, on ``clock``."""

    __slots__ = ("_abandoned", "_clock", "_fences", "_holders")

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._holders: dict[str, tuple[str, float]] = {}
        self._fences: dict[str, int] = {}
        self._abandoned: dict[tuple[str, str], float] = {}

    @property
    def clock(self) -> Clock:
        """The clock leases are measured on."""
        return self._clock

    # ------------------------------------------------------------- inspection
    def holder(self, name: str) -> str | None:
        """The owner token holding ``name``, or ``None`` if it is free (or expired)."""
        entry = self._live(name)
        return None if entry is None else entry[0]

    def ttl(self, name: str) -> float | None:
        """Seconds left on the lease of ``name``, or ``None`` if it is free."""
        entry = self._live(name)
        return None if entry is None else entry[1] - self._clock.now()

    def fencing_counter(self, name: str) -> int:
        """The last fencing token granted for ``name`` (0 if never granted)."""
        return self._fences.get(name, 0)

    def delete(self, name: str) -> bool:
        """Drop the lock as an operator's ``DEL`` would; ``True`` if it was held."""
        if self._live(name) is None:
            return False
        del self._holders[name]
        return True

    # ---------------------------------------------------------- the operations
    def grant(self, name: str, owner: str, lease_ms: int) -> tuple[int | None, float]:
        """Same decisions as the Redis ACQUIRE script."""
        now = self._clock.now()
        marker = self._abandoned.get((name, owner))
        if marker is not None and marker > now:
            return None, 0.0
        entry = self._live(name)
        if entry is None:
            self._holders[name] = (owner, now + lease_ms / 1000.0)
            token = self._fences[name] = self._fences.get(name, 0) + 1
            return token, 0.0
        if entry[0] == owner:
            self._holders[name] = (owner, now + lease_ms / 1000.0)
            return self._fences[name], 0.0
        return None, entry[1] - now

    def release(self, name: str, owner: str) -> bool:
        """Delete ``name`` if ``owner`` holds it."""
        entry = self._live(name)
        if entry is None or entry[0] != owner:
            return False
        del self._holders[name]
        return True

    def extend(self, name: str, owner: str, lease_ms: int) -> bool:
        """Reset the lease if ``owner`` holds ``name``."""
        entry = self._live(name)
        if entry is None or entry[0] != owner:
            return False
        self._holders[name] = (owner, self._clock.now() + lease_ms / 1000.0)
        return True

    def abandon(self, name: str, owner: str, lease_ms: int) -> None:
        """Refuse ``owner`` for one lease and release ``name`` if it holds it."""
        now = self._clock.now()
        self._abandoned = {k: v for k, v in self._abandoned.items() if v > now}
        self._abandoned[(name, owner)] = now + lease_ms / 1000.0
        self.release(name, owner)

    def _live(self, name: str) -> tuple[str, float] | None:
        entry = self._holders.get(name)
        if entry is not None and entry[1] <= self._clock.now():
            del self._holders[name]
            return None
        return entry

    def __repr__(self) -> str:
        return f"FakeLockServer(locks={len(self._holders)}, clock={self._clock!r})"


class FakeDistributedLock(LeaseLockBase):
    """In-process lock with the Redis adapter's semantics; see the module docstring.

    Args:
        server: Shared state; a new one on ``clock`` if omitted. Give several locks the
            same server to model several processes.
        clock: Time for leases, waits, backoff and the watchdog (default: the server's
            clock, else real monotonic time). Must be the server's clock if both are given.
        default_lease, default_wait, watchdog, backoff, component, policy, collector: As
            for :class:`~infra.cache.distributed_lock.RedisDistributedLock`
            (``containers.testing.use_fakes`` passes the Redis lock's component name,
            ``"redis_lock"``, so metrics read the same).
    """

    __slots__ = ("_calls", "_faults", "_server", "_stalls", "calls", "unavailable")

    def __init__(
        self,
        server: FakeLockServer | None = None,
        *,
        clock: Clock | None = None,
        default_lease: float = 30.0,
        default_wait: float = 10.0,
        watchdog: bool = False,
        backoff: LockBackoff | None = None,
        component: str = "fake_lock",
        policy: ResiliencePolicy | None = None,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        if server is not None and clock is not None and server.clock is not clock:
            raise ValueError("clock must be the server's clock (or omit it to use that one)")
        self._server = server if server is not None else FakeLockServer(clock)
        super().__init__(
            component=component,
            default_lease=default_lease,
            default_wait=default_wait,
            clock=self._server.clock,
            watchdog=watchdog,
            backoff=backoff,
            collector=collector,
        )
        self.attach(policy=policy, collector=collector, tracing=tracing)
        self._faults = FaultScript(_OPERATIONS)
        self._stalls: dict[str, asyncio.Event] = {}
        #: Every operation that reached this fake, in order (``"acquire"``, ...).
        self.calls: list[str] = []
        #: ``True`` makes every call raise ``CacheConnectionError``.
        self.unavailable = False

    @property
    def server(self) -> FakeLockServer:
        """The shared state this lock acts on."""
        return self._server

    @property
    def policy(self) -> ResiliencePolicy:
        """The resilience policy calls run under."""
        return self._calls.policy

    def attach(
        self,
        *,
        policy: ResiliencePolicy | None,
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> None:
        """Run later calls under ``policy`` and record them into ``collector`` (what
        ``containers.testing.use_fakes`` does with the container's own providers); the
        server, held leases and scripted faults are kept."""
        self._calls = fake_calls(
            self._component,
            family="cache",
            system="redis",
            policy=policy,
            collector=collector,
            tracing=tracing,
        )
        self.metrics = LockMetrics(self._component, collector)

    def fail_next(
        self,
        operation: LockOperation | None = None,
        *,
        error: BaseException | None = None,
        times: int = 1,
        after_apply: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``operation`` (any, if ``None``) raise ``error``
        (default ``CacheConnectionError``), before -- or with ``after_apply`` after -- the
        server applied them."""
        fault = error if error is not None else self._connection_error(operation or "any")
        operations = None if operation is None else (operation,)
        self._faults.add(fault, times=times, operations=operations, after_apply=after_apply)

    def stall_next(self, operation: LockOperation) -> asyncio.Event:
        """The next ``operation`` applies its change, then waits for the returned event
        before answering -- a reply still in flight."""
        if operation not in _OPERATIONS:
            raise ValueError(f"operation must be one of {sorted(_OPERATIONS)}, got {operation!r}")
        event = self._stalls[operation] = asyncio.Event()
        return event

    # --------------------------------------------------------- backend primitives
    # Same operation names and retry rules as RedisDistributedLock's primitives.
    async def _grant(self, name: str, owner: str, lease_ms: int) -> tuple[int | None, float]:
        server = self._server
        return await self._calls.run(
            "acquire", self._io, "acquire", server.grant, name, owner, lease_ms, idempotent=True
        )

    async def _release(self, name: str, owner: str) -> bool:
        server = self._server
        return await self._calls.run(
            "release", self._io, "release", server.release, name, owner, idempotent=False
        )

    async def _extend(self, name: str, owner: str, lease_ms: int) -> bool:
        server = self._server
        return await self._calls.run(
            "extend", self._io, "extend", server.extend, name, owner, lease_ms, idempotent=True
        )

    async def _abandon(self, name: str, owner: str, lease_ms: int) -> None:
        server = self._server
        await self._calls.run(
            "abandon", self._io, "abandon", server.abandon, name, owner, lease_ms, idempotent=False
        )

    async def _io(self, operation: str, apply: Callable[..., T], *args: Any) -> T:
        """The driver step of one attempt: yield (like real I/O: other tasks run,
        cancellation lands here), fail if a fault is due, apply the change on the
        server, then maybe stall or lose the reply."""
        await asyncio.sleep(0)
        self.calls.append(operation)
        if self.unavailable:
            raise self._connection_error(operation)
        fault = self._faults.take(operation)
        if fault is not None:
            raise fault
        result = apply(*args)
        stall = self._stalls.pop(operation, None)
        if stall is not None:
            await stall.wait()
        fault = self._faults.take(operation, after_apply=True)
        if fault is not None:
            raise fault
        return result

    def _connection_error(self, operation: str) -> CacheConnectionError:
        return CacheConnectionError(
            "fake lock server unavailable",
            component=self._component,
            details={"operation": operation},
        )

    def __repr__(self) -> str:
        return (
            f"FakeDistributedLock(default_lease={self._default_lease:g}, "
            f"default_wait={self._default_wait:g}, unavailable={self.unavailable})"
        )

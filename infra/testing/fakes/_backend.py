"""What every fake shares with its real adapter, and the faults scripted beneath it.

**The seam.** A fake replaces the *server and its driver*, not the adapter's path: each
fake runs every backend operation through :class:`~infra.calls.BackendCalls` -- the same
telemetry, :class:`~infra.resilience.ResiliencePolicy` and error translation the real
adapter uses, under the same component, system and operation names -- and only the
innermost step (what the driver would send) is in-memory. So a call under a fake is
retried, counted by the breaker, timed and recorded exactly as under a real server, and
the policy and collector are injected the same way (constructor arguments, or
:meth:`attach` from the container's own providers, which ``containers.testing.use_fakes``
does).

**Faults** are scripted at the driver step, inside each attempt: a scripted
``ConnectionError`` is translated into the backend's retryable connection error exactly
as the real driver's would be, so ``fail_next(ConnectionError(), times=1)`` is the fake
twin of one dropped connection on a real server (retried under a retrying policy; raised
under a policy without retries). :class:`FaultScript` is the one implementation behind
each fake's ``fail_next``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from infra.calls import BackendCalls
from infra.observability.metrics import MetricsCollector
from infra.observability.tracing import TracingState
from infra.resilience import ResiliencePolicy
from infra.translation import Family

__all__ = ["Fault", "FaultScript", "fake_calls"]

#: A scripted failure: an exception instance (raised as is, each time) or an exception
#: class (instantiated without arguments for each failure).
Fault = BaseException | type[BaseException]


def fake_calls(
    component: str,
    *,
    family: Family,
    system: str,
    policy: ResiliencePolicy | None,
    collector: MetricsCollector | None,
    tracing: TracingState | None = None,
) -> BackendCalls:
    """The :class:`BackendCalls` of a fake: the real adapter's, minus a server address."""
    if policy is not None and not isinstance(policy, ResiliencePolicy):
        raise TypeError(f"policy must be a ResiliencePolicy or None, got {policy!r}")
    if collector is not None and not isinstance(collector, MetricsCollector):
        raise TypeError(f"collector must be a MetricsCollector or None, got {collector!r}")
    return BackendCalls(
        component, family=family, system=system, policy=policy, collector=collector, tracing=tracing
    )


@dataclass(slots=True)
class _Scripted:
    error: Fault
    remaining: int
    operations: frozenset[str] | None
    after_apply: bool


class FaultScript:
    """Failures scripted for the next attempts of a fake, in the order they were added.

    An attempt of ``operation`` takes the first pending fault that applies to it (any
    operation when ``operations`` is ``None``); a fault scripted ``times=n`` fails the
    next ``n`` attempts it applies to, retries included.
    """

    __slots__ = ("_faults", "_known")

    def __init__(self, known: Collection[str] | None = None) -> None:
        self._faults: list[_Scripted] = []
        self._known = None if known is None else frozenset(known)

    def add(
        self,
        error: Fault,
        *,
        times: int = 1,
        operations: Collection[str] | None = None,
        after_apply: bool = False,
    ) -> None:
        """Script ``error`` for the next ``times`` attempts of ``operations``.

        Raises:
            TypeError: ``error`` is neither an exception nor an exception class.
            ValueError: ``times`` is not a positive int, or an operation is unknown.
        """
        is_class = isinstance(error, type) and issubclass(error, BaseException)
        if not (isinstance(error, BaseException) or is_class):
            raise TypeError(
                "error must be an exception instance or class (a BaseException subclass), "
                f"got {error!r}"
            )
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be a positive int, got {times!r}")
        if isinstance(operations, str):
            operations = (operations,)
        ops = None if operations is None else frozenset(operations)
        if ops is not None and self._known is not None and not ops <= self._known:
            unknown = sorted(ops - self._known)
            raise ValueError(f"unknown operation(s) {unknown}; use some of {sorted(self._known)}")
        self._faults.append(_Scripted(error, times, ops, after_apply))

    def take(self, operation: str, *, after_apply: bool = False) -> BaseException | None:
        """The failure due for this attempt of ``operation`` (consumed), or ``None``."""
        for fault in self._faults:
            if fault.after_apply != after_apply:
                continue
            if fault.operations is None or operation in fault.operations:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                error = fault.error
                return error() if isinstance(error, type) else error
        return None

    def clear(self) -> None:
        """Forget every pending fault."""
        self._faults.clear()

    def __len__(self) -> int:
        """Attempts still scripted to fail."""
        return sum(f.remaining for f in self._faults)

    def __repr__(self) -> str:
        return f"FaultScript(pending={len(self)})"

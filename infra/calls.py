"""The one path every adapter call takes: telemetry → resilience policy → translation → driver.

Adapters never combine these three by hand (CONVENTIONS #7, #10, #11). They hold a
:class:`BackendCalls` and write::

    rows = await self._calls.run("fetch", pool.fetch, query, *args)

What happens, outermost first:

1. **Telemetry** (:func:`infra.observability.record_call`): one span, one latency sample,
   one outcome counter and (on failure) one log line per *logical* call -- retries
   included in its duration, breaker rejections recorded with their ``error.type``.
   Retries and breaker transitions are counted by the policy's observer hooks, not here.
2. **Policy** (:class:`infra.resilience.ResiliencePolicy`): overall timeout, retry
   (only when ``idempotent``), breaker, bulkhead, attempt timeout.
3. **Translation** (:func:`infra.translation.translate_exception`), *inside* each attempt:
   the policy must see our error types -- their ``retryable`` flag decides retries and
   their class decides whether the breaker counts them.

The translation step is inlined (a ``try``/``except``) rather than the ``translated``
context manager because it sits on every attempt's hot path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from infra.exceptions import InfraError
from infra.observability.instrument import record_call
from infra.resilience import ResiliencePolicy
from infra.translation import Family, translate_exception

__all__ = ["BackendCalls"]

T = TypeVar("T")


class BackendCalls:
    """Runs one adapter's driver calls through telemetry, its policy and translation.

    Args:
        component: Our component name (``"postgres"``, ``"redis"``, ...); labels metrics,
            names errors.
        family: Which error family generic driver errors translate into.
        system: ``db.system.name`` for spans (``"postgresql"``, ``"redis"``, ...).
        policy: The injected resilience policy; ``None`` = passthrough.
        server_address: Span attribute ``server.address`` (never includes credentials).
        server_port: Span attribute ``server.port``.
        record: ``False`` disables telemetry for this adapter (benchmarks of the raw path).
    """

    __slots__ = (
        "_policy",
        "component",
        "family",
        "record",
        "server_address",
        "server_port",
        "system",
    )

    def __init__(
        self,
        component: str,
        *,
        family: Family,
        system: str | None = None,
        policy: ResiliencePolicy | None = None,
        server_address: str | None = None,
        server_port: int | None = None,
        record: bool = True,
    ) -> None:
        if not component:
            raise ValueError("component must be a non-empty string, e.g. 'postgres'")
        self.component = component
        self.family: Family = family
        self.system = system or component
        self._policy = policy if policy is not None else ResiliencePolicy.passthrough(component)
        self.server_address = server_address
        self.server_port = server_port
        self.record = record

    @property
    def policy(self) -> ResiliencePolicy:
        """The resilience policy calls run under."""
        return self._policy

    async def run(
        self,
        operation: str,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> T:
        """Run ``fn(*args)`` as the bounded-name ``operation``.

        Args:
            operation: A bounded name (``"fetch"``, ``"get"``); never the query or key.
            fn: The driver coroutine function.
            idempotent: ``False`` disables retries (a write that may have been applied).
            timeout: The driver-side timeout in effect, copied into timeout errors.
        """
        if not self.record:
            return await self._policy.execute(
                self._attempt, operation, fn, args, timeout, idempotent=idempotent
            )
        async with record_call(
            self.component,
            operation,
            system=self.system,
            server_address=self.server_address,
            server_port=self.server_port,
        ):
            return await self._policy.execute(
                self._attempt, operation, fn, args, timeout, idempotent=idempotent
            )

    async def _attempt(
        self,
        operation: str,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        timeout: float | None,
    ) -> T:
        try:
            return await fn(*args)
        except InfraError:
            raise
        except Exception as exc:
            # CancelledError is a BaseException: it is never caught here.
            raise translate_exception(
                exc,
                component=self.component,
                family=self.family,
                operation=operation,
                timeout=timeout,
            ) from exc

    def __repr__(self) -> str:
        return f"BackendCalls({self.component!r}, policy={self._policy.describe()!r})"

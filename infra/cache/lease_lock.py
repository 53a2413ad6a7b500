"""The backend-independent half of a lease lock: arguments, waiting, cancellation, ``hold``.

:class:`LeaseLockBase` implements the whole :class:`~infra.ports.DistributedLock` port on
top of four primitive operations a backend supplies -- grant, release, extend and
abandon (see :class:`LeaseLockBase`). The Redis adapter
(:mod:`infra.cache.distributed_lock`) implements them with Lua scripts; the fake
(:mod:`infra.testing.fakes.lock`) with a dict. Sharing this half is deliberate: the
subtle parts -- bounded waiting, cleanup after a cancelled grant, the ``hold`` exit
rules, the watchdog -- are written once, and the contract suite checks that both
backends give the same answers. This module imports no driver.

Waiting: a refused grant is retried after a jittered exponential backoff
(:class:`LockBackoff`), never sleeping past the caller's ``wait`` and never past the
moment the current holder's lease ends (the backend reports it), so a lock freed by
expiry is picked up promptly. ``wait=0`` makes exactly one try. Retrying a *failed*
round trip (connection error) is the resilience policy's job, not this loop's.

Cancellation: if the task is cancelled while a grant is in flight, the grant may already
have happened on the server. The base then runs the backend's ``abandon`` -- an
owner-checked delete that also bars this owner token from being granted later -- in a
shielded task, and only then lets the ``CancelledError`` propagate. A second
cancellation during that cleanup leaves it running in the background (referenced, so it
is not garbage-collected). Any other failure of a grant (timeout, lost connection) is
just as ambiguous, so it gets the same cleanup, best effort -- except a rejection by our
own policy (open breaker, full bulkhead, rate limit), where nothing was sent.

Metrics: the lock's own, labelled by ``component`` only -- never by lock name.
Per-call latency, call and error counts come from :class:`~infra.calls.BackendCalls`;
these add what only the lock knows: how long acquiring took including waits, how often
``wait`` ran out, and how often a held lease was found lost (alert on that one).
Families are looked up once per collector (``get_metrics_collector()`` may be replaced
by a container or a test), so a grant costs one dict lookup and one ``observe``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Final

from infra.cache.lease_hold import Hold
from infra.exceptions import (
    BulkheadFullError,
    CircuitBreakerOpenError,
    InvalidArgumentError,
    LockAcquireTimeoutError,
    LockNotOwnedError,
    RateLimitExceededError,
)
from infra.observability.metrics import (
    Counter,
    Histogram,
    MetricsCollector,
    get_metrics_collector,
)
from infra.ports import LockLease
from infra.resilience.clock import Clock, MonotonicClock
from infra.validation import check_key, shown

__all__ = [
    "LOCK_ACQUIRE_TIMEOUTS_TOTAL",
    "LOCK_ACQUIRE_WAIT_MS",
    "LOCK_LOST_TOTAL",
    "MAX_LOCK_NAME_LENGTH",
    "LeaseLockBase",
    "LockBackoff",
    "LockMetrics",
    "check_lease",
    "check_lease_seconds",
    "check_lock_name",
    "check_wait_seconds",
]

#: Longest accepted lock name (characters). Names become Redis keys; a bound keeps a
#: caller from turning a request field into a megabyte key by accident.
MAX_LOCK_NAME_LENGTH: Final = 256
#: Length of an owner token: ``secrets.token_hex(16)``.
_OWNER_LENGTH: Final = 32
#: Longest lease or wait accepted, in seconds (~31 years): longer ones are mistakes, and
#: overflow Redis's millisecond arithmetic or the event loop's timers.
_MAX_SECONDS: Final = 1e9
_log = logging.getLogger("infra.cache.lock")
#: Policy rejections: the request never left the process, so no grant can exist.
_NOT_SENT = (BulkheadFullError, CircuitBreakerOpenError, RateLimitExceededError)


def check_lock_name(name: object, component: str | None = None) -> str:
    """``name`` itself if it is a usable lock name, else ``InvalidKeyError``: a non-empty
    ``str`` of at most :data:`MAX_LOCK_NAME_LENGTH` characters that encodes as UTF-8."""
    return check_key(
        name,
        argument="name",
        what="lock names",
        component=component,
        max_length=MAX_LOCK_NAME_LENGTH,
    )


def check_lease_seconds(lease: object, argument: str = "lease") -> float:
    """A positive, finite lease of at least one millisecond, in seconds."""
    if isinstance(lease, bool) or not isinstance(lease, int | float):
        raise InvalidArgumentError(
            f"{argument} must be a number of seconds, got {type(lease).__name__}",
            argument=argument,
        )
    if not math.isfinite(lease) or not 0.001 <= lease <= _MAX_SECONDS:
        raise InvalidArgumentError(
            f"{argument} must be a finite number of seconds in [0.001, {_MAX_SECONDS:g}], "
            f"got {shown(lease)}; a lock always has a lease so a crashed holder cannot block "
            "others forever",
            argument=argument,
        )
    return float(lease)


def check_wait_seconds(wait: object, argument: str = "wait") -> float:
    """A finite, non-negative wait in seconds (``0`` = try once)."""
    if isinstance(wait, bool) or not isinstance(wait, int | float):
        raise InvalidArgumentError(
            f"{argument} must be a number of seconds, got {type(wait).__name__}",
            argument=argument,
        )
    if not math.isfinite(wait) or not 0 <= wait <= _MAX_SECONDS:
        raise InvalidArgumentError(
            f"{argument} must be a finite number of seconds in [0, {_MAX_SECONDS:g}] "
            f"(0 = try once), got {shown(wait)}; waiting forever is not supported",
            argument=argument,
        )
    return float(wait)


def check_lease(lease: object, component: str | None = None) -> LockLease:
    """``lease`` itself if it is a :class:`~infra.ports.LockLease` with a usable name,
    owner token and length."""
    if not isinstance(lease, LockLease):
        raise InvalidArgumentError(
            f"lease must be the LockLease that acquire() returned, got {type(lease).__name__}",
            argument="lease",
            component=component,
        )
    check_lock_name(lease.name, component)
    owner = lease.owner
    if owner.__class__ is not str or len(owner) != _OWNER_LENGTH or not _is_hex(owner):
        raise InvalidArgumentError(
            f"lease.owner must be the {_OWNER_LENGTH}-hex-digit token acquire() issued; "
            "pass the LockLease acquire() returned, unchanged",
            argument="lease",
            component=component,
        )
    seconds = lease.lease_seconds
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 < seconds < math.inf
    ):
        raise InvalidArgumentError(
            "lease.lease_seconds must be the positive number of seconds acquire() set, got "
            f"{type(seconds).__name__}; pass the LockLease acquire() returned, unchanged",
            argument="lease",
            component=component,
        )
    return lease


def _is_hex(text: str) -> bool:
    return text.isascii() and all(c in "0123456789abcdefABCDEF" for c in text)


@dataclass(frozen=True, slots=True)
class LockBackoff:
    """Pause between refused grants: ``initial * multiplier**n`` capped at ``maximum``,
    with "equal jitter" (a uniform draw from the upper half of that delay) so waiters
    that were refused together do not retry together."""

    initial: float = 0.002
    maximum: float = 0.05
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial) and self.initial > 0):
            raise ValueError(f"initial must be a finite number > 0, got {self.initial!r}")
        if not (math.isfinite(self.maximum) and self.maximum >= self.initial):
            raise ValueError(f"maximum must be finite and >= initial, got {self.maximum!r}")
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise ValueError(f"multiplier must be a finite number >= 1, got {self.multiplier!r}")

    def delay(self, attempt: int, draw: float) -> float:
        """The pause after refused try number ``attempt`` (0-based); ``draw`` in [0, 1)."""
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return base / 2 + base / 2 * draw


class LeaseLockBase(ABC):
    """The :class:`~infra.ports.DistributedLock` port over four backend primitives.

    Subclasses implement :meth:`_grant`, :meth:`_release`, :meth:`_extend` and
    :meth:`_abandon`; everything a caller touches is defined here.
    """

    __slots__ = (
        "_backoff",
        "_cleanups",
        "_clock",
        "_component",
        "_default_lease",
        "_default_wait",
        "_holds",
        "_random",
        "_watchdog",
        "metrics",
    )

    def __init__(
        self,
        *,
        component: str,
        default_lease: float,
        default_wait: float,
        clock: Clock | None,
        watchdog: bool,
        backoff: LockBackoff | None,
        collector: MetricsCollector | None = None,
    ) -> None:
        if not isinstance(component, str) or not component:
            raise ValueError(f"component must be a non-empty string, got {component!r}")
        self._component = component
        self._default_lease = check_lease_seconds(default_lease, "default_lease")
        self._default_wait = check_wait_seconds(default_wait, "default_wait")
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._watchdog = bool(watchdog)
        self._backoff = backoff if backoff is not None else LockBackoff()
        self._random = random.Random()  # noqa: S311 -- jitter, not security
        self._cleanups: set[asyncio.Task[None]] = set()
        #: The ``hold()`` blocks running now, by owner token: a release of their lease
        #: from inside the body is the hold's own (see :mod:`infra.cache.lease_hold`).
        self._holds: dict[str, Hold] = {}
        #: Wait/timeout/lost metrics, labelled by ``component`` (never by lock name).
        self.metrics = LockMetrics(component, collector)

    # ------------------------------------------------------------ backend primitives
    @abstractmethod
    async def _grant(self, name: str, owner: str, lease_ms: int) -> tuple[int | None, float]:
        """Grant ``name`` to ``owner`` unless someone else holds it.

        Returns ``(fencing_token, 0.0)`` on a grant -- also when ``owner`` already holds
        it (a replayed request) -- or ``(None, holder_ttl_seconds)`` when refused
        (``0.0`` when unknown). Must refuse an owner that was abandoned.
        """

    @abstractmethod
    async def _release(self, name: str, owner: str) -> bool:
        """Delete ``name`` if ``owner`` holds it; ``False`` if it does not."""

    @abstractmethod
    async def _extend(self, name: str, owner: str, lease_ms: int) -> bool:
        """Reset the lease of ``name`` to ``lease_ms`` if ``owner`` holds it."""

    @abstractmethod
    async def _abandon(self, name: str, owner: str, lease_ms: int) -> None:
        """Release ``name`` if ``owner`` holds it and refuse ``owner`` any later grant
        for ``lease_ms`` (a grant request still in flight must not succeed)."""

    # -------------------------------------------------------------------- the port
    @property
    def clock(self) -> Clock:
        """The clock leases, waits and backoff are measured with."""
        return self._clock

    @property
    def component(self) -> str:
        """The ``component`` our errors carry."""
        return self._component

    async def acquire(
        self, name: str, *, lease: float | None = None, wait: float | None = None
    ) -> LockLease:
        """Acquire ``name`` for ``lease`` seconds, waiting at most ``wait`` seconds.

        Raises:
            LockAcquireTimeoutError: still held by someone else when ``wait`` ran out.
            CacheConnectionError: (or another translated error) the backend could not be
                asked; the lock is never assumed.
        """
        lease_s, wait_s = self._arguments(name, lease, wait)
        granted, _started = await self._acquire_timed(name, lease_s, wait_s)
        return granted

    async def release(self, lease: LockLease) -> None:
        """Release; raises ``LockNotOwnedError`` if ``lease`` no longer owns the lock.

        Inside ``async with lock.hold(...) as lease:`` releasing ``lease`` ends the hold
        early: its watchdog stops and leaving the block sends and reports nothing more.
        """
        check_lease(lease, self._component)
        hold = self._holds.get(lease.owner)
        if hold is not None:
            await hold.release_in_body(lease)
            return
        await self._release_lease(lease)

    async def _release_lease(self, lease: LockLease) -> None:
        if not await self._release(lease.name, lease.owner):
            raise self._not_owned(lease, "release")

    async def extend(self, lease: LockLease, *, lease_seconds: float | None = None) -> LockLease:
        """Reset the lease to ``lease_seconds`` (default: the lease's own length) from now.

        Returns the lease with the new length; the fencing token does not change.

        Raises:
            LockNotOwnedError: the lease expired or the lock was taken over.
        """
        check_lease(lease, self._component)
        seconds = (
            lease.lease_seconds
            if lease_seconds is None
            else check_lease_seconds(lease_seconds, "lease_seconds")
        )
        if not await self._extend(lease.name, lease.owner, _to_ms(seconds)):
            raise self._not_owned(lease, "extend")
        return lease if seconds == lease.lease_seconds else replace(lease, lease_seconds=seconds)

    def hold(
        self,
        name: str,
        *,
        lease: float | None = None,
        wait: float | None = None,
        watchdog: bool | None = None,
    ) -> AbstractAsyncContextManager[LockLease]:
        """``async with lock.hold(name) as lease:`` -- acquire, run the body, release.

        ``watchdog`` (default: the lock's setting) renews the lease every ``lease / 3``
        while the body runs and cancels the body if the lease is lost; see
        :mod:`infra.cache.lease_hold` for the exact exit rules.
        """
        lease_s, wait_s = self._arguments(name, lease, wait)
        return Hold(self, name, lease_s, wait_s, self._watchdog if watchdog is None else watchdog)

    # ------------------------------------------------------------------- internals
    def _arguments(self, name: str, lease: float | None, wait: float | None) -> tuple[float, float]:
        check_lock_name(name, self._component)
        lease_s = self._default_lease if lease is None else check_lease_seconds(lease)
        wait_s = self._default_wait if wait is None else check_wait_seconds(wait)
        return lease_s, wait_s

    async def _acquire_timed(
        self, name: str, lease_s: float, wait_s: float
    ) -> tuple[LockLease, float]:
        """Acquire; also returns the clock reading taken just before the granting request
        (the lease runs from no earlier than that, which the watchdog relies on)."""
        owner = secrets.token_hex(_OWNER_LENGTH // 2)
        lease_ms = _to_ms(lease_s)
        clock = self._clock
        began = clock.now()
        deadline = began + wait_s
        attempt = 0
        while True:
            sent = clock.now()
            token, holder_ttl = await self._grant_once(name, owner, lease_ms)
            if token is not None:
                self.metrics.granted((clock.now() - began) * 1000.0)
                return LockLease(name, owner, token, lease_s), sent
            remaining = deadline - clock.now()
            if remaining <= 0:
                self.metrics.timed_out()
                raise LockAcquireTimeoutError(
                    f"lock {name!r} was still held by another owner after waiting {wait_s:g} s "
                    "(locks are not reentrant: a lease this process already holds is another "
                    "owner too)",
                    timeout=wait_s,
                    component=self._component,
                    details={"lock": name},
                )
            pause = self._backoff.delay(attempt, self._random.random())
            if holder_ttl > 0:
                pause = min(pause, holder_ttl + 0.001)
            attempt += 1
            await clock.sleep(min(pause, remaining))

    async def _grant_once(self, name: str, owner: str, lease_ms: int) -> tuple[int | None, float]:
        try:
            return await self._grant(name, owner, lease_ms)
        except asyncio.CancelledError:
            cleanup = asyncio.create_task(
                self._abandon_quietly(name, owner, lease_ms, logging.WARNING)
            )
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)
            # Cancelled again while cleaning up: the task keeps running on its own.
            await asyncio.shield(cleanup)
            raise
        except _NOT_SENT:
            raise  # refused by our own policy before reaching the server: nothing to undo
        except Exception:
            # The caller gets this error (already logged by the telemetry); the cleanup's
            # own failure (usually the same outage) is only worth a debug line.
            await self._abandon_quietly(name, owner, lease_ms, logging.DEBUG)
            raise

    async def _abandon_quietly(self, name: str, owner: str, lease_ms: int, level: int) -> None:
        try:
            await self._abandon(name, owner, lease_ms)
        except Exception as exc:  # noqa: BLE001 -- the lease bounds how long a stray grant lives
            _log.log(
                level,
                "could not clean up an interrupted lock grant; it expires with its lease",
                extra={"component": self._component, "error_type": type(exc).__name__},
            )

    def _not_owned(self, lease: LockLease, operation: str) -> LockNotOwnedError:
        return LockNotOwnedError(
            f"cannot {operation} lock {lease.name!r}: this lease no longer owns it "
            "(it expired or was taken over)",
            component=self._component,
            details={"lock": lease.name, "fence": lease.fencing_token},
        )


def _to_ms(seconds: float) -> int:
    """Lease in whole milliseconds (rounded up, at least 1)."""
    return max(1, math.ceil(seconds * 1000.0 - 1e-6))  # 0.15 s -> 150, not 151


# ---------------------------------------------------------------------- metrics
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

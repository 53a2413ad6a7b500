"""Timeouts and deadlines: no call waits forever.

:class:`Timeout` bounds one operation; :class:`Deadline` is an absolute point in time that
nested code can ask for ``remaining()`` (the retry layer uses it to stop before an
overall budget runs out instead of sleeping into it).

Design decisions:

* Preemption follows the protocol of :func:`asyncio.timeout` (3.11+), not ``wait_for``
  and not a watchdog task: a loop timer cancels the *current* task at its await point
  (so whatever it awaits, a coroutine or a task, is cancelled with it); on exit, only our
  *own* cancellation is converted -- the scope remembers that it fired, calls
  ``task.uncancel()`` and compares the task's cancel count with the one seen on entry. An
  outer ``task.cancel()`` therefore stays a ``CancelledError``, even when it races with
  our deadline, and enclosing ``asyncio.timeout``/``TaskGroup`` scopes keep working.
* **One loop timer per Timeout, not one per call.** Every scope of one instance lasts the
  same ``seconds``, so on one event loop their deadlines expire in the order the scopes
  began. The instance keeps its active scopes in a FIFO queue and a single
  ``loop.call_at`` handle armed for the oldest one. Leaving a scope only marks it done
  (and drops finished scopes from the front of the queue); when the handle fires it
  cancels the expired scopes' tasks, discards finished ones and re-arms for the new
  oldest -- about once per ``seconds`` under steady traffic. A timer handle per call
  (what ``asyncio.timeout`` does) pays a heap push, a cancel and a periodic heap rebuild
  in the loop's scheduler on every call. Measured around a loopback Redis GET (redis-py,
  same process, interleaved): ``Timeout.call`` added about 8 % to the GET with a handle
  per call, about 5.5 % with the shared handle (``asyncio.timeout``: about 8.5 %). That
  is also why the protocol is re-implemented here rather than wrapping
  ``asyncio.timeout``. Memory: finished scopes wait behind a still-running older scope
  at most ``seconds`` (the handle pops the older one when it expires).
* ``begin()``/``end()`` expose a scope without a coroutine of its own, for layers that
  compose (``ResiliencePolicy`` inlines its attempt timeout this way); ``call`` and
  ``async with`` are built on them.
* The error raised is configurable (``OperationTimeoutError`` by default, e.g.
  ``QueryTimeoutError`` for a database adapter) and chained from a ``TimeoutError``
  whose own cause is the ``CancelledError`` that interrupted the body (the same chain
  ``asyncio.timeout`` produces).
* The injected :class:`~infra.resilience.clock.Clock` measures the deadline. The event
  loop cannot be preempted by a virtual clock, so with a non-real clock (a test's
  ``ManualClock``) the timeout *also* checks the virtual deadline when the body finishes
  and raises the same error if it was passed: an "instant" policy in tests makes the same
  decisions as the real one, while the loop timer stays as a real-time safety net.
* Every active timeout publishes the tightest deadline in a context variable, read with
  :func:`current_deadline`. It follows tasks created inside the scope (asyncio copies
  the context) and costs one ``ContextVar.set`` per call.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Final, ParamSpec, TypeVar

from infra.exceptions import InfraTimeoutError, OperationTimeoutError
from infra.resilience.clock import Clock, MonotonicClock

__all__ = ["Deadline", "Timeout", "TimeoutScope", "current_deadline", "published_deadline"]

P = ParamSpec("P")
T = TypeVar("T")

_REAL_CLOCK: Final = MonotonicClock()
_CURRENT_DEADLINE: ContextVar[Deadline | None] = ContextVar(
    "infra_resilience_deadline", default=None
)
_get_running_loop: Final = asyncio.get_running_loop
_current_task: Final = asyncio.current_task


def _check_seconds(seconds: float, name: str) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {seconds!r}")
    return float(seconds)


def current_deadline() -> Deadline | None:
    """The tightest deadline of the enclosing :class:`Timeout` scopes, if any."""
    return _CURRENT_DEADLINE.get()


class published_deadline:  # noqa: N801 -- used like a function: ``with published_deadline(...)``
    """Publish a deadline at ``expires_at`` (on ``clock``) for :func:`current_deadline`.

    ``with published_deadline(at, clock) as deadline: ...`` -- for a layer that enforces a
    deadline without a timer of its own (``ResiliencePolicy`` with its overall timeout):
    code inside, the retry layer above all, then plans within it. The tighter of this and
    an enclosing deadline is published, as for a :class:`Timeout`. A class rather than a
    ``@contextmanager`` generator: it runs on every retried or refused policy call.
    """

    __slots__ = ("_deadline", "_token")

    def __init__(self, expires_at: float, clock: Clock) -> None:
        deadline = Deadline.__new__(Deadline)  # an absolute time: no ``seconds`` to check
        deadline._clock = clock
        deadline._expires_at = expires_at
        deadline._started_at = now = clock.now()
        deadline.seconds = expires_at - now
        self._deadline = deadline
        self._token: Token[Deadline | None] | None = None

    def __enter__(self) -> Deadline:
        deadline = self._deadline
        parent = _CURRENT_DEADLINE.get()
        tighter = parent is not None and parent.remaining() < deadline.seconds
        self._token = _CURRENT_DEADLINE.set(parent if tighter else deadline)
        return deadline

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _CURRENT_DEADLINE.reset(self._token)
            self._token = None


class Deadline:
    """A point ``seconds`` after creation on ``clock``; read ``remaining()`` to budget work."""

    __slots__ = ("_clock", "_expires_at", "_started_at", "seconds")

    def __init__(self, seconds: float, *, clock: Clock | None = None) -> None:
        self.seconds = _check_seconds(seconds, "seconds")
        self._clock: Clock = clock if clock is not None else _REAL_CLOCK
        self._started_at = self._clock.now()
        self._expires_at = self._started_at + self.seconds

    @property
    def clock(self) -> Clock:
        """The clock this deadline is measured on."""
        return self._clock

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self._clock.now() >= self._expires_at

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._expires_at - self._clock.now())

    def elapsed(self) -> float:
        """Seconds since the deadline was created."""
        return self._clock.now() - self._started_at

    def clamp(self, seconds: float) -> float:
        """``seconds`` shortened to what is left (for a sleep or an inner timeout)."""
        return min(seconds, self.remaining())

    def __repr__(self) -> str:
        return f"Deadline(seconds={self.seconds!r}, remaining={self.remaining():.6f})"


class TimeoutScope(Deadline):
    """One entered timeout: its deadline plus its timer state. Made by :meth:`Timeout.begin`."""

    __slots__ = ("cancelling", "done", "fired", "task", "token", "wheel", "when")

    task: asyncio.Task[object]  # the task cancelled when the deadline passes
    cancelling: int  # the task's cancel count on entry
    when: float  # the deadline on the event loop's clock
    wheel: _Wheel  # the shared timer this scope is queued in
    fired: bool  # the timer cancelled the task for this scope
    done: bool  # the scope was left; the timer skips it
    token: Token[Deadline | None]  # restores the published deadline on exit


class _Wheel:
    """The one timer handle of one :class:`Timeout` on one event loop, and its queue."""

    __slots__ = ("armed_at", "handle", "loop", "same_clock", "scopes")

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
        self.loop = loop
        # Scopes in the order they began, which is the order their deadlines pass.
        self.scopes: deque[TimeoutScope] = deque()
        self.handle: asyncio.TimerHandle | None = None
        self.armed_at = 0.0
        # The loop's clock is time.monotonic() too: a scope's deadline is its loop time.
        self.same_clock = type(clock) is MonotonicClock and (
            type(loop).time is asyncio.BaseEventLoop.time
        )

    def arm(self, when: float) -> None:
        self.armed_at = when
        self.handle = self.loop.call_at(when, self.fire)

    def fire(self) -> None:
        """Timer callback: cancel the tasks whose deadline passed; re-arm for the next."""
        self.handle = None
        scopes = self.scopes
        # The loop ran this handle, so it considers ``armed_at`` reached (it runs handles
        # up to one clock resolution early).
        limit = max(self.loop.time(), self.armed_at)
        while scopes:
            scope = scopes[0]
            if not scope.done:
                if scope.when > limit:
                    self.arm(scope.when)
                    return
                scope.fired = True
                scope.task.cancel()
            scopes.popleft()


class Timeout:
    """Bound an operation to ``seconds``; raise ``error(timeout=seconds, component=...)``.

    Use ``await timeout.call(fn, *args, **kwargs)`` (``fn`` returns any awaitable) or
    ``async with timeout as deadline: ...``. One instance may serve many concurrent
    calls; each entry gets its own deadline (all share one loop timer, see the module
    docstring).

    Args:
        seconds: The limit, > 0.
        component: Put on the raised error (``"postgres"``, ...).
        error: The :class:`InfraTimeoutError` subclass to raise.
        clock: Measures the deadline; defaults to real monotonic time.
    """

    __slots__ = (
        "_active",
        "_clock",
        "_virtual",
        "_wheel",
        "_wheels",
        "component",
        "error",
        "seconds",
    )

    def __init__(
        self,
        seconds: float,
        *,
        component: str | None = None,
        error: type[InfraTimeoutError] = OperationTimeoutError,
        clock: Clock | None = None,
    ) -> None:
        self.seconds = _check_seconds(seconds, "seconds")
        if not (isinstance(error, type) and issubclass(error, InfraTimeoutError)):
            raise TypeError(
                f"error must be a subclass of InfraTimeoutError (e.g. QueryTimeoutError), "
                f"got {error!r}"
            )
        self.component = component
        self.error = error
        self._clock: Clock = clock if clock is not None else _REAL_CLOCK
        self._virtual = not isinstance(self._clock, MonotonicClock)
        # Scopes entered through ``async with``, per task (a stack for re-entry).
        self._active: dict[asyncio.Task[object], list[TimeoutScope]] = {}
        # The shared timer of the loop last used, and those of every loop used.
        self._wheel: _Wheel | None = None
        self._wheels: dict[asyncio.AbstractEventLoop, _Wheel] = {}

    def make_error(self) -> InfraTimeoutError:
        """The error this timeout raises when it fires."""
        return self.error(timeout=self.seconds, component=self.component)

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` within the limit."""
        scope = self.begin()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self.end(scope, exc)
            raise
        self.end(scope, None)
        return result

    async def __aenter__(self) -> Deadline:
        scope = self.begin()
        self._active.setdefault(scope.task, []).append(scope)
        return scope

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = _task()
        stack = self._active[task]
        scope = stack.pop()
        if not stack:
            del self._active[task]
        self.end(scope, exc)

    def begin(self) -> TimeoutScope:
        """Start a scope in the current task: from now on its deadline runs.

        For layers that compose without a coroutine per layer. Every scope must be passed
        to :meth:`end` exactly once, by the same task, when the bounded work ends.
        """
        loop = _get_running_loop()
        task = _current_task(loop)
        if task is None:
            raise RuntimeError("Timeout must be used inside an asyncio task")
        wheel = self._wheel
        if wheel is None or wheel.loop is not loop:
            wheel = self._wheel_for(loop)
        seconds = self.seconds
        now = self._clock.now()
        # Fields set here rather than in an __init__: one Python frame less per call.
        scope = TimeoutScope.__new__(TimeoutScope)
        scope.seconds = seconds
        scope._clock = self._clock
        scope._started_at = now
        scope._expires_at = now + seconds
        scope.task = task
        scope.cancelling = task.cancelling()
        scope.fired = scope.done = False
        scope.wheel = wheel
        scope.when = when = (now if wheel.same_clock else loop.time()) + seconds
        wheel.scopes.append(scope)
        if wheel.handle is None:
            wheel.arm(when)  # otherwise armed for an older scope: it fires no later
        parent = _CURRENT_DEADLINE.get()
        tightest = parent if parent is not None and parent.remaining() < seconds else scope
        scope.token = _CURRENT_DEADLINE.set(tightest)
        return scope

    def end(self, scope: TimeoutScope, exc: BaseException | None) -> None:
        """Leave ``scope`` (from :meth:`begin`); ``exc`` is what the bounded work raised.

        Raises:
            InfraTimeoutError: This timeout's error, when its deadline ended the work (the
                caller then raises nothing else); otherwise returns and the caller goes on
                (re-raising ``exc``, if any).
        """
        scope.done = True
        _CURRENT_DEADLINE.reset(scope.token)
        scopes = scope.wheel.scopes
        while scopes and scopes[0].done:
            scopes.popleft()
        if scope.fired:
            # Ours only if no other cancel request is pending (same test as asyncio.timeout).
            if scope.task.uncancel() <= scope.cancelling and isinstance(
                exc, asyncio.CancelledError
            ):
                timeout_exc = TimeoutError()
                timeout_exc.__cause__ = exc
                raise self.make_error() from timeout_exc
        elif self._virtual and scope.expired and (exc is None or isinstance(exc, Exception)):
            # A virtual clock passed the deadline while the body ran: same decision as real.
            raise self.make_error() from exc

    @property
    def open_scopes(self) -> int:
        """Scopes entered and not yet left, on every loop (``0`` once every call under
        this timeout has finished, however it finished: a leak check for tests)."""
        entered = sum(len(stack) for stack in self._active.values())
        queued = sum(1 for wheel in self._wheels.values() for s in wheel.scopes if not s.done)
        return entered + queued

    def _wheel_for(self, loop: asyncio.AbstractEventLoop) -> _Wheel:
        """The shared timer for ``loop`` (slow path: first use, or another loop)."""
        wheel = self._wheels.get(loop)
        if wheel is None:
            for old in [old for old in self._wheels if old.is_closed()]:
                del self._wheels[old]
            wheel = self._wheels[loop] = _Wheel(loop, self._clock)
        self._wheel = wheel
        return wheel

    def __repr__(self) -> str:
        return (
            f"Timeout(seconds={self.seconds!r}, component={self.component!r}, "
            f"error={self.error.__name__})"
        )


def _task() -> asyncio.Task[object]:
    task = _current_task()
    if task is None:
        raise RuntimeError("Timeout must be used inside an asyncio task")
    return task

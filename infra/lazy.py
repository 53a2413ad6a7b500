"""``LazyClientInitializer[T]``: create an async client once, on first use.

Why not just ``functools.cache`` or an ``asyncio.Lock``? Three properties matter for a
client factory that opens network connections:

1. **Once under concurrency.** 100 tasks asking at the same moment must cause exactly one
   creation. All of them await the same in-flight creation task.
2. **No poisoned state.** If creation fails, every caller waiting on that attempt gets the
   error, and the *next* call starts a fresh attempt (a lock-based version would either
   cache the failure or retry once per waiter).
3. **Cancellation-safe.** The creation runs in its own task, shielded from its callers:
   a caller that is cancelled (a request timing out) does not abort a creation other
   callers are waiting for, and never leaves a half-built client behind.

``aclose()`` is idempotent; it waits for an in-flight creation, closes the client with the
given closer, and marks the initializer closed. A closed initializer refuses ``get()``
(recreating a client after application shutdown would leak it); ``reset()`` reopens it
explicitly. dependency-injector's ``Resource`` provider is the container-level lifecycle;
this class is for code that owns a client outside a container, and what the container's
resources use when a first use must initialise lazily.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar, cast

__all__ = ["LazyClientInitializer"]

T = TypeVar("T")


class LazyClientInitializer(Generic[T]):
    """Create a client with ``factory`` on the first :meth:`get`, once.

    Args:
        factory: Coroutine function creating the client.
        closer: Coroutine function closing it (called by :meth:`aclose`), optional.
        name: Used in error messages and ``repr``.
    """

    __slots__ = ("_client", "_closed", "_closer", "_creating", "_factory", "_has_client", "name")

    def __init__(
        self,
        factory: Callable[[], Awaitable[T]],
        *,
        closer: Callable[[T], Awaitable[None]] | None = None,
        name: str = "client",
    ) -> None:
        if not callable(factory):
            raise TypeError(f"factory must be a coroutine function, got {factory!r}")
        self._factory = factory
        self._closer = closer
        self.name = name
        self._client: T | None = None
        self._has_client = False
        self._creating: asyncio.Task[T] | None = None
        self._closed = False

    @property
    def is_initialized(self) -> bool:
        """Whether the client exists now."""
        return self._has_client

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`aclose` ran (and :meth:`reset` did not follow)."""
        return self._closed

    async def get(self) -> T:
        """The client, creating it if needed. Concurrent first callers share one creation."""
        if self._has_client:
            return cast("T", self._client)  # set together with the flag
        if self._closed:
            raise RuntimeError(
                f"{self.name} initializer is closed; call reset() to allow a new client"
            )
        task = self._creating
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._create(), name=f"lazy-init:{self.name}"
            )
            self._creating = task
        # shield: a cancelled caller must not cancel a creation others are waiting for.
        return await asyncio.shield(task)

    async def _create(self) -> T:
        try:
            client = await self._factory()
        finally:
            # Success or failure, this attempt is over: a failure leaves no state behind,
            # so the next get() starts a new attempt.
            self._creating = None
        self._client = client
        self._has_client = True
        return client

    __call__ = get

    async def aclose(self) -> None:
        """Close the client if it was created. Safe to call any number of times."""
        self._closed = True
        creating = self._creating
        if creating is not None:
            # Let an in-flight creation finish so its client is closed, not leaked.
            try:
                await asyncio.shield(creating)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed creation left nothing to close
                return
        if not self._has_client:
            return
        client = self._client
        self._client = None
        self._has_client = False
        if self._closer is not None:
            await self._closer(cast("T", client))  # present: the flag was set

    def reset(self) -> None:
        """Reopen a closed initializer; the next :meth:`get` creates a new client."""
        if self._has_client:
            raise RuntimeError(f"{self.name} still holds a client; await aclose() first")
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "ready" if self._has_client else "not created"
        return f"LazyClientInitializer(name={self.name!r}, state={state})"

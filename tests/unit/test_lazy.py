"""LazyClientInitializer: once under concurrency, no poisoned state, idempotent close."""

from __future__ import annotations

import asyncio
import typing

import pytest

from infra.lazy import LazyClientInitializer


class Client:
    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = 0


class Factory:
    """Counts creations; can be told to fail or to wait on an event."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail_next = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> Client:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionRefusedError("server not up yet")
        return Client(self.calls)


async def close_client(client: Client) -> None:
    client.closed += 1


async def test_hundred_concurrent_first_callers_create_once() -> None:
    """100 tasks asking at once share one creation and get the same client."""
    factory = Factory()
    factory.gate = asyncio.Event()
    lazy = LazyClientInitializer(factory, closer=close_client, name="pg")
    tasks = [asyncio.create_task(lazy.get()) for _ in range(100)]
    await asyncio.sleep(0)
    factory.gate.set()
    clients = await asyncio.gather(*tasks)
    assert factory.calls == 1
    assert all(c is clients[0] for c in clients)
    assert lazy.is_initialized


async def test_failed_creation_is_retried_on_next_call() -> None:
    """A failure reaches the callers of that attempt; the next call tries again."""
    factory = Factory()
    factory.fail_next = 1
    lazy = LazyClientInitializer(factory)
    results = await asyncio.gather(*(lazy.get() for _ in range(10)), return_exceptions=True)
    assert all(isinstance(r, ConnectionRefusedError) for r in results)
    assert factory.calls == 1
    assert not lazy.is_initialized
    client = await lazy.get()
    assert client.n == 2
    assert factory.calls == 2


async def test_cancelled_caller_does_not_abort_shared_creation() -> None:
    """Cancelling the first caller leaves the creation running for the others."""
    factory = Factory()
    factory.gate = asyncio.Event()
    lazy = LazyClientInitializer(factory)
    first = asyncio.create_task(lazy.get())
    second = asyncio.create_task(lazy.get())
    await asyncio.sleep(0)
    first.cancel()
    factory.gate.set()
    client = await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert factory.calls == 1
    assert await lazy.get() is client


async def test_aclose_is_idempotent_and_closes_once() -> None:
    """aclose closes the client exactly once, however often it is called."""
    lazy = LazyClientInitializer(Factory(), closer=close_client)
    client = await lazy.get()
    await lazy.aclose()
    await lazy.aclose()
    assert client.closed == 1
    assert lazy.is_closed
    assert not lazy.is_initialized


async def test_aclose_without_client_does_nothing() -> None:
    """Closing an initializer that never created a client calls no closer."""
    factory = Factory()
    lazy = LazyClientInitializer(factory, closer=close_client)
    await lazy.aclose()
    assert factory.calls == 0


async def test_aclose_waits_for_inflight_creation_and_closes_it() -> None:
    """A client still being created when aclose runs is closed, not leaked."""
    factory = Factory()
    factory.gate = asyncio.Event()
    lazy = LazyClientInitializer(factory, closer=close_client)
    getter = asyncio.create_task(lazy.get())
    await asyncio.sleep(0)
    closer = asyncio.create_task(lazy.aclose())
    await asyncio.sleep(0)
    factory.gate.set()
    client = await getter
    await closer
    assert client.closed == 1


async def test_get_after_close_is_refused_until_reset() -> None:
    """A closed initializer refuses get(); reset() allows a new client."""
    factory = Factory()
    lazy = LazyClientInitializer(factory, closer=close_client, name="redis")
    await lazy.get()
    await lazy.aclose()
    with pytest.raises(RuntimeError, match="redis initializer is closed"):
        await lazy.get()
    lazy.reset()
    again = await lazy.get()
    assert again.n == 2


def test_non_callable_factory_is_rejected() -> None:
    """A factory that is not callable fails at construction with a clear error."""
    with pytest.raises(TypeError, match="factory must be a coroutine function"):
        LazyClientInitializer(42)  # type: ignore[arg-type]


def test_generic_parameter_and_hints_resolve() -> None:
    """LazyClientInitializer[T] is generic and its annotations resolve at run time."""
    alias = LazyClientInitializer[Client]
    assert typing.get_origin(alias) is LazyClientInitializer
    hints = typing.get_type_hints(LazyClientInitializer.__init__)
    assert "factory" in hints
    assert "pg" in repr(LazyClientInitializer(Factory(), name="pg"))

"""Injection once started: ``@inject`` hands out the started adapters as plain values.

After ``containers.lifecycle.start(app)``, every started resource and every singleton built
on one is handed out as the same object on every call, without a ``Future`` -- so an
``@inject`` handler runs to completion without suspending (dependency-injector awaits
async-mode providers through ``asyncio.gather``, which always suspends). ``stop()`` leaves
every provider's async mode as ``start()`` found it, and a later ``start()`` builds new
adapters on the new resources. Overrides (``provider.override``, ``use_fakes``) are
injected while active, before or after ``start()``, and whatever the order of start,
stop, override and reset, no closed adapter is ever injected (property test at the end).
No server is needed: nothing connects until first use.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from dependency_injector import providers
from dependency_injector.wiring import Provide, inject
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import start, stop
from containers.testing import use_fakes
from infra.cache import ThreeTierCache
from infra.exceptions import StartupError
from infra.resilience import ResiliencePolicy
from infra.storage import EnhancedPostgresStore
from infra.testing.fakes import FakeCache, FakeDistributedLock, FakeRelationalStore

App = ApplicationContainer

#: Every adapter and telemetry value an application injects, by provider path.
INJECTED = (
    "postgres.store",
    "redis.cache",
    "redis.three_tier",
    "redis.lock",
    "redis.client",
    "health",
    "observability.metrics",
    "observability.health",
    "postgres.policy",
)


# ----------------------------------------------------------------------------- handlers
@inject
async def get_store(store: Any = Provide[App.postgres.store]) -> Any:
    return store


@inject
async def get_cache(cache: Any = Provide[App.redis.cache]) -> Any:
    return cache


@inject
async def get_three_tier(cache: Any = Provide[App.redis.three_tier]) -> Any:
    return cache


@inject
async def get_lock(lock: Any = Provide[App.redis.lock]) -> Any:
    return lock


@inject
async def get_all(
    *,
    store: Any = Provide[App.postgres.store],
    cache: Any = Provide[App.redis.cache],
    three_tier: Any = Provide[App.redis.three_tier],
    lock: Any = Provide[App.redis.lock],
    registry: Any = Provide[App.health],
    collector: Any = Provide[App.observability.metrics],
) -> dict[str, Any]:
    return {
        "postgres.store": store,
        "redis.cache": cache,
        "redis.three_tier": three_tier,
        "redis.lock": lock,
        "health": registry,
        "observability.metrics": collector,
    }


HANDLERS = {
    "postgres.store": get_store,
    "redis.cache": get_cache,
    "redis.three_tier": get_three_tier,
    "redis.lock": get_lock,
}


# ------------------------------------------------------------------------------ helpers
def make_app() -> ApplicationContainer:
    app = ApplicationContainer()
    app.core.settings.override(providers.Object(Settings(log_level="WARNING")))
    app.observability.tracing_global.override(providers.Object(False))
    return app


@contextmanager
def wired(app: ApplicationContainer) -> Iterator[ApplicationContainer]:
    app.wire(modules=[sys.modules[__name__]])
    try:
        yield app
    finally:
        app.unwire()


def provider(app: ApplicationContainer, path: str) -> providers.Provider[Any]:
    node: Any = app
    for name in path.split("."):
        node = getattr(node, name)
    assert isinstance(node, providers.Provider)
    return node


def without_suspending(call: Coroutine[Any, Any, Any]) -> Any:
    """Run ``call`` to completion in one step; fail if it waits on anything (a Future, a
    gather), which is what a per-call injection round trip through the loop looks like."""
    try:
        call.send(None)
    except StopIteration as done:
        return done.value
    call.close()
    pytest.fail("the call suspended: its injection waited on the event loop")


def pending(value: object) -> bool:
    """A Future or coroutine standing for a value (the redis-py client itself is awaitable,
    so "awaitable" is not the test)."""
    return isinstance(value, asyncio.Future) or inspect.iscoroutine(value)


def modes(app: ApplicationContainer) -> dict[providers.Provider[Any], tuple[bool, bool]]:
    """Every provider's async mode (enabled?, disabled?; neither means undefined)."""
    everything: Iterator[providers.Provider[Any]] = app.traverse()
    return {p: (p.is_async_mode_enabled(), p.is_async_mode_disabled()) for p in everything}


async def resolve(app: ApplicationContainer, path: str) -> Any:
    value = provider(app, path)()
    return await value if inspect.isawaitable(value) else value


@pytest.fixture
async def app() -> AsyncIterator[ApplicationContainer]:
    container = make_app()
    with wired(container):
        yield container
        await stop(container)


# -------------------------------------------------------------------------------- tests
async def test_started_adapters_are_injected_as_one_instance_without_suspending(
    app: ApplicationContainer,
) -> None:
    """Each adapter is the same object on every injection, in every handler, and is what
    a direct call of its provider returns; no injection goes through the event loop."""
    await start(app)
    together = without_suspending(get_all())
    for path, handler in HANDLERS.items():
        first = without_suspending(handler())
        assert first is without_suspending(handler())
        assert first is together[path]
        assert first is provider(app, path)()
    assert together["redis.cache"].client is app.redis.client()
    assert together["redis.three_tier"] is without_suspending(get_all())["redis.three_tier"]


async def test_before_start_providers_stay_lazy_and_awaitable(app: ApplicationContainer) -> None:
    """Without start() the container behaves as dependency-injector does: awaitables,
    resources initialised on first use, and the same adapter once built."""
    store = app.postgres.store()
    assert inspect.isawaitable(store)
    first = await store
    assert await provider(app, "postgres.store")() is first
    assert await provider(app, "redis.cache")() is await provider(app, "redis.cache")()
    assert await get_lock() is await get_lock()


async def test_stop_then_start_builds_new_adapters_on_the_new_resources(
    app: ApplicationContainer,
) -> None:
    """A restart rebuilds what was built on the closed resources, then hands it out as
    one instance again."""
    found = modes(app)
    await start(app)
    first = without_suspending(get_all())
    await stop(app)
    assert modes(app) == found
    await start(app)
    second = without_suspending(get_all())
    for path in ("postgres.store", "redis.cache", "redis.three_tier", "redis.lock"):
        assert second[path] is not first[path], path
        assert without_suspending(HANDLERS[path]()) is second[path]
    assert second["redis.cache"].client is app.redis.client()
    assert second["redis.cache"].client is not first["redis.cache"].client
    assert first["postgres.store"].is_closed


async def test_fakes_installed_before_start_are_injected_as_one_instance(
    app: ApplicationContainer,
) -> None:
    """use_fakes, then start: handlers get the fakes, synchronously and always the same;
    stop leaves the providers as found."""
    with use_fakes(app) as fakes:
        found = modes(app)
        await start(app)
        for _ in range(2):
            together = without_suspending(get_all())
            assert together["postgres.store"] is fakes.relational
            assert together["redis.cache"] is fakes.cache
            assert together["redis.lock"] is fakes.lock
            assert together["redis.three_tier"] is fakes.three_tier
        await fakes.relational.execute("create table t (id integer primary key)")
        await stop(app)
        assert modes(app) == found


async def test_fakes_entered_after_start_replace_the_started_adapters_while_active(
    app: ApplicationContainer,
) -> None:
    """An override entered after start is handed out synchronously; leaving it brings
    the started adapter back."""
    await start(app)
    real = without_suspending(get_all())
    with use_fakes(app) as fakes:
        assert without_suspending(get_store()) is fakes.relational
        assert without_suspending(get_cache()) is fakes.cache
        assert without_suspending(get_three_tier()) is fakes.three_tier
    assert without_suspending(get_all()) == real


# ------------------------------------------------------------------------- property
def lifecycle_scenario(lazily_used: list[str], starts: int, restarts: int, fakes: bool) -> None:
    """Resolve some providers lazily first (the state start() finds), start (maybe twice),
    check every stored value is handed out as itself, stop; repeat ``restarts`` times."""

    async def scenario() -> None:
        app = make_app()
        with wired(app), ExitStack() as stack:
            if fakes:
                stack.enter_context(use_fakes(app))
            for path in lazily_used:
                await resolve(app, path)
            found = modes(app)
            for _ in range(restarts + 1):
                for _ in range(starts):
                    await start(app)
                handed_out = {path: provider(app, path)() for path in INJECTED}
                for path, value in handed_out.items():
                    assert not pending(value), path
                    assert provider(app, path)() is value, path
                stored: providers.Provider[Any]
                for stored in app.traverse(types=[providers.Resource, providers.Singleton]):
                    assert not pending(stored()), stored
                together = without_suspending(get_all())
                assert {p: handed_out[p] for p in together} == together
                await stop(app)
                assert modes(app) == found

    asyncio.run(scenario())


@hypothesis_settings(max_examples=30)
@given(
    lazily_used=st.lists(st.sampled_from(INJECTED), max_size=4),
    starts=st.integers(1, 2),
    restarts=st.integers(0, 1),
    fakes=st.booleans(),
)
def test_any_lifecycle_hands_out_stored_values_and_restores_providers(
    lazily_used: list[str], starts: int, restarts: int, fakes: bool
) -> None:
    """Whatever was resolved before start, whether start ran twice, after restarts and
    under fakes: while started no stored provider hands out a Future, injection never
    suspends, and stop leaves every provider's async mode exactly as start found it."""
    lifecycle_scenario(lazily_used, starts, restarts, fakes)


async def test_resolve_returns_the_same_value_before_and_after_start(
    app: ApplicationContainer,
) -> None:
    """``lifecycle.resolve`` gives code that runs in both phases one spelling: it awaits a
    lazy provider and passes a started value through, and both are the one adapter."""
    from containers.lifecycle import resolve as resolve_value

    lazy = await resolve_value(app.postgres.store)
    assert not pending(lazy)
    assert lazy is await provider(app, "postgres.store")()
    await start(app)
    started = await resolve_value(app.redis.cache)
    assert started is app.redis.cache()
    assert not pending(started)
    assert await resolve_value(app.postgres.store) is app.postgres.store()


# ------------------------------------------------------------------ overrides and stop
def stand_in(path: str) -> object:
    """An object of the adapter's kind for ``path`` (the health registry and the 3-tier
    cache, built at start, accept them), built without any server."""
    if path == "postgres.store":
        return FakeRelationalStore()
    if path == "redis.cache":
        return FakeCache()
    if path == "redis.lock":
        return FakeDistributedLock()
    return ThreeTierCache(FakeCache())


async def inject_one(path: str) -> tuple[Any, bool]:
    """``(value, suspended)`` of the path's handler: run step by step, awaited through the
    event loop only if it suspends (what dependency-injector does for a pending value)."""
    call = HANDLERS[path]()
    try:
        waiting = call.send(None)
    except StopIteration as done:
        return done.value, False
    call.close()
    del waiting
    return await HANDLERS[path](), True


@pytest.mark.parametrize("path", list(HANDLERS))
async def test_an_override_after_start_is_injected_and_its_reset_brings_back_the_started_adapter(
    app: ApplicationContainer, path: str
) -> None:
    """``provider.override(...)`` while started: the override is injected, synchronously;
    resetting it injects the started adapter again, the same instance as before."""
    await start(app)
    started = without_suspending(HANDLERS[path]())
    replacement = stand_in(path)
    with provider(app, path).override(providers.Object(replacement)):
        assert without_suspending(HANDLERS[path]()) is replacement
        assert without_suspending(get_all())[path] is replacement
    assert without_suspending(HANDLERS[path]()) is started
    provider(app, path).override(providers.Object(replacement))
    assert without_suspending(HANDLERS[path]()) is replacement
    provider(app, path).reset_last_overriding()
    assert without_suspending(HANDLERS[path]()) is started


@pytest.mark.parametrize("path", list(HANDLERS))
async def test_an_override_before_start_is_injected_and_after_its_reset_the_real_adapter(
    app: ApplicationContainer, path: str
) -> None:
    """An override in place at ``start()`` is what is handed out, synchronously. Reset
    while started, the real adapter was never started: the next injection builds it
    (awaited, as dependency-injector does for a resource nobody started), after which
    it is one instance, handed out synchronously, and ``stop()`` closes it."""
    replacement = stand_in(path)
    if path == "redis.cache":  # the 3-tier cache starts only on a RedisCache of its client
        app.redis.three_tier.override(providers.Object(stand_in("redis.three_tier")))
    provider(app, path).override(providers.Object(replacement))
    await start(app)
    assert without_suspending(HANDLERS[path]()) is replacement
    provider(app, path).reset_last_overriding()
    real, _ = await inject_one(path)
    assert real is not replacement
    assert not pending(real)
    assert without_suspending(HANDLERS[path]()) is real
    assert provider(app, path)() is real
    await stop(app)
    if path == "postgres.store":
        assert real.is_closed


async def test_after_stop_injection_builds_new_adapters_lazily_never_the_closed_ones(
    app: ApplicationContainer,
) -> None:
    """After ``stop()`` the providers are lazy again, as before ``start()``: an injection
    awaits the adapter's initialisation (it suspends) and gets a new adapter, never the
    one ``stop()`` closed."""
    await start(app)
    started = without_suspending(get_all())
    await stop(app)
    assert started["postgres.store"].is_closed
    for path, handler in HANDLERS.items():
        value, suspended = await inject_one(path)
        assert suspended, path
        assert value is not started[path], path
        assert not pending(value), path
        assert await handler() is value, path
    assert not (await get_store()).is_closed


async def test_stop_without_start_resets_the_singletons_built_lazily(
    app: ApplicationContainer,
) -> None:
    """Adapters built lazily (no ``start()``) hold the client ``stop()`` closes: after it,
    the next injection builds new ones on a new client, lazily or at ``start()``."""
    lazy = {path: await handler() for path, handler in HANDLERS.items()}
    await stop(app)
    await start(app)
    for path, handler in HANDLERS.items():
        assert without_suspending(handler()) is not lazy[path], path
    assert app.redis.cache().client is app.redis.client()


async def test_a_failed_start_resets_the_singletons_built_before_it(
    app: ApplicationContainer,
) -> None:
    """A ``start()`` that fails closes what was initialised lazily before it; the
    singletons built on that are reset too, so the next ``start()`` does not hand out a
    lock on the closed client."""
    lock = await get_lock()
    app.redis.cache.override(providers.Object(FakeCache()))  # the 3-tier cache refuses it
    with pytest.raises(StartupError):
        await start(app)
    app.redis.cache.reset_last_overriding()
    await start(app)
    assert without_suspending(get_lock()) is not lock


async def test_an_override_used_before_start_then_reset_passes_no_future_on(
    app: ApplicationContainer,
) -> None:
    """A provider first called while overridden by a plain value, then reset: its own
    asynchronous dependencies are awaited, not passed on as Futures (which
    dependency-injector does for a provider it switched to sync mode at that first
    call), before and after ``start()``."""
    replacement = FakeRelationalStore()
    with app.postgres.store.override(providers.Object(replacement)):
        assert await get_store() is replacement
    store = await get_store()
    assert isinstance(store, EnhancedPostgresStore)
    assert isinstance(store.policy, ResiliencePolicy)
    await start(app)
    assert without_suspending(get_store()) is store


# ----------------------------------------------- property: any order of lifecycle steps
#: Overridden in the property: a singleton (the lock) and both resources; ``redis.cache``
#: (a singleton too) is left out because the 3-tier cache refuses to start on anything
#: but the RedisCache of its own client, which is a configuration error, not injection.
OVERRIDABLE = ("postgres.store", "redis.lock", "redis.three_tier")
Step = tuple[str, str]
STEPS = st.one_of(
    st.sampled_from([("start", ""), ("stop", ""), ("inject", "")]),
    st.tuples(st.sampled_from(["override", "reset"]), st.sampled_from(OVERRIDABLE)),
)


def steps_scenario(steps: list[Step]) -> None:
    """Run ``steps`` on one container, injecting every adapter after each step, against
    a model: an active override is what is injected; otherwise one adapter per lifetime
    (from first use or start to stop), never one from an earlier lifetime (they were
    closed); and while started nothing suspends, except the first injection of a real
    adapter whose override was in place at start and reset since (it was never started:
    it is built then, awaited)."""

    async def scenario() -> None:
        app = make_app()
        started = False
        overrides: dict[str, list[object]] = {path: [] for path in HANDLERS}
        overridden_at_start: set[str] = set()
        current: dict[str, Any] = {}
        earlier: list[Any] = []  # adapters of closed lifetimes (kept: no id reuse)

        def end_lifetime() -> None:
            earlier.extend(current.values())
            current.clear()

        with wired(app):
            try:
                for action, path in steps:
                    if action == "start":
                        await start(app)
                        if not started:
                            overridden_at_start = {p for p, o in overrides.items() if o}
                        started = True
                    elif action == "stop":
                        await stop(app)
                        started = False
                        end_lifetime()
                    elif action == "override":
                        overrides[path].append(stand_in(path))
                        provider(app, path).override(providers.Object(overrides[path][-1]))
                    elif action == "reset" and overrides[path]:
                        overrides[path].pop()
                        provider(app, path).reset_last_overriding()
                    for checked in HANDLERS:
                        value, suspended = await inject_one(checked)
                        assert not pending(value), checked
                        if started and not (
                            checked in overridden_at_start
                            and not current.get(checked)
                            and not overrides[checked]
                        ):
                            assert not suspended, (checked, steps)
                        if overrides[checked]:
                            assert value is overrides[checked][-1], (checked, steps)
                        elif checked in current:
                            assert value is current[checked], (checked, steps)
                        else:
                            assert all(value is not old for old in earlier), (checked, steps)
                            current[checked] = value
            finally:
                await stop(app)

    asyncio.run(scenario())


@hypothesis_settings(max_examples=100)
@given(steps=st.lists(STEPS, max_size=12))
def test_any_order_of_start_override_reset_stop_injects_the_model_instance(
    steps: list[Step],
) -> None:
    """Whatever the order of start, stop, overrides and their resets: the injected value
    is the active override or the one adapter of the current lifetime, never a closed
    one, and a started container injects without suspending."""
    steps_scenario(steps)

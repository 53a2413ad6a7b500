"""``use_fakes`` around the lifecycle: before or after ``start()``, nested, in any order.

No server is needed: nothing connects until first use, and under the fakes nothing does.
The property test drives random sequences of ``start``/``stop``/entering and leaving
``use_fakes``/resolving adapters and checks that afterwards every provider is as found
(async mode included) and the container starts and stops cleanly on its real adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import containers, providers
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import resolve, start, stop
from containers.testing import Fakes, FakesWarning, use_fakes
from infra.cache import RedisCache, RedisDistributedLock
from infra.observability import HealthRegistry, MetricsCollector
from infra.resilience import ResiliencePolicy, RetryConfig
from infra.storage import EnhancedPostgresStore
from infra.testing.fakes import FakeCache, FakeDistributedLock, FakeRelationalStore

ADAPTERS = ("postgres.store", "redis.cache", "redis.lock", "redis.three_tier")
RESOLVABLE = (*ADAPTERS, "health", "observability.metrics", "postgres.policy", "redis.policy")


class Repo:
    """An application's own object built on the store."""

    def __init__(self, db: object) -> None:
        self.db = db


class AppWithRepo(ApplicationContainer):
    """An application container with a singleton of its own on ``postgres.store``."""

    repo = providers.Singleton(Repo, db=ApplicationContainer.postgres.store)


def make_app(kind: type[ApplicationContainer] = ApplicationContainer) -> ApplicationContainer:
    """A container whose settings need no server and no environment."""
    app = kind()
    app.core.settings.override(providers.Object(Settings(log_level="WARNING")))
    app.observability.tracing_global.override(providers.Object(False))
    return app


def provider_at(app: containers.Container, path: str) -> providers.Provider[Any]:
    """The provider at a dotted ``path``."""
    node: Any = app
    for name in path.split("."):
        node = getattr(node, name)
    assert isinstance(node, providers.Provider)
    return node


def modes(app: containers.Container) -> dict[providers.Provider[Any], tuple[bool, bool]]:
    """Every provider's async mode (enabled?, disabled?)."""
    graph: list[providers.Provider[Any]] = list(app.traverse())
    return {p: (p.is_async_mode_enabled(), p.is_async_mode_disabled()) for p in graph}


def same(value: object, expected: object) -> bool:
    """Identity, for values whose static types differ (a fake where a real adapter is
    declared)."""
    return value is expected


def initialized(resource: providers.Resource[Any]) -> bool:
    """Whether ``resource`` is initialised now."""
    return bool(resource.initialized)


def repo(app: ApplicationContainer) -> Repo:
    """The application's own singleton of :class:`AppWithRepo`."""
    value = provider_at(app, "repo")()
    assert isinstance(value, Repo)
    return value


def repo_in_a_plain_block(app: ApplicationContainer) -> Repo:
    """The repo, fetched inside a ``use_fakes`` block."""
    with use_fakes(app):
        return repo(app)


async def resolve_in_a_plain_block(app: ApplicationContainer, provider: Any) -> None:
    """Resolve ``provider`` inside a plain ``with use_fakes`` block."""
    with use_fakes(app):
        await resolve(provider)


@pytest.fixture
async def app() -> AsyncIterator[ApplicationContainer]:
    """A fresh container, stopped after the test."""
    container = make_app()
    yield container
    await stop(container)


async def test_a_store_resolved_under_fakes_does_not_break_a_later_start(
    app: ApplicationContainer,
) -> None:
    """The adapter resolved inside the block (pre-start) leaves no pinned mode behind:
    start and stop afterwards work on the real adapters."""
    found = modes(app)
    with use_fakes(app) as fakes:
        store = await resolve(app.postgres.store)
        cache = await resolve(app.redis.cache)
        assert same(store, fakes.relational)
        assert same(cache, fakes.cache)
    assert modes(app) == found
    await start(app)
    assert isinstance(app.postgres.store(), EnhancedPostgresStore)
    assert isinstance(app.redis.cache(), RedisCache)
    assert isinstance(app.redis.lock(), RedisDistributedLock)
    await stop(app)
    assert modes(app) == found


async def test_entered_after_start_the_health_registry_checks_the_fakes_then_the_real(
    app: ApplicationContainer,
) -> None:
    """Entered after start: /ready reads the fakes for the block (a scripted failure
    shows), and the real adapters again after it."""
    await start(app)
    registry = app.observability.health()
    assert isinstance(registry, HealthRegistry)
    with use_fakes(app) as fakes:
        fakes.cache.fail_next(ConnectionError("down"), operation="ping")
        report = await registry.readiness()
        by_name = {outcome.name: outcome for outcome in report.checks}
        assert by_name["postgres"].status == "healthy"
        assert by_name["redis"].status == "unhealthy"
    report = await registry.readiness()
    assert {outcome.name for outcome in report.checks} == {"postgres", "redis", "llm"}
    assert report.ok is False  # the real servers are not there: the real checks ran


async def test_a_policy_override_reaches_the_fake(app: ApplicationContainer) -> None:
    """The fake takes its policy from the container provider: overridden before or
    inside the block, the test's policy is the one the fake runs under."""
    no_retry = ResiliencePolicy.instant("redis", retry=RetryConfig(max_attempts=1))
    app.redis.policy.override(providers.Object(no_retry))
    with use_fakes(app):
        await start(app)
        cache: object = app.redis.cache()
        assert isinstance(cache, FakeCache)
        assert cache.policy is no_retry
        await stop(app)
    app.redis.policy.reset_last_overriding()
    with use_fakes(app) as fakes:
        app.postgres.policy.override(providers.Object(no_retry))
        await start(app)
        assert fakes.relational.policy is no_retry
        await stop(app)
        app.postgres.policy.reset_last_overriding()


async def test_without_overrides_the_fakes_run_the_settings_policy_on_virtual_time(
    app: ApplicationContainer,
) -> None:
    """The policy from settings (3 attempts, 1 s backoff), on the fakes' clock: two
    failures are retried without sleeping, and the clock shows the backoff."""
    with use_fakes(app) as fakes:
        await start(app)
        fakes.cache.fail_next(ConnectionError("reset"), times=2)
        await app.redis.cache().set("k", 1)
        assert fakes.cache.calls == ["set", "set", "set"]
        assert fakes.cache.policy.clock.now() >= 1.0  # virtual backoff, not slept
        await stop(app)


async def test_the_real_redis_client_is_replaced(app: ApplicationContainer) -> None:
    """Under the fakes ``redis.client`` is no client: a use names the reason."""
    with use_fakes(app):
        await start(app)
        client = app.redis.client()
        with pytest.raises(AttributeError, match="no Redis server"):
            client.get("k")
        await stop(app)


async def test_nested_blocks_hand_out_their_own_fakes_and_restore_the_outer_ones(
    app: ApplicationContainer,
) -> None:
    """Re-entrant: an inner block installs its own fakes; leaving it brings the outer
    ones back; leaving the outer one leaves the container as found."""
    found = modes(app)
    with use_fakes(app) as outer:
        await start(app)
        assert same(app.postgres.store(), outer.relational)
        with use_fakes(app) as inner:
            assert same(app.postgres.store(), inner.relational)
            assert inner.relational is not outer.relational
            assert same(app.redis.cache(), inner.cache)
        assert same(app.postgres.store(), outer.relational)
        await stop(app)
    assert modes(app) == found


async def test_the_same_block_cannot_be_entered_twice(app: ApplicationContainer) -> None:
    """One ``use_fakes(...)`` object is one block."""
    scope = use_fakes(app)
    with scope, pytest.raises(RuntimeError, match="already active"), scope:
        pass


async def test_a_singleton_started_on_the_real_store_is_warned_about() -> None:
    """An app singleton started before use_fakes holds the real store: the override
    cannot reach it, and use_fakes says so, naming it."""
    app = make_app(AppWithRepo)
    try:
        await start(app)
        with pytest.warns(FakesWarning, match="repo"):
            held = repo_in_a_plain_block(app)
        assert isinstance(held.db, EnhancedPostgresStore)
    finally:
        await stop(app)


@pytest.mark.parametrize(
    ("started_under_fakes", "held"),
    [(False, "on the real backends"), (True, "on the fakes of an outer use_fakes block")],
)
async def test_the_warning_says_what_a_started_singleton_holds(
    started_under_fakes: bool, held: str
) -> None:
    """Started inside an outer block, the singleton holds the outer fakes, not the real
    store: the warning says which (it said "the real backends" in both cases)."""
    app = make_app(AppWithRepo)
    with contextlib.ExitStack() as outer:
        if started_under_fakes:
            outer.enter_context(use_fakes(app))
        try:
            await start(app)
            with pytest.warns(FakesWarning, match="repo") as caught:
                held_by_repo = repo_in_a_plain_block(app)
            assert held in str(caught[0].message)
            expected = FakeRelationalStore if started_under_fakes else EnhancedPostgresStore
            assert isinstance(held_by_repo.db, expected)
        finally:
            await stop(app)


async def test_a_singleton_built_on_the_fakes_is_reset_on_exit() -> None:
    """Built inside the block, an app singleton holds the fake; after the block it is
    built again on the real store."""
    app = make_app(AppWithRepo)
    try:
        with use_fakes(app) as fakes:
            await start(app)
            assert same(repo(app).db, fakes.relational)
            await stop(app)
        await start(app)
        assert isinstance(repo(app).db, EnhancedPostgresStore)
    finally:
        await stop(app)


async def test_a_resource_started_lazily_on_the_fakes_is_closed_by_async_with(
    app: ApplicationContainer,
) -> None:
    """``async with`` shuts down what the block started lazily on the fakes; a plain
    ``with`` cannot await and warns instead."""
    async with use_fakes(app):
        await resolve(app.health)
        assert initialized(app.health)
    assert not initialized(app.health)
    with pytest.warns(FakesWarning, match="health"):
        await resolve_in_a_plain_block(app, app.health)
    await stop(app)  # closes it
    assert not initialized(app.health)


async def test_metrics_under_fakes_go_to_the_applications_collector(
    app: ApplicationContainer,
) -> None:
    """Calls, retries and 3-tier cache metrics are recorded in the application's own
    collector (the cache used to be built before the collector existed)."""
    async with use_fakes(app) as fakes:
        await start(app)
        try:
            collector = app.observability.metrics()
            assert isinstance(collector, MetricsCollector)
            fakes.relational.fail_next(ConnectionResetError())
            assert await app.postgres.store().fetchval("select 1") == 1
            assert await fakes.three_tier.get("k", _load) == "v"
            assert collector.get_counter("retry_attempts_total", policy="postgres") == 1
            assert collector.get_counter("backend_calls_total", component="postgres") == 1
            assert collector.get_counter("backend_calls_total", component="redis") >= 1
            assert collector.get_counter("cache_misses_total", tier="l2") == 1
            assert collector.get_counter("cache_hits_total", tier="l3") == 1
        finally:
            await stop(app)


async def _load() -> str:
    return "v"


# ---------------------------------------------------------------------- property
class LifecycleWithFakes(RuleBasedStateMachine):
    """Any sequence of start, stop, use_fakes in and out, and lazy use."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.app = make_app(AppWithRepo)
        self.found = modes(self.app)
        #: Open blocks: the scope, its fakes, the modes and lifecycle epoch at entry.
        self.blocks: list[tuple[use_fakes, Fakes, dict[Any, tuple[bool, bool]], int]] = []
        self.epoch = 0  # bumped by every start/stop
        self.started = False
        self.started_in_block: int | None = None  # depth of the block start() ran in
        self.must_stop = False
        self.caught: list[warnings.WarningMessage] = []

    def run(self, step: Any) -> Any:
        """Run the coroutine ``step`` on this machine's loop, recording warnings."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = self.loop.run_until_complete(step)
        self.caught.extend(caught)
        return result

    @initialize()
    def begin(self) -> None:
        """Nothing started, no fakes."""

    @precondition(lambda self: not self.started and not self.must_stop)
    @rule()
    def start(self) -> None:
        """lifecycle.start()."""
        self.run(start(self.app))
        self.epoch += 1
        self.started = True
        self.started_in_block = len(self.blocks) if self.blocks else None

    @precondition(lambda self: self.started or self.must_stop)
    @rule()
    def stop(self) -> None:
        """lifecycle.stop()."""
        self.run(stop(self.app))
        self.epoch += 1
        self.started = False
        self.started_in_block = None
        self.must_stop = False

    @precondition(lambda self: len(self.blocks) < 3 and not self.must_stop)
    @rule()
    def enter(self) -> None:
        """Enter a new use_fakes block."""
        scope = use_fakes(self.app)
        before = modes(self.app)

        async def entering() -> Fakes:
            return await scope.__aenter__()

        self.blocks.append((scope, self.run(entering()), before, self.epoch))

    @precondition(lambda self: bool(self.blocks) and not self.must_stop)
    @rule()
    def leave(self) -> None:
        """Leave the innermost block (``async with`` exit)."""
        scope, _, before, epoch = self.blocks.pop()
        self.run(scope.__aexit__(None, None, None))
        if epoch == self.epoch:  # no start/stop inside: exactly as found
            after = modes(self.app)
            assert {p: after[p] for p in before} == before
        if self.started_in_block is not None and self.started_in_block > len(self.blocks):
            self.must_stop = True  # warned: stop() is the one way on

    @precondition(lambda self: not self.must_stop)
    @rule(path=st.sampled_from(RESOLVABLE))
    def use(self, path: str) -> None:
        """Resolve a provider (lazily before start, as a plain value after)."""
        value = self.run(resolve(provider_at(self.app, path)))
        assert not inspect.isawaitable(value)
        if self.started:
            assert provider_at(self.app, path)() is value
        if self.blocks and path in ADAPTERS[:3]:
            fakes = self.blocks[-1][1]
            assert (
                value
                is {
                    "postgres.store": fakes.relational,
                    "redis.cache": fakes.cache,
                    "redis.lock": fakes.lock,
                }[path]
            )

    @invariant()
    def only_fakes_warnings(self) -> None:
        """use_fakes may warn (FakesWarning); nothing else may."""
        others = [w for w in self.caught if not issubclass(w.category, FakesWarning)]
        assert not others, [str(w.message) for w in others]

    def teardown(self) -> None:
        """Leave every block, stop: providers as found; then a clean real start/stop."""
        try:
            while self.blocks:
                scope = self.blocks.pop()[0]
                self.run(scope.__aexit__(None, None, None))
            self.run(stop(self.app))
            stopped = modes(self.app)
            self.run(start(self.app))
            assert isinstance(self.app.postgres.store(), EnhancedPostgresStore)
            assert isinstance(self.app.redis.cache(), RedisCache)
            assert isinstance(self.app.redis.lock(), RedisDistributedLock)
            assert isinstance(repo(self.app).db, EnhancedPostgresStore)
            for path in ADAPTERS[:3]:
                adapter = provider_at(self.app, path)()
                assert not isinstance(
                    adapter, FakeRelationalStore | FakeCache | FakeDistributedLock
                )
            self.run(stop(self.app))
            assert modes(self.app) == stopped
            assert not any(r.initialized for r in self.app.traverse(types=[providers.Resource]))
            self.only_fakes_warnings()
        finally:
            self.loop.close()


def test_any_sequence_leaves_a_container_that_starts_and_stops_cleanly() -> None:
    """Property: after any sequence of start/stop/use_fakes/use, leaving the blocks and
    stopping restores every provider, and a real start and stop run cleanly."""
    run_state_machine_as_test(
        LifecycleWithFakes,
        settings=hypothesis_settings(max_examples=40, stateful_step_count=12),
    )


DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


async def test_the_documented_fault_scripting_example_runs() -> None:
    """docs/testing.md's fault-scripting example, executed as written."""
    doc = DOC.read_text()
    section = doc.split("### Scripting faults", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], "docs/testing.md", "exec"), namespace)  # noqa: S102 - our doc
    tests = [v for k, v in namespace.items() if k.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        await test()


async def test_an_override_the_test_made_inside_the_block_survives_it(
    app: ApplicationContainer,
) -> None:
    """Leaving the block removes only use_fakes' own overrides."""
    mine = providers.Object("the test's cache")
    with use_fakes(app):
        app.redis.cache.override(mine)
    assert app.redis.cache.last_overriding is mine
    assert app.redis.cache.overridden == (mine,)
    app.redis.cache.reset_last_overriding()

"""``containers.lifecycle``: ordered start with rollback, reverse shutdown, validation.

Containers here are small dependency-injector containers of recording resources (no
server): each resource appends ``("init", name)`` once started and ``("close", name)``
when its cleanup runs, so order and exactly-once are observable. The same semantics
against the real servers (open connections counted) are in
``tests/integration/test_lifecycle_backends.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import threading
import types
from collections.abc import AsyncIterator, Callable
from typing import Any

import hypothesis
import pytest
from dependency_injector import containers, providers
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import resolve, running, start, stop, validate
from infra.exceptions import ConfigurationError, StartupError

Events = list[tuple[str, str]]


class BoomError(RuntimeError):
    """A resource's own failure, to be found as the StartupError's cause."""


def recording(
    events: Events, name: str, *, fail_init: bool = False, fail_close: bool = False
) -> Callable[..., AsyncIterator[str]]:
    """An async-generator resource named ``name`` (its value is its name)."""

    async def resource(*_dependencies: Any) -> AsyncIterator[str]:
        await asyncio.sleep(0)
        if fail_init:
            raise BoomError(f"{name} cannot start")
        events.append(("init", name))
        try:
            yield name
        finally:
            events.append(("close", name))
            if fail_close:
                raise BoomError(f"{name} cannot stop")

    return resource


class Repo:
    """What a ``Factory`` builds on a resource (the flusher's dependency)."""

    def __init__(self, db: str) -> None:
        self.db = db


def closes(events: Events) -> list[str]:
    return [name for kind, name in events if kind == "close"]


def inits(events: Events) -> list[str]:
    return [name for kind, name in events if kind == "init"]


def initialized(resource: providers.Resource[Any]) -> bool:
    """Read afresh: mypy would keep ``resource.initialized`` narrowed across awaits."""
    return resource.initialized


# ------------------------------------------------------------------------- order
async def test_shutdown_order_follows_dependencies_through_a_factory() -> None:
    """A flusher built on ``Factory(Repo, db=db)`` is shut down before ``db``, and
    starts after it; dependency-injector alone closes them in the same round."""
    events: Events = []
    app = containers.DynamicContainer()
    app.flusher = providers.Resource(
        recording(events, "flusher"), providers.Factory(Repo, db=providers.Object(None))
    )
    app.db = providers.Resource(recording(events, "db"))
    app.repo = providers.Factory(Repo, db=app.db)
    app.flusher.set_args(app.repo)  # declared before db: traversal order is not the answer
    await start(app)
    assert inits(events) == ["db", "flusher"]
    await stop(app)
    assert closes(events) == ["flusher", "db"]


async def test_order_through_every_provider_kind_and_nested_containers() -> None:
    """Singleton, Callable, List, an overridden Dependency and a nested container all
    carry the dependency; the observability container's resources start first and stop
    last even though nothing depends on them."""
    events: Events = []
    app = ApplicationContainer()
    app.core.settings.override(providers.Object(Settings(log_level="WARNING")))
    app.observability.tracing_global.override(providers.Object(False))
    inner = containers.DynamicContainer()
    inner.base = providers.Resource(recording(events, "base"))
    inner.needed = providers.Dependency()
    # Providers added to the instance at run time: mypy knows only the declared ones.
    extra = providers.Container(containers.DynamicContainer)
    app.extra = extra
    extra.container.base = inner.base
    chain = providers.Callable(
        tuple, providers.List(providers.Singleton(Repo, db=extra.container.base))
    )
    top: providers.Resource[str] = providers.Resource(recording(events, "top"), chain)
    needs_top: providers.Dependency[str] = providers.Dependency()
    app.top, app.needs_top = top, needs_top
    needs_top.override(top)
    app.last = providers.Resource(recording(events, "last"), needs_top)
    telemetry_at_close: dict[str, bool] = {}

    async def store() -> AsyncIterator[str]:
        yield "store"
        for name in ("metrics", "logging", "tracing"):
            telemetry_at_close[name] = getattr(app.observability, name).initialized

    app.postgres.store.override(providers.Resource(store))
    backends = (app.redis.client, app.redis.cache, app.redis.lock)
    for provider in (*backends, app.redis.three_tier, app.health):
        provider.override(providers.Object(None))
    await start(app)
    assert inits(events) == ["base", "top", "last"]
    assert app.observability.metrics.initialized
    await stop(app)
    assert closes(events) == ["last", "top", "base"]
    assert telemetry_at_close == {"metrics": True, "logging": True, "tracing": True}
    assert not initialized(app.observability.metrics)
    app.postgres.store.reset_override()
    for provider in (*backends, app.redis.three_tier, app.health):
        provider.reset_override()


# ----------------------------------------------------------------------- rollback
async def test_a_failed_start_closes_what_started_in_reverse_and_names_the_resource() -> None:
    """db and cache start, the flusher (on both, through a factory) fails: cache then db
    are closed, and one StartupError names the flusher, its path and the cause."""
    events: Events = []
    app = containers.DynamicContainer()
    app.db = providers.Resource(recording(events, "db"))
    app.cache = providers.Resource(recording(events, "cache"), app.db)
    app.repo = providers.Factory(Repo, db=app.cache)
    app.flusher = providers.Resource(recording(events, "flusher", fail_init=True), app.repo)
    app.api = providers.Resource(recording(events, "api"), app.flusher)
    with pytest.raises(StartupError) as raised:
        await start(app)
    error = raised.value
    assert isinstance(error, ConfigurationError)
    assert error.details["resource"] == "flusher"
    assert error.details["dependency_path"] == "api -> flusher"
    assert error.details["rolled_back"] == ["db", "cache"]
    assert isinstance(error.__cause__, BoomError)
    assert "flusher failed to start: BoomError: flusher cannot start" in str(error)
    assert inits(events) == ["db", "cache"]
    assert closes(events) == ["cache", "db"]
    assert not any(p.initialized for p in app.traverse(types=[providers.Resource]))
    await stop(app)  # safe after a failed start: nothing left, nothing closed twice
    assert closes(events) == ["cache", "db"]


async def test_a_resource_that_hangs_is_stopped_by_the_timeout_and_rolled_back() -> None:
    """Each resource starts within ``timeout``; a hanging one is cancelled, the started
    ones closed, and the error says which and that it timed out."""
    events: Events = []

    async def hangs(_db: str) -> AsyncIterator[str]:
        await asyncio.Event().wait()
        yield "never"

    app = containers.DynamicContainer()
    app.db = providers.Resource(recording(events, "db"))
    app.slow = providers.Resource(hangs, app.db)
    with pytest.raises(StartupError) as raised:
        await start(app, timeout=0.05)
    assert raised.value.details["resource"] == "slow"
    assert raised.value.details["timeout"] == 0.05
    assert isinstance(raised.value.__cause__, TimeoutError)
    assert "slow did not start within 0.05s" in str(raised.value)
    assert closes(events) == ["db"]
    assert not app.slow.initialized


async def test_a_failing_singleton_built_on_started_resources_rolls_back_too() -> None:
    """The singletons start() builds on the resources are part of the start."""
    events: Events = []

    def broken(db: str) -> Repo:
        raise BoomError(f"cannot build on {db}")

    app = containers.DynamicContainer()
    app.db = providers.Resource(recording(events, "db"))
    app.repo = providers.Singleton(broken, app.db)
    with pytest.raises(StartupError) as raised:
        await start(app)
    assert raised.value.details["resource"] == "repo"
    assert isinstance(raised.value.__cause__, BoomError)
    assert closes(events) == ["db"]


async def test_resources_used_lazily_before_start_are_closed_by_the_rollback() -> None:
    """A resource initialised on first use before start() is closed on failure too."""
    events: Events = []
    app = containers.DynamicContainer()
    app.early = providers.Resource(recording(events, "early"))
    app.bad = providers.Resource(recording(events, "bad", fail_init=True), app.early)
    assert await app.early() == "early"
    with pytest.raises(StartupError):
        await start(app)
    assert closes(events) == ["early"]


async def test_cancelling_a_start_rolls_back_and_propagates_the_cancellation() -> None:
    """Ctrl-C during startup: what started is closed, CancelledError propagates."""
    events: Events = []
    entered = asyncio.Event()

    async def waits(_db: str) -> AsyncIterator[str]:
        entered.set()
        await asyncio.Event().wait()
        yield "never"

    app = containers.DynamicContainer()
    app.db = providers.Resource(recording(events, "db"))
    app.slow = providers.Resource(waits, app.db)
    task = asyncio.ensure_future(start(app))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closes(events) == ["db"]


# ---------------------------------------------------------------------- shutdown
async def test_a_failing_shutdown_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two cleanups raise: every resource is still closed, both failures are logged and
    raised together as one ExceptionGroup, and a second stop() does nothing."""
    events: Events = []
    app = containers.DynamicContainer()
    app.pool = providers.Resource(recording(events, "pool"))
    app.a = providers.Resource(recording(events, "a", fail_close=True), app.pool)
    app.b = providers.Resource(recording(events, "b", fail_close=True), app.pool)
    await start(app)
    with (
        caplog.at_level(logging.WARNING, "containers.lifecycle"),
        pytest.raises(ExceptionGroup) as raised,
    ):
        await stop(app)
    assert sorted(str(e) for e in raised.value.exceptions) == ["a cannot stop", "b cannot stop"]
    assert all(isinstance(e, BoomError) for e in raised.value.exceptions)
    assert sorted(closes(events)[:2]) == ["a", "b"]
    assert closes(events)[2:] == ["pool"]
    assert {r.getMessage() for r in caplog.records} == {
        "shutting down a failed",
        "shutting down b failed",
    }
    await stop(app)
    assert len(closes(events)) == 3


async def test_running_stops_on_exit_even_when_the_block_raises() -> None:
    events: Events = []
    app = containers.DynamicContainer()
    app.db = providers.Resource(recording(events, "db"))
    seen: list[object] = []

    async def handler() -> None:
        async with running(app) as started:
            seen.extend((started, app.db()))  # handed out synchronously while running
            raise BoomError("handler")

    with pytest.raises(BoomError):
        await handler()
    assert seen == [app, "db"]
    assert closes(events) == ["db"]
    assert not app.db.initialized
    assert not app.db.is_async_mode_disabled()  # lazy (awaitable) again after stop


async def test_start_twice_is_a_no_op_and_timeouts_are_checked() -> None:
    events: Events = []
    app = containers.DynamicContainer()
    app.db = providers.Resource(recording(events, "db"))
    await start(app)
    await start(app)
    assert inits(events) == ["db"]
    await stop(app)
    for bad in (0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="timeout must be a finite number of seconds > 0"):
            await start(app, timeout=bad)


# -------------------------------------------------------------------- validation
async def test_a_cycle_is_reported_with_its_provider_path() -> None:
    """A cycle through a factory and a singleton names the providers, before anything
    starts (dependency-injector alone raises a bare RecursionError on first use)."""
    events: Events = []
    app = containers.DynamicContainer()
    app.db = providers.Resource(recording(events, "db"))
    app.service = providers.Singleton(Repo)
    app.repo = providers.Factory(Repo, db=app.service)
    app.service.add_kwargs(db=app.repo)
    app.worker = providers.Resource(recording(events, "worker"), app.db, app.service)
    with pytest.raises(StartupError) as raised:
        await start(app)
    cycle = raised.value.details["cycle"]
    assert cycle in {"service -> repo -> service", "repo -> service -> repo"}
    assert f"dependency cycle among the providers: {cycle}" in str(raised.value)
    assert events == []
    with pytest.raises(StartupError):
        validate(app)


TYPO_MODULE = """
from typing import Any
from dependency_injector.wiring import Closing, Provide, inject

@inject
async def handler(store: Any = Provide["postgres.stor"]) -> Any:
    return store

@inject
async def fine(cache: Any = Provide["redis.cache"]) -> Any:
    return cache

class Views:
    @inject
    def get(self, lock: Any = Closing[Provide["redis.lokc"]]) -> Any:
        return lock
"""


def typo_module() -> types.ModuleType:
    module = types.ModuleType("lifecycle_typo_handlers")
    sys.modules[module.__name__] = module
    exec(compile(TYPO_MODULE, module.__name__, "exec"), module.__dict__)  # noqa: S102
    return module


async def test_a_provide_typo_fails_at_start_with_the_name_and_suggestions() -> None:
    """``Provide["postgres.stor"]`` in a wired module: start() refuses, naming the
    marker, where it is and the closest provider names; nothing starts."""
    module = typo_module()
    app = ApplicationContainer()
    app.core.settings.override(providers.Object(Settings(log_level="WARNING")))
    app.wire(modules=[module])
    try:
        with pytest.raises(StartupError) as raised:
            await start(app)
        message = str(raised.value)
        assert (
            "lifecycle_typo_handlers.handler(store): Provide['postgres.stor'] "
            "(did you mean postgres.store" in message
        )
        assert "lifecycle_typo_handlers.Views.get(lock): Provide['redis.lokc']" in message
        assert "redis.lock" in message
        assert "redis.cache" not in message.split("did you mean", maxsplit=1)[0]
        assert len(raised.value.details["unresolved"]) == 2
        assert not app.observability.metrics.initialized
    finally:
        app.unwire()
        del sys.modules[module.__name__]


async def test_undefined_dependencies_fail_validation_by_name() -> None:
    app = containers.DynamicContainer()
    app.settings = providers.Dependency(instance_of=Settings)
    with pytest.raises(StartupError, match="settings"):
        validate(app)


# -------------------------------------------------------------------------- ping
class Adapter:
    def __init__(self, healthy: bool | None) -> None:
        self.healthy = healthy

    async def health_check(self) -> tuple[bool, dict[str, str]]:
        if self.healthy is None:
            await asyncio.Event().wait()
        return bool(self.healthy), {"status": "healthy" if self.healthy else "unhealthy"}


async def test_ping_reports_every_failing_backend_at_once_and_rolls_back() -> None:
    events: Events = []

    async def adapter(name: str, healthy: bool | None) -> AsyncIterator[Adapter]:
        events.append(("init", name))
        yield Adapter(healthy)
        events.append(("close", name))

    app = containers.DynamicContainer()
    app.ok = providers.Resource(adapter, "ok", True)
    app.down = providers.Resource(adapter, "down", False)
    app.silent = providers.Resource(adapter, "silent", None)
    with pytest.raises(StartupError) as raised:
        await start(app, ping=True, ping_timeout=0.05)
    assert raised.value.details["unhealthy"] == {
        "down": "{'status': 'unhealthy'}",
        "silent": "no answer within 0.05s",
    }
    assert sorted(closes(events)) == ["down", "ok", "silent"]
    app.down.override(providers.Resource(adapter, "down", True))
    app.silent.override(providers.Resource(adapter, "silent", True))
    async with running(app, ping=True):
        assert (await resolve(app.ok)).healthy


# ---------------------------------------------------------------------- property


@st.composite
def resource_graphs(draw: st.DrawFn) -> tuple[list[list[tuple[int, str]]], set[int], set[int]]:
    size = draw(st.integers(1, 7))
    edges = [
        draw(
            st.lists(
                st.tuples(st.integers(0, max(i - 1, 0)), st.sampled_from(sorted(VIA))), max_size=3
            )
        )
        if i
        else []
        for i in range(size)
    ]
    fail_init = draw(st.sets(st.integers(0, size - 1), max_size=2))
    fail_close = draw(st.sets(st.integers(0, size - 1), max_size=3))
    return edges, fail_init, fail_close


def _dependency(target: Any) -> Any:
    via: providers.Dependency[Any] = providers.Dependency()
    via.override(target)
    return via


#: How resource ``i`` reaches resource ``j``: one provider kind each.
VIA: dict[str, Callable[[Any], Any]] = {
    "direct": lambda target: target,
    "factory": lambda target: providers.Factory(Repo, db=target),
    "singleton": lambda target: providers.Singleton(Repo, db=target),
    "callable": lambda target: providers.Callable(str, target),
    "list": providers.List,
    "dependency": _dependency,
    "nested": lambda target: providers.Factory(Repo, db=target),  # declared in ``nested``
}


def build(
    edges: list[list[tuple[int, str]]], fail_init: set[int], fail_close: set[int], events: Events
) -> containers.DynamicContainer:
    """Resource ``r{i}`` depends on ``r{j}`` for each ``(j, kind)`` of ``edges[i]``,
    reached through ``kind``; declared in reverse so traversal order is no help."""
    app = containers.DynamicContainer()
    app.nested = providers.Container(containers.DynamicContainer)
    made: dict[int, Any] = {}
    for i in range(len(edges)):
        name = f"r{i}"
        made[i] = providers.Resource(
            recording(events, name, fail_init=i in fail_init, fail_close=i in fail_close)
        )
    for i in reversed(range(len(edges))):
        if i % 2:
            setattr(app.nested.container, f"r{i}", made[i])
        else:
            setattr(app, f"r{i}", made[i])
    for i, dependencies in enumerate(edges):
        for j, kind in dependencies:
            if j >= i:
                continue
            via = VIA[kind](made[j])
            if kind == "nested":
                setattr(app.nested.container, f"via{i}_{j}", via)
            made[i].add_args(via)
    return app


def reaches(edges: list[list[tuple[int, str]]], i: int) -> set[int]:
    seen: set[int] = set()
    stack = [j for j, _ in edges[i] if j < i]
    while stack:
        j = stack.pop()
        if j not in seen:
            seen.add(j)
            stack.extend(k for k, _ in edges[j] if k < j)
    return seen


@hypothesis_settings(max_examples=60)
@given(graph=resource_graphs())
def test_any_graph_closes_every_started_resource_once_in_reverse_dependency_order(
    graph: tuple[list[list[tuple[int, str]]], set[int], set[int]],
) -> None:
    """Random resource graphs (edges through every provider kind), random failing inits
    and cleanups: every resource that started is closed exactly once, each before what
    it depends on, no resource starts before its dependencies; a failed start names a
    failing resource whose dependencies all started; failed cleanups come back grouped."""
    edges, fail_init, fail_close = graph
    events: Events = []
    app = build(edges, fail_init, fail_close, events)

    outcome: dict[str, BaseException] = {}

    async def scenario() -> None:
        try:
            await start(app)
        except StartupError as error:
            outcome["start"] = error
            return
        try:
            await stop(app)
        except ExceptionGroup as group:
            outcome["stop"] = group
        await stop(app)  # idempotent

    asyncio.run(scenario())
    asyncio.run(stop(app))  # after a failed start too: nothing left to close
    if "start" in outcome:
        error = outcome["start"]
        assert isinstance(error, StartupError)
        failed = int(error.details["resource"].rsplit("r", 1)[1])
        assert failed in fail_init
        assert reaches(edges, failed) <= {int(n[1:]) for n in inits(events)}
        assert isinstance(error.__cause__, BoomError)
    else:
        assert not fail_init
        group = outcome.get("stop")
        failures = [] if group is None else group.exceptions  # type: ignore[attr-defined]
        assert sorted(str(e) for e in failures) == sorted(f"r{i} cannot stop" for i in fail_close)
    started = [int(n[1:]) for n in inits(events)]
    closed = [int(n[1:]) for n in closes(events)]
    assert sorted(closed) == sorted(started)  # every started one, exactly once
    for i in started:
        assert reaches(edges, i) <= set(started[: started.index(i)])
        for j in reaches(edges, i):
            assert closed.index(i) < closed.index(j), (i, j, closed)
    assert not any(p.initialized for p in app.traverse(types=[providers.Resource]))


@st.composite
def cyclic_graphs(draw: st.DrawFn) -> tuple[list[list[tuple[int, str]]], int, int]:
    """A random graph as above plus one edge back from ``low`` to ``high`` (``low`` <
    ``high``, ``high`` reaching ``low``): exactly the graphs that contain a cycle."""
    edges, _, _ = draw(resource_graphs())
    candidates = [(i, j) for i in range(len(edges)) for j in reaches(edges, i)]
    high, low = draw(st.sampled_from(candidates)) if candidates else (0, 0)
    return edges, low, high


@hypothesis_settings(max_examples=60)
@given(graph=cyclic_graphs(), kind=st.sampled_from(["factory", "singleton", "callable"]))
def test_any_cycle_is_named_by_a_path_of_real_dependencies_before_anything_starts(
    graph: tuple[list[list[tuple[int, str]]], int, int], kind: str
) -> None:
    """Random graphs, one edge added from a resource back to one that reaches it (or a
    resource needing itself) through a provider kind: ``start`` and ``validate`` refuse
    with a ``StartupError`` whose path is a cycle -- first name = last name, and each
    provider named needs the next one -- and no resource starts."""
    edges, low, high = graph
    events: Events = []
    app = build(edges, set(), set(), events)
    resources = {f"r{i}": p for i, p in enumerate(_resources_by_index(app, len(edges)))}
    back = VIA[kind](resources[f"r{high}"])
    resources[f"r{low}"].add_args(back)
    with pytest.raises(StartupError) as raised:
        asyncio.run(start(app))
    path = raised.value.details["cycle"].split(" -> ")
    assert path[0] == path[-1]
    assert len(path) >= 2
    named = _named_providers(app)
    for needer, needed in itertools.pairwise(path):
        assert any(
            any(d is want for d in have.related) for have in named[needer] for want in named[needed]
        ), (needer, needed, path)
    assert events == []
    with pytest.raises(StartupError):
        validate(app)


def _resources_by_index(app: containers.DynamicContainer, size: int) -> list[Any]:
    nested = app.nested.container  # type: ignore[attr-defined]
    return [getattr(nested if i % 2 else app, f"r{i}") for i in range(size)]


def _named_providers(
    container: containers.Container, prefix: str = "", *, anonymous: bool = True
) -> dict[str, list[providers.Provider[Any]]]:
    """The providers of ``container`` and its nested containers by dotted path, and the
    anonymous ones by the label the cycle message gives them (``Factory(Repo)``; several
    providers may share a label)."""
    named: dict[str, list[providers.Provider[Any]]] = {}
    for attribute, provider in container.providers.items():
        named[prefix + attribute] = [provider]
        if isinstance(provider, providers.Container):
            nested = _named_providers(provider.container, f"{prefix}{attribute}.", anonymous=False)
            named.update(nested)
    if anonymous:
        known = {id(p) for group in named.values() for p in group}
        for provider in container.traverse():
            if id(provider) not in known:
                label = getattr(getattr(provider, "provides", None), "__qualname__", None)
                kind = type(provider).__name__
                named.setdefault(f"{kind}({label})" if label else kind, []).append(provider)
    return named


# ------------------------------------------------------- property: any marker typo
#: Every provider path of the application container, e.g. ``postgres.store``.
PROVIDER_PATHS = sorted(_named_providers(ApplicationContainer(), anonymous=False))


@st.composite
def mistyped_paths(draw: st.DrawFn) -> tuple[str, str]:
    """``(path, typo)``: a provider path and one character of it replaced, deleted or
    doubled, such that the result names no provider."""
    path = draw(st.sampled_from(PROVIDER_PATHS))
    at = draw(st.integers(0, len(path) - 1))
    edit = draw(st.sampled_from(["replace", "delete", "double"]))
    if edit == "replace":
        typo = path[:at] + draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz_")) + path[at + 1 :]
    elif edit == "delete":
        typo = path[:at] + path[at + 1 :]
    else:
        typo = path[:at] + path[at] + path[at:]
    hypothesis.assume(typo not in PROVIDER_PATHS and typo.strip(".") == typo and ".." not in typo)
    return path, typo


@hypothesis_settings(max_examples=40)
@given(case=mistyped_paths(), form=st.sampled_from(["default", "annotated", "closing"]))
def test_any_mistyped_marker_fails_validation_with_its_name(
    case: tuple[str, str], form: str
) -> None:
    """Any provider path with a one-character typo, in a wired handler's ``Provide[...]``
    (as a default, inside ``Annotated``, or wrapped in ``Closing``): ``validate`` (which
    ``start`` runs first) raises naming the handler, the parameter and the typo; the
    correctly spelled marker validates."""
    path, typo = case
    marker = {
        "default": "store: Any = Provide[{name!r}]",
        "annotated": "store: Annotated[Any, Provide[{name!r}]]",
        "closing": "store: Any = Closing[Provide[{name!r}]]",
    }[form]
    source = (
        "from typing import Annotated, Any\n"
        "from dependency_injector.wiring import Closing, Provide, inject\n"
        "@inject\n"
        f"async def handler({marker}) -> Any:\n"
        "    return store\n"
    )
    for name, fails in ((typo, True), (path, False)):
        module = types.ModuleType("lifecycle_marker_property")
        sys.modules[module.__name__] = module
        # dont_inherit: this file's ``from __future__ import annotations`` would turn the
        # ``Annotated`` marker into a string, which dependency-injector does not read.
        code = compile(source.format(name=name), module.__name__, "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102
        app = ApplicationContainer()
        try:
            app.wire(modules=[module])
            if not fails:
                validate(app)
                continue
            with pytest.raises(StartupError) as raised:
                validate(app)
            (problem,) = raised.value.details["unresolved"]
            assert problem in str(raised.value)
            head = f"{module.__name__}.handler(store): Provide[{typo!r}]"
            assert problem.startswith(head), problem
            # The closest names, when any is close enough: the intended one among them.
            suggested = problem.removeprefix(head).removeprefix(" (did you mean ")
            suggested = suggested.removesuffix("?)")
            assert path in suggested.split(", "), problem
        finally:
            app.unwire()
            del sys.modules[module.__name__]


# ------------------------------------------------------------- one container, one loop
class LoopThread:
    """An event loop running in a thread of its own (as FastAPI's TestClient runs one)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def counted_container(
    events: Events,
) -> tuple[containers.DynamicContainer, providers.Resource[str]]:
    """A container with one resource, ``pool``; both returned (mypy sees the resource)."""
    app = containers.DynamicContainer()
    pool: providers.Resource[str] = providers.Resource(recording(events, "pool"))
    app.pool = pool
    return app, pool


@pytest.mark.parametrize("action", ["start", "stop"])
def test_a_container_running_on_another_loop_is_refused_clearly(action: str) -> None:
    """Concrete: started on a running loop (a TestClient's), neither start nor stop on
    another loop touches it; each says why (start was a silent no-op handing out the
    other loop's clients; stop closed them from the wrong loop)."""
    events: Events = []
    app, pool = counted_container(events)
    other = LoopThread()
    try:
        other.run(start(app))
        operation = start if action == "start" else stop
        expected = StartupError if action == "start" else ConfigurationError
        with pytest.raises(expected, match="started on another event loop, which runs"):
            asyncio.run(operation(app))
        assert pool.initialized
        assert inits(events) == ["pool"]
        assert closes(events) == []
        other.run(stop(app))
        assert closes(events) == ["pool"]
        asyncio.run(start(app))  # stopped: any loop may start it again
        asyncio.run(stop(app))
    finally:
        other.close()


def test_a_container_whose_loop_closed_can_be_stopped_then_started_anywhere() -> None:
    events: Events = []
    app, _pool = counted_container(events)
    asyncio.run(start(app))  # that loop closes without stop()
    with pytest.raises(StartupError, match="which has closed"):
        asyncio.run(start(app))
    asyncio.run(stop(app))
    asyncio.run(start(app))
    asyncio.run(stop(app))
    assert inits(events) == ["pool", "pool"]


@hypothesis_settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["start", "stop"]), st.sampled_from("AB")), max_size=8))
def test_start_and_stop_act_only_on_the_loop_the_container_started_on(
    operations: list[tuple[str, str]],
) -> None:
    """Property: with two live loops, an operation on the loop the container runs on (or
    any loop while it is stopped) behaves as always; on the other loop it raises and
    changes nothing."""
    events: Events = []
    app, pool = counted_container(events)
    loops = {"A": LoopThread(), "B": LoopThread()}
    started_on: str | None = None
    starts = 0
    try:
        for action, name in operations:
            loop = loops[name]
            if started_on not in (None, name):
                expected = StartupError if action == "start" else ConfigurationError
                with pytest.raises(expected, match="another event loop"):
                    loop.run(start(app) if action == "start" else stop(app))
            elif action == "start":
                loop.run(start(app))
                starts += started_on is None
                started_on = name
            else:
                loop.run(stop(app))
                started_on = None
            assert pool.initialized == (started_on is not None)
            assert len(inits(events)) == starts
        if started_on is not None:
            loops[started_on].run(stop(app))
    finally:
        for loop in loops.values():
            loop.close()

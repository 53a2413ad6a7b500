"""A FastAPI cache-hit route: a module-level object vs our dependency alias vs ``Provide``.

Four FastAPI apps with one route each, ``GET /notes/1``, and the same handler body --
``await cache.get(f"note:{note_id}", load)``, an L1 hit of the container's
``ThreeTierCache`` (loaded once before measuring; the loader never runs again), returned
as JSON. They differ only in how the handler gets the cache:

* **module-level object** (baseline) -- a global assigned once after ``start()``: a
  route with no dependency injection at all;
* **bare async Depends** -- ``Annotated[ThreeTierCache, Depends(f)]`` where ``f`` returns
  that global: what FastAPI itself charges for any dependency (the floor of every
  dependency helper; not ours);
* **container default** (the headline) -- ``cache: ThreeTierDep``, our async alias
  (``containers.integrations.fastapi``), resolved from ``request.app.state.container``;
* **Depends(Provide[...])** -- dependency-injector's documented idiom (``@inject`` and
  ``Depends(Provide[App.redis.three_tier])``): FastAPI takes the marker for a synchronous
  dependency and runs it in its worker-thread pool on every request.

Two transports, each a scenario of its own:

* ``fastapi_http`` -- each app served by uvicorn on loopback, driven by an aiohttp client
  over 1 or 32 keep-alive connections, one request in flight per connection (client
  and servers share this process's event loop);
* ``fastapi_asgi`` -- the apps' ASGI interface called in-process (no sockets, no HTTP
  parser): the smallest denominator, so every dependency's share is the largest it can
  be.

Rounds are interleaved and ratios taken per round against the baseline
(:mod:`benchmarks.harness`). Goal: the alias within 1.10x of the module-level object at
1 and 32 connections, same run (judged on ``fastapi_http``).

    python -m benchmarks.bench_fastapi [--quick] [--rounds N] [--calls N] [--only asgi|http]

``python -m benchmarks`` runs both scenarios too. ``fastapi_http`` needs uvicorn
(``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import aiohttp
from dependency_injector.wiring import Provide, inject
from fastapi import Depends, FastAPI

from benchmarks.environment import Environment, environment, servers
from benchmarks.harness import Call, Variant
from benchmarks.scenario import HEADLINE, Plan, ScenarioResult, measure
from containers.application import ApplicationContainer
from containers.integrations.fastapi import ThreeTierDep
from infra.cache import ThreeTierCache

__all__ = ["BARE", "BASELINE", "LEVELS", "PROVIDE", "TRANSPORTS", "run"]

BASELINE = "module-level object"
PROVIDE = "Depends(Provide[...])"
BARE = "bare async Depends"
TRANSPORTS = ("http", "asgi")
LEVELS = (1, 32)
#: Requests per batch of a full run, per transport.
FULL_CALLS = {"http": 1000, "asgi": 2000}
#: The aiohttp client's connection limit: the highest level.
MAX_CONNECTIONS = max(LEVELS)
NOTE = {"id": 1, "title": "groceries", "body": "milk, eggs, flour", "done": False}
CACHE_PREFIX = "bench:fastapi:note:"

App = ApplicationContainer
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

# The baseline's module-level object, assigned once the container is started.
_cache: ThreeTierCache | None = None


async def _never() -> dict[str, Any]:
    raise AssertionError("the loader ran: the route missed L1")


# --------------------------------------------------------------- the same body, 4 ways
# Module-level functions: wire() patches the @inject functions it finds in the module.
async def read_module_level(note_id: int) -> Any:
    assert _cache is not None
    return await _cache.get(f"{CACHE_PREFIX}{note_id}", _never)


async def _global_cache() -> ThreeTierCache:
    assert _cache is not None
    return _cache


async def read_bare_depends(
    note_id: int, cache: Annotated[ThreeTierCache, Depends(_global_cache)]
) -> Any:
    return await cache.get(f"{CACHE_PREFIX}{note_id}", _never)


async def read_alias(note_id: int, cache: ThreeTierDep) -> Any:
    return await cache.get(f"{CACHE_PREFIX}{note_id}", _never)


@inject
async def read_provide(
    note_id: int,
    cache: ThreeTierCache = Depends(Provide[App.redis.three_tier]),  # noqa: B008 - the idiom
) -> Any:
    return await cache.get(f"{CACHE_PREFIX}{note_id}", _never)


def app_with(handler: Any) -> FastAPI:
    """A FastAPI app whose one route is ``GET /notes/{note_id}`` -> ``handler``."""
    app = FastAPI()
    app.add_api_route("/notes/{note_id}", handler, methods=["GET"])
    return app


# ------------------------------------------------------------------- in-process driver
def asgi_get(app: FastAPI, path: str) -> Call:
    """One ``GET path`` through ``app``'s ASGI interface; raises unless it answers 200."""
    template: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"accept", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("bench", 80),
    }
    request: Message = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> Message:
        return request

    async def call() -> None:
        status = 0

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(dict(template), receive, send)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")

    return call


@asynccontextmanager
async def served(apps: dict[str, FastAPI]) -> AsyncIterator[dict[str, Call]]:
    """Each app behind its own uvicorn server on loopback; a ``GET /notes/1`` call per
    app through one aiohttp session (at most :data:`MAX_CONNECTIONS` keep-alive
    connections: one per task that is making requests)."""
    import uvicorn  # noqa: PLC0415 - the bench extra; the ASGI scenario runs without it

    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
    connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
    session = aiohttp.ClientSession(connector=connector)
    try:
        calls: dict[str, Call] = {}
        for name, app in apps.items():
            config = uvicorn.Config(
                app, host="127.0.0.1", port=0, lifespan="off", log_level="warning", access_log=False
            )
            server = uvicorn.Server(config)
            task = asyncio.create_task(server.serve())
            servers.append((server, task))
            while not server.started:
                if task.done():
                    task.result()  # raises what stopped it
                    raise RuntimeError(f"uvicorn stopped before serving {name}")
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            calls[name] = http_get(session, f"http://127.0.0.1:{port}/notes/1")
        yield calls
    finally:
        await session.close()
        for server, _ in servers:
            server.should_exit = True
        await asyncio.gather(*(task for _, task in servers), return_exceptions=True)


def http_get(session: aiohttp.ClientSession, url: str) -> Call:
    async def call() -> None:
        async with session.get(url) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {url} answered {response.status}")

    return call


# ----------------------------------------------------------------------- the scenario
async def run(env: Environment, plan: Plan, transport: str = "http") -> ScenarioResult:
    """Measure the four routes at :data:`LEVELS` on the started container of ``env``,
    through ``transport`` (``"http"``: uvicorn; ``"asgi"``: in-process)."""
    global _cache  # noqa: PLW0603 - the baseline is, by definition, a module-level object
    container = env.app
    cache = container.redis.three_tier()
    await cache.start()
    await cache.get(f"{CACHE_PREFIX}1", _load)  # L1 (and L2) hold it from now on
    _cache = cache
    container.wire(modules=[__name__])
    apps = {
        BASELINE: app_with(read_module_level),
        BARE: app_with(read_bare_depends),
        HEADLINE: app_with(read_alias),
        PROVIDE: app_with(read_provide),
    }
    apps[HEADLINE].state.container = container  # what the lifespan does on startup
    notes = {
        BASELINE: "a global assigned once after start(); no injection",
        BARE: "Depends(f), f returning that global: FastAPI's own cost of a dependency",
        HEADLINE: "cache: ThreeTierDep (async alias, request.app.state.container)",
        PROVIDE: "@inject + Depends(Provide[App.redis.three_tier]): a thread hop per request",
    }
    what = {
        "http": "uvicorn (h11) on loopback, aiohttp client, 1 keep-alive connection per task",
        "asgi": "the ASGI interface called in-process: no sockets, no HTTP parsing",
    }[transport]
    try:
        async with contextlib.AsyncExitStack() as stack:
            if transport == "http":
                calls = await stack.enter_async_context(served(apps))
            else:
                calls = {name: asgi_get(app, "/notes/1") for name, app in apps.items()}
            variants = [Variant(name, calls[name], note=notes[name]) for name in apps]
            return await measure(
                f"fastapi_{transport}",
                f"FastAPI cache-hit route ({transport})",
                f"GET /notes/1 answered from the 3-tier cache's L1 through FastAPI; {what}. "
                "The handler gets the cache from a module-level object (baseline), a bare "
                "Depends, our ThreeTierDep alias, or dependency-injector's "
                "Depends(Provide[...]) idiom",
                variants,
                baseline=BASELINE,
                plan=plan,
                full_calls=FULL_CALLS[transport],
                levels=LEVELS,
            )
    finally:
        container.unwire()
        _cache = None


async def _load() -> dict[str, Any]:
    return dict(NOTE)


# ------------------------------------------------------------------------- standalone
def _print(result: ScenarioResult, transport: str) -> None:
    print(f"\n{result.title} ({result.description})")
    print(
        f"{'variant':28} {'tasks':>5} {'wall us':>9} {'wall ratio [min..max]':>24} {'cpu ratio':>9}"
    )
    for tasks, results in result.levels.items():
        for r in results:
            ratio = f"{r.wall_ratio.median:.3f} [{r.wall_ratio.low:.2f}..{r.wall_ratio.high:.2f}]"
            errors = f"  ERRORS {r.errors}" if r.errors else ""
            print(
                f"{r.name:28} {tasks:>5} {r.wall_us.median:>9.1f} {ratio:>24} "
                f"{r.cpu_ratio.median:>9.3f}{errors}"
            )
    for tasks in result.levels:
        headline = result.variant(HEADLINE, tasks)
        bare = result.variant(BARE, tasks)
        if headline is None:
            continue
        value = headline.wall_ratio.median
        # FastAPI's own price of any dependency, beside the alias's: the floor of the goal.
        floor = f"; bare async Depends {bare.wall_ratio.median:.3f}" if bare is not None else ""
        if transport == "http":
            met = value <= 1.10 and headline.errors == 0
            verdict = "met" if met else "NOT met"
            print(f"goal: alias <= 1.10x module-level @ {tasks}: {value:.3f} {verdict}{floor}")
        else:
            print(f"alias @ {tasks}: {value:.3f}{floor} (the goal is judged on http)")


async def _standalone(plan: Plan, transports: list[str]) -> list[ScenarioResult]:
    with servers() as (dsn, url):
        async with environment(dsn, url) as env:
            return [await run(env, plan, transport) for transport in transports]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_fastapi", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per level")
    parser.add_argument("--calls", type=int, help="requests per batch (default: per transport)")
    parser.add_argument("--only", choices=TRANSPORTS, help="one transport (default: both)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 15)
    scale = (args.calls / FULL_CALLS["http"]) if args.calls else (0.1 if args.quick else 1.0)
    transports = [args.only] if args.only else list(TRANSPORTS)
    clock = time.perf_counter()
    load_before = os.getloadavg()[0]
    plan = Plan(rounds=rounds, scale=scale, levels=LEVELS)
    results = asyncio.run(_standalone(plan, transports))
    for transport, result in zip(transports, results, strict=True):
        _print(result, transport)
    print(
        f"\n{time.perf_counter() - clock:.0f} s in all; 1-minute load average "
        f"{load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
        f"({os.cpu_count()} CPUs)"
    )
    failed = any(r.errors for result in results for rs in result.levels.values() for r in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

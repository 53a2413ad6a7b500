"""A small HTTP service on Semantica Infra, running on embedded real backends.

    python examples/quickstart.py                     # call every endpoint once, print, stop
    python examples/quickstart.py --serve             # keep serving on http://127.0.0.1:8080
    python examples/quickstart.py --serve --port 0    # ... on a free port (printed)

Endpoints (every answer is JSON except ``/metrics``; errors are ``{"error": ...}``):

=========================  ========================================================
``POST /users``            ``{"id": <int>, "name": <str>}`` -> 201; 409 if it exists;
                           400 for a body that is not a JSON object; 422 for a
                           missing or mistyped field
``GET /users/{id}``        the user via the 3-tier cache -> 200; 404 if unknown or if
                           ``id`` is not an integer
``POST /users/{id}/visits``  count a visit under a Redis lock (fenced write) -> 200
``GET /health``, ``/ready``  liveness / readiness with per-check latency -> 200 or 503
``GET /metrics``           Prometheus text exposition
=========================  ========================================================

A backend outage answers 503 (with ``Retry-After`` while the breaker is open), never 500.
SIGTERM or Ctrl-C (SIGINT) stops gracefully: the server stops accepting, the container's
lifecycle ``stop()`` closes every resource, the process exits 0 (a second signal
abandons the graceful stop).

What it shows:

* ``ApplicationContainer`` wired once at startup; handlers take their dependencies with
  ``@inject`` and ``provide(...)`` (the typed ``Provide[...]``) -- no globals, nothing
  connects until first use.
* PostgreSQL through ``EnhancedPostgresStore`` (breaker, retry, timeouts, metrics).
* Reads through the coherent 3-tier cache (L1 memory -> L2 Redis -> L3 PostgreSQL).
* A Redis distributed lock with a fencing token guarding a read-modify-write.
* ``/health`` and ``/ready`` from the health registry, ``/metrics`` for Prometheus.

The backends are real servers started from pip packages (embedded PostgreSQL and
Redis). To use your own servers instead, set ``SEMANTICA_TEST_POSTGRES_DSN`` and
``SEMANTICA_TEST_REDIS_URL`` (see docs/testing.md); nothing is started for those.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientSession, web
from dependency_injector import providers
from dependency_injector.wiring import inject

from config import Settings
from containers.application import ApplicationContainer
from containers.integrations.http_errors import error_answer
from containers.lifecycle import start, stop
from containers.typed import provide
from infra.cache import RedisDistributedLock, ThreeTierCache
from infra.exceptions import ConfigurationError, UniqueViolationError
from infra.observability import HealthRegistry, MetricsCollector
from infra.ports import RelationalStore
from infra.testing.embedded import start_embedded_backends

# Portable SQL (PostgreSQL and the SQLite-backed fake used by this example's tests).
SCHEMA = """
create table if not exists users (
    id bigint primary key,
    name text not null unique,
    visits bigint not null default 0,
    fence bigint not null default 0
)
"""

App = ApplicationContainer

#: The id column is a PostgreSQL bigint.
BIGINT = range(-(2**63), 2**63)

_log = logging.getLogger("quickstart")


# ---------------------------------------------------------------------- input checks
class BadInputError(Exception):
    """The request is wrong; ``status`` is 400, 404 or 422 and ``error`` says why."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or 400 saying what it should be."""
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
        raise BadInputError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadInputError(400, f"the body must be a JSON object, got {json_kind(body)}")
    return body


#: How an error names a JSON value's type (the client sent JSON, not Python objects).
JSON_KINDS: dict[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def json_kind(value: object) -> str:
    """``"an integer"``, ``"an array"``, ...: the JSON type of a decoded value."""
    return JSON_KINDS.get(type(value), type(value).__name__)


def field(body: dict[str, Any], name: str, kind: type) -> Any:
    """``body[name]`` of type ``kind``, or 422 naming the field."""
    if name not in body:
        raise BadInputError(422, f"missing field {name!r}")
    value = body[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadInputError(
            422, f"field {name!r} must be {JSON_KINDS[kind]}, got {json_kind(value)}"
        )
    if kind is int and value not in BIGINT:
        raise BadInputError(422, f"field {name!r} is out of range for a 64-bit integer")
    if kind is str and not value:
        raise BadInputError(422, f"field {name!r} must not be empty")
    return value


def user_id(request: web.Request) -> int:
    """The ``{id}`` of the path; 404 when it is not an integer (no such user can exist)."""
    raw = request.match_info["id"]
    try:
        value = int(raw)
    except ValueError:
        raise BadInputError(404, f"no user {raw!r}: user ids are integers") from None
    if value not in BIGINT:
        raise BadInputError(404, f"no user {raw!r}: user ids are 64-bit integers")
    return value


# ----------------------------------------------------------------------------- handlers
@inject
async def create_user(
    request: web.Request,
    store: RelationalStore = provide(App.postgres.store),
) -> web.Response:
    """POST /users {"id": ..., "name": ...}; a duplicate is 409 (a write: attempted once)."""
    body = await json_object(request)
    uid, name = field(body, "id", int), field(body, "name", str)
    try:
        await store.execute("insert into users (id, name) values ($1, $2)", uid, name)
    except UniqueViolationError:
        return web.json_response({"error": "user exists"}, status=409)
    return web.json_response({"id": uid, "name": name}, status=201)


@inject
async def get_user(
    request: web.Request,
    store: RelationalStore = provide(App.postgres.store),
    cache: ThreeTierCache = provide(App.redis.three_tier),
) -> web.Response:
    """GET /users/{id}: L1 -> L2 -> PostgreSQL, with negative caching of unknown ids."""
    uid = user_id(request)

    async def load() -> dict[str, Any] | None:
        row = await store.fetchrow("select id, name, visits from users where id = $1", uid)
        return dict(row) if row is not None else None

    user = await cache.get(f"user:{uid}", load)
    if user is None:
        return web.json_response({"error": f"no user {uid}"}, status=404)
    return web.json_response(user)


@inject
async def record_visit(
    request: web.Request,
    store: RelationalStore = provide(App.postgres.store),
    lock: RedisDistributedLock = provide(App.redis.lock),
    cache: ThreeTierCache = provide(App.redis.three_tier),
) -> web.Response:
    """POST /users/{id}/visits: read-modify-write under a lock; the write is fenced."""
    uid = user_id(request)
    async with lock.hold(f"user:{uid}", lease=5.0, wait=2.0) as lease:
        visits = await store.fetchval("select visits from users where id = $1", uid)
        # The fencing token rejects a write from a holder whose lease already expired.
        status = await store.execute(
            "update users set visits = $2, fence = $3 where id = $1 and fence < $3",
            uid,
            (visits or 0) + 1,
            lease.fencing_token,
        )
    await cache.delete(f"user:{uid}")
    return web.json_response({"updated": status == "UPDATE 1", "fence": lease.fencing_token})


@inject
async def health(
    request: web.Request, registry: HealthRegistry = provide(App.health)
) -> web.Response:
    """GET /health (liveness) and /ready (readiness): per-check status and latency."""
    report = await (registry.liveness() if request.path == "/health" else registry.readiness())
    return web.json_response(report.to_dict(), status=report.http_status)


@inject
async def metrics(
    request: web.Request, collector: MetricsCollector = provide(App.observability.metrics)
) -> web.Response:
    """GET /metrics: Prometheus text exposition."""
    body, content_type = collector.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


_BODY_HEADERS = {"content-type", "content-length"}


@web.middleware
async def infra_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error answers JSON. Client errors keep their status (400/404/405/413/422,
    including aiohttp's own for an unknown route); our own errors are answered as the
    library's web integrations answer them (``containers.integrations.http_errors``: a
    caller error 409/422, a backend outage or an overload 503 with ``Retry-After`` when
    known, else 500); anything else is logged and answers 500."""
    try:
        response: web.StreamResponse = await handler(request)
    except BadInputError as exc:
        return web.json_response({"error": exc.error}, status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
        return web.json_response({"error": exc.reason}, status=exc.status, headers=kept)
    except Exception as exc:  # noqa: BLE001 - ours are mapped; the rest: logged, a JSON 500
        answer = error_answer(exc)
        if answer is not None:
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)
        _log.exception("unhandled error in %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)
    return response


def make_web_app() -> web.Application:
    app = web.Application(middlewares=[infra_errors])
    app.add_routes(
        [
            web.post("/users", create_user),
            web.get("/users/{id}", get_user),
            web.post("/users/{id}/visits", record_visit),
            web.get("/health", health),
            web.get("/ready", health),
            web.get("/metrics", metrics),
        ]
    )
    return app


# ----------------------------------------------------------------------------- lifecycle
@asynccontextmanager
async def running_container(settings: Settings) -> AsyncIterator[ApplicationContainer]:
    container = ApplicationContainer()
    container.core.settings.override(providers.Object(settings))
    container.wire(modules=[__name__])
    try:
        await start(container)
        try:
            store = container.postgres.store()  # once started, adapters are plain values
            await store.execute(SCHEMA)
            yield container
        finally:
            await stop(container)
    finally:
        container.unwire()


async def demo(base: str, collector: MetricsCollector) -> None:
    """Call every endpoint once, print what came back and a few in-process metrics."""
    async with ClientSession() as http:

        async def show(method: str, path: str, **kw: Any) -> Any:
            async with http.request(method, base + path, **kw) as resp:
                text = await resp.text()
                body = json.loads(text) if resp.content_type == "application/json" else text
                shown = body if isinstance(body, dict) else f"{len(text)} bytes of metrics"
                print(f"{method:4} {path:22} -> {resp.status} {shown}")
                return body

        uid = os.getpid()
        await show("POST", "/users", json={"id": uid, "name": f"ada-{uid}"})
        await show("POST", "/users", json={"id": uid, "name": f"ada-{uid}"})  # 409
        await show("GET", f"/users/{uid}")  # L3 (PostgreSQL), then cached
        await show("GET", f"/users/{uid}")  # L1 hit

        async def visit() -> None:
            async with http.post(f"{base}/users/{uid}/visits") as resp:
                resp.raise_for_status()

        await asyncio.gather(*(visit() for _ in range(5)))  # serialised by the lock
        visited = await show("GET", f"/users/{uid}")
        assert visited["visits"] == 5, visited  # noqa: S101 - the demo checks itself
        await show("GET", "/users/999999")  # 404, and the absence is cached
        await show("GET", "/ready")
        await show("GET", "/metrics")
    latency = collector.get_histogram_stats("postgres_query_latency_ms")
    print(
        f"postgres_query_latency_ms: count={latency.count} p50={latency.p50:.2f} "
        f"p95={latency.p95:.2f} p99={latency.p99:.2f}"
    )
    print(f"postgres_pool_utilization: {collector.get_gauge('postgres_pool_utilization')}%")


def stop_on_signals(stopping: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stopping`` (a graceful stop); a second one cancels the
    main task (the ``async with`` blocks still close what they opened)."""
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if stopping.is_set() and main_task is not None:
            main_task.cancel()
            return
        print(f"{signal.Signals(signum).name}: stopping", flush=True)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except NotImplementedError:  # Windows' event loop: Ctrl-C ends the demo instead
            return


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep serving until SIGTERM or Ctrl-C (default: call every endpoint once)",
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="port for --serve; 0 picks a free one"
    )
    args = parser.parse_args(argv)
    stopping = asyncio.Event()
    stop_on_signals(stopping)

    backends = start_embedded_backends(graph=False, qdrant=False)
    async with backends as endpoints:
        settings = Settings(
            database_url=endpoints.postgres_dsn,
            redis_url=endpoints.redis_url,
            log_format="console",
            log_level="WARNING",
        )
        async with running_container(settings) as container:
            runner = web.AppRunner(make_web_app())
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", args.port if args.serve else 0)
            await site.start()
            port = runner.addresses[0][1]
            base = f"http://127.0.0.1:{port}"
            try:
                if args.serve:
                    print(f"serving on {base} (Ctrl-C or SIGTERM to stop)", flush=True)
                    await stopping.wait()
                else:
                    await demo(base, container.observability.metrics())
            finally:
                await runner.cleanup()
        print("stopped: every resource closed", flush=True)
    return 0


def run(argv: list[str]) -> int:
    """``main`` with a clean exit: 0 after a graceful stop, 130 without a traceback when
    a second signal abandoned it, 2 with the one-line message of a configuration error
    (a bad ``SEMANTICA_TEST_*`` variable, a container that could not start)."""
    try:
        return asyncio.run(main(argv))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted before the graceful stop finished", file=sys.stderr)
        return 130
    except ConfigurationError as exc:  # StartupError too; it names what to fix
        print(f"quickstart: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

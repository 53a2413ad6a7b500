"""A small HTTP service on Semantica Infra, running on embedded real backends.

    python examples/quickstart.py            # start, call every endpoint once, print, stop
    python examples/quickstart.py --serve    # keep serving on http://127.0.0.1:8080

What it shows:

* ``ApplicationContainer`` wired once at startup; handlers take their dependencies with
  ``@inject`` and ``Provide[...]`` -- no globals, nothing connects until first use.
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
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientSession, web
from dependency_injector import providers
from dependency_injector.wiring import Provide, inject

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import start, stop
from infra.cache import RedisDistributedLock, ThreeTierCache
from infra.exceptions import (
    CircuitBreakerOpenError,
    InfraError,
    ResilienceError,
    UniqueViolationError,
)
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


# ----------------------------------------------------------------------------- handlers
@inject
async def create_user(
    request: web.Request,
    store: RelationalStore = Provide[App.postgres.store],
) -> web.Response:
    """POST /users {"id": ..., "name": ...}; a duplicate is 409 (a write: attempted once)."""
    body = await request.json()
    try:
        await store.execute(
            "insert into users (id, name) values ($1, $2)", int(body["id"]), str(body["name"])
        )
    except UniqueViolationError:
        return web.json_response({"error": "user exists"}, status=409)
    return web.json_response({"id": body["id"], "name": body["name"]}, status=201)


@inject
async def get_user(
    request: web.Request,
    store: RelationalStore = Provide[App.postgres.store],
    cache: ThreeTierCache = Provide[App.redis.three_tier],
) -> web.Response:
    """GET /users/{id}: L1 -> L2 -> PostgreSQL, with negative caching of unknown ids."""
    user_id = int(request.match_info["id"])

    async def load() -> dict[str, Any] | None:
        row = await store.fetchrow("select id, name, visits from users where id = $1", user_id)
        return dict(row) if row is not None else None

    user = await cache.get(f"user:{user_id}", load)
    if user is None:
        return web.json_response({"error": f"no user {user_id}"}, status=404)
    return web.json_response(user)


@inject
async def record_visit(
    request: web.Request,
    store: RelationalStore = Provide[App.postgres.store],
    lock: RedisDistributedLock = Provide[App.redis.lock],
    cache: ThreeTierCache = Provide[App.redis.three_tier],
) -> web.Response:
    """POST /users/{id}/visits: read-modify-write under a lock; the write is fenced."""
    user_id = int(request.match_info["id"])
    async with lock.hold(f"user:{user_id}", lease=5.0, wait=2.0) as lease:
        visits = await store.fetchval("select visits from users where id = $1", user_id)
        # The fencing token rejects a write from a holder whose lease already expired.
        status = await store.execute(
            "update users set visits = $2, fence = $3 where id = $1 and fence < $3",
            user_id,
            (visits or 0) + 1,
            lease.fencing_token,
        )
    await cache.delete(f"user:{user_id}")
    return web.json_response({"updated": status == "UPDATE 1", "fence": lease.fencing_token})


@inject
async def health(
    request: web.Request, registry: HealthRegistry = Provide[App.health]
) -> web.Response:
    """GET /health (liveness) and /ready (readiness): per-check status and latency."""
    report = await (registry.liveness() if request.path == "/health" else registry.readiness())
    return web.json_response(report.to_dict(), status=report.http_status)


@inject
async def metrics(
    request: web.Request, collector: MetricsCollector = Provide[App.observability.metrics]
) -> web.Response:
    """GET /metrics: Prometheus text exposition."""
    body, content_type = collector.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


@web.middleware
async def infra_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Our typed errors become JSON: 503 (+ Retry-After when known) if the backend is down
    or shedding load -- retryable errors, an open breaker, a full bulkhead -- else 500."""
    try:
        response: web.StreamResponse = await handler(request)
    except InfraError as exc:
        unavailable = exc.retryable or isinstance(exc, ResilienceError)
        headers = {}
        if isinstance(exc, CircuitBreakerOpenError) and exc.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
        return web.json_response(exc.to_dict(), status=503 if unavailable else 500, headers=headers)
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
    await start(container)
    try:
        store = container.postgres.store()  # once started, adapters are plain values
        await store.execute(SCHEMA)
        yield container
    finally:
        await stop(container)
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


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="keep serving until Ctrl-C")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)

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
                    print(f"serving on {base} (Ctrl-C to stop)")
                    await asyncio.Event().wait()
                else:
                    await demo(base, container.observability.metrics())
            finally:
                await runner.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

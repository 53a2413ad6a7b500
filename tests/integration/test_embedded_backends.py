"""The embedded backends are real servers, and they start, stop and clean up as promised."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.exceptions import ConfigurationError
from infra.testing.embedded import (
    EmbeddedBackends,
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServerError,
    QdrantLocal,
    external_endpoint,
    open_qdrant_client,
    port_accepts,
)
from infra.testing.embedded.backends import BackendEndpoints
from infra.testing.embedded.reaper import (
    DIR_PREFIX,
    OWNER_FILE,
    owner_alive,
    record_server,
    sweep_stale,
    write_owner,
)


def _alive(server: EmbeddedRedis) -> bool:
    """Read afresh: mypy would keep ``server.alive`` narrowed across kill() and restart()."""
    return server.alive


def _listening(port: int) -> bool:
    """Whether any process has a TCP socket listening on ``port``."""
    return any(
        conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
        for conn in psutil.net_connections(kind="tcp")
    )


if TYPE_CHECKING:
    import asyncpg
    import neo4j
    from qdrant_client import AsyncQdrantClient
    from redis.asyncio import Redis

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ real round trips
@pytest.mark.postgres
async def test_postgres_answers_a_query(pg_pool: asyncpg.Pool) -> None:
    """asyncpg reaches the server and gets a row back."""
    assert await pg_pool.fetchval("select 1 + 1") == 2


@pytest.mark.postgres
async def test_pgvector_orders_rows_by_distance(pg_pool: asyncpg.Pool) -> None:
    """The vector extension is installable and `<->` finds the nearest row."""
    async with pg_pool.acquire() as conn:
        await conn.execute("create extension if not exists vector")
        await conn.execute("create temp table items (name text, v vector(3))")
        await conn.executemany(
            "insert into items values ($1, $2::vector)",
            [("x", "[1,0,0]"), ("y", "[0,1,0]"), ("z", "[0,0,1]")],
        )
        nearest = await conn.fetch(
            "select name from items order by v <-> '[0.1,0.9,0.2]'::vector limit 2"
        )
    assert [r["name"] for r in nearest] == ["y", "z"]


@pytest.mark.redis
async def test_redis_ping_set_get(redis_client: Redis) -> None:
    """PING answers; a value written is read back; the database starts empty."""
    assert await redis_client.dbsize() == 0
    assert await redis_client.ping() is True
    await redis_client.set("greeting", "hello")
    assert await redis_client.get("greeting") == b"hello"


@pytest.mark.graph
async def test_cypher_round_trip_over_bolt(graph_driver: neo4j.AsyncDriver) -> None:
    """A parametrised CREATE is matched back; another database is another graph."""
    async with graph_driver.session() as session:
        result = await session.run(
            "CREATE (n:Person {name: $name, age: $age}) RETURN n.name AS name",
            name="Ada",
            age=36,
        )
        assert [record["name"] async for record in result] == ["Ada"]
        result = await session.run(
            "MATCH (n:Person) WHERE n.age > $min RETURN count(n) AS c", min=30
        )
        assert (await result.single(strict=True))["c"] == 1
    async with graph_driver.session(database="embedded_backends_other") as other:
        result = await other.run("MATCH (n:Person) RETURN count(n) AS c")
        assert (await result.single(strict=True))["c"] == 0


@pytest.mark.graph
async def test_bolt_accepts_new_drivers_after_others_closed(
    bolt_uri: str, bolt_auth: tuple[str, str]
) -> None:
    """Closing a driver (which sends GOODBYE) never stalls the next connection."""
    import neo4j

    started = time.monotonic()
    for attempt in range(3):
        driver = neo4j.AsyncGraphDatabase.driver(bolt_uri, auth=bolt_auth, connection_timeout=3)
        try:
            records, _, _ = await driver.execute_query("RETURN $n AS n", n=attempt)
            assert records[0]["n"] == attempt
        finally:
            await driver.close()
    assert time.monotonic() - started < 3.0


@pytest.mark.qdrant
async def test_qdrant_search_returns_the_nearest_point(qdrant_client: AsyncQdrantClient) -> None:
    """A collection is created, filled and searched; the closest point ranks first."""
    from qdrant_client import models

    await qdrant_client.create_collection(
        "points", vectors_config=models.VectorParams(size=3, distance=models.Distance.EUCLID)
    )
    await qdrant_client.upsert(
        "points",
        points=[
            models.PointStruct(id=1, vector=[1.0, 0.0, 0.0], payload={"name": "x"}),
            models.PointStruct(id=2, vector=[0.0, 1.0, 0.0], payload={"name": "y"}),
            models.PointStruct(id=3, vector=[0.0, 0.0, 1.0], payload={"name": "z"}),
        ],
    )
    found = await qdrant_client.query_points("points", query=[0.1, 0.2, 0.9], limit=2)
    assert [p.id for p in found.points] == [3, 2]
    assert found.points[0].payload == {"name": "z"}


# ------------------------------------------------------------------------- lifecycle
@pytest.mark.redis
@pytest.mark.graph
def test_redis_start_is_idempotent_and_stop_releases_everything() -> None:
    """A second start keeps the same server; stop closes all ports and deletes the dir."""
    server = EmbeddedRedis()
    server.start()
    try:
        url, scratch = server.url, server.scratch_dir
        ports = [server.port, server.bolt_port]
        assert server.start() is server
        assert (server.url, server.scratch_dir) == (url, scratch)
        assert scratch is not None
        assert scratch.is_dir()
        assert all(port_accepts(LOOPBACK, p) for p in ports)
    finally:
        server.stop()
    assert not server.running
    assert not scratch.exists()
    assert not any(port_accepts(LOOPBACK, p) for p in ports)
    server.stop()  # a second stop is a no-op
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


@pytest.mark.postgres
async def test_postgres_async_lifecycle_removes_process_and_data() -> None:
    """`async with` starts a usable server; leaving it stops the postmaster and cleans up."""
    import asyncpg

    async with EmbeddedPostgres() as server:
        pid, scratch = server.pid, server.scratch_dir
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("select current_user") == "postgres"
        finally:
            await conn.close()
    assert scratch is not None
    assert not scratch.exists()
    assert _gone(pid)


@pytest.mark.redis
def test_bad_module_fails_fast_with_the_server_log() -> None:
    """A module that cannot load ends start() with an error quoting the log; no leftovers."""
    # Fails fast: long before the (generous) readiness deadline, whatever the load.
    server = EmbeddedRedis(module_path="/nonexistent/falkordb.so", startup_timeout=120)
    started = time.monotonic()
    with pytest.raises(EmbeddedServerError) as caught:
        server.start()
    assert time.monotonic() - started < 60
    message = str(caught.value)
    assert "exited with code" in message
    assert "--- last lines of" in message
    assert "/nonexistent/falkordb.so" in message
    assert caught.value.component == "redis"
    assert not server.running
    assert server.scratch_dir is None
    log = re.search(r"--- last lines of (\S+) ---", message)
    assert log is not None
    assert not Path(log.group(1)).parent.exists()


@pytest.mark.redis
def test_readiness_deadline_gives_a_clear_error() -> None:
    """A server that never answers PING fails at the deadline, naming it and the log."""
    # Listening on another loopback address (the last --bind wins): alive, never ready.
    server = EmbeddedRedis(
        graph=False,
        startup_timeout=0.3,
        extra_args=("--bind", "127.0.0.2", "--requirepass", "s3cret-pw"),
    )
    with pytest.raises(EmbeddedServerError, match=r"was not ready within 0\.3 s") as caught:
        server.start()
    assert "redis.log" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
    assert caught.value.details["timeout"] == 0.3
    assert not server.running


@pytest.mark.redis
def test_server_dies_with_its_owner_even_on_sigkill() -> None:
    """SIGKILL of the owning process: the watchdog stops Redis and deletes its directory."""
    script = textwrap.dedent(
        """
        import json, os, signal, sys
        from infra.testing.embedded import EmbeddedRedis
        server = EmbeddedRedis().start()
        print(json.dumps({"ports": [server.port, server.bolt_port],
                          "dir": str(server.scratch_dir)}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    child = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    info = json.loads(child.stdout)
    deadline = time.monotonic() + 60  # a hang guard: the watchdog usually takes ~0.1 s
    while time.monotonic() < deadline and Path(info["dir"]).exists():
        time.sleep(0.05)
    assert not Path(info["dir"]).exists()
    assert not any(port_accepts(LOOPBACK, p) for p in info["ports"])


def test_sweep_reaps_directories_of_dead_owners(tmp_path: Path) -> None:
    """A scratch dir whose owner is gone: its server is stopped and the dir deleted."""
    stale = tmp_path / f"{DIR_PREFIX}redis-stale"
    stale.mkdir()
    (stale / OWNER_FILE).write_text(json.dumps({"pid": 2**22 + 7, "create_time": 0.0}))
    server = subprocess.Popen(["sleep", "30"])  # noqa: S607 - stands in for a leaked server
    try:
        record_server(stale, server.pid, signal.SIGTERM, grace=2.0)
        live = tmp_path / f"{DIR_PREFIX}redis-live"
        live.mkdir()
        (live / OWNER_FILE).write_text(
            json.dumps({"pid": os.getpid(), "create_time": psutil.Process().create_time()})
        )
        assert sweep_stale(tmp_path) == [stale]
        assert _gone(server.pid)
        assert not stale.exists()
        assert live.exists()
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


@settings(max_examples=50, deadline=None)
@given(step=st.floats(-86400, 86400).filter(lambda s: abs(s) >= 0.01), reuse=st.integers(1, 10**6))
def test_a_clock_step_never_makes_a_live_owner_look_dead(
    tmp_path_factory: pytest.TempPathFactory, step: float, reuse: int
) -> None:
    """The owner record as read after an NTP/VM clock step (the wall-clock create time
    moved by ``step`` seconds): this live process still owns the directory, so no other
    session's sweep reaps its servers. A different start (a recycled pid) is not it."""
    directory = tmp_path_factory.mktemp(DIR_PREFIX)
    write_owner(directory)
    record = json.loads((directory / OWNER_FILE).read_text())
    stepped = record | {"create_time": record["create_time"] + step}
    (directory / OWNER_FILE).write_text(json.dumps(stepped))
    assert owner_alive(directory)
    recycled = stepped | {"since_boot": record["since_boot"] + reuse}
    (directory / OWNER_FILE).write_text(json.dumps(recycled))
    assert not owner_alive(directory)


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


# ---------------------------------------------------------------- backends together
@pytest.mark.redis
@pytest.mark.qdrant
async def test_start_embedded_backends_starts_only_what_is_asked() -> None:
    """Redis+graph+Qdrant without PostgreSQL: one Redis process, no PostgreSQL."""
    backends = EmbeddedBackends(postgres=False, use_env=False)
    async with backends as endpoints:
        assert endpoints.postgres_dsn is None
        assert endpoints.qdrant_location == ":memory:"
        assert backends.postgres is None
        assert backends.redis is not None
        assert endpoints.redis_url == backends.redis.url
        assert endpoints.bolt_uri == backends.redis.bolt_uri
    assert not backends.redis.running


def test_external_endpoints_replace_embedded_servers() -> None:
    """With every SEMANTICA_TEST_* variable set, nothing is started."""
    env = {
        "SEMANTICA_TEST_POSTGRES_DSN": "postgresql://app:s3cret@db:5432/app",
        "SEMANTICA_TEST_REDIS_URL": "redis://cache:6379/0",
        "SEMANTICA_TEST_GRAPH_URI": "bolt://graph:7687",
        "SEMANTICA_TEST_QDRANT_URL": "http://qdrant:6333",
    }
    with EmbeddedBackends(env=env) as endpoints:
        assert endpoints == BackendEndpoints(
            "postgresql://app:s3cret@db:5432/app",
            "redis://cache:6379/0",
            "bolt://graph:7687",
            "http://qdrant:6333",
        )
        assert "s3cret" not in repr(endpoints)


def test_external_endpoint_rejects_a_wrong_scheme_without_leaking_it() -> None:
    """A mistyped variable is a ConfigurationError naming it, with the password masked."""
    env = {"SEMANTICA_TEST_POSTGRES_DSN": "mysql://u:hunter2@db/app"}
    with pytest.raises(ConfigurationError, match="SEMANTICA_TEST_POSTGRES_DSN") as caught:
        external_endpoint("postgres", env)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValueError, match="backend must be one of"):
        external_endpoint("mongo", env)


@pytest.mark.qdrant
async def test_qdrant_local_on_disk_directory_is_removed_on_stop() -> None:
    """On-disk local mode persists in a scratch directory that stop() deletes."""
    with QdrantLocal(on_disk=True) as local:
        storage = Path(local.location)
        client = open_qdrant_client(local.location)
        try:
            assert (await client.get_collections()).collections == []
        finally:
            await client.close()
        assert storage.is_dir()  # noqa: ASYNC240 - one stat in a test
    assert not storage.exists()  # noqa: ASYNC240
    with pytest.raises(ValueError, match="location must be"):
        open_qdrant_client("")


# ------------------------------------------------- chaos controls: pid, kill, restart
@pytest.mark.redis
async def test_redis_kill_and_restart_reuse_the_port_and_data_dir() -> None:
    """SIGKILL closes the port; restart() brings a new process up on the same port and
    scratch dir; with AOF persistence the data written before the crash is back."""
    from redis.asyncio import Redis

    server = EmbeddedRedis(graph=False, extra_args=("--appendonly", "yes"))
    async with server:
        port, scratch, first_pid = server.port, server.scratch_dir, server.pid
        assert server.alive
        client = Redis.from_url(server.url)
        try:
            await client.set("survives", "yes")
            assert _listening(port)  # the check below can see a listener
            server.kill()  # SIGKILL; returns once the process is gone
            assert not _alive(server)
            assert _gone(first_pid)
            # Nobody listens on the port any more. (A bare connect() is no proof here: a
            # port in the ephemeral range can connect to itself once nothing listens.)
            for _ in range(250):  # up to ~5 s for the kernel to drop the socket
                if not _listening(port):
                    break
                await asyncio.sleep(0.02)
            assert not _listening(port)
            assert server.running  # still owns its directory and endpoints
            server.restart()
            assert (server.port, server.scratch_dir) == (port, scratch)
            assert server.pid != first_pid
            assert server.alive
        finally:
            await client.aclose()  # its pooled connection died with the old process
        async with Redis.from_url(server.url) as fresh:
            assert await fresh.get("survives") == b"yes"  # appendonly replayed
        second_pid = server.pid
    assert not _alive(server)
    assert _gone(second_pid)


@pytest.mark.redis
async def test_redis_with_a_password_becomes_ready_and_restarts() -> None:
    """--requirepass: readiness authenticates, url carries the (encoded) password, a live
    server restarts politely on the same port, and the password shows in no repr."""
    from redis.asyncio import Redis
    from redis.exceptions import AuthenticationError

    from infra.resilience import redis_no_retry

    password = "p@ss:w/rd #1"
    async with EmbeddedRedis(graph=False, password=password, startup_timeout=60) as server:
        assert server.password == password
        assert password not in repr(server)
        async with Redis.from_url(server.url) as client:
            assert await client.ping() is True
        async with Redis(host=LOOPBACK, port=server.port, retry=redis_no_retry()) as anonymous:
            with pytest.raises(AuthenticationError):
                await anonymous.ping()
        pid, port = server.pid, server.port
        server.restart()  # alive: stopped with SIGTERM first
        assert (server.port, server.pid != pid, _gone(pid)) == (port, True, True)
        async with Redis.from_url(server.url) as client:
            assert await client.ping() is True


@pytest.mark.redis
async def test_a_non_terminating_signal_freezes_and_thaws_redis() -> None:
    """kill(SIGSTOP) returns at once and the server stops answering; SIGCONT resumes it."""
    from redis.asyncio import Redis
    from redis.exceptions import TimeoutError as RedisTimeout

    async with (
        EmbeddedRedis(graph=False) as server,
        Redis.from_url(server.url, socket_timeout=0.2) as client,
    ):
        assert await client.ping() is True
        server.kill(signal.SIGSTOP)
        assert server.alive
        with pytest.raises(RedisTimeout):
            await client.ping()
        server.kill(signal.SIGCONT)
        # A client without the 0.2 s timeout: a resumed server on a loaded machine may
        # take longer than that to get the CPU back.
        async with Redis.from_url(server.url) as patient:
            assert await patient.ping() is True


def test_kill_and_restart_need_a_started_server() -> None:
    """Before start() the chaos controls say so instead of signalling anything."""
    server = EmbeddedRedis(graph=False)
    assert not server.alive
    for action in (lambda: server.pid, server.kill, server.restart):
        with pytest.raises(RuntimeError, match="not running"):
            action()
    with pytest.raises(ValueError, match="password"):
        EmbeddedRedis(password="")


@settings(max_examples=200)
@given(password=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1))
def test_the_url_round_trips_any_password(password: str) -> None:
    """Whatever the password, redis-py reads exactly it back from ``url``; the last
    --requirepass of extra_args wins, as in redis-server."""
    from redis.asyncio.connection import parse_url

    from infra.testing.embedded.redis import redis_url

    server = EmbeddedRedis(graph=False, extra_args=("--requirepass", "first"), password=password)
    assert server.password == password  # nothing is started
    assert parse_url(redis_url(6379, server.password))["password"] == password


@pytest.mark.postgres
async def test_postgres_kill_and_restart_keep_data_and_dsn() -> None:
    """SIGKILL of the postmaster (and its backends), then restart(): crash recovery on the
    same data directory; the DSN is the same and committed rows are there."""
    import asyncpg

    async with EmbeddedPostgres() as server:
        dsn, first_pid = server.dsn, server.pid
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("create table kept (v int); insert into kept values (7)")
        finally:
            await conn.close()
        server.kill()
        assert not server.alive
        assert _gone(first_pid)
        with pytest.raises((OSError, asyncpg.PostgresError)):
            await asyncpg.connect(dsn, timeout=2)
        server.restart()
        assert server.dsn == dsn
        assert server.pid != first_pid
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("select v from kept") == 7
        finally:
            await conn.close()

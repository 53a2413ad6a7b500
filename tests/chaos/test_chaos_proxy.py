"""ChaosProxy itself, against a tiny echo server on loopback (TCP and Unix socket):
each fault does what its docstring says, the counters count, and URLs are rewritten
without losing credentials or the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from infra.testing.chaos import ChaosMode, ChaosProxy, upstream_of


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the proxy reset us: that is the point of several tests
    finally:
        writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, int]]:
    """An echo server on 127.0.0.1, closed after the test."""
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    try:
        yield "127.0.0.1", server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def proxy(echo: tuple[str, int]) -> AsyncIterator[ChaosProxy]:
    """A ChaosProxy in front of the echo server."""
    async with ChaosProxy(echo) as chaos:
        yield chaos


async def _round_trip(writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> bytes:
    writer.write(b"ping")
    await writer.drain()
    return await reader.readexactly(4)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):  # already reset by the proxy
        await writer.wait_closed()


async def test_forwards_and_counts_bytes_both_ways(proxy: ChaosProxy) -> None:
    """In pass-through mode bytes round-trip and are counted in each direction."""
    reader, writer = await asyncio.open_connection(*proxy.address)
    try:
        assert await _round_trip(writer, reader) == b"ping"
    finally:
        await _close(writer)
    stats = proxy.stats
    assert (stats.accepted, stats.bytes_to_upstream, stats.bytes_to_client) == (1, 4, 4)


async def test_forwards_to_a_unix_socket() -> None:
    """A Unix socket path is a valid upstream (embedded PostgreSQL listens on one)."""
    with tempfile.TemporaryDirectory() as tmp:  # short path: AF_UNIX allows ~107 bytes
        path = Path(tmp) / "echo.sock"
        server = await asyncio.start_unix_server(_echo, str(path))
        try:
            async with ChaosProxy(path) as proxy:
                reader, writer = await asyncio.open_connection(*proxy.address)
                try:
                    assert await _round_trip(writer, reader) == b"ping"
                finally:
                    await _close(writer)
        finally:
            server.close()
            await server.wait_closed()


async def test_refuse_resets_new_connections_and_counts_them(proxy: ChaosProxy) -> None:
    """In refuse mode a new connection is reset at once and counted as refused."""
    proxy.refuse()
    assert proxy.mode is ChaosMode.REFUSE
    reader, writer = await asyncio.open_connection(*proxy.address)
    try:
        with pytest.raises(ConnectionResetError):
            await _round_trip(writer, reader)
    finally:
        await _close(writer)
    assert (proxy.stats.accepted, proxy.stats.refused) == (1, 1)


async def test_reset_all_aborts_open_connections(proxy: ChaosProxy) -> None:
    """reset_all() aborts live connections with a RST and reports how many."""
    reader, writer = await asyncio.open_connection(*proxy.address)
    try:
        assert await _round_trip(writer, reader) == b"ping"
        assert proxy.reset_all() == 1
        with pytest.raises(ConnectionResetError):
            await reader.read(1)
    finally:
        await _close(writer)
    assert proxy.stats.resets == 1


async def test_blackhole_holds_bytes_until_healed(proxy: ChaosProxy) -> None:
    """A blackhole delivers nothing; after heal() the held bytes arrive intact."""
    reader, writer = await asyncio.open_connection(*proxy.address)
    try:
        proxy.blackhole()
        writer.write(b"ping")
        await writer.drain()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await reader.readexactly(4)
        proxy.heal()
        assert await reader.readexactly(4) == b"ping"
    finally:
        await _close(writer)


async def test_latency_delays_each_direction(proxy: ChaosProxy) -> None:
    """add_latency(s) makes a round trip take at least 2 s; heal() removes it."""
    proxy.add_latency(0.05)
    reader, writer = await asyncio.open_connection(*proxy.address)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await _round_trip(writer, reader) == b"ping"
        assert loop.time() - started >= 0.1
        proxy.heal()
        assert proxy.latency == 0.0
        assert proxy.mode is ChaosMode.FORWARD
    finally:
        await _close(writer)


async def test_close_stops_listening_and_drops_connections(echo: tuple[str, int]) -> None:
    """Leaving ``async with`` closes the listener and every proxied connection."""
    async with ChaosProxy(echo) as proxy:
        address = proxy.address
        reader, writer = await asyncio.open_connection(*address)
        assert await _round_trip(writer, reader) == b"ping"
    try:
        assert await reader.read(1) == b""
    except ConnectionResetError:
        pass  # a RST is as good as an EOF here
    finally:
        await _close(writer)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*address)


def test_port_and_url_for_need_a_started_proxy() -> None:
    """Before start() there is no port: asking for one is a RuntimeError naming the fix."""
    proxy = ChaosProxy(("localhost", 5432))
    assert "not started" in repr(proxy)
    with pytest.raises(RuntimeError, match="async with"):
        proxy.url_for("postgresql://u@/db")


async def test_url_for_keeps_credentials_database_and_options(proxy: ChaosProxy) -> None:
    """url_for() points the URL at the proxy and keeps everything else."""
    port = proxy.port
    assert (
        proxy.url_for("postgresql://app:s3cret@/appdb?host=/run/pg&port=5433&sslmode=disable")
        == f"postgresql://app:s3cret@127.0.0.1:{port}/appdb?sslmode=disable"
    )
    assert proxy.url_for("redis://:pw@redis.internal:6380/2") == f"redis://:pw@127.0.0.1:{port}/2"
    with pytest.raises(ValueError, match="scheme 'http'"):
        proxy.url_for("http://example.com")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://postgres:@/postgres?host=/run/pg", "/run/pg/.s.PGSQL.5432"),
        ("postgres://u@%2Frun%2Fpg:5433/db", "/run/pg/.s.PGSQL.5433"),
        ("postgresql://u:p@db.internal:6543/db", ("db.internal", 6543)),
        ("postgresql://u@[::1]/db", ("::1", 5432)),
        ("redis://localhost/0", ("localhost", 6379)),
        ("rediss://:pw@cache:6390", ("cache", 6390)),
    ],
)
def test_upstream_of_finds_the_server(url: str, expected: object) -> None:
    """upstream_of() reads host/port or the Unix socket path from a DSN or Redis URL."""
    assert upstream_of(url) == expected


def test_bad_arguments_are_rejected_with_the_fix() -> None:
    """Wrong upstream, port, latency or scheme raise a typed error naming the argument."""
    with pytest.raises(TypeError, match="upstream"):
        ChaosProxy(("localhost", "5432"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port"):
        ChaosProxy(("localhost", 5432), port=70000)
    with pytest.raises(ValueError, match="seconds"):
        ChaosProxy(("localhost", 5432)).add_latency(-1)
    with pytest.raises(ValueError, match="scheme"):
        upstream_of("mysql://db/x")


async def test_each_proxy_gets_its_own_free_port(echo: tuple[str, int]) -> None:
    """Port 0 (the default) lets the OS choose: two proxies never collide."""
    async with ChaosProxy(echo) as first, ChaosProxy(echo) as second:
        assert first.port > 0
        assert second.port > 0
        assert first.port != second.port
        assert f"127.0.0.1:{first.port}" in repr(first)


async def until(check: Callable[[], bool]) -> None:
    """Let the proxy's tasks run until ``check()`` holds (fail after 30 s: a hang guard,
    not a bound under test)."""
    async with asyncio.timeout(30.0):
        while not check():  # noqa: ASYNC110 -- polling the proxy's counters
            await asyncio.sleep(0.001)


async def test_a_one_way_blackhole_holds_only_that_direction(proxy: ChaosProxy) -> None:
    """to_client: the echo server receives the request (counted upstream) but the reply
    is held; stalled counts it, and heal() delivers it."""
    reader, writer = await asyncio.open_connection(*proxy.address)
    try:
        proxy.blackhole("to_client")
        writer.write(b"ping")
        await writer.drain()
        await until(lambda: proxy.stats.stalled == 1)
        assert proxy.stats.bytes_to_upstream == 4
        assert proxy.stats.bytes_to_client == 0
        proxy.heal()
        assert await reader.readexactly(4) == b"ping"
        assert proxy.stats.stalled == 0
    finally:
        await _close(writer)


async def test_holding_open_connections_lets_new_ones_flow(proxy: ChaosProxy) -> None:
    """connections='open' stalls the connections open now; a new one round-trips."""
    old_reader, old_writer = await asyncio.open_connection(*proxy.address)
    await until(lambda: proxy.stats.active == 1)
    proxy.blackhole("to_upstream", connections="open")
    assert proxy.mode is ChaosMode.FORWARD  # the proxy as a whole still forwards
    new_reader, new_writer = await asyncio.open_connection(*proxy.address)
    try:
        old_writer.write(b"ping")
        await old_writer.drain()
        await until(lambda: proxy.stats.stalled == 1)
        assert await _round_trip(new_writer, new_reader) == b"ping"
        proxy.heal()
        assert await old_reader.readexactly(4) == b"ping"
    finally:
        await _close(old_writer)
        await _close(new_writer)


async def test_a_request_held_until_after_the_client_left_is_still_answered(
    echo: tuple[str, int],
) -> None:
    """The client's EOF is passed on as a half-close: held bytes reach the upstream after
    the client is gone, the upstream answers them, then the connection ends."""
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read())  # until EOF
        writer.write(b"answer")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    try:
        async with ChaosProxy(("127.0.0.1", server.sockets[0].getsockname()[1])) as proxy:
            _, writer = await asyncio.open_connection(*proxy.address)
            await until(lambda: proxy.stats.active == 1)
            proxy.blackhole("to_upstream")
            writer.write(b"late request")
            await writer.drain()
            await until(lambda: proxy.stats.stalled == 1)
            await _close(writer)  # the client gives up
            proxy.heal()
            await until(lambda: proxy.stats.active == 0)
            assert received == [b"late request"]
            assert proxy.stats.bytes_to_upstream == len(b"late request")
    finally:
        server.close()
        await server.wait_closed()


async def test_url_is_the_url_it_was_made_for_pointed_at_the_proxy() -> None:
    """for_url() remembers the URL; url rewrites it like url_for()."""
    async with ChaosProxy.for_url("redis://:pw@127.0.0.1:6390/3") as proxy:
        assert proxy.url == f"redis://:pw@127.0.0.1:{proxy.port}/3"
    async with ChaosProxy(("127.0.0.1", 6390)) as plain:
        with pytest.raises(RuntimeError, match="for_url"):
            _ = plain.url


def test_blackhole_arguments_are_checked() -> None:
    proxy = ChaosProxy(("127.0.0.1", 6390))
    with pytest.raises(ValueError, match="direction"):
        proxy.blackhole("sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="connections"):
        proxy.blackhole(connections="some")  # type: ignore[arg-type]

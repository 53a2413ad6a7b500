"""A scripted Bolt server on loopback that fails every statement with a status code.

::

    async with FailingBoltServer() as server:
        error = await server.server_error("Neo.TransientError.Transaction.DeadlockDetected")
        # a neo4j.exceptions.TransientError with .code set, as the driver raises it

Code that handles Neo4j server errors branches on what the ``neo4j`` driver makes of a
``FAILURE`` message: the exception class it picks for the status code, ``.code``,
``.message`` and ``is_retryable()``. The driver builds such errors only from a server's
message (its public constructors leave the code unknown), and an embedded engine (FalkorDB)
reports every failure as ``Neo.DatabaseError.General.UnknownError``. This server answers
the Bolt handshake and ``HELLO`` like a Neo4j 5.0 server and every ``RUN`` with the
``FAILURE`` it is scripted with (:meth:`FailingBoltServer.fail_with`), so a test gets the
driver's real error for any code -- including the codes the driver rewrites (e.g.
``Transaction.Terminated``) -- or points a driver at :attr:`FailingBoltServer.uri`.

Written by hand because no package on PyPI serves Bolt for tests (Neo4j's own stub server
lives in its driver test kit, not on PyPI); it speaks just enough of the protocol for one
session: handshake, ``HELLO``, ``BEGIN``/``COMMIT``/``ROLLBACK``/``PULL``/``DISCARD``
(answered ``SUCCESS``), ``RUN`` (``FAILURE``; later messages ``IGNORED`` until ``RESET``)
and ``GOODBYE``. It binds 127.0.0.1 only, on a free port, in the running event loop.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

from infra.testing.embedded._bolt_relay import HANDSHAKE_SIZE, message_body, split_messages

if TYPE_CHECKING:
    from neo4j.exceptions import Neo4jError

__all__ = ["FailingBoltServer"]

_LOOPBACK: Final = "127.0.0.1"
_MAGIC: Final = b"\x60\x60\xb0\x17"
#: The version this server speaks, as a handshake reply (minor, major last): Bolt 5.0,
#: the newest without GQL status objects, so a FAILURE carries the Neo4j status code.
_VERSION: Final = b"\x00\x00\x00\x05"
# Message signatures (the byte after a struct marker).
_HELLO, _GOODBYE, _RESET, _RUN = 0x01, 0x02, 0x0F, 0x10
_SUCCESS, _IGNORED, _FAILURE = 0x70, 0x7E, 0x7F
#: The driver accepts Neo4j servers only (it checks the agent's product name).
_AGENT: Final = "Neo4j/5.0.0"


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) < 0x10:
        return bytes([0x80 | len(data)]) + data
    if len(data) < 0x100:
        return b"\xd0" + bytes([len(data)]) + data
    return b"\xd1" + len(data).to_bytes(2, "big") + data[:0xFFFF]


def _reply(signature: int, fields: dict[str, str] | None = None) -> bytes:
    """One chunked message: a struct with ``fields`` as its one map (PackStream)."""
    if fields is None:
        body = bytes([0xB0, signature])
    else:
        items = b"".join(_string(key) + _string(value) for key, value in fields.items())
        body = bytes([0xB1, signature, 0xA0 | len(fields)]) + items
    return len(body).to_bytes(2, "big") + body + b"\x00\x00"


class FailingBoltServer:
    """A loopback Bolt 5.0 server whose every statement fails with the scripted code."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._code = "Neo.DatabaseError.General.UnknownError"
        self._message = "scripted failure"

    async def start(self) -> Self:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, _LOOPBACK, 0)
        return self

    async def aclose(self) -> None:
        """Stop listening and drop open connections."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for writer in list(self._writers):
                writer.close()
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def uri(self) -> str:
        """``bolt://127.0.0.1:PORT`` (a direct connection: no routing)."""
        if self._server is None:
            raise RuntimeError("the server is not started: use 'async with' or start()")
        port = self._server.sockets[0].getsockname()[1]
        return f"bolt://{_LOOPBACK}:{port}"

    def fail_with(self, code: str, message: str = "scripted failure") -> None:
        """Answer every following ``RUN`` with ``FAILURE {code, message}``."""
        if not isinstance(code, str) or not code:
            raise ValueError(f"code must be a Neo4j status code string, got {code!r}")
        self._code, self._message = code, message

    async def server_error(self, code: str, message: str = "scripted failure") -> Neo4jError:
        """The error the ``neo4j`` driver raises for a statement failing with ``code``.

        Where the driver reacts to the error by raising another one (``NotALeader`` on a
        direct connection becomes ``WriteServiceUnavailable``), the server's error it
        hydrated is returned: it is the one the reaction was chained from.
        """
        import neo4j  # noqa: PLC0415 - optional dependency (the graph extra)
        from neo4j.exceptions import Neo4jError  # noqa: PLC0415

        self.fail_with(code, message)
        driver = neo4j.AsyncGraphDatabase.driver(self.uri, auth=("neo4j", "unused"))
        try:
            async with driver.session() as session:
                result = await session.run("RETURN 1")
                await result.consume()
        except Exception as exc:  # whatever the driver raised: its chain is searched
            raised: BaseException | None = exc
            while raised is not None:
                if isinstance(raised, Neo4jError):
                    return raised
                raised = raised.__cause__ or raised.__context__
            raise
        finally:
            await driver.close()
        raise AssertionError(f"the statement did not fail with {code}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._answer(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away mid-message: nothing to answer
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (await reader.readexactly(HANDSHAKE_SIZE))[:4] != _MAGIC:
            return
        writer.write(_VERSION)
        failed = False
        pending = bytearray()
        while data := await reader.read(65536):
            pending += data
            messages, used = split_messages(pending)
            del pending[:used]
            for message in messages:
                signature = message_body(message)[1]
                if signature == _GOODBYE:
                    return
                if signature == _HELLO:
                    reply = _reply(_SUCCESS, {"server": _AGENT, "connection_id": "bolt-1"})
                elif signature == _RESET:
                    failed, reply = False, _reply(_SUCCESS, {})
                elif failed:
                    reply = _reply(_IGNORED)
                elif signature == _RUN:
                    failed = True
                    reply = _reply(_FAILURE, {"code": self._code, "message": self._message})
                else:
                    reply = _reply(_SUCCESS, {})
                writer.write(reply)
            await writer.drain()

"""``ChaosProxy``: a loopback TCP proxy that injects network faults in front of a backend.

::

    async with ChaosProxy.for_url(postgres_dsn) as proxy:
        store = EnhancedPostgresStore(proxy.url_for(postgres_dsn), min_size=1, max_size=2)
        proxy.add_latency(0.3)      # every chunk waits 0.3 s, in each direction
        proxy.blackhole()           # bytes stop flowing; connections stay open (a hung peer)
        proxy.refuse()              # new connections are accepted, then reset at once
        proxy.reset_all()           # every open connection is aborted (RST)
        proxy.heal()                # back to a clean pass-through
        proxy.stats.accepted        # counters: accepted, refused, resets, bytes each way

Why a proxy of our own: the chaos tier needs faults that a test switches on and off
between two awaits of the same event loop, against the embedded servers (PostgreSQL
listens on a Unix socket only) and with counters the test can assert on. Toxiproxy,
the usual tool, is a separate Go server driven over HTTP (not installed here, and one
more process per test session); the small asyncio TCP proxies on PyPI are plain
forwarders without fault controls. The whole job is two stream pumps per connection,
so it is written here on :mod:`asyncio` streams.

Design decisions:

* **Faults are modes, switched synchronously.** Forward (:meth:`ChaosProxy.pass_through`),
  blackhole or refuse: one mode at a time. ``add_latency`` is orthogonal (it stays on
  through a blackhole and is cleared by :meth:`ChaosProxy.heal`). A setter takes effect for the
  next chunk or connection; nothing needs awaiting.
* **Refuse accepts, then resets** (``SO_LINGER`` 0, so the client sees a RST), instead
  of closing the listening socket: the port stays ours (no other process can take it
  mid-test) and every attempt is counted in ``stats.refused``, so a test can prove that
  an open circuit breaker made *no* connection attempt.
* **Blackhole stalls rather than drops.** Bytes already read are held, not discarded,
  and flow again after :meth:`ChaosProxy.heal`; dropping them would corrupt the
  protocol stream and test the parser instead of the timeouts.
* **A client's EOF is passed on as a half-close**: the upstream still answers what it
  was sent (a request held by a blackhole and let through after the client left is
  executed, as it would be on a real network), then the connection ends. An upstream
  that closes ends the connection at once.
* **Latency is per chunk and per direction**, applied in order, so a request/response
  round trip gains about twice the latency.
* **Clean exit.** :meth:`ChaosProxy.aclose` (or leaving ``async with``) stops listening,
  aborts every connection and awaits every task it started: the test suite runs with
  ``filterwarnings = error``, which turns a leaked socket into a failure.

Upstreams are ``(host, port)`` or a Unix socket path. :meth:`ChaosProxy.for_url` derives
the upstream from a PostgreSQL DSN (``?host=/dir`` means the socket
``/dir/.s.PGSQL.<port>``) or a Redis URL; :meth:`ChaosProxy.url_for` rewrites such a URL
to ``127.0.0.1:<proxy port>``, keeping credentials, database and other options.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import struct
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypeAlias
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["ChaosMode", "ChaosProxy", "ChaosStats", "Direction", "Upstream", "upstream_of"]

#: Which traffic a blackhole stops: requests, replies, or both.
Direction: TypeAlias = Literal["both", "to_upstream", "to_client"]

_CHUNK = 64 * 1024
#: Longest a connection whose client has finished sending waits for the upstream's
#: answer (the upstream closes at once after answering, so this bounds a hung one only).
_HALF_CLOSE_GRACE = 1.0


class ChaosMode(Enum):
    """What the proxy does with traffic (latency is separate, see ``add_latency``)."""

    FORWARD = "forward"
    BLACKHOLE = "blackhole"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class ChaosStats:
    """A snapshot of a proxy's counters since it started."""

    accepted: int
    """Client connections accepted (refused ones included)."""
    refused: int
    """Connections reset at once because the proxy was in ``REFUSE`` mode."""
    resets: int
    """Connections aborted by :meth:`ChaosProxy.reset_all`."""
    active: int
    """Connections currently forwarded."""
    bytes_to_upstream: int
    """Bytes delivered from clients to the upstream."""
    bytes_to_client: int
    """Bytes delivered from the upstream to clients."""
    stalled: int = 0
    """Chunks read and held by a blackhole right now (they flow on :meth:`ChaosProxy.heal`)."""


class _Link:
    """One proxied connection: the client's and the upstream's stream writers, and
    whether each direction of this connection may move (besides the proxy-wide mode)."""

    __slots__ = ("client", "to_client", "to_upstream", "upstream")

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.to_upstream = asyncio.Event()
        self.to_client = asyncio.Event()
        self.to_upstream.set()
        self.to_client.set()

    def abort(self) -> None:
        _abort(self.client)
        _abort(self.upstream)


class ChaosProxy:
    """A fault-injecting TCP proxy on ``host`` (default ``127.0.0.1``, a free port).

    Args:
        upstream: ``(host, port)`` or the path of a Unix socket to forward to.
        host: Address to listen on.
        port: Port to listen on (``0``: a free one; see :attr:`port`).
    """

    def __init__(self, upstream: Upstream, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._upstream = _check_upstream(upstream)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in 0..65535 (0 = any free port), got {port!r}")
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._mode = ChaosMode.FORWARD
        self._latency = 0.0
        self._url: str | None = None
        self._flowing_up = asyncio.Event()  # requests may move
        self._flowing_down = asyncio.Event()  # replies may move
        self._flowing_up.set()
        self._flowing_down.set()
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._pumps: set[asyncio.Future[None]] = set()
        self._accepted = self._refused = self._resets = 0
        self._bytes_up = self._bytes_down = 0
        self._stalled = 0

    @classmethod
    def for_url(cls, url: str) -> Self:
        """A proxy in front of the server a PostgreSQL DSN or Redis URL points at; once
        started, :attr:`url` is that URL pointed at the proxy."""
        proxy = cls(upstream_of(url))
        proxy._url = url
        return proxy

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> Self:
        """Start listening (idempotent); ``async with`` calls it."""
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, self._host, self._port)
            self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        """Stop listening, abort every connection and wait for every task to end."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for link in list(self._links):
            link.abort()
        self._flowing_up.set()  # wake stalled pumps so they see the aborted streams
        self._flowing_down.set()
        # Pumps are ours to cancel; connection handlers are asyncio's tasks (it inspects
        # their outcome, and logs a cancelled one as an error), so they end on their own
        # once their pumps have.
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, *self._handlers, return_exceptions=True)
        if server is not None:
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

    # ------------------------------------------------------------------ addresses
    @property
    def port(self) -> int:
        """The port the proxy listens on (known once started)."""
        if self._server is None:
            raise RuntimeError("ChaosProxy is not started: use 'async with' or await start()")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` clients connect to."""
        return self._host, self.port

    @property
    def url(self) -> str:
        """The URL :meth:`for_url` was given, pointed at the proxy (see :meth:`url_for`).

        Raises:
            RuntimeError: The proxy was not made by :meth:`for_url`, or is not started.
        """
        if self._url is None:
            raise RuntimeError("ChaosProxy.url needs a proxy made by ChaosProxy.for_url()")
        return self.url_for(self._url)

    def url_for(self, url: str) -> str:
        """``url`` (a PostgreSQL DSN or Redis URL) rewritten to connect through the proxy.

        User, password, database and options are kept; a ``host=``/``port=`` query
        parameter (a Unix-socket DSN) is replaced by the proxy's TCP address.

        Raises:
            ValueError: ``url`` is neither ``postgres(ql)://`` nor ``redis(s)://``.
        """
        return _rewrite_url(url, self._host, self.port)

    # ------------------------------------------------------------------- controls
    @property
    def mode(self) -> ChaosMode:
        """The current fault mode."""
        return self._mode

    @property
    def latency(self) -> float:
        """Seconds each forwarded chunk is held, per direction."""
        return self._latency

    def pass_through(self) -> None:
        """Forward traffic normally (latency, if any, stays; :meth:`heal` clears it)."""
        self._set_mode(ChaosMode.FORWARD)

    def blackhole(
        self, direction: Direction = "both", *, connections: Literal["all", "open"] = "all"
    ) -> None:
        """Stop moving bytes: connections stay up but nothing arrives.

        ``direction="to_client"`` holds only the replies (the server has executed a
        request, the client has not heard back); ``"to_upstream"`` only the requests.
        ``connections="open"`` holds only the connections open now, while new ones flow
        (a request stuck on one connection, overtaken by another).
        """
        if direction not in ("both", "to_upstream", "to_client"):
            raise ValueError(
                f"direction must be 'both', 'to_upstream' or 'to_client', got {direction!r}"
            )
        if connections == "all":
            self._set_mode(ChaosMode.BLACKHOLE, direction)
        elif connections == "open":
            for link in self._links:
                for flow, name in (
                    (link.to_upstream, "to_upstream"),
                    (link.to_client, "to_client"),
                ):
                    if direction in ("both", name):
                        flow.clear()
        else:
            raise ValueError(f"connections must be 'all' or 'open', got {connections!r}")

    def refuse(self) -> None:
        """Reset every *new* connection at once; pair with :meth:`reset_all` for an outage."""
        self._set_mode(ChaosMode.REFUSE)

    def add_latency(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` before forwarding it (replaces, not adds)."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        self._latency = float(seconds)

    def reset_all(self) -> int:
        """Abort every open connection (a RST on TCP); return how many were aborted."""
        links = list(self._links)
        for link in links:
            link.abort()
        self._resets += len(links)
        return len(links)

    def heal(self) -> None:
        """Back to a clean pass-through: no latency, no blackhole, no refusal."""
        self._latency = 0.0
        self._set_mode(ChaosMode.FORWARD)
        for link in self._links:
            link.to_upstream.set()
            link.to_client.set()

    @property
    def stats(self) -> ChaosStats:
        """The counters now."""
        return ChaosStats(
            accepted=self._accepted,
            refused=self._refused,
            resets=self._resets,
            active=len(self._links),
            bytes_to_upstream=self._bytes_up,
            bytes_to_client=self._bytes_down,
            stalled=self._stalled,
        )

    def __repr__(self) -> str:
        where = f"{self._host}:{self._port}" if self._server is not None else "not started"
        return f"<ChaosProxy {where} mode={self._mode.value} latency={self._latency:g}s>"

    # ------------------------------------------------------------------ internals
    def _set_mode(self, mode: ChaosMode, held: Direction = "both") -> None:
        self._mode = mode
        for flowing, direction in (
            (self._flowing_up, "to_upstream"),
            (self._flowing_down, "to_client"),
        ):
            if mode is ChaosMode.BLACKHOLE and held in ("both", direction):
                flowing.clear()
            else:
                flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()  # asyncio runs this callback as a task of its own
        if task is not None:
            self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accepted += 1
        if self._mode is ChaosMode.REFUSE:
            self._refused += 1
            _abort(writer)
            return
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            _abort(writer)  # the upstream itself is down: the client sees a reset too
            return
        link = _Link(writer, up_writer)
        if self._server is None:  # closed while connecting upstream
            link.abort()
            return
        self._links.add(link)
        try:
            to_upstream = asyncio.ensure_future(self._pump(reader, up_writer, link, upstream=True))
            to_client = asyncio.ensure_future(self._pump(up_reader, writer, link, upstream=False))
            pumps = (to_upstream, to_client)
            self._pumps.update(pumps)
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                if to_upstream.done() and not to_client.done() and self._replies_flow(link):
                    # The client finished sending (EOF): pass the half-close on and let
                    # the upstream answer what it was sent -- perhaps a request a
                    # blackhole held until after the client left -- as TCP would.
                    with contextlib.suppress(OSError):
                        if up_writer.can_write_eof():
                            up_writer.write_eof()
                    await asyncio.wait([to_client], timeout=_HALF_CLOSE_GRACE)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                self._pumps.difference_update(pumps)
        finally:
            self._links.discard(link)
            link.abort()

    def _replies_flow(self, link: _Link) -> bool:
        return self._flowing_down.is_set() and link.to_client.is_set()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self._upstream, tuple):
            return await asyncio.open_connection(*self._upstream)
        return await asyncio.open_unix_connection(self._upstream)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        upstream: bool,
    ) -> None:
        flows = (
            (self._flowing_up, link.to_upstream)
            if upstream
            else (self._flowing_down, link.to_client)
        )
        with contextlib.suppress(OSError):  # a reset on either side simply ends the pump
            while chunk := await reader.read(_CHUNK):
                await self._until_flowing(flows)
                if self._latency:
                    await asyncio.sleep(self._latency)
                    await self._until_flowing(flows)
                if writer.is_closing():
                    return
                writer.write(chunk)
                await writer.drain()
                if upstream:
                    self._bytes_up += len(chunk)
                else:
                    self._bytes_down += len(chunk)

    async def _until_flowing(self, flows: tuple[asyncio.Event, ...]) -> None:
        """Wait until this direction may move, proxy-wide and on this connection."""
        if all(flow.is_set() for flow in flows):
            return
        self._stalled += 1
        try:
            while not all(flow.is_set() for flow in flows):
                for flow in flows:
                    await flow.wait()
        finally:
            self._stalled -= 1


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s socket at once; on TCP with a RST (``SO_LINGER`` 0)."""
    transport = writer.transport
    if transport.is_closing():
        transport.abort()  # a close() in progress may still be flushing: cut it
        return
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# ------------------------------------------------------------------ URLs and upstreams
# Parsing only, no I/O. Only the two URL families the chaos tier needs are understood:
# PostgreSQL DSNs in URL form (what asyncpg accepts) and redis:// / rediss:// URLs.
Upstream: TypeAlias = tuple[str, int] | str | os.PathLike[str]
"""Where a :class:`~infra.testing.chaos.ChaosProxy` forwards to: ``(host, port)`` or a
Unix socket path."""

_PG_SCHEMES = ("postgres", "postgresql")
_REDIS_SCHEMES = ("redis", "rediss")


def _rewrite_url(url: str, host: str, port: int) -> str:
    """``url`` pointed at ``host:port`` over TCP; see :meth:`ChaosProxy.url_for
    <infra.testing.chaos.ChaosProxy.url_for>`.

    Raises:
        ValueError: ``url`` is neither ``postgres(ql)://`` nor ``redis(s)://``.
    """
    parts = urlsplit(url)
    _check_scheme(parts.scheme.lower())
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{host}:{port}"
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key.lower() not in ("host", "port")
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))


def upstream_of(url: str) -> Upstream:
    """The server a PostgreSQL DSN or Redis URL points at, as a :data:`Upstream`.

    A DSN whose host is a directory (``?host=/run/postgresql`` or ``@%2Frun%2Fpostgresql``)
    names the Unix socket ``<dir>/.s.PGSQL.<port>`` (port default 5432).

    Raises:
        ValueError: An unsupported scheme, or a URL without a host.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    _check_scheme(scheme)
    query = dict(parse_qsl(parts.query))
    if scheme in _PG_SCHEMES:
        first = parts.netloc.rpartition("@")[2].split(",")[0]  # several hosts: the first
        if first.startswith("["):  # [IPv6]:port
            host, _, rest = first[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, _, port_text = first.partition(":")
        host = unquote(query.get("host", host))
        port = int(query.get("port") or port_text or 5432)
        if host.startswith("/"):
            return str(Path(host) / f".s.PGSQL.{port}")
        if not host:
            raise ValueError("the DSN names no host: add @host:port or ?host=/socket/dir")
        return host, port
    if not parts.hostname:  # redis:// or rediss://
        raise ValueError("the Redis URL names no host: use redis://host:port/db")
    return parts.hostname, parts.port or 6379


def _check_upstream(upstream: object) -> tuple[str, int] | str:
    """``upstream`` normalised to ``(host, port)`` or a path string.

    Raises:
        TypeError: Neither a ``(str, int)`` pair nor a path.
    """
    if isinstance(upstream, tuple):
        if (
            len(upstream) == 2
            and isinstance(upstream[0], str)
            and isinstance(upstream[1], int)
            and not isinstance(upstream[1], bool)
        ):
            return upstream[0], upstream[1]
        raise TypeError(f"upstream must be (host: str, port: int), got {upstream!r}")
    if isinstance(upstream, str | os.PathLike):
        return os.fspath(upstream)
    raise TypeError(
        f"upstream must be (host, port) or a Unix socket path, got {type(upstream).__name__}"
    )


def _check_scheme(scheme: str) -> None:
    if scheme not in _PG_SCHEMES + _REDIS_SCHEMES:
        raise ValueError(
            f"url must be a postgresql:// DSN or a redis:// URL, got scheme {scheme!r}"
        )

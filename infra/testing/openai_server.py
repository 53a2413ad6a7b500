"""A scripted OpenAI-compatible HTTP server on loopback, for tests of LLM code paths.

::

    with OpenAITestServer() as server:
        adapter = LiteLLMAdapter(model="openai/test-chat", api_base=server.base_url,
                                 api_key="test")
        server.script(Status(429, headers={"Retry-After": "0.2"}))   # next request: 429
        completion = await adapter.complete([ChatMessage("user", "hi")])

It serves ``POST /v1/chat/completions`` (plain and ``stream=true`` as server-sent events,
usage in the last chunk when ``stream_options.include_usage`` is set), ``POST
/v1/embeddings`` and ``GET /v1/models``, answering from :mod:`infra.testing.llm_answers`
-- the same deterministic model the fake LLM uses, so one contract suite runs on both.
Every request is recorded (:attr:`OpenAITestServer.requests`), the ``Authorization``
header reduced to whether it was present, and how every answer ended
(:attr:`OpenAITestServer.endings`: ``"sent"``, ``"cut"`` by a scripted
:class:`TruncatedStream`, or ``"client closed"`` -- the client dropped the connection
before the answer was complete, which :meth:`OpenAITestServer.wait_answered` lets a
test wait for: a client that leaves a stream open holds a connection and the provider's
work).

Faults are scripted per request, first in first out (:meth:`OpenAITestServer.script`):
:class:`Status` (any status, body and headers: 429 with ``Retry-After``, 500, 401, a
context-window 400), :class:`Delay` (answer late: client timeouts), :class:`SlowStream`
(a stream whose first and later chunks come late), :class:`TruncatedStream` (the
connection drops after some chunks, no ``[DONE]``), :class:`Malformed` (200 with a body
that is not JSON) and :class:`ContentFiltered` (the answer stops with
``finish_reason="content_filter"``) and :class:`MalformedChunk` (one frame of a stream
replaced by one that is not a chunk).

:func:`loopback_only` proves the other half of "no test reaches the internet": while it
is active, every connection and name lookup the process makes to anything but loopback
is refused and recorded, and leaving it fails if there was one (a refused connection
alone could be swallowed, e.g. by litellm's price-map download, and go unnoticed).

Why aiohttp in a thread: the server must outlive any one event loop (pytest-asyncio
loops, a benchmark's ``asyncio.run``), and aiohttp comes with litellm (the ``llm``
extra), so the test kit needs nothing more. It binds 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from infra.testing.llm_answers import (
    DEFAULT_DIMENSIONS,
    answer,
    answer_chunks,
    count_tokens,
    embedding,
)

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "BeyondLoopbackError",
    "ContentFiltered",
    "Delay",
    "Fault",
    "Malformed",
    "MalformedChunk",
    "OpenAITestServer",
    "RecordedRequest",
    "SlowStream",
    "Status",
    "TruncatedStream",
    "loopback_only",
]

_LOOPBACK: Final = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Status:
    """Answer with ``status``, an OpenAI-style error body and ``headers``."""

    status: int
    message: str = "scripted failure"
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delay:
    """Answer normally, ``seconds`` late (longer than the client's timeout: a timeout)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class SlowStream:
    """Stream with ``first_chunk_delay`` before the first chunk and ``chunk_delay`` between
    the others (plain requests are delayed by ``first_chunk_delay``)."""

    first_chunk_delay: float = 0.0
    chunk_delay: float = 0.0


@dataclass(frozen=True, slots=True)
class TruncatedStream:
    """Send ``after_chunks`` chunks of a stream, then drop the connection (no ``[DONE]``)."""

    after_chunks: int = 1


@dataclass(frozen=True, slots=True)
class Malformed:
    """Answer 200 with a body that is not JSON."""

    body: str = '{"id": "chatcmpl-broken", "choices": ['


@dataclass(frozen=True, slots=True)
class ContentFiltered:
    """Answer with an empty text and ``finish_reason="content_filter"``."""


@dataclass(frozen=True, slots=True)
class MalformedChunk:
    """Stream normally, but send ``frame`` in place of chunk ``at`` (0-based; past the
    last chunk: in place of the usage chunk or ``[DONE]``) -- a frame that is not a JSON
    chunk, or a chunk whose fields have the wrong types."""

    at: int
    frame: str = 'data: {"id": "chatcmpl-broken", "choices": [\n\n'


Fault = Status | Delay | SlowStream | TruncatedStream | Malformed | MalformedChunk | ContentFiltered


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server received (the API key is never kept)."""

    path: str
    body: Mapping[str, Any]
    authorized: bool


class BeyondLoopbackError(ConnectionRefusedError):
    """A connection or name lookup beyond loopback, refused under :func:`loopback_only`."""


#: The active guards' records of refused destinations (empty: no guard is active).
_GUARDS: list[list[str]] = []
_HOOKED: list[bool] = []


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a name other than localhost: it would go to a resolver


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # sys.audit hooks cannot be removed, so this one is installed once and does nothing
    # unless a guard is active.
    if not _GUARDS:
        return
    if event == "socket.getaddrinfo":
        destination = args[0]
    elif event == "socket.connect":
        address = args[1]
        if not isinstance(address, tuple):  # a Unix socket path: local by definition
            return
        destination = address[0]
    else:
        return
    if _is_loopback(destination):
        return
    _GUARDS[-1].append(f"{event} {destination!r}")  # the innermost guard owns the block
    raise BeyondLoopbackError(f"tests stay on loopback: {event} to {destination!r} refused")


@contextlib.contextmanager
def loopback_only() -> Iterator[list[str]]:
    """Refuse every connection and name lookup beyond loopback made in this process while
    active (the list it yields records them) and fail on exit if there was any. Nested,
    the innermost guard records and fails."""
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED.append(True)
    refused: list[str] = []
    _GUARDS.append(refused)
    try:
        yield refused
    finally:
        del _GUARDS[next(i for i, guard in enumerate(_GUARDS) if guard is refused)]
    if refused:
        raise AssertionError(f"reached beyond loopback: {refused}")


class OpenAITestServer:
    """The scripted server; see the module docstring. Start with ``with`` or :meth:`start`."""

    def __init__(self) -> None:
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._endings: list[str] = []
        self._answering = 0
        self._answered = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        """Start serving on a free loopback port (idempotent); returns ``self``."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=serve, name="openai-test-server", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (started servers only)."""
        if self._port is None:
            raise RuntimeError("the server is not started; call start() or use `with`")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: the ``api_base`` to give litellm."""
        return f"http://{_LOOPBACK}:{self.port}/v1"

    # ------------------------------------------------------------------- scripting
    def script(self, *faults: Fault, times: int = 1) -> None:
        """Queue ``faults`` for the next requests, in order, each repeated ``times``."""
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times!r}")
        with self._lock:
            for fault in faults:
                self._faults.extend([fault] * times)

    def reset(self) -> None:
        """Forget scripted faults and recorded requests."""
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self._endings.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def endings(self) -> list[str]:
        """How each finished answer ended, in the order they ended: ``"sent"``, ``"cut"``
        (a scripted truncation) or ``"client closed"`` (the client went away first)."""
        with self._lock:
            return list(self._endings)

    def wait_answered(self, timeout: float = 30.0) -> list[str]:
        """Block until no answer is in progress (at most ``timeout`` seconds: a bound on
        a hang, not a measurement); returns :attr:`endings`."""
        with self._answered:
            self._answered.wait_for(lambda: self._answering == 0, timeout)
            return list(self._endings)

    def wait_requests(self, count: int, timeout: float = 30.0) -> int:
        """Block until ``count`` requests have been received (at most ``timeout``
        seconds: a bound on a hang); returns how many were."""
        with self._answered:
            self._answered.wait_for(lambda: len(self._requests) >= count, timeout)
            return len(self._requests)

    @contextlib.contextmanager
    def _answering_one(self) -> Iterator[list[str]]:
        """Count an answer in progress; its handler appends how it ended (default
        ``"sent"``; a cancelled handler -- the client disconnected -- ``"client closed"``)."""
        ending: list[str] = []
        with self._lock:
            self._answering += 1
        try:
            yield ending
        except asyncio.CancelledError:
            ending.append("client closed")
            raise
        finally:
            with self._answered:
                self._answering -= 1
                self._endings.append(ending[0] if ending else "sent")
                self._answered.notify_all()

    @property
    def pending_faults(self) -> int:
        """Scripted faults not used yet."""
        with self._lock:
            return len(self._faults)

    # --------------------------------------------------------------------- serving
    async def _open(self) -> None:
        from aiohttp import web  # noqa: PLC0415 - comes with the llm extra

        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._models)
        # handler_cancellation: a client that disconnects cancels its handler, so a
        # delayed answer ends at once and is recorded as "client closed".
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, _LOOPBACK, 0)
        await site.start()
        self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _take(self, path: str, body: Mapping[str, Any], authorized: bool) -> Fault | None:
        with self._answered:
            self._requests.append(RecordedRequest(path, body, authorized))
            self._answered.notify_all()
            return self._faults.popleft() if self._faults else None

    async def _receive(self, request: web.Request) -> tuple[dict[str, Any], Fault | None]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        authorized = bool(request.headers.get("Authorization", "").strip())
        return body, self._take(request.path, body, authorized)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web  # noqa: PLC0415

        del request  # every GET route answers the same
        return web.json_response({"object": "list", "data": [{"id": "test-chat"}]})

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web  # noqa: PLC0415

        body, fault = await self._receive(request)
        early = await _apply_fault(fault)
        if early is not None:
            return early
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else list(raw or [])
        if not texts or not all(isinstance(t, str) and t for t in texts):
            # OpenAI's own answer to an empty list, a non-string or an empty string.
            return _error(400, "'$.input' is invalid. Please check the API reference")
        dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
        data = [
            {"object": "embedding", "index": i, "embedding": embedding(text, int(dimensions))}
            for i, text in enumerate(texts)
        ]
        tokens = count_tokens(texts) - len(texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "test-embedding"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        with self._answering_one() as ending:
            return await self._answer_chat(request, ending)

    async def _answer_chat(self, request: web.Request, ending: list[str]) -> web.StreamResponse:
        from aiohttp import web  # noqa: PLC0415

        body, fault = await self._receive(request)
        stream = bool(body.get("stream"))
        if isinstance(fault, SlowStream) and not stream:
            await asyncio.sleep(fault.first_chunk_delay)
            fault = None
        early = await _apply_fault(fault)
        if early is not None:
            return early
        messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        contents = [str(m.get("content") or "") for m in messages]
        last_user = next(
            (str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        text, completion_tokens, finish = answer(last_user, max_tokens)
        if isinstance(fault, ContentFiltered):
            text, completion_tokens, finish = "", 0, "content_filter"
        model = str(body.get("model", "test-chat"))
        usage = {
            "prompt_tokens": count_tokens(contents),
            "completion_tokens": completion_tokens,
            "total_tokens": count_tokens(contents) + completion_tokens,
        }
        ident = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        if not stream:
            return web.json_response(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await _stream(
            request,
            fault,
            ending,
            ident=ident,
            model=model,
            text=text,
            finish=finish,
            usage=usage,
            include_usage=include_usage,
        )


async def _apply_fault(fault: Fault | None) -> web.StreamResponse | None:
    """The response a fault forces (``None``: answer normally, perhaps after a delay)."""
    from aiohttp import web  # noqa: PLC0415

    if isinstance(fault, Status):
        return _error(fault.status, fault.message, code=fault.code, headers=fault.headers)
    if isinstance(fault, Malformed):
        return web.Response(status=200, text=fault.body, content_type="application/json")
    if isinstance(fault, Delay):
        await asyncio.sleep(fault.seconds)
    return None


def _error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    from aiohttp import web  # noqa: PLC0415

    kind = "invalid_request_error" if status < 500 else "server_error"
    payload = {"error": {"message": message, "type": kind, "code": code, "param": None}}
    return web.json_response(payload, status=status, headers=dict(headers or {}))


async def _stream(
    request: web.Request,
    fault: Fault | None,
    ending: list[str],
    *,
    ident: str,
    model: str,
    text: str,
    finish: str,
    usage: Mapping[str, int],
    include_usage: bool,
) -> web.StreamResponse:
    from aiohttp import web  # noqa: PLC0415

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    slow = fault if isinstance(fault, SlowStream) else SlowStream()
    cut = fault.after_chunks if isinstance(fault, TruncatedStream) else None
    broken = fault if isinstance(fault, MalformedChunk) else None

    def chunk(delta: Mapping[str, Any], finish_reason: str | None) -> bytes:
        payload = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish_reason}],
        }
        return f"data: {json.dumps(payload)}\n\n".encode()

    pieces = answer_chunks(text) if text else []
    frames = [chunk({"role": "assistant", "content": p}, None) for p in pieces]
    frames.append(chunk({}, finish))
    if include_usage:
        tail = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [],
            "usage": dict(usage),
        }
        frames.append(f"data: {json.dumps(tail)}\n\n".encode())
    frames.append(b"data: [DONE]\n\n")
    if broken is not None:
        frames[min(broken.at, len(frames) - 1)] = broken.frame.encode()
    try:
        for index, frame in enumerate(frames):
            if cut is not None and index >= cut:
                ending.append("cut")
                transport = request.transport
                if transport is not None:
                    transport.abort()  # drop the connection mid-stream, no terminating chunk
                return response
            await asyncio.sleep(slow.first_chunk_delay if index == 0 else slow.chunk_delay)
            await response.write(frame)
        await response.write_eof()
    except ConnectionResetError:
        ending.append("client closed")  # the client gave up: nothing left to send
    return response

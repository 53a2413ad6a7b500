"""What every embedded server shares: lifecycle, scratch directory, reaper, ports, logs.

:class:`EmbeddedServer` is the template. A subclass implements ``_start(scratch)`` (start
the process inside the scratch directory, record it with :func:`record_server`, wait for
readiness) and ``_stop()`` (stop it politely). The base class makes both idempotent and
thread-safe, registers an ``atexit`` stop, and -- whatever happens -- ends with
:func:`~infra.testing.embedded.reaper.reap`, so the process is signalled and the
directory removed even when the polite stop failed. How a hard death of the owner is
handled is explained in :mod:`infra.testing.embedded.reaper`.

Servers that run as an OS process (Redis, PostgreSQL; not Qdrant's in-process local mode)
derive from :class:`EmbeddedProcessServer`, which adds what a chaos test needs to simulate
an outage: :attr:`~EmbeddedProcessServer.pid`, :meth:`~EmbeddedProcessServer.kill` (any
signal; a terminating one waits until the server and its children are gone) and
:meth:`~EmbeddedProcessServer.restart` (same port, same data directory, readiness waited
for). Between ``kill`` and ``restart`` the object stays "running" -- it still owns its
scratch directory and endpoints -- while :attr:`~EmbeddedProcessServer.alive` is false.

Ports are found by binding port 0 (or a random port of a range) on loopback and closing
the socket. Another process can take the port before the server binds it; servers that can
tell (Redis logs "Address already in use") retry with fresh ports -- except on
``restart()``, whose point is the same port, and which then fails with the log's tail.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Final, Self

import psutil  # type: ignore[import-untyped]  # ships no type information

from infra.exceptions import InfraError
from infra.redaction import redact_text
from infra.testing.embedded.reaper import DIR_PREFIX, reap, sweep_stale, write_owner

__all__ = [
    "LOOPBACK",
    "EmbeddedProcessServer",
    "EmbeddedServer",
    "EmbeddedServerError",
    "close_quietly",
    "free_port",
    "log_tail",
    "port_accepts",
    "wait_until",
]

LOOPBACK = "127.0.0.1"
_REAPER_SCRIPT = Path(__file__).with_name("reaper.py")
_sweep_lock = threading.Lock()
#: Signals after which kill() waits for the server to be gone (they end it, politely or not).
_TERMINATING: Final = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
_swept = False


class EmbeddedServerError(InfraError):
    """An embedded server could not be started; the message ends with its log's tail."""

    default_message = "embedded server failed to start"
    hint = (
        "see the server log excerpt above, or point the matching SEMANTICA_TEST_* "
        "variable at an external server (docs/testing.md)"
    )


def free_port(host: str = LOOPBACK, *, low: int | None = None, high: int | None = None) -> int:
    """A TCP port on ``host`` that was free a moment ago.

    Without a range the kernel picks one (port 0). With ``low``/``high`` (inclusive), random
    ports of that range are tried -- FalkorDB's Bolt listener, for one, silently fails on
    ports of 32768 and above, so its port must come from a lower range.
    """
    if (low is None) != (high is None):
        raise ValueError("free_port: give both low and high, or neither")
    if low is None or high is None:
        candidates: list[int] = [0]
    else:
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"free_port: need 1 <= low <= high <= 65535, got {low}..{high}")
        # random is fine here: spreading picks over the range, not security.
        candidates = [random.randint(low, high) for _ in range(64)]  # noqa: S311
    for candidate in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise EmbeddedServerError(f"no free TCP port on {host} in {low}..{high}")


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, secrets masked; a note if it is unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc.strerror})"
    tail = "\n".join(text.splitlines()[-lines:])
    return redact_text(tail) if tail else f"(log {path} is empty)"


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    interval: float = 0.02,
) -> bool:
    """Poll ``ready`` until it is true (True), ``alive`` turns false or time runs out (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return True
        if not alive() or time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _sweep_once() -> None:
    """Reap stale scratch directories of dead owners, once per process."""
    global _swept  # noqa: PLW0603 - a process-wide "already done" flag is the point
    with _sweep_lock:
        if not _swept:
            _swept = True
            sweep_stale()


class EmbeddedServer(ABC):
    """Base of the embedded servers: idempotent ``start``/``stop`` and context managers.

    Args:
        startup_timeout: Seconds to wait for readiness before raising
            :class:`EmbeddedServerError` (with the log's tail).
    """

    #: Short name used in errors and in the scratch directory's name.
    component: ClassVar[str]

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        if not startup_timeout > 0:
            raise ValueError(
                f"startup_timeout must be > 0 seconds, got {startup_timeout!r}; "
                "pass e.g. startup_timeout=30.0"
            )
        self.startup_timeout = float(startup_timeout)
        self._lock = threading.RLock()
        self._running = False
        self._scratch: Path | None = None
        self._reaper: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        """Whether ``start()`` succeeded and ``stop()`` has not run since."""
        return self._running

    @property
    def scratch_dir(self) -> Path | None:
        """The temporary directory of the running server (removed on stop)."""
        return self._scratch

    def start(self) -> Self:
        """Start the server and wait until it is ready; a no-op if it already runs."""
        with self._lock:
            if self._running:
                return self
            _sweep_once()
            if self._uses_scratch():
                self._scratch = Path(
                    tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{self.component}-")
                ).resolve()
                write_owner(self._scratch)
                self._reaper = self._spawn_reaper(self._scratch)
            try:
                self._start(self._scratch)
            except BaseException:
                # Keep the original error; the reap in _teardown covers a failed _stop.
                with contextlib.suppress(Exception):
                    self._stop()
                self._teardown()
                raise
            self._running = True
            atexit.register(self.stop)
            return self

    def stop(self) -> None:
        """Stop the server and delete its temporary files; a no-op if it is not running."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            atexit.unregister(self.stop)
            try:
                self._stop()
            finally:
                self._teardown()

    def _teardown(self) -> None:
        if self._scratch is not None:
            reap(self._scratch)  # signals whatever still runs, deletes the directory
            self._scratch = None
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            if reaper.stdin is not None:
                reaper.stdin.close()  # EOF: the reaper reaps (nothing left) and exits
            try:
                reaper.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                reaper.kill()
                reaper.wait()

    @staticmethod
    def _spawn_reaper(scratch: Path) -> subprocess.Popen[bytes]:
        # Own session: a terminal's Ctrl-C must reach only the owner, which then stops
        # the server itself; the reaper is for the owner's *unclean* death.
        return subprocess.Popen(  # noqa: S603 - fixed argv: our interpreter, our script
            [sys.executable, "-I", str(_REAPER_SCRIPT), "watch", str(scratch)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _uses_scratch(self) -> bool:
        """Whether this server needs a scratch directory (and so a reaper)."""
        return True

    def _require_running(self) -> None:
        if not self._running:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")

    def _error(self, what: str, log: Path | None, **details: object) -> EmbeddedServerError:
        """An :class:`EmbeddedServerError` whose message carries the log's tail."""
        message = what if log is None else f"{what}\n--- last lines of {log} ---\n{log_tail(log)}"
        return EmbeddedServerError(message, component=self.component, details=details)

    @abstractmethod
    def _start(self, scratch: Path | None) -> None:
        """Start the process and return once it is ready, or raise EmbeddedServerError."""

    @abstractmethod
    def _stop(self) -> None:
        """Stop the process politely (the base class reaps afterwards regardless)."""

    # --------------------------------------------------------------- context managers
    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        # Starting blocks for up to a second: keep the event loop free meanwhile.
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<{type(self).__name__} {state}>"


class EmbeddedProcessServer(EmbeddedServer):
    """An embedded server that is an OS process: ``pid``, ``kill(signal)``, ``restart()``.

    A subclass implements, besides ``_start``/``_stop``:

    * ``_server_pid()`` -- the pid of the current server process;
    * ``_relaunch(scratch)`` -- start the server again in the same scratch directory, on
      the same port(s), and return once it is ready (or raise
      :class:`EmbeddedServerError`); the previous process is gone when it is called.
    """

    #: How long kill() and restart() wait for a server process to exit.
    exit_timeout: ClassVar[float] = 10.0

    @property
    def pid(self) -> int:
        """The server process id (a new one after :meth:`restart`)."""
        self._require_running()
        return self._server_pid()

    @property
    def alive(self) -> bool:
        """Whether the server process exists right now (false after :meth:`kill`)."""
        return self._running and _process_alive(self._server_pid())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the server process -- a crash (``SIGKILL``, the default), a
        polite stop (``SIGTERM``), a freeze (``SIGSTOP``/``SIGCONT``) ...

        After a terminating signal (``SIGKILL``, ``SIGTERM``, ``SIGINT``, ``SIGQUIT``) it
        returns once the server and every process it had started are gone, so the port is
        closed and :meth:`restart` can reuse the data directory. The scratch directory and
        endpoints stay; :meth:`stop` still cleans up.

        Raises:
            RuntimeError: the server was never started (or was stopped).
            EmbeddedServerError: the process outlived ``exit_timeout`` after the signal.
        """
        with self._lock:
            self._require_running()
            self._signal(self._server_pid(), sig)

    def restart(self) -> Self:
        """Start the server again on the same port and data directory; wait until ready.

        A server that is still alive is stopped politely first; after :meth:`kill` it is
        simply started. Whatever the data directory kept (nothing for Redis unless
        persistence was turned on in ``extra_args``; everything for PostgreSQL) is there.

        Raises:
            RuntimeError: the server was never started (or was stopped).
            EmbeddedServerError: it did not come back (the message ends with its log).
        """
        with self._lock:
            self._require_running()
            pid = self._server_pid()
            if _process_alive(pid):
                self._signal(pid, self._polite_signal())
            self._relaunch(self._scratch)
            return self

    def _signal(self, pid: int, sig: int) -> None:
        try:
            family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return  # already gone: nothing to signal, nothing to wait for
        if sig not in _TERMINATING:
            return
        if not wait_until(
            lambda: not any(_process_alive(p.pid) for p in family), timeout=self.exit_timeout
        ):
            raise EmbeddedServerError(
                f"{self.component} process {pid} still runs {self.exit_timeout:g} s after "
                f"signal {signal.Signals(sig).name}",
                component=self.component,
                details={"pid": pid, "signal": int(sig)},
            )

    def _polite_signal(self) -> int:
        """The signal :meth:`restart` stops a live server with (it must end the process)."""
        return signal.SIGTERM

    @abstractmethod
    def _server_pid(self) -> int:
        """The current server process id."""

    @abstractmethod
    def _relaunch(self, scratch: Path | None) -> None:
        """Start the server again in ``scratch`` on the same port(s); return when ready."""


def _process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie -- exited, not yet reaped by its parent -- does not)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def close_quietly(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Terminate a child process, kill it after ``grace`` seconds, and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()  # SIGKILL cannot be ignored; this returns promptly

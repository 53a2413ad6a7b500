"""The README's first command: the example service runs on embedded backends, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_quickstart_runs_every_endpoint_against_real_servers() -> None:
    """`python examples/quickstart.py` exits 0 after exercising every endpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANTICA_")}
    done = subprocess.run(  # noqa: S603 - our own example, fixed arguments
        [sys.executable, "-W", "error", str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "-> 201" in out
    assert "-> 409" in out
    assert "'visits': 5" in out
    assert "GET  /users/999999          -> 404" in out
    assert "/ready                 -> 200 {'status': 'healthy'" in out
    assert "postgres_query_latency_ms: count=" in out


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SEMANTICA_TEST_REDIS_URL", "http://cache.internal:6379"),
        ("SEMANTICA_TEST_POSTGRES_DSN", "mysql://app@db.internal/app"),
    ],
)
def test_a_bad_setting_ends_with_one_line_naming_it(variable: str, value: str) -> None:
    """A configuration error is one line on stderr naming the variable, exit code 2 --
    not a 30-line traceback (nothing starts: the variable is checked first)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANTICA_")}
    env[variable] = value
    done = subprocess.run(  # noqa: S603 - our own example, fixed arguments
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("quickstart: ")
    assert variable in lines[0]

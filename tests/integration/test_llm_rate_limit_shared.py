"""LLMRateLimiter shared through Redis: two processes, four producers, one rate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("_llm_limiter_worker.py")
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.redis


def test_two_processes_share_the_configured_rate(redis_url: str) -> None:
    """Accuracy across processes: 2 processes x 2 producers at 6 000 rpm (100/s) on one
    Redis bucket are granted 100/s within 2 %, measured over 2 s of steady state (after
    the initial burst): 200 grants, the statistical power of 10 s at 20/s. Both workers
    are connected before the common start time is handed out."""
    key = f"test-llm-{uuid.uuid4().hex}"
    window = 2.8
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(WORKER), redis_url, key, str(window), "2", "6000"]
    workers = [
        subprocess.Popen(  # noqa: S603 - our interpreter, our script
            command,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    start = time.monotonic() + 0.3
    for worker in workers:  # both get the start before either is waited for
        assert worker.stdin is not None
        worker.stdin.write(f"{start}\n")
        worker.stdin.flush()
    per_worker: list[list[float]] = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        per_worker.append(json.loads(out))
    steady = [[t for t in times if start + 0.5 <= t < start + 2.5] for times in per_worker]
    assert all(len(times) > 40 for times in steady), "both processes took part"
    assert sum(len(times) for times in steady) == pytest.approx(200, rel=0.02)

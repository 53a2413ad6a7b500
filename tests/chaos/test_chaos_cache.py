"""ThreeTierCache when Redis fails: behind a ChaosProxy whose network fails, and as a
real crash -- the embedded Redis SIGKILLed and restarted on the same port, under
concurrent readers, and across processes (a writer and RESP2/RESP3 readers) with the
staleness bound checked on every read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from config import Settings
from infra.cache import RedisCache, ThreeTierCache, build_redis_client
from infra.observability.metrics import MetricsCollector
from infra.resilience import ResiliencePolicy, RetryConfig, redis_no_retry
from infra.resilience.clock import ManualClock
from infra.testing.chaos import ChaosProxy
from infra.testing.embedded import EmbeddedRedis

pytestmark = pytest.mark.redis

PROBE_INTERVAL = 0.3
#: How long a phase may take before the test gives up: a hang guard, not a bound.
PATIENCE = 60.0


class CountingLoader:
    """A loader that returns ``value`` and counts its calls."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        return self.value


def is_degraded(cache: ThreeTierCache) -> bool:
    """``cache.degraded``, read through a call (it changes between the test's steps)."""
    return cache.degraded


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[ChaosProxy]:
    """A ChaosProxy in front of the embedded Redis, closed after the test."""
    async with ChaosProxy.for_url(redis_url) as chaos:
        yield chaos


async def test_redis_outage_falls_through_to_loader_then_l2_is_used_again(
    proxy: ChaosProxy, redis_url: str
) -> None:
    """Outage: loader answers, no error, no network attempt between probes; healed: L2 hit.

    Probe time is virtual (a ManualClock): "within one probe interval" cannot be
    stretched past the interval by a slow machine, and the probe is due exactly when
    the test says so. The socket timeout is generous: the outage is refused connections,
    which fail at once, and the probe after healing must not time out on a busy host."""
    namespace = f"chaos-{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=proxy.url_for(redis_url), redis_socket_timeout=10.0)
    policy = ResiliencePolicy.build(
        "redis", retry=RetryConfig(max_attempts=2, base_delay=0.01, jitter=False)
    )
    l2 = RedisCache(build_redis_client(settings), policy=policy, owns_client=True)
    direct = Redis.from_url(redis_url)  # a second writer that bypasses the proxy
    clock = ManualClock()
    cache = ThreeTierCache(l2, namespace=namespace, probe_interval=PROBE_INTERVAL, clock=clock)
    other = ThreeTierCache(RedisCache(direct), namespace=namespace)
    try:
        first = CountingLoader("a")
        assert await cache.get("a", first) == "a"
        assert first.calls == 1
        assert not is_degraded(cache)

        proxy.refuse()
        proxy.reset_all()
        during = CountingLoader("b")
        assert await cache.get("b", during) == "b"  # no error reaches the caller
        assert during.calls == 1
        assert is_degraded(cache)
        attempts = proxy.stats.accepted
        for i in range(10):  # no time passes: skipped, no connection attempt
            assert await cache.get(f"c{i}", CountingLoader("c")) == "c"
        assert proxy.stats.accepted == attempts

        await other.set("z", "from-l2")  # written to L2 while our network is down
        proxy.heal()
        clock.advance(PROBE_INTERVAL)  # the probe is due
        after = CountingLoader("from-loader")
        assert await cache.get("z", after) == "from-l2"  # served by L2: the probe read
        assert after.calls == 0
        assert not is_degraded(cache)
    finally:
        await cache.close()
        await other.close()
        await l2.aclose()
        await direct.aclose()


# --------------------------------------------------- a real crash: SIGKILL, restart
MAX_STALENESS = 0.3
PROBE = 0.1
FILL_LEASE = 30.0  # a leaked lease would stall reads this long: far above any bound below
KEYS = [f"k{i}" for i in range(10)]


@pytest.mark.parametrize("protocol", [2, 3])
async def test_sigkill_and_restart_under_concurrent_readers(
    protocol: int, caplog: pytest.LogCaptureFixture
) -> None:
    """20 readers over 10 keys while the embedded Redis is SIGKILLed and restarted on the
    same port: no caller error; one degradation and one recovery (logged once each);
    loads during the outage bounded by keys x staleness windows; no read after the
    restart waits on a leftover lease; no lease left; L2 refilled."""
    async with EmbeddedRedis(graph=False) as server:
        client = Redis.from_url(
            server.url,
            protocol=protocol,
            retry=redis_no_retry(),
            # Generous: a SIGKILLed server's connections fail at once (reset, refused);
            # a short timeout would only let a busy host degrade the cache a second time.
            socket_timeout=10.0,
            socket_connect_timeout=10.0,
        )
        checker = Redis.from_url(server.url)
        metrics = MetricsCollector()
        cache = ThreeTierCache(
            RedisCache(client),
            redis=client,
            namespace="chaos",
            metrics=metrics,
            max_staleness=MAX_STALENESS,
            probe_interval=PROBE,
            fill_lease=FILL_LEASE,
        )
        loads: list[float] = []
        reads: list[tuple[float, float]] = []  # (start, latency)
        errors: list[BaseException] = []
        stop = asyncio.Event()

        def loader(key: str) -> Callable[[], Awaitable[str]]:
            async def load() -> str:
                loads.append(time.monotonic())
                await asyncio.sleep(0.002)  # a query's worth of waiting
                return f"{key}-row"

            return load

        async def reader(offset: int) -> None:
            i = offset
            while not stop.is_set():
                key = KEYS[i % len(KEYS)]
                i += 1
                started = time.monotonic()
                try:
                    assert await cache.get(key, loader(key)) == f"{key}-row"
                except Exception as exc:  # collected and asserted on
                    errors.append(exc)
                reads.append((started, time.monotonic() - started))
                await asyncio.sleep(0.001)

        try:
            assert await cache.start()
            with caplog.at_level(logging.INFO, logger="infra.cache.three_tier"):
                tasks = [asyncio.create_task(reader(j)) for j in range(20)]
                await asyncio.sleep(0.3)
                killed_at = time.monotonic()
                await asyncio.to_thread(server.kill)  # SIGKILL, waits until it is gone
                await asyncio.sleep(0.8)
                await asyncio.to_thread(server.restart)  # same port, new process
                restarted_at = time.monotonic()
                await eventually(lambda: cache.coherent and not cache.degraded, PATIENCE)
                recovered_at = time.monotonic()

                async def refilled() -> bool:
                    """Every key back in L2, and reads started after the restart."""
                    stored = await checker.exists(*(f"chaos:v:{k}" for k in KEYS))
                    return stored == len(KEYS) and any(t >= restarted_at for t, _ in reads)

                await eventually_async(refilled, PATIENCE)
                stop.set()
                await asyncio.gather(*tasks)

            assert errors == []
            assert metrics.get_counter("cache_degraded_total") == 1
            assert metrics.get_counter("cache_l1_resets_total", reason="recovered") == 1
            messages = [r.getMessage() for r in caplog.records]
            assert len([m for m in messages if "L2 unreachable" in m]) == 1
            assert len([m for m in messages if "L2 reachable again" in m]) == 1
            # Per key: one load per staleness window while blind (+1 for a partial
            # window), one after L1 is cleared on resubscription, one refilling the
            # empty L2 after the recovery.
            windows = (recovered_at - killed_at) / MAX_STALENESS + 3
            outage_loads = [t for t in loads if killed_at <= t <= recovered_at]
            assert len(outage_loads) <= len(KEYS) * windows
            after = [latency for started, latency in reads if started >= restarted_at]
            assert after
            assert max(after) < FILL_LEASE / 3
            assert [k async for k in checker.scan_iter(match="chaos:lock:*")] == []
            assert await checker.exists(*(f"chaos:v:{k}" for k in KEYS)) == len(KEYS)
        finally:
            await cache.close()
            await client.aclose()
            await checker.aclose()


async def eventually(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def eventually_async(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


# ------------------------------------ staleness across processes, RESP2 and RESP3
WORKER = Path(__file__).resolve().parents[1] / "integration" / "_cache_worker.py"
ROOT = Path(__file__).resolve().parents[2]


#: The workers' cache settings (passed on their command line).
CHAOS_MAX_STALENESS = 0.4
CHAOS_PROBE_INTERVAL = 0.15


async def until_files(
    control: Path,
    prefix: str,
    roles: list[tuple[str, int]],
    workers: list[asyncio.subprocess.Process],
    message: str,
) -> None:
    """Wait until every worker created ``control/<prefix>-<role>-<protocol>``."""
    paths = [control / f"{prefix}-{role}-{protocol}" for role, protocol in roles]
    deadline = time.monotonic() + PATIENCE
    while not all(path.exists() for path in paths):
        assert time.monotonic() < deadline, message
        assert all(w.returncode is None for w in workers), "a worker exited early"
        await asyncio.sleep(0.02)


def staleness_bound() -> float:
    """The documented bound for these settings, doubled for scheduling on a busy host:
    L1 serves at most ``max_staleness`` while blind, and a write an outage skipped is
    invalidated by its writer's probe at most ``probe_interval`` after Redis is back."""
    return 2 * (CHAOS_MAX_STALENESS + CHAOS_PROBE_INTERVAL)


async def test_no_read_is_older_than_the_bound_across_processes_and_a_crash(
    tmp_path: Path,
) -> None:
    """A writer process updates the "database" (a file) and then the cache, while two
    reader processes (RESP2 and RESP3) read through their own caches; Redis is
    SIGKILLed and restarted midway. No read returns a version older than one whose
    write was acknowledged more than the staleness bound before the read started; no
    caller error; one degradation per process.

    The phases end on events, not on a wall clock: the workers run until every one of
    them has recovered and then for an observation window (on a loaded machine a
    restart alone can outlast a fixed window, and a worker would end still degraded)."""
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(dict.fromkeys(KEYS[:6], 0)), encoding="utf-8")
    async with EmbeddedRedis(graph=False) as server:
        roles = [("writer", 3), ("reader", 2), ("reader", 3)]
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKER),
                "chaos",
                server.url,
                "stale",
                "--role",
                role,
                "--protocol",
                str(protocol),
                "--truth",
                str(truth),
                "--control",
                str(tmp_path),
                "--max-staleness",
                str(CHAOS_MAX_STALENESS),
                "--probe-interval",
                str(CHAOS_PROBE_INTERVAL),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for role, protocol in roles
        ]
        try:
            await until_files(tmp_path, "ready", roles, workers, "workers did not get ready")
            start = time.monotonic() + 0.1
            # Written whole, then renamed: the workers poll for the file and must never
            # read it created but still empty (CI caught one worker doing exactly that).
            (tmp_path / "go.tmp").write_text(f"{start}", encoding="utf-8")
            (tmp_path / "go.tmp").replace(tmp_path / "go")
            await asyncio.sleep(start + 1.0 - time.monotonic())
            killed_at = time.monotonic()
            await asyncio.to_thread(server.kill)
            await asyncio.sleep(0.8)
            await asyncio.to_thread(server.restart)
            restarted_at = time.monotonic()
            await until_files(tmp_path, "recovered", roles, workers, "workers did not recover")
            # Reads after every recovery, for longer than the bound: skipped writes must
            # have been invalidated by the writer's replay.
            await asyncio.sleep(staleness_bound() + 1.0)
            (tmp_path / "stop").touch()
            results = []
            for worker in workers:
                out, err = await asyncio.wait_for(worker.communicate(), PATIENCE)
                assert worker.returncode == 0, err.decode()
                results.append(json.loads(out))
        finally:
            for worker in workers:
                if worker.returncode is None:
                    worker.kill()
                    await worker.wait()

    writer, readers = results[0], results[1:]
    acks: dict[str, list[tuple[float, int]]] = {}
    for key, version, acked_at in writer["acks"]:
        acks.setdefault(key, []).append((acked_at, version))
    bound = staleness_bound()
    for result in results:
        assert result["errors"] == []
        assert result["degraded_total"] == 1
        assert result["recovered"] == 1
        assert result["degraded_now"] is False
    assert any(killed_at <= t <= restarted_at for _, _, t in writer["acks"])  # skipped ones
    for reader in readers:
        assert reader["reads"]
        for key, started, _latency, value in reader["reads"]:
            required = max((v for t, v in acks.get(key, []) if t <= started - bound), default=0)
            assert value >= required, (key, started - killed_at, value, required)
        windows = (restarted_at - killed_at + bound) / CHAOS_MAX_STALENESS + 2
        outage = [t for t in reader["loads"] if killed_at <= t <= restarted_at]
        assert len(outage) <= 6 * windows

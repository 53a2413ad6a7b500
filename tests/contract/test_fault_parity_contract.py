"""Fakes and real servers answer a transient fault the same way, under the same policy.

For each backend adapter the application container hands out (``postgres.store``,
``redis.cache``, ``redis.lock``), on the fakes (``use_fakes``) and on the embedded
servers, a test scripts exactly ONE transient connection failure on the next call:

* under the container's own policy (from settings: 3 attempts) the call is retried once
  and succeeds, and the application's collector counts one retry and one successful
  call -- on both;
* with ``container.<backend>.policy`` overridden by a policy without retries, the same
  fault surfaces as the same error type -- on both.

The real fault is a refused connection: a :class:`~infra.testing.chaos.ChaosProxy` in
front of the server refuses the first connection the adapter opens and is healed as soon
as it did (before the retry's backoff is over). The fake fault is scripted with the
fakes' ``fail_next(ConnectionError(...))``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from dependency_injector import providers

from config import Settings
from containers.application import ApplicationContainer
from containers.lifecycle import start, stop
from containers.testing import use_fakes
from infra.exceptions import CacheConnectionError, DatabaseConnectionError, InfraError
from infra.observability import MetricsCollector
from infra.resilience import ResiliencePolicy, RetryConfig
from infra.testing.chaos import ChaosProxy

#: Policy-provider path and connection error of each adapter.
BACKENDS: dict[str, tuple[str, type[InfraError]]] = {
    "postgres": ("postgres", DatabaseConnectionError),
    "cache": ("redis", CacheConnectionError),
    "lock": ("redis_lock", CacheConnectionError),
}
#: Small real backoff for the real side (the fakes' policy runs on a virtual clock).
SETTINGS = {
    "retry_max_attempts": 3,
    "retry_base_delay": 0.05,
    "retry_jitter": False,
    "postgres_min_pool_size": 1,
    "postgres_max_pool_size": 2,
}


@dataclass
class Side:
    """An application container on fakes or real servers, and its one-fault script."""

    app: ApplicationContainer
    fail_next_call_once: Callable[[], None]


def policy_provider(app: ApplicationContainer, backend: str) -> Any:
    """The container provider of ``backend``'s policy."""
    if backend == "postgres":
        return app.postgres.policy
    return app.redis.policy if backend == "cache" else app.redis.lock_policy


async def call(app: ApplicationContainer, backend: str) -> object:
    """One use of the adapter whose first backend call meets the scripted fault."""
    if backend == "postgres":
        value: object = await app.postgres.store().fetchval("select 41 + 1")
        return value
    if backend == "cache":
        await app.redis.cache().set("parity", 42)
        return await app.redis.cache().get("parity")
    lock = app.redis.lock()
    lease = await lock.acquire(f"parity-{uuid.uuid4().hex}", lease=5, wait=0)
    await lock.release(lease)
    return lease.fencing_token > 0


EXPECTED: dict[str, object] = {"postgres": 42, "cache": 42, "lock": True}


async def heal_after_first_refusal(proxy: ChaosProxy) -> None:
    """Refuse connections until one was refused, then pass traffic again. Polls every
    millisecond, well inside the retry's 50 ms backoff: on one event loop the heal
    always runs before the retry."""
    while proxy.stats.refused == 0:  # noqa: ASYNC110 - the proxy has no event for it
        await asyncio.sleep(0.001)
    proxy.heal()


@pytest.fixture(params=["postgres", "cache", "lock"])
def backend(request: pytest.FixtureRequest) -> str:
    """The adapter under test."""
    name: str = request.param
    return name


@pytest.fixture(
    params=[
        "fake",
        pytest.param("real", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
async def side(request: pytest.FixtureRequest, backend: str, no_retry: bool) -> AsyncIterator[Side]:
    """The started container (fakes or real servers behind a chaos proxy)."""
    app = ApplicationContainer()
    if no_retry:  # overridden before anything is built, as a test of an app would
        component = BACKENDS[backend][0]
        policy = ResiliencePolicy.instant(component, retry=RetryConfig(max_attempts=1))
        policy_provider(app, backend).override(providers.Object(policy))
    async with AsyncExitStack() as stack:
        if request.param == "fake":
            app.core.settings.override(providers.Object(Settings(**SETTINGS)))
            fakes = stack.enter_context(use_fakes(app))

            def script() -> None:
                reset = ConnectionError("connection reset by peer")
                if backend == "postgres":
                    fakes.relational.fail_next(reset)
                elif backend == "cache":
                    fakes.cache.fail_next(reset)
                else:
                    fakes.lock.fail_next(error=reset)

        else:
            url = request.getfixturevalue("postgres_dsn" if backend == "postgres" else "redis_url")
            proxy = await stack.enter_async_context(ChaosProxy.for_url(url))
            key = "database_url" if backend == "postgres" else "redis_url"
            settings = Settings(**SETTINGS, **{key: proxy.url_for(url)})
            app.core.settings.override(providers.Object(settings))
            healer: list[asyncio.Task[None]] = []

            def script() -> None:
                proxy.refuse()
                healer.append(asyncio.create_task(heal_after_first_refusal(proxy)))

            async def settle() -> None:
                for task in healer:
                    task.cancel()
                await asyncio.gather(*healer, return_exceptions=True)

            stack.push_async_callback(settle)
        await start(app)
        stack.push_async_callback(stop, app)
        yield Side(app, script)


@pytest.fixture
def no_retry() -> bool:
    """The container's own policy (overridden per test below)."""
    return False


def collector(app: ApplicationContainer) -> MetricsCollector:
    """The application's own collector (started: handed out as a value)."""
    value = app.observability.metrics()
    assert isinstance(value, MetricsCollector)
    return value


async def test_one_transient_failure_is_retried_and_succeeds(side: Side, backend: str) -> None:
    """Same outcome on fake and real: one retry, then the answer; the application's
    collector counts the retry and one successful call."""
    component = BACKENDS[backend][0]
    side.fail_next_call_once()
    assert await call(side.app, backend) == EXPECTED[backend]
    metrics = collector(side.app)
    assert metrics.get_counter("retry_attempts_total", policy=component) == 1
    assert metrics.get_counter("backend_calls_total", component=component, outcome="ok") >= 1


@pytest.mark.parametrize("no_retry", [True])
async def test_a_policy_override_without_retries_surfaces_the_failure(
    side: Side, backend: str, no_retry: bool
) -> None:
    """``container.<backend>.policy.override(...)`` reaches fake and real alike: without
    retries the one failure is raised, as the backend's connection error, on both."""
    assert no_retry
    side.fail_next_call_once()
    with pytest.raises(BACKENDS[backend][1]) as caught:
        await call(side.app, backend)
    assert caught.value.retryable
    metrics = collector(side.app)
    assert metrics.get_counter("retry_attempts_total", policy=BACKENDS[backend][0]) == 0


#: What one ``call()`` records: (component, db.system.name, operations it runs).
RECORDED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "postgres": ("postgres", "postgresql", ("fetchval",)),
    "cache": ("redis", "redis", ("set", "get")),
    "lock": ("redis_lock", "redis", ("acquire", "release")),
}


async def test_calls_are_recorded_alike_on_fake_and_real(side: Side, backend: str) -> None:
    """Metrics under the fakes are the real adapter's: one call counter and one
    duration sample per logical call, under the same component, system and operation
    names, in the application's own collector."""
    component, system, operations = RECORDED[backend]
    metrics = collector(side.app)
    before = {op: metrics.get_counter("backend_calls_total", operation=op) for op in operations}
    assert await call(side.app, backend) == EXPECTED[backend]
    for op in operations:
        calls = metrics.get_counter(
            "backend_calls_total", component=component, operation=op, outcome="ok"
        )
        assert calls - before[op] == 1, op
        duration = metrics.get_histogram_stats(
            "db_client_operation_duration_seconds", db_system_name=system, db_operation_name=op
        )
        assert duration.count == 1, op
        assert duration.max >= 0.0


@pytest.mark.parametrize("no_retry", [True])
async def test_a_failed_call_is_recorded_alike_on_fake_and_real(
    side: Side, backend: str, no_retry: bool
) -> None:
    """The surfaced failure is recorded the same way on both: one call with outcome
    ``error`` and one error counted under the backend's connection error type."""
    assert no_retry
    component, _, operations = RECORDED[backend]
    side.fail_next_call_once()
    with pytest.raises(BACKENDS[backend][1]):
        await call(side.app, backend)
    metrics = collector(side.app)
    first = operations[0]
    assert (
        metrics.get_counter(
            "backend_calls_total", component=component, operation=first, outcome="error"
        )
        == 1
    )
    assert (
        metrics.get_counter(
            "backend_errors_total",
            component=component,
            operation=first,
            error_type=BACKENDS[backend][1].__name__,
        )
        == 1
    )

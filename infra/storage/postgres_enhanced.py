"""``EnhancedPostgresStore``: the PostgreSQL store with circuit breaker and retry on.

::

    store = EnhancedPostgresStore(
        "postgresql://app@db/app",
        enable_circuit_breaker=True, enable_retry=True,
        circuit_breaker_config=CircuitBreakerConfig(failure_threshold=5, timeout=60.0),
        retry_config=RetryConfig(max_attempts=3, base_delay=1.0, exponential_base=2.0),
    )
    is_healthy, details = await store.health_check(latency_threshold_ms=100.0)

It *is* a :class:`~infra.storage.PostgresStore` -- same methods, same call path --
whose :class:`~infra.resilience.ResiliencePolicy` is built from the arguments above
instead of being a passthrough. Decisions:

* **An injected ``policy`` wins** (a container's, or ``ResiliencePolicy.instant()`` in
  tests); passing it together with breaker/retry configs is a ``ValueError``, because one
  of the two would be silently ignored.
* **Defaults are the design's**: breaker 5 failures / 60 s, retry 3 attempts from 1 s doubling
  with jitter. Policy timeouts raise ``QueryTimeoutError``; ``operation_timeout`` (off
  by default) bounds a call's total time, backoff included -- each attempt is already
  bounded by the statement and client timeouts.
* **What is retried**: reads (``fetch``, ``fetchrow``, ``fetchval``), ``BEGIN``, and
  writes the caller marks ``idempotent=True``. A plain ``execute``/``executemany`` runs
  once: it may have been applied before the error. Statements inside a transaction are
  never retried (see :mod:`infra.storage._transaction`).
* **Metrics of the resilience layers** (breaker state and transitions, retries) are
  recorded by :class:`~infra.observability.MetricsResilienceObserver` on the policy it
  builds; an injected policy brings its own hooks.
* ``health_check`` reports the breaker state in ``details["circuit_breaker"]``, and an
  open breaker as ``unhealthy`` without pinging the database.
"""

from __future__ import annotations

from typing import Self, Unpack

from config import Settings
from infra.exceptions import QueryTimeoutError
from infra.observability.metrics import MetricsCollector
from infra.observability.resilience_telemetry import MetricsResilienceObserver
from infra.observability.tracing import TracingState
from infra.resilience import CircuitBreakerConfig, ResiliencePolicy, RetryConfig
from infra.storage._options import StoreOptions
from infra.storage.postgres import PostgresStore

__all__ = ["EnhancedPostgresStore", "build_postgres_policy"]


def build_postgres_policy(
    *,
    enable_circuit_breaker: bool = True,
    enable_retry: bool = True,
    circuit_breaker_config: CircuitBreakerConfig | None = None,
    retry_config: RetryConfig | None = None,
    operation_timeout: float | None = None,
) -> ResiliencePolicy:
    """The policy :class:`EnhancedPostgresStore` builds from its arguments.

    Raises:
        ValueError: A config is given for a layer that is disabled.
    """
    if circuit_breaker_config is not None and not enable_circuit_breaker:
        raise ValueError(
            "circuit_breaker_config was given but enable_circuit_breaker=False; drop one"
        )
    if retry_config is not None and not enable_retry:
        raise ValueError("retry_config was given but enable_retry=False; drop one")
    breaker = None
    if enable_circuit_breaker:
        breaker = circuit_breaker_config if circuit_breaker_config else CircuitBreakerConfig()
    retry = None
    if enable_retry:
        retry = retry_config if retry_config is not None else RetryConfig()
    return ResiliencePolicy.build(
        PostgresStore.component,
        breaker=breaker,
        retry=retry,
        timeout=operation_timeout,
        timeout_error=QueryTimeoutError,
        hooks=(MetricsResilienceObserver(),),
    )


class EnhancedPostgresStore(PostgresStore):
    """:class:`PostgresStore` with breaker + retry; see the module docstring.

    Args:
        dsn: ``postgresql://...`` URL.
        min_size: Connections opened at pool creation.
        max_size: Upper bound of pooled connections.
        enable_circuit_breaker: Include the breaker layer.
        enable_retry: Include the retry layer (reads and idempotent writes only).
        circuit_breaker_config: Breaker thresholds (default: 5 failures, 60 s).
        retry_config: Retry schedule (default: 3 attempts, 1 s base, x2, jitter).
        operation_timeout: Total time limit per call, retries included (default: none).
        policy: A ready policy; replaces all of the above.
        **options: ``PostgresStore``'s keyword options (timeouts, ``server_settings``,
            ``name``).
    """

    def __init__(
        self,
        dsn: str,
        min_size: int = 5,
        max_size: int = 20,
        *,
        enable_circuit_breaker: bool = True,
        enable_retry: bool = True,
        circuit_breaker_config: CircuitBreakerConfig | None = None,
        retry_config: RetryConfig | None = None,
        operation_timeout: float | None = None,
        policy: ResiliencePolicy | None = None,
        **options: Unpack[StoreOptions],
    ) -> None:
        if policy is None:
            policy = build_postgres_policy(
                enable_circuit_breaker=enable_circuit_breaker,
                enable_retry=enable_retry,
                circuit_breaker_config=circuit_breaker_config,
                retry_config=retry_config,
                operation_timeout=operation_timeout,
            )
        elif (
            circuit_breaker_config is not None
            or retry_config is not None
            or operation_timeout is not None
        ):
            raise ValueError(
                "pass either policy= or circuit_breaker_config/retry_config/"
                "operation_timeout, not both: the policy would ignore the configs"
            )
        super().__init__(dsn, min_size, max_size, policy=policy, **options)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        policy: ResiliencePolicy | None = None,
        name: str = "default",
        collector: MetricsCollector | None = None,
        tracing: TracingState | None = None,
    ) -> Self:
        """A store configured by ``settings.db``, under ``policy`` or else the policy
        ``settings.resilience`` describes (``SEMANTICA_CIRCUIT_BREAKER_*``,
        ``SEMANTICA_RETRY_*``, timeouts, bulkhead)."""
        if policy is None:
            policy = ResiliencePolicy.from_settings(
                settings,
                component=cls.component,
                timeout_error=QueryTimeoutError,
                hooks=(MetricsResilienceObserver(collector),),
            )
        return super().from_settings(
            settings, policy=policy, name=name, collector=collector, tracing=tracing
        )

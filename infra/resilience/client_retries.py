"""Turn off the clients' own retries, so our RetryPolicy's count is the real count.

Every client below retries on its own by default. Layered under our policy, 3 attempts
of ours become 3 x 11 connection attempts with redis-py 8's default, 3 x 3 requests with
the openai SDK under litellm, and up to 30 s of managed-transaction retries per attempt
with neo4j. The decision (see :mod:`infra.resilience`): **under a ResiliencePolicy the
client's retries are off**, and these helpers give the exact options per client.

Each helper imports its driver lazily, so importing this module costs nothing and needs
none of the drivers installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio.retry import Retry

__all__ = [
    "litellm_no_retry_kwargs",
    "neo4j_no_retry_config",
    "qdrant_no_retry_kwargs",
    "redis_no_retry",
    "redis_no_retry_kwargs",
]


def redis_no_retry() -> Retry:
    """A redis-py asyncio ``Retry`` that never retries (``Retry(NoBackoff(), 0)``)."""
    from redis.asyncio.retry import Retry  # noqa: PLC0415 -- lazy: drivers are optional
    from redis.backoff import NoBackoff  # noqa: PLC0415

    return Retry(NoBackoff(), 0)


def redis_no_retry_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``redis.asyncio.Redis(...)`` / ``from_url(...)``.

    Only ``retry``: ``retry_on_timeout`` is deprecated since redis-py 6 (timeouts are
    retried by the ``Retry`` object), so a zero-retry ``Retry`` covers timeouts too.
    """
    return {"retry": redis_no_retry()}


def litellm_no_retry_kwargs() -> dict[str, int]:
    """Per-call kwargs for ``litellm.acompletion`` / ``aembedding``.

    ``num_retries`` is litellm's own retry wrapper; ``max_retries`` is handed to the
    provider SDK client (the openai SDK retries twice by default).
    """
    return {"num_retries": 0, "max_retries": 0}


def neo4j_no_retry_config() -> dict[str, float]:
    """Driver config for ``neo4j.AsyncGraphDatabase.driver(uri, **config)``.

    Managed transactions (``session.execute_read`` / ``execute_write``) retry transient
    errors for up to ``max_transaction_retry_time`` (30 s by default); 0 leaves one try.
    Adapters should still prefer ``session.run`` or explicit transactions.
    """
    return {"max_transaction_retry_time": 0.0}


def qdrant_no_retry_kwargs() -> dict[str, int]:
    """Kwargs for qdrant-client's ``upload_points`` / ``upload_collection`` helpers.

    Those helpers retry a failed batch 3 times by default; plain calls (``upsert``,
    ``query_points``) do not retry.
    """
    return {"max_retries": 0}

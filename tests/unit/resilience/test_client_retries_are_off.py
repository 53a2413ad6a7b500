"""Driver-level retries are switched off, so a policy's attempt count is the real one.

Each helper returns exactly the documented options; the redis-py ``Retry`` it builds makes
one attempt and no retry (checked by calling through it).
"""

from __future__ import annotations

import pytest
from redis.asyncio.retry import Retry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from infra.resilience.client_retries import (
    litellm_no_retry_kwargs,
    neo4j_no_retry_config,
    qdrant_no_retry_kwargs,
    redis_no_retry,
    redis_no_retry_kwargs,
)


async def on_failure(_error: Exception) -> None:
    """redis-py awaits this between attempts (there must be none)."""


async def test_the_redis_retry_makes_one_attempt() -> None:
    attempts = 0

    async def down() -> None:
        nonlocal attempts
        attempts += 1
        raise RedisConnectionError("down")  # an error redis-py would retry

    retry = redis_no_retry()
    assert isinstance(retry, Retry)
    with pytest.raises(RedisConnectionError):
        await retry.call_with_retry(down, on_failure)
    assert attempts == 1


async def test_the_redis_kwargs_carry_only_that_retry() -> None:
    kwargs = redis_no_retry_kwargs()
    assert list(kwargs) == ["retry"]
    assert isinstance(kwargs["retry"], Retry)
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise RedisTimeoutError  # timeouts too: no retry_on_timeout needed

    with pytest.raises(RedisTimeoutError):
        await kwargs["retry"].call_with_retry(down, on_failure)
    assert calls == 1


def test_the_other_drivers_get_their_documented_zero_retry_options() -> None:
    assert litellm_no_retry_kwargs() == {"num_retries": 0, "max_retries": 0}
    assert neo4j_no_retry_config() == {"max_transaction_retry_time": 0.0}
    assert qdrant_no_retry_kwargs() == {"max_retries": 0}

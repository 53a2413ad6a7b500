"""FakeCache and RedisCache give the same answer to ANY call, hostile ones included.

The contract suite pins named cases (tests/contract/test_cache_contract.py); this
differential property generates calls with keys, values, TTLs and containers of every
shape and runs each on both caches. Both raise the same error -- type, message, details
and component -- or both answer the same. An adopter whose tests pass on the fake must
see the same error text on the real server (an outside check found the fake's key
errors without the ``redis`` component).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from config import Settings
from infra.cache import RedisCache
from infra.exceptions import InfraError
from infra.resilience import ManualClock, ResiliencePolicy
from infra.testing.fakes.cache import FakeCache

pytestmark = pytest.mark.redis

keys = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", " ", "k" * 1024, "k" * 1025, "user:\ud800", "a\x00b", "ключ"]),
    st.binary(max_size=4),
    st.integers(),
    st.none(),
    st.floats(allow_nan=False),
)
values = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(object),
    st.sets(st.integers(), max_size=2),
    st.binary(max_size=3),
)
ttls = st.one_of(
    st.none(),
    st.floats(),
    st.integers(-5, 10**14),
    st.booleans(),
    st.text(max_size=3),
)
calls = st.one_of(
    st.tuples(st.just("get"), st.tuples(keys), st.just({})),
    st.tuples(st.just("exists"), st.tuples(keys), st.just({})),
    st.tuples(st.just("ttl"), st.tuples(keys), st.just({})),
    st.tuples(st.just("set"), st.tuples(keys, values), st.fixed_dictionaries({"ttl": ttls})),
    st.tuples(st.just("delete"), st.lists(keys, max_size=3).map(tuple), st.just({})),
    st.tuples(
        st.just("mget"),
        st.tuples(st.one_of(st.lists(keys, max_size=3), st.text(max_size=3), st.none())),
        st.just({}),
    ),
    st.tuples(
        st.just("mset"),
        st.tuples(
            st.one_of(
                st.dictionaries(keys, values, max_size=3),
                st.lists(st.tuples(st.text(max_size=2), values), max_size=2),
                st.none(),
            )
        ),
        st.fixed_dictionaries({"ttl": ttls}),
    ),
)


async def outcome(cache: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """What the call answered, or its error as (type, message, details, component).

    A ``ttl`` answer is compared by kind only: real seconds pass on the server."""
    try:
        result = await getattr(cache, name)(*args, **kwargs)
    except InfraError as exc:
        return (type(exc).__name__, str(exc), exc.details, exc.component)
    except (TypeError, ValueError) as exc:  # a plain error must also be the same plain one
        return (type(exc).__name__, str(exc))
    if name == "ttl":
        return None if result is None else "seconds"
    return ("ok", repr(result))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(calls, min_size=1, max_size=6))
# The first error of an mset is the first bad item's, key or value, in order (the fake
# checked every key before any value).
@example(steps=[("mset", ({"fine": object(), "user:\ud800": 1},), {"ttl": None})])
def test_fake_and_real_cache_answer_every_call_alike(
    redis_url: str, steps: list[tuple[str, tuple[Any, ...], dict[str, Any]]]
) -> None:
    """Same sequence of calls on a fresh fake and a fresh real namespace: same answers."""

    async def scenario() -> None:
        namespace = f"parity-{uuid.uuid4().hex[:8]}"
        # No retries on either side: a refused call must be refused, not retried.
        real = RedisCache.from_settings(
            Settings(redis_url=redis_url),
            namespace=namespace,
            policy=ResiliencePolicy.passthrough("redis"),
        )
        fake = FakeCache(clock=ManualClock(), policy=ResiliencePolicy.passthrough("redis"))
        try:
            for name, args, kwargs in steps:
                expected = await outcome(real, name, args, kwargs)
                assert await outcome(fake, name, args, kwargs) == expected, (name, args)
        finally:
            written = [k async for k in real.client.scan_iter(f"{namespace}:*")]
            if written:
                await real.client.delete(*written)
            await real.aclose()

    asyncio.run(scenario())


def test_a_hostile_key_names_the_redis_component_on_both() -> None:
    """The example the outside check reported: the fake's error had no component."""

    async def scenario() -> None:
        fake = FakeCache(clock=ManualClock())
        with pytest.raises(InfraError) as caught:
            await fake.get("user:\ud800")
        assert caught.value.component == "redis"

    asyncio.run(scenario())

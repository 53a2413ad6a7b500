"""The argument checks of :mod:`infra.validation`, and the adapters' inlined fast paths.

Each check is compared with its definition over generated input (any Unicode including
lone surrogates, any length, any type), and ``RedisCache``'s four-test shortcut for
the common key is checked to accept and refuse exactly what :func:`check_key` does.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from infra.cache import RedisCache
from infra.exceptions import InfraError, InvalidArgumentError, InvalidKeyError, QueryArgumentError
from infra.translation import translate_exception
from infra.validation import (
    MAX_KEY_LENGTH,
    check_key,
    check_query,
    check_rows,
    check_timeout,
    shown,
)

ANY_TEXT = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
    st.text(st.sampled_from(["a", "\x00", " ", "\ud800", "\udfff", "é", "🔑"]), max_size=40),
    st.integers(MAX_KEY_LENGTH - 2, MAX_KEY_LENGTH + 2).map(lambda n: "k" * n),
)
ANY_VALUE = st.one_of(
    ANY_TEXT, st.none(), st.integers(), st.floats(), st.binary(), st.lists(st.integers())
)


def _outcome(check: Any, *args: Any, **kwargs: Any) -> tuple[Any, InfraError | None]:
    """``(result, None)``, or ``(None, error)`` when the check raised an InfraError."""
    try:
        return check(*args, **kwargs), None
    except InfraError as error:
        return None, error


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@given(key=ANY_VALUE)
def test_check_key_accepts_exactly_the_usable_keys(key: Any) -> None:
    """A non-empty str of at most 1024 characters that encodes as UTF-8 -- nothing else."""
    usable = type(key) is str and 0 < len(key) <= MAX_KEY_LENGTH and _encodable(key)
    result, error = _outcome(check_key, key, component="redis")
    if usable:
        assert error is None
        assert result is key
    else:
        assert isinstance(error, InvalidKeyError)
        assert (error.argument, error.component) == ("key", "redis")
        assert len(error.message) < 200


@pytest.fixture(scope="module")
async def unconnected_cache() -> AsyncIterator[RedisCache]:
    """A RedisCache whose client never connects (key() does no I/O)."""
    client = Redis.from_url("redis://127.0.0.1:1/0")
    yield RedisCache(client, namespace="ns")
    await client.aclose()


@given(key=ANY_VALUE)
async def test_redis_cache_fast_path_agrees_with_check_key(
    unconnected_cache: RedisCache, key: Any
) -> None:
    """RedisCache's inlined key shortcut refuses and accepts exactly what check_key does."""
    _, refused = _outcome(check_key, key)
    result, error = _outcome(unconnected_cache.key, key)
    if key == "":  # key("") names the namespace prefix; reads and writes refuse it
        assert (result, error) == ("ns:", None)
        return
    assert type(error) is type(refused)
    if refused is None:
        assert result == f"ns:{key}"


@given(query=ANY_VALUE)
def test_check_query_accepts_exactly_sendable_sql_text(query: Any) -> None:
    """A str, not blank, with no NUL and no lone surrogate."""
    sendable = (
        type(query) is str and query.strip() != "" and "\x00" not in query and _encodable(query)
    )
    result, error = _outcome(check_query, query)
    if sendable:
        assert error is None
        assert result is query
    else:
        assert isinstance(error, QueryArgumentError)
        assert error.argument == "query"


@given(rows=st.one_of(ANY_VALUE, st.lists(st.one_of(ANY_VALUE, st.tuples(st.integers())))))
def test_check_rows_accepts_iterables_of_non_string_sequences(rows: Any) -> None:
    """A list of tuples/lists comes back as an equal list; anything else is refused."""
    valid = isinstance(rows, list) and all(isinstance(row, tuple | list) for row in rows)
    result, error = _outcome(check_rows, rows)
    if valid:
        assert error is None
        assert result == rows
    else:
        assert isinstance(error, QueryArgumentError)
        assert str(error.argument).startswith("args")


@given(timeout=st.one_of(ANY_VALUE, st.booleans(), st.floats(allow_nan=True)))
def test_check_timeout_accepts_none_or_finite_positive_seconds(timeout: Any) -> None:
    """None, or an int/float (not bool) in (0, 1e9)."""
    valid = timeout is None or (
        not isinstance(timeout, bool)
        and isinstance(timeout, int | float)
        and math.isfinite(timeout)
        and 0 < timeout < 1e9
    )
    result, error = _outcome(check_timeout, timeout)
    if valid:
        assert error is None
        assert result == (None if timeout is None else float(timeout))
    else:
        assert isinstance(error, InvalidArgumentError)
        assert error.argument == "timeout"
        assert len(error.message) < 200


@given(value=st.one_of(ANY_VALUE, st.integers(10**4000, 10**4500)))
def test_shown_is_short_and_never_raises(value: Any) -> None:
    """A caller's value is quoted in at most a few dozen characters, whatever it is."""
    assert len(shown(value)) <= 60


def test_messages_are_bounded_before_redaction() -> None:
    """A huge driver text or message is cut, so building the error stays cheap."""
    huge = "near " + "k" * 300_000 + ": syntax error"
    assert len(InfraError(huge).message) <= 4100
    translated = translate_exception(ValueError(huge), component="db", operation=huge)
    assert len(translated.message) <= 400  # the driver's text, cut to 300 behind a prefix
    assert len(translated.details["operation"]) <= 300

"""Every error type builds, renders and pickles the same way, whatever keywords it gets.

The constructors share one implementation (``InfraError.__init__`` plus one keyword per
named fact: ``argument``, ``timeout``, ``retry_after``), so the property is stated once
for every exported class: the common keywords land where they always did, a named fact
lands in ``details`` and reads back through its attribute, a caller error refuses
``retryable=True``, and a pickled copy renders exactly like the original with its secrets
still masked.
"""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import infra.exceptions as exc_module
from infra.exceptions import (
    CallerError,
    InfraError,
    InfraTimeoutError,
    InvalidArgumentError,
    RateLimitedError,
)
from infra.redaction import redact_text

EXPORTED: list[type[InfraError]] = [getattr(exc_module, name) for name in exc_module.__all__]

#: The one extra keyword a family takes, and how its attribute reads it back.
FACTS: dict[type[InfraError], tuple[str, st.SearchStrategy[Any]]] = {
    InvalidArgumentError: ("argument", st.text(min_size=1, max_size=20)),
    InfraTimeoutError: ("timeout", st.floats(min_value=0, max_value=1e6)),
    RateLimitedError: ("retry_after", st.floats(min_value=0, max_value=1e6)),
}

SECRET = "password=Hunter2Secret"

detail_values = st.one_of(st.integers(), st.text(max_size=10), st.floats(allow_nan=False))


def _fact_of(cls: type[InfraError]) -> tuple[str, st.SearchStrategy[Any]] | None:
    return next((fact for base, fact in FACTS.items() if issubclass(cls, base)), None)


@given(
    cls=st.sampled_from(EXPORTED),
    message=st.one_of(st.none(), st.text(max_size=40)),
    component=st.one_of(st.none(), st.sampled_from(["postgres", "redis", "llm"])),
    details=st.dictionaries(st.sampled_from(["a", "b", "n"]), detail_values, max_size=3),
    retryable=st.one_of(st.none(), st.booleans()),
    data=st.data(),
)
def test_every_error_takes_the_common_keywords_and_its_fact(
    *,
    cls: type[InfraError],
    message: str | None,
    component: str | None,
    details: dict[str, Any],
    retryable: bool | None,
    data: st.DataObject,
) -> None:
    """component/details/retryable behave alike on every class; a named fact is a detail."""
    kwargs: dict[str, Any] = {"component": component, "details": details, "retryable": retryable}
    fact = _fact_of(cls)
    value = None
    if fact is not None:
        value = data.draw(st.one_of(st.none(), fact[1]))
        kwargs[fact[0]] = value
    if retryable and issubclass(cls, CallerError):
        with pytest.raises(ValueError, match="never retryable"):
            cls(message, **kwargs)
        return
    error = cls(message, **kwargs)
    assert error.message == (redact_text(message) if message else cls.default_message)
    assert error.component == component
    assert error.retryable is (cls.default_retryable if retryable is None else retryable)
    expected = dict(details)
    if fact is not None:
        if value is not None:
            expected[fact[0]] = value
        read_back = getattr(error, fact[0])
        assert read_back == (None if expected.get(fact[0]) is None else expected[fact[0]])
    assert error.details == expected
    assert details == dict(kwargs["details"])  # the caller's mapping is not changed


@given(cls=st.sampled_from(EXPORTED), data=st.data())
def test_a_pickled_error_renders_like_the_original_and_keeps_secrets_masked(
    cls: type[InfraError], data: st.DataObject
) -> None:
    """pickle round-trips type, message, details and retryable; no secret reappears."""
    kwargs: dict[str, Any] = {"component": "postgres", "details": {"dsn": f"x {SECRET}"}}
    fact = _fact_of(cls)
    if fact is not None:
        kwargs[fact[0]] = data.draw(fact[1])
    error = cls(f"failed with {SECRET}", **kwargs)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is cls
    assert (str(copy), repr(copy), copy.to_dict()) == (str(error), repr(error), error.to_dict())
    for text in (str(copy), repr(copy), copy.message):
        assert "Hunter2Secret" not in text
    if fact is not None:
        assert getattr(copy, fact[0]) == getattr(error, fact[0])


@pytest.mark.parametrize("cls", EXPORTED, ids=lambda c: c.__name__)
def test_constructors_take_exactly_the_documented_keywords(cls: type[InfraError]) -> None:
    """message positional, then component/details/retryable (+ the family's fact) by keyword."""
    fact = _fact_of(cls)
    expected = {"component", "details", "retryable"} | ({fact[0]} if fact else set())
    with pytest.raises(TypeError):
        cls(None, no_such_keyword=1)  # type: ignore[call-arg]
    for name in expected:
        cls(None, **{name: None})
    params = inspect.signature(cls).parameters
    assert next(iter(params)) == "message"

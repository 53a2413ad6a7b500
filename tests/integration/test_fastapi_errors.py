"""Our errors as HTTP answers: the shared mapping (any error of ours), then FastAPI's
installer end to end."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

import infra.exceptions as errors
from containers.integrations.fastapi import install_error_handlers
from containers.integrations.http_errors import (
    MAX_RETRY_AFTER_S,
    error_answer,
    retry_after_seconds,
)
from infra.exceptions import (
    CallerError,
    CircuitBreakerOpenError,
    ConstraintViolationError,
    InfraError,
    InfraTimeoutError,
    PoolExhaustedError,
    QueryDataError,
    RateLimitedError,
    ResilienceError,
)

SECRET = "hunter2-secret"


def every_error_class() -> list[type[InfraError]]:
    found: list[type[InfraError]] = []
    stack: list[type[InfraError]] = [InfraError]
    while stack:
        cls = stack.pop()
        if cls not in found:
            found.append(cls)
            stack.extend(cls.__subclasses__())
    # Only the library's own: a test elsewhere may define a subclass of its own.
    return sorted((c for c in found if c.__module__ == errors.__name__), key=lambda c: c.__name__)


ERROR_CLASSES = every_error_class()

retry_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)


@st.composite
def our_errors(draw: st.DrawFn) -> InfraError:
    cls = draw(st.sampled_from(ERROR_CLASSES))
    details: dict[str, Any] = {}
    for key in ("retry_after_s", "retry_after"):
        value = draw(retry_values)
        if value is not None:
            details[key] = value
    retryable = None if issubclass(cls, CallerError) else draw(st.sampled_from([None, True, False]))
    message = f"failed at postgresql://app:{SECRET}@db.internal:5432/app"
    return cls(message, component="postgres", details=details, retryable=retryable)


def usable_seconds(exc: InfraError) -> list[float]:
    """The finite, non-negative numbers among the error's retry hints, in key order."""
    found = []
    for key in ("retry_after_s", "retry_after"):
        value = exc.details.get(key)
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and 0 <= value <= MAX_RETRY_AFTER_S
        ):
            found.append(float(value))
    return found


@given(exc=our_errors())
def test_every_error_of_ours_gets_its_answer(exc: InfraError) -> None:
    """Property: whatever the error class, retry hint and retryable flag -- a caller error
    is 409/422 without Retry-After; an outage is 503 with Retry-After exactly when a
    usable hint exists (whole seconds, >= 1, never earlier than the hint); anything else
    500; the body is JSON with ``error`` and ``type``, and never shows the password."""
    answer = error_answer(exc)
    assert answer is not None
    body = json.dumps(answer.body)
    assert SECRET not in body
    assert answer.body["error"] == exc.message
    assert answer.body["type"] == type(exc).__name__
    if isinstance(exc, CallerError):
        assert answer.status == (409 if isinstance(exc, ConstraintViolationError) else 422)
        assert answer.headers == {}
        return
    unavailable = exc.retryable or isinstance(
        exc, ResilienceError | InfraTimeoutError | PoolExhaustedError
    )
    assert answer.status == (503 if unavailable else 500)
    hints = usable_seconds(exc)
    if answer.status == 503 and hints:
        seconds = int(answer.headers["Retry-After"])
        assert seconds >= max(1.0, hints[0])
        assert seconds - 1 < hints[0] or seconds == 1
    else:
        assert "Retry-After" not in answer.headers


@given(exc=st.sampled_from([ValueError("x"), KeyError("k"), RuntimeError(), OSError()]))
def test_other_exceptions_are_not_ours_to_answer(exc: Exception) -> None:
    assert error_answer(exc) is None


def test_retry_after_prefers_the_breaker_hint() -> None:
    exc = CircuitBreakerOpenError(details={"retry_after_s": 0.2, "retry_after": 30})
    assert retry_after_seconds(exc) == 1


def build_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    raised: dict[str, Exception] = {
        "open": CircuitBreakerOpenError(component="postgres", details={"retry_after_s": 4.2}),
        "throttled": RateLimitedError(component="llm", retry_after=2.0),
        "caller": QueryDataError("division by zero", component="postgres"),
        "bug": RuntimeError("not ours"),
    }

    @app.get("/{name}")
    async def fail(name: str) -> None:
        raise raised[name]

    return app


@pytest.mark.parametrize(
    ("name", "status", "retry_after"),
    [("open", 503, "5"), ("throttled", 503, "2"), ("caller", 422, None), ("bug", 500, None)],
)
def test_fastapi_answers_through_the_installed_handlers(
    name: str, status: int, retry_after: str | None
) -> None:
    with TestClient(build_app(), raise_server_exceptions=False) as client:
        answer = client.get(f"/{name}")
    assert answer.status_code == status
    assert answer.headers.get("Retry-After") == retry_after
    if name != "bug":  # not ours: FastAPI's own plain 500
        assert answer.json()["component"] in {"postgres", "llm"}

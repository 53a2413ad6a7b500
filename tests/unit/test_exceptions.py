"""The error hierarchy: shape, documented tree, defaults, rendering and redaction."""

from __future__ import annotations

import json
import re
import typing

import pytest

import infra.exceptions as exc_module
from infra.exceptions import (
    CallerError,
    CircuitBreakerOpenError,
    DatabaseError,
    InfraError,
    InfraTimeoutError,
    InvalidArgumentError,
    QueryTimeoutError,
    RateLimitedError,
)
from infra.resilience import BreakerState, CircuitBreaker, CircuitBreakerConfig
from infra.resilience.breaker import DEFAULT_EXCLUDED

EXPORTED: list[type[InfraError]] = [getattr(exc_module, name) for name in exc_module.__all__]


def _tree() -> list[tuple[int, str, str]]:
    """(depth, class name, rest of line) for each node of the docstring tree.

    Parenthesised lines ``(A, B)`` are cross-references to classes listed elsewhere;
    each name becomes a node at that depth with rest ``"(ref)"``.
    """
    doc = exc_module.__doc__ or ""
    block = doc.split("::", 1)[1].split("\n\n", 2)[1]
    nodes: list[tuple[int, str, str]] = []
    base: int | None = None
    for line in block.splitlines():
        match = re.search(r"[A-Z(]", line)
        if match is None:
            continue
        base = match.start() if base is None else base
        depth = (match.start() - base) // 4
        rest = line[match.start() :]
        if rest.startswith("("):
            names = re.findall(r"[A-Za-z]+", rest.split(")")[0])
            nodes.extend((depth, name, "(ref)") for name in names)
        else:
            name, _, tail = rest.partition(" ")
            nodes.append((depth, name, tail))
    return nodes


def test_hierarchy_has_at_least_twenty_classes_under_infra_error() -> None:
    """The design promises 20+ exception types below InfraError."""
    subclasses = [c for c in EXPORTED if issubclass(c, InfraError) and c is not InfraError]
    assert len(subclasses) >= 20


def test_every_exported_name_is_an_error_class_of_this_module() -> None:
    """__all__ lists only InfraError classes defined in infra.exceptions."""
    for cls in EXPORTED:
        assert isinstance(cls, type)
        assert issubclass(cls, InfraError)
        assert cls.__module__ == "infra.exceptions"


def test_every_error_class_of_the_module_is_exported() -> None:
    """No error class is defined but left out of __all__."""
    defined = {
        name
        for name, value in vars(exc_module).items()
        if isinstance(value, type)
        and issubclass(value, InfraError)
        and value.__module__ == "infra.exceptions"
    }
    assert defined == set(exc_module.__all__)


def test_docstring_tree_names_exactly_the_exported_classes() -> None:
    """Every exported class is drawn in the docstring tree, and nothing else is."""
    drawn = {name for _, name, _ in _tree()}
    assert drawn == set(exc_module.__all__)


def test_docstring_tree_edges_are_real_subclass_relations() -> None:
    """Each node (and each '+Second' base, each cross-reference) subclasses its parent."""
    stack: list[str] = []
    checked = 0
    for depth, name, tail in _tree():
        del stack[depth:]
        cls = getattr(exc_module, name)
        if depth:
            assert issubclass(cls, getattr(exc_module, stack[-1])), (name, stack[-1])
            checked += 1
        for extra in re.findall(r"\+(\w+)", tail):
            assert issubclass(cls, getattr(exc_module, extra)), (name, extra)
        if tail != "(ref)":
            stack.append(name)
    assert checked >= 40


def test_default_retryable_matches_the_docstring_tree() -> None:
    """'retryable' marks (inherited down the tree, 'not retryable' overriding) are the
    class defaults."""
    documented: dict[str, bool] = {}
    stack: list[str] = []
    for depth, name, tail in _tree():
        del stack[depth:]
        if tail == "(ref)":
            continue
        if "not retryable" in tail:
            documented[name] = False
        elif re.search(r"\bretryable\b", tail):
            documented[name] = True
        else:
            documented[name] = documented.get(stack[-1], False) if stack else False
        stack.append(name)
    actual = {name: getattr(exc_module, name).default_retryable for name in documented}
    assert actual == documented
    assert documented["QueryTimeoutError"] is True
    assert documented["LockAcquireTimeoutError"] is False


@pytest.mark.parametrize("cls", EXPORTED, ids=lambda c: c.__name__)
def test_every_class_constructs_bare_and_renders_its_default_message(
    cls: type[InfraError],
) -> None:
    """A bare instance has the class's default message and default retryable."""
    error = cls()
    assert error.message == cls.default_message
    assert error.message
    assert str(error).startswith(cls.default_message)
    assert error.retryable is cls.default_retryable
    assert error.details == {}


@pytest.mark.parametrize("cls", EXPORTED, ids=lambda c: c.__name__)
def test_type_hints_resolve_on_every_class(cls: type[InfraError]) -> None:
    """typing.get_type_hints works (wiring and pydantic read annotations at run time)."""
    hints = typing.get_type_hints(cls)
    assert hints["retryable"] is bool
    assert typing.get_type_hints(cls.__init__)["return"] is type(None)


def test_query_timeout_error_is_a_retryable_database_and_timeout_error() -> None:
    """QueryTimeoutError carries details['timeout'] and is caught as either parent."""
    error = QueryTimeoutError(timeout=5.0, component="postgres")
    assert error.details["timeout"] == 5.0
    assert error.timeout == 5.0
    assert error.retryable is True
    assert isinstance(error, DatabaseError)
    assert isinstance(error, InfraTimeoutError)
    with pytest.raises(DatabaseError):
        raise error


def test_circuit_breaker_open_error_carries_component_and_failure_count() -> None:
    """The open breaker says which component and how many failures tripped it."""
    error = CircuitBreakerOpenError(
        component="redis", details={"failure_count": 5, "retry_after_s": 12.5}
    )
    assert error.component == "redis"
    assert error.failure_count == 5
    assert error.retry_after_s == 12.5
    assert error.retryable is False
    assert str(error).startswith("[redis] circuit breaker is open")


def test_rate_limited_error_keeps_retry_after() -> None:
    """retry_after is stored in details and read back as float seconds."""
    error = RateLimitedError(retry_after=7, component="llm")
    assert error.details["retry_after"] == 7
    assert error.retry_after == 7.0
    assert RateLimitedError().retry_after is None


def test_raise_site_can_override_retryable() -> None:
    """retryable= overrides the class default in both directions."""
    assert QueryTimeoutError(retryable=False).retryable is False
    assert DatabaseError(retryable=True).retryable is True


def test_str_repr_and_to_dict_mask_secrets() -> None:
    """Passwords in URLs, secret-named keys and API keys never render."""
    error = DatabaseError(
        "connect to postgresql://app:hunter2@db:5432/app failed",
        component="postgres",
        details={
            "password": "hunter2",
            "dsn": "postgresql://app:hunter2@db/app",
            "api_key": "sk-proj-abcdefghijklmnop",
            "nested": {"token": "tok-123456"},
        },
    )
    rendered = [str(error), repr(error), json.dumps(error.to_dict())]
    for text in rendered:
        assert "hunter2" not in text
        assert "sk-proj-abcdefghijklmnop" not in text
        assert "tok-123456" not in text
        assert "***" in text


def test_to_dict_is_json_serialisable_and_complete() -> None:
    """to_dict round-trips through JSON with type, message, component, details, retryable."""
    error = QueryTimeoutError("slow query", timeout=2.5, component="postgres")
    data = json.loads(json.dumps(error.to_dict()))
    assert data == {
        "type": "QueryTimeoutError",
        "message": "slow query",
        "component": "postgres",
        "details": {"timeout": 2.5},
        "retryable": True,
    }


def test_str_renders_component_details_and_hint() -> None:
    """The rendered message names the component, the facts and what to do."""
    text = str(QueryTimeoutError(timeout=1.0, component="postgres"))
    assert text.startswith("[postgres] query timed out")
    assert "timeout=1.0" in text
    hinted = str(exc_module.SerializationFailureError())
    assert hinted.endswith("-- retry the whole transaction")


# ------------------------------------------------------------------------- caller errors
#: Every class whose instances mean "the request was wrong, the backend is fine".
CALLER_ERRORS = {
    "InvalidArgumentError",
    "QueryArgumentError",
    "InvalidKeyError",
    "QuerySyntaxError",
    "QueryDataError",
    "ConstraintViolationError",
    "UniqueViolationError",
    "TransactionStateError",
    "CacheSerializationError",
    "CollectionNotFoundError",
    "DimensionMismatchError",
    "GraphQueryError",
    "LLMBadRequestError",
    "ContentFilteredError",
    "ContextWindowExceededError",
}


def test_exactly_the_documented_classes_are_caller_errors() -> None:
    """The CallerError branch holds the request mistakes and nothing about the backend."""
    actual = {
        cls.__name__ for cls in EXPORTED if issubclass(cls, CallerError) and cls is not CallerError
    }
    assert actual == CALLER_ERRORS


@pytest.mark.parametrize("name", sorted(CALLER_ERRORS))
def test_a_caller_error_is_never_retryable(name: str) -> None:
    """Not by default, and not on request: a raise site asking for it is a bug."""
    cls: type[InfraError] = getattr(exc_module, name)
    assert cls().retryable is False
    assert cls(retryable=False).retryable is False
    with pytest.raises(ValueError, match="never retryable"):
        cls(retryable=True)


@pytest.mark.parametrize(
    ("cls", "family"),
    [
        (exc_module.QuerySyntaxError, DatabaseError),
        (exc_module.QueryDataError, DatabaseError),
        (exc_module.QueryArgumentError, DatabaseError),
        (exc_module.TransactionStateError, DatabaseError),
        (exc_module.UniqueViolationError, DatabaseError),
        (exc_module.InvalidKeyError, exc_module.CacheError),
        (exc_module.CacheSerializationError, exc_module.CacheError),
        (exc_module.GraphQueryError, exc_module.GraphError),
        (exc_module.LLMBadRequestError, exc_module.LLMError),
    ],
)
def test_caller_errors_keep_their_family_base(cls: type[InfraError], family: type) -> None:
    """``except DatabaseError`` (or CacheError, ...) still catches what it caught before."""
    with pytest.raises(family):
        raise cls(component="x")


@pytest.mark.parametrize(
    "cls", [InvalidArgumentError, exc_module.QueryArgumentError, exc_module.InvalidKeyError]
)
def test_invalid_argument_errors_are_value_and_type_errors(cls: type[InvalidArgumentError]) -> None:
    """They replace the builtin errors argument checks raised; old handlers still match."""
    error = cls("key must be str", argument="key", component="redis")
    assert isinstance(error, ValueError)
    assert isinstance(error, TypeError)
    assert error.argument == "key"
    assert error.details == {"argument": "key"}
    assert str(error) == "[redis] key must be str (argument='key')"
    assert cls().argument is None


def test_database_errors_that_are_not_the_callers_stay_outside_the_branch() -> None:
    """Connection, timeout, pool and serialization failures are backend-side."""
    for name in (
        "DatabaseConnectionError",
        "QueryTimeoutError",
        "PoolExhaustedError",
        "SerializationFailureError",
        "CacheConnectionError",
        "LockNotOwnedError",
        "CircuitBreakerOpenError",
    ):
        assert not issubclass(getattr(exc_module, name), CallerError), name


def test_breakers_never_count_caller_errors_whatever_excluded_says() -> None:
    """A custom ``excluded`` adds to the caller-error exclusion; it cannot remove it."""
    assert issubclass(exc_module.QueryDataError, DEFAULT_EXCLUDED)
    assert issubclass(exc_module.InvalidKeyError, DEFAULT_EXCLUDED)
    for excluded in ((), (KeyError,), [LookupError]):
        config = CircuitBreakerConfig(excluded=excluded)  # type: ignore[arg-type]
        assert issubclass(exc_module.QueryArgumentError, config.excluded)
        assert not issubclass(exc_module.DatabaseConnectionError, config.excluded)
    assert CircuitBreakerConfig(excluded=(KeyError,)).excluded == (KeyError, CallerError)
    assert CircuitBreakerConfig(excluded=(InfraError,)).excluded == (InfraError,)


async def test_a_breaker_stays_closed_under_any_number_of_caller_errors() -> None:
    """Even with ``excluded=()``, caller errors leave the count at zero."""
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1, excluded=()), name="t")

    async def bad_request() -> None:
        raise exc_module.QueryDataError("division by zero", component="postgres")

    for _ in range(20):
        with pytest.raises(exc_module.QueryDataError):
            await breaker.call(bad_request)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.failure_count == 0

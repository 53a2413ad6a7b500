"""redis-py (sync and asyncio share ``redis.exceptions``).

The natural family is ``cache``; a caller may say ``graph`` (FalkorDB speaks the Redis
protocol, so its query errors arrive as ``ResponseError``), which turns connection errors
into ``GraphConnectionError`` and a ``ResponseError`` into ``GraphQueryError``.

Decisions:

* ``AuthenticationError`` subclasses redis's ``ConnectionError``; the MRO walk reaches it
  first, so a wrong password is an authentication error and is *not* retried.
* ``BusyLoadingError`` (server loading its dataset), ``ReadOnlyError`` (we hit a replica
  after failover), ``ClusterDownError``/``TryAgainError`` and ``InvalidResponse``
  (protocol desync; redis-py drops that connection) are connection-class and retryable.
* ``NoScriptError`` is retryable: the script cache was flushed and reloading it fixes it.
  ``WatchError`` is retryable: an optimistic transaction lost a race.
* Arguments redis-py cannot encode are caller errors, raised before anything is sent
  (measured on redis-py 8.1, RESP2 and RESP3): ``DataError`` for an argument of a type it
  does not send (``None``, ``bool``, a list, an object) and ``UnicodeEncodeError`` for a
  ``str`` that is not valid UTF-8 (a lone surrogate such as ``"user:\\ud800"``, e.g. from
  JSON input). Both become the cache family's ``argument`` role, ``InvalidKeyError`` (the
  builtins table handles ``UnicodeEncodeError``). ``RedisCache`` and the lock reject
  such keys and names themselves first (:mod:`infra.validation`), naming the argument.
* ``MaxConnectionsError`` -> ``PoolExhaustedError``.
* ``details["code"]``: the server's error prefix (``WRONGTYPE``, ``OOM`` ...) when the
  message starts with one.
"""

from __future__ import annotations

from typing import Any

from infra.exceptions import (
    BackendAuthenticationError,
    CacheError,
    GraphQueryError,
    InfraError,
    LockError,
    LockNotOwnedError,
    PoolExhaustedError,
)
from infra.translation._context import DriverTable, Role, TranslationContext, Translator, to

__all__ = ["load"]


def _facts(exc: BaseException) -> dict[str, Any]:
    head = str(exc).split(" ", 1)[0]
    return {"code": head if head.isalpha() and head.isupper() and len(head) > 1 else None}


def _cache(target: type[InfraError] | Role, *, retryable: bool | None = None) -> Translator:
    return to(target, family="cache", retryable=retryable, facts=_facts)


def _response_error(exc: BaseException, ctx: TranslationContext) -> InfraError:
    cls = GraphQueryError if ctx.family == "graph" else CacheError
    return ctx.error(cls, exc, retryable=False, details=_facts(exc))


def load() -> DriverTable:
    """Rows for ``redis.exceptions``."""
    from redis import exceptions as r  # noqa: PLC0415 -- lazy by design

    connection = _cache("connection")
    auth = _cache(BackendAuthenticationError)
    return [
        (r.LockNotOwnedError, _cache(LockNotOwnedError)),
        (r.LockError, _cache(LockError)),
        (r.AuthenticationError, auth),
        (r.AuthorizationError, auth),
        (r.AuthenticationWrongNumberOfArgsError, auth),
        (r.NoPermissionError, auth),
        (r.MaxConnectionsError, _cache(PoolExhaustedError)),
        (r.BusyLoadingError, connection),
        (r.ConnectionError, connection),
        (r.TimeoutError, _cache("timeout")),
        (r.ReadOnlyError, _cache("connection", retryable=True)),
        (r.ClusterDownError, connection),
        (r.TryAgainError, connection),
        (r.SlotNotCoveredError, connection),
        (r.InvalidResponse, connection),
        (r.NoScriptError, _cache("base", retryable=True)),
        (r.WatchError, _cache("base", retryable=True)),
        (r.DataError, _cache("argument")),
        (r.ResponseError, _response_error),
        (r.RedisError, _cache("base", retryable=False)),
        (r.RedisClusterException, _cache("base", retryable=False)),
    ]

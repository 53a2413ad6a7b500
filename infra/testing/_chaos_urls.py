"""URL and upstream helpers of :mod:`infra.testing.chaos` (parsing only, no I/O).

Kept apart from the proxy so each module stays small. Only the two URL families the
chaos tier needs are understood: PostgreSQL DSNs in URL form (what asyncpg accepts) and
``redis://`` / ``rediss://`` URLs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeAlias
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["Upstream", "check_upstream", "rewrite_url", "upstream_of"]

Upstream: TypeAlias = tuple[str, int] | str | os.PathLike[str]
"""Where a :class:`~infra.testing.chaos.ChaosProxy` forwards to: ``(host, port)`` or a
Unix socket path."""

_PG_SCHEMES = ("postgres", "postgresql")
_REDIS_SCHEMES = ("redis", "rediss")


def rewrite_url(url: str, host: str, port: int) -> str:
    """``url`` pointed at ``host:port`` over TCP; see :meth:`ChaosProxy.url_for
    <infra.testing.chaos.ChaosProxy.url_for>`.

    Raises:
        ValueError: ``url`` is neither ``postgres(ql)://`` nor ``redis(s)://``.
    """
    parts = urlsplit(url)
    _check_scheme(parts.scheme.lower())
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{host}:{port}"
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key.lower() not in ("host", "port")
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))


def upstream_of(url: str) -> Upstream:
    """The server a PostgreSQL DSN or Redis URL points at, as a :data:`Upstream`.

    A DSN whose host is a directory (``?host=/run/postgresql`` or ``@%2Frun%2Fpostgresql``)
    names the Unix socket ``<dir>/.s.PGSQL.<port>`` (port default 5432).

    Raises:
        ValueError: An unsupported scheme, or a URL without a host.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    _check_scheme(scheme)
    query = dict(parse_qsl(parts.query))
    if scheme in _PG_SCHEMES:
        first = parts.netloc.rpartition("@")[2].split(",")[0]  # several hosts: the first
        if first.startswith("["):  # [IPv6]:port
            host, _, rest = first[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, _, port_text = first.partition(":")
        host = unquote(query.get("host", host))
        port = int(query.get("port") or port_text or 5432)
        if host.startswith("/"):
            return str(Path(host) / f".s.PGSQL.{port}")
        if not host:
            raise ValueError("the DSN names no host: add @host:port or ?host=/socket/dir")
        return host, port
    if not parts.hostname:  # redis:// or rediss://
        raise ValueError("the Redis URL names no host: use redis://host:port/db")
    return parts.hostname, parts.port or 6379


def check_upstream(upstream: object) -> tuple[str, int] | str:
    """``upstream`` normalised to ``(host, port)`` or a path string.

    Raises:
        TypeError: Neither a ``(str, int)`` pair nor a path.
    """
    if isinstance(upstream, tuple):
        if (
            len(upstream) == 2
            and isinstance(upstream[0], str)
            and isinstance(upstream[1], int)
            and not isinstance(upstream[1], bool)
        ):
            return upstream[0], upstream[1]
        raise TypeError(f"upstream must be (host: str, port: int), got {upstream!r}")
    if isinstance(upstream, str | os.PathLike):
        return os.fspath(upstream)
    raise TypeError(
        f"upstream must be (host, port) or a Unix socket path, got {type(upstream).__name__}"
    )


def _check_scheme(scheme: str) -> None:
    if scheme not in _PG_SCHEMES + _REDIS_SCHEMES:
        raise ValueError(
            f"url must be a postgresql:// DSN or a redis:// URL, got scheme {scheme!r}"
        )

"""PostgreSQL connection strings: validation, masking and the endpoint for span attributes.

asyncpg accepts a DSN in URL form only (``postgresql://user:pass@host:port/db?opt=v``);
libpq's ``key=value`` form is rejected by asyncpg itself, so we reject it up front with a
message that says so. The password may sit in two places -- the userinfo part and a
``password=`` query parameter -- and both are masked wherever a DSN is shown.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qs, urlsplit

from infra.redaction import REDACTED, redact_text

__all__ = ["check_dsn", "mask_dsn", "server_endpoint"]

_SCHEMES: Final = ("postgresql://", "postgres://")
_QUERY_PASSWORD: Final = re.compile(r"(?P<key>[?&](?:password|passfile)=)[^&]*", re.IGNORECASE)


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password (userinfo and ``password=`` parameter) replaced by ``***``."""
    masked = redact_text(dsn)
    return _QUERY_PASSWORD.sub(lambda m: f"{m.group('key')}{REDACTED}", masked)


def check_dsn(dsn: object) -> str:
    """Return ``dsn`` if it is a PostgreSQL URL; otherwise raise naming the fix.

    Raises:
        TypeError: ``dsn`` is not a string.
        ValueError: ``dsn`` is not a ``postgresql://`` / ``postgres://`` URL.
    """
    if not isinstance(dsn, str):
        raise TypeError(
            f"dsn must be a str such as 'postgresql://user@host:5432/db', got {type(dsn).__name__}"
        )
    if not dsn.lower().startswith(_SCHEMES):
        raise ValueError(
            f"dsn must be a URL starting with postgresql:// or postgres:// (asyncpg does not "
            f"accept libpq key=value strings), got {mask_dsn(dsn)!r}"
        )
    return dsn


def server_endpoint(dsn: str) -> tuple[str | None, int | None]:
    """``(server.address, server.port)`` for spans: the first host of the DSN.

    A Unix-socket DSN (``?host=/run/postgresql``) yields the socket directory as the
    address, as OpenTelemetry's conventions allow. Never raises: an endpoint we cannot
    parse is simply left out of the span.
    """
    try:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        # ``netloc`` may list several hosts (``h1:5432,h2:5432``); spans name the first.
        hostport = parts.netloc.rpartition("@")[2].split(",")[0]
        host, _, port_text = hostport.partition(":")
        if host.startswith("["):  # IPv6 literal: [::1]:5432
            host, _, rest = hostport[1:].partition("]")
            port_text = rest.removeprefix(":")
        host = host or query.get("host", [""])[0].split(",")[0]
        port_text = port_text or query.get("port", [""])[0].split(",")[0]
        port = int(port_text) if port_text.isdigit() else None
    except ValueError:
        return None, None
    return (host or None), port

"""PostgreSQL connection strings: validation, masking and the endpoint for span attributes.

asyncpg accepts a DSN in URL form only (``postgresql://user:pass@host:port/db?opt=v``).
:func:`check_dsn` refuses, with an :class:`InvalidDsnError` that names the fix and shows
the DSN masked, everything asyncpg would misread -- because asyncpg's own errors then quote
pieces of the DSN, and a misread password ends up in them:

* a libpq ``key=value`` string (``host=db user=app password=...``): not supported, since
  converting it would mean re-implementing libpq's keyword table; the message shows the
  equivalent URL form;
* a password with a raw ``/``, ``?`` or ``#`` (the host part ends early, so the password
  is read as a port or a path) or a raw ``@`` (asyncpg splits the user info at the first
  ``@``): percent-encode it;
* a fragment (``#...``), a port that is not a number, a query string that is not
  ``key=value`` pairs (asyncpg parses it strictly and quotes the bad field).

The password may sit in two places -- the user info and a ``password=`` query parameter;
both are masked wherever a DSN is shown (:func:`mask_dsn`, i.e.
:func:`infra.redaction.redact_text`).
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qs, parse_qsl, urlsplit

from infra.exceptions import ConfigurationError
from infra.redaction import redact_text, userinfo_problem

__all__ = ["InvalidDsnError", "check_dsn", "mask_dsn", "server_endpoint"]

_SCHEMES: Final = ("postgresql://", "postgres://")
# Written without "user:password@" so no message shows a URL with a masked password.
_URL_FORM: Final = "postgresql://USER@HOST:PORT/DBNAME (the password after USER and a colon)"
# ``host=db``, ``  user = app`` ...: the start of a libpq keyword/value string.
_LIBPQ: Final = re.compile(r"\s*[A-Za-z_]+\s*=")
_PORT: Final = re.compile(r"\d*")


class InvalidDsnError(ConfigurationError, ValueError):
    """The DSN is not a PostgreSQL URL asyncpg reads as written.

    A :class:`~infra.exceptions.ConfigurationError` (fix the configuration) and, as
    before, a ``ValueError`` (a bad argument). The message never contains the password.
    """

    default_message = "invalid PostgreSQL DSN"


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password (user info and ``password=`` parameter) replaced by ``***``."""
    return redact_text(dsn)


def check_dsn(dsn: object) -> str:
    """Return ``dsn`` if asyncpg reads it as written; otherwise raise naming the fix.

    Raises:
        TypeError: ``dsn`` is not a string.
        InvalidDsnError: ``dsn`` is not a ``postgresql://`` / ``postgres://`` URL, or one
            whose parts asyncpg would misread (see the module docstring).
    """
    if not isinstance(dsn, str):
        raise TypeError(
            f"dsn must be a str such as 'postgresql://user@host:5432/db', got {type(dsn).__name__}"
        )
    shown = _shown(dsn)
    if "://" not in dsn and _LIBPQ.match(dsn):
        raise InvalidDsnError(
            "dsn is a libpq key=value string, which asyncpg does not accept; write it as a "
            f"URL, {_URL_FORM}, with the password percent-encoded "
            f"(urllib.parse.quote(password, safe='')); got {shown}",
            component="postgres",
        )
    if not dsn.lower().startswith(_SCHEMES):
        raise InvalidDsnError(
            "dsn must be a URL starting with postgresql:// or postgres:// (asyncpg does not "
            f"accept libpq key=value strings); got {shown}",
            component="postgres",
        )
    problem = _url_problem(dsn)
    if problem is not None:
        raise InvalidDsnError(
            f"dsn cannot be read as written: {problem}; got {shown}", component="postgres"
        )
    return dsn


def _shown(dsn: str) -> str:
    """The DSN for a message: masked, and left out when masking cannot be trusted (a
    line break would end the masked user info early)."""
    if not dsn.isprintable():
        return "(not shown: it contains control characters)"
    return repr(mask_dsn(dsn))


def _url_problem(dsn: str) -> str | None:
    if not dsn.isprintable():
        return "it contains control characters (a line break, a tab ...); remove them"
    problem = userinfo_problem(dsn, single_at=True)
    return problem if problem is not None else _parts_problem(dsn)


def _parts_problem(dsn: str) -> str | None:
    """What asyncpg's own parsing would trip over (and quote) in a well-split URL."""
    try:
        parts = urlsplit(dsn)
    except ValueError:  # e.g. an unbalanced '[' -- urllib's message may quote the host
        return (
            "its host part is malformed; write an IPv6 address as [::1] and "
            "percent-encode '[' and ']' in the password"
        )
    if parts.fragment or dsn.endswith("#"):
        return "it has a '#' fragment, which PostgreSQL ignores; write '#' in a password as %23"
    for host in parts.netloc.rpartition("@")[2].split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host
        if ":" in port and not _PORT.fullmatch(port.rpartition(":")[2]):
            return "a port is not a number; write host:port with a port in 1..65535"
    try:
        parse_qsl(parts.query, strict_parsing=bool(parts.query))
    except ValueError:
        return (
            "its query string must be key=value pairs joined by '&'; percent-encode "
            "'&', '=' and '#' inside values"
        )
    return None


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

"""Property: a secret never appears on any surface that renders text, whatever it looks like.

Passwords are drawn from the whole printable range (ASCII punctuation such as ``@ / : ? #
% & = ' " \\`` and spaces included, plus any printable Unicode) and written every way a
deployment writes them: URL user info percent-encoded or raw, ``?password=`` /
``sslpassword=`` query parameters, libpq ``key=value`` strings (quoted with escapes or
bare), Redis URLs and the secret settings. Each case is rendered through every surface:
``str``/``repr``/``safe_dump`` of ``Settings`` and its views, ``SettingsError``, stores
(``PostgresStore``, ``EnhancedPostgresStore``), the Redis client and ``RedisCache``,
``InfraError`` subclasses with the secret in message, details, notes and a chained driver
error, ``traceback.format_exception`` of each error, and the JSON log lines written through
stdlib ``logging`` and structlog as configured in production
(``configure_logging_from_settings``). The real-server test does the same with a
translated asyncpg error (wrong password against the embedded PostgreSQL) and a real
redis ``AuthenticationError``.

**The criterion, and why it is sound and not flaky.** "The password is not in the output"
is too weak (a leaked *tail*, ``app:***@S3cret@db``, does not contain the whole password)
and "no 4-character piece of it is in the output" is flaky (``"user"`` or ``"0000"`` occur
in ordinary output). So every case is rendered twice: once with the password ``P``
(output ``S``) and once with a *control* password ``C`` of the same shape (output ``R``):
``C`` replaces each letter and digit of ``P`` by a different one (ROT13, digit + 5, the
neighbouring code point of the same Unicode category) and keeps every other character, so
parsers, validators and error paths take the same branches for both. The property:

    no substring of P (in any form it may be written: plain, percent-encoded, repr- or
    JSON-escaped) of 4 or more characters occurs in S unless it also occurs in R.

Anything the rendering shows independently of the password -- user names, hosts, fixed
texts, the ``***`` marks -- is in both, so it never counts; a piece of ``P`` that reaches
the output is in ``S`` but, containing a letter or digit that ``C`` changed, not in ``R``.
Volatile values are normalised first (memory addresses, log timestamps; numbers in JSON
logs are not text). What the criterion cannot see: a leaked run made only of punctuation
(``C`` keeps punctuation so both runs take the same path), which is why ``P`` always
contains letters or digits as hypothesis draws them, and why the unit tests pin the
punctuation cases by example.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import pathlib
import re
import traceback
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from config import Settings, SettingsError
from infra import redaction
from infra.cache import RedisCache, build_redis_client
from infra.exceptions import (
    BackendAuthenticationError,
    CacheConnectionError,
    ConfigurationError,
    DatabaseConnectionError,
    InfraError,
    LLMAuthenticationError,
    QuerySyntaxError,
)
from infra.observability import configure_logging_from_settings, get_logger
from infra.resilience import ResiliencePolicy
from infra.storage import EnhancedPostgresStore, PostgresStore

# ----------------------------------------------------------------------- strategies
# The characters that change how a DSN is parsed or printed. Passwords are built from
# runs of letters/digits, of any printable characters and of these, so that each of them
# regularly sits between pieces the criterion can see (see the module docstring);
# uniform draws from the printable range would rarely place a space or a quote there.
_STRUCTURAL = "@/:?#%&=+;, '\"\\[]{}*~"
_PRINTABLE = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),  # every ASCII symbol
    st.characters(codec="utf-8").filter(str.isprintable),  # any printable code point
)
_RUNS = st.one_of(
    st.text(st.characters(categories=("L", "N")), min_size=1, max_size=6),
    st.text(_PRINTABLE, min_size=1, max_size=4),
    st.sampled_from(_STRUCTURAL),
)
# At least 4 characters: the pieces checked are 4 characters or more (and shorter
# registered values are masked by position only; see infra.redaction).
passwords = (
    st.lists(_RUNS, min_size=1, max_size=8)
    .map("".join)
    .filter(lambda p: 4 <= len(p) <= 40 and any(c.isalnum() for c in p))
)
users = st.from_regex(r"[A-Za-z][A-Za-z0-9_.\-]{0,11}", fullmatch=True)
hosts = st.from_regex(r"[a-z][a-z0-9\-]{0,10}(\.[a-z]{2,5})?", fullmatch=True)
SHAPES = (
    "url-encoded",
    "url-raw",
    "query-encoded",
    "query-raw",
    "libpq-quoted",
    "libpq-bare",
)
shapes = st.sampled_from(SHAPES)
keys = st.sampled_from(["password", "PASSWORD", "sslpassword", "Password"])


# ------------------------------------------------------------------------ criterion
def control(password: str) -> str:
    """``password`` with every letter and digit changed, every other character kept."""
    out = []
    for char in password:
        if char.isascii() and char.isalpha():
            base = ord("a") if char.islower() else ord("A")
            out.append(chr(base + (ord(char) - base + 13) % 26))
        elif char.isascii() and char.isdigit():
            out.append(str((int(char) + 5) % 10))
        elif char.isalnum():
            out.append(_neighbour(char))
        else:
            out.append(char)
    return "".join(out)


def _neighbour(char: str) -> str:
    """A different printable character of the same category and UTF-8 length."""
    for candidate in (chr(ord(char) ^ 1), chr(ord(char) + 1), chr(ord(char) - 1)):
        if (
            candidate != char
            and candidate.isprintable()
            and unicodedata.category(candidate) == unicodedata.category(char)
            and len(candidate.encode()) == len(char.encode())
        ):
            return candidate
    return char  # no such neighbour: this character is not checked (see the docstring)


def written_forms(secret: str) -> set[str]:
    """How ``secret`` may be written in output: plain, percent-encoded, escaped."""
    return {
        secret,
        quote(secret, safe=""),
        quote(secret),
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }


_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


def normalised(text: str) -> str:
    return _ADDRESS.sub("0x?", text)


def leaks(secret: str, shown: str, reference: str) -> list[str]:
    """Pieces (>= 4 chars) of ``secret`` in ``shown`` that ``reference`` does not explain."""
    shown, reference = normalised(shown), normalised(reference)
    found: list[str] = []
    for form in written_forms(secret):
        for start in range(len(form)):
            for end in range(start + 4, len(form) + 1):
                piece = form[start:end]
                if piece in shown and piece not in reference:
                    found.append(piece)
    return found


# ------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Case:
    """One way of writing a password into a PostgreSQL DSN (and the other settings)."""

    shape: str
    key: str
    user: str
    host: str

    def dsn(
        self,
        password: str,
        *,
        user: str | None = None,
        host: str | None = None,
        database: str = "app",
        params: str = "",
    ) -> str:
        """The DSN; ``params`` (``host=/socket/dir``) go first in a URL's query string."""
        user = self.user if user is None else user
        host = self.host if host is None else host
        encoded = quote(password, safe="")
        query = f"?{params}" if params else ""
        if self.shape == "url-encoded":
            return f"postgresql://{user}:{encoded}@{host}/{database}{query}"
        if self.shape == "url-raw":
            return f"postgresql://{user}:{password}@{host}/{database}{query}"
        lead = f"{query}&" if params else "?"
        if self.shape == "query-encoded":
            return f"postgresql://{user}@{host}/{database}{lead}{self.key}={encoded}"
        if self.shape == "query-raw":
            return f"postgresql://{user}@{host}/{database}{lead}{self.key}={password}"
        escaped = password.replace("\\", "\\\\").replace("'", "\\'")
        if self.shape == "libpq-bare" and not any(c.isspace() for c in password):
            return f"host={host} user={user} {self.key}={escaped} dbname={database}"
        return f"host={host} user={user} {self.key}='{escaped}' dbname={database}"

    def redis_url(self, password: str) -> str:
        written = quote(password, safe="") if self.shape.endswith("encoded") else password
        return f"redis://{self.user}:{written}@{self.host}:6379/0"


cases = st.builds(Case, shape=shapes, key=keys, user=users, host=hosts)


# ------------------------------------------------------------------------- surfaces
def error_texts(error: BaseException) -> list[str]:
    """Every way an error is shown: str, repr, to_dict, the formatted traceback."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if isinstance(error, InfraError):
        texts.append(json.dumps(error.to_dict(), default=str))
    return texts


def raised(error: InfraError, cause: BaseException | None = None) -> InfraError:
    """``error`` after a real raise (so it has a traceback), chained to ``cause``."""
    try:
        raise error from cause
    except InfraError as caught:
        return caught


@contextmanager
def json_logs(settings: Settings) -> Iterator[list[str]]:
    """Production logging (JSON, from settings) into a buffer; yields the lines' texts."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    configure_logging_from_settings(settings, stream=stream)
    texts: list[str] = []
    try:
        yield texts
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
        texts.extend(_log_strings(stream.getvalue()))


def _log_strings(output: str) -> list[str]:
    """Every string in the JSON lines (decoded, so an escaped leak is seen as a leak),
    timestamps left out (they differ between the two renderings)."""

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for key, item in value.items():
                if key != "timestamp":
                    yield key
                    yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)

    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert lines, "the logging calls wrote nothing"
    return [text for line in lines for text in walk(line)]


def log_everything(password: str, dsn: str, errors: list[InfraError], objects: list[Any]) -> None:
    """What an application logs around a failure, through stdlib logging and structlog."""
    stdlib = logging.getLogger("app.redaction")
    bound = get_logger("app.redaction", component="postgres")
    stdlib.warning("connecting to %s", dsn)
    stdlib.warning("password is %s (encoded %s)", password, quote(password, safe=""))
    bound.warning("connecting", dsn=dsn, password=password, objects=objects)
    bound.warning(f"free text {password}")
    for error in errors:
        stdlib.error("call failed: %s", error, exc_info=error)
        bound.error("call failed", error=error, details=error.details, exc_info=error)


@contextmanager
def own_secret_registry() -> Iterator[None]:
    """Registered secrets of this rendering only. Objects of an earlier example (kept
    alive by hypothesis for its report) would otherwise still mask their password by
    value when the example is replayed, and the replay would pass where the first run
    failed."""
    with redaction.fresh_secret_registry():
        yield


async def render_offline(case: Case, password: str) -> str:
    """Every surface that needs no server, for one password."""
    with own_secret_registry():
        return await _render_offline(case, password)


async def _render_offline(case: Case, password: str) -> str:
    texts: list[str] = []
    dsn = case.dsn(password)
    secret_kwargs: dict[str, Any] = {
        "redis_password": password,
        "llm_api_key": password,
        "qdrant_api_key": password,
        "graph_password": password,
        "log_level": "DEBUG",
        "log_format": "json",
    }
    try:
        app_settings = Settings(
            database_url=dsn,
            redis_url=case.redis_url(password),
            qdrant_url=f"https://{case.user}:{quote(password, safe='')}@{case.host}:6333",
            **secret_kwargs,
        )
    except SettingsError as error:
        texts += error_texts(error)
        app_settings = Settings(**secret_kwargs)
    texts += [repr(app_settings), str(app_settings), json.dumps(app_settings.safe_dump())]
    for view in ("db", "redis", "vector", "graph", "llm"):
        texts += [repr(getattr(app_settings, view)), str(getattr(app_settings, view))]

    errors: list[InfraError] = []
    stores: list[Any] = []
    for cls in (PostgresStore, EnhancedPostgresStore):
        try:
            stores.append(cls(dsn, min_size=1, max_size=1))
        except ConfigurationError as error:
            errors.append(raised(error))
    texts += [repr(store) for store in stores]

    client = build_redis_client(app_settings)
    cache = RedisCache(client, policy=ResiliencePolicy.passthrough("redis"))
    texts += [repr(client), repr(cache)]

    driver = ConnectionRefusedError(f"could not connect to {dsn} with {password}")
    for error_type in (
        DatabaseConnectionError,
        CacheConnectionError,
        QuerySyntaxError,
        LLMAuthenticationError,
    ):
        made = error_type(
            f"cannot use {dsn}",
            component="test",
            details={"dsn": dsn, "password": password, "url": case.redis_url(password)},
        )
        made.add_note(f"while connecting to {dsn}")
        errors.append(raised(made, driver))
    for failure in errors:
        texts += error_texts(failure)

    with json_logs(app_settings) as logged:
        log_everything(password, dsn, errors, [app_settings, *stores, cache])
    texts += logged
    await client.aclose()
    return "\n".join(texts)


@settings(max_examples=100)
@given(case=cases, password=passwords)
async def test_no_surface_shows_any_piece_of_the_password(case: Case, password: str) -> None:
    """Settings, errors, stores, clients, tracebacks and JSON logs (see the module doc)."""
    shown = await render_offline(case, password)
    reference = await render_offline(case, control(password))
    found = leaks(password, shown, reference)
    assert not found, f"pieces of the password shown: {sorted(set(found), key=len)[-3:]}"


# ---------------------------------------------------------------------- real servers
PROBE_ROLE = "redaction_probe"
PROBE_PASSWORD = "the-right-password-4242"


@pytest.fixture(scope="module")
async def password_auth_postgres(postgres_dsn: str) -> AsyncIterator[str]:
    """The socket directory of a server where PROBE_ROLE must authenticate by password.

    The embedded server trusts local connections; a ``pg_hba.conf`` line for our own role
    only (removed afterwards) makes it check passwords for that role and nobody else.
    """
    conn = await asyncpg.connect(postgres_dsn)
    hba = pathlib.Path(await conn.fetchval("SHOW hba_file"))
    original = await asyncio.to_thread(hba.read_text)
    line = f"local all {PROBE_ROLE} scram-sha-256\n"
    await asyncio.to_thread(hba.write_text, line + original)
    try:
        await conn.execute("SELECT pg_reload_conf()")
        await conn.execute(f"DROP ROLE IF EXISTS {PROBE_ROLE}")
        await conn.execute(f"CREATE ROLE {PROBE_ROLE} LOGIN PASSWORD '{PROBE_PASSWORD}'")
        socket_dir = str(await conn.fetchval("SHOW unix_socket_directories")).split(",")[0]
        await _until_passwords_are_checked(socket_dir)
        yield socket_dir
    finally:
        await asyncio.to_thread(hba.write_text, original)
        await conn.execute("SELECT pg_reload_conf()")
        await conn.execute(f"DROP ROLE IF EXISTS {PROBE_ROLE}")
        await conn.close()


async def _until_passwords_are_checked(socket_dir: str) -> None:
    """Wait for the server to load the new pg_hba.conf (a reload is asynchronous)."""
    for _ in range(100):
        try:
            conn = await asyncpg.connect(
                user=PROBE_ROLE, password="wrong", host=socket_dir, database="postgres"
            )
        except asyncpg.InvalidPasswordError:
            return
        await conn.close()
        await asyncio.sleep(0.05)
    raise AssertionError("the server still accepts a wrong password for the probe role")


@pytest.fixture(scope="module")
async def redis_acl_user(redis_url: str) -> AsyncIterator[str]:
    """An ACL user of our own whose password is PROBE_PASSWORD (deleted afterwards)."""
    admin = Redis.from_url(redis_url)
    user = f"redaction-{uuid.uuid4().hex[:8]}"
    await admin.acl_setuser(user, enabled=True, passwords=[f"+{PROBE_PASSWORD}"])
    try:
        yield user
    finally:
        await admin.acl_deluser(user)
        await admin.aclose()


async def render_against_servers(
    case: Case, password: str, socket_dir: str, redis_url: str, redis_user: str
) -> str:
    """A wrong password sent to the real PostgreSQL and Redis; every surface rendered."""
    with own_secret_registry():
        return await _render_against_servers(case, password, socket_dir, redis_url, redis_user)


async def _render_against_servers(
    case: Case, password: str, socket_dir: str, redis_url: str, redis_user: str
) -> str:
    texts: list[str] = []
    errors: list[InfraError] = []
    if case.shape.startswith("libpq"):
        dsn = case.dsn(password, user=PROBE_ROLE, host=socket_dir, database="postgres")
    else:
        dsn = case.dsn(
            password, user=PROBE_ROLE, host="", database="postgres", params=f"host={socket_dir}"
        )
    redis_host = redis_url.split("://", 1)[1].rsplit("/", 1)[0]
    redis_settings = Settings(
        redis_url=f"redis://{redis_user}@{redis_host}/0",
        redis_password=password,
        log_level="DEBUG",
        log_format="json",
    )
    with json_logs(redis_settings) as logged:
        stores: list[Any] = []
        build: Callable[[], PostgresStore]
        for build in (
            lambda: PostgresStore(dsn, min_size=1, max_size=1),
            lambda: EnhancedPostgresStore(dsn, min_size=1, max_size=1, enable_retry=False),
        ):
            try:
                store = build()
            except ConfigurationError as error:  # a DSN asyncpg would misread
                errors.append(error)
                continue
            stores.append(store)
            with pytest.raises(BackendAuthenticationError) as failed:
                await store.fetch("SELECT 1")
            await store.close()
            errors.append(failed.value)
        async with RedisCache.from_settings(
            redis_settings, ResiliencePolicy.passthrough("redis")
        ) as cache:
            with pytest.raises(BackendAuthenticationError) as failed:
                await cache.get("k")
            errors.append(failed.value)
            texts += [repr(cache), repr(stores)]
        log_everything(password, dsn, errors, stores)
    for failure in errors:
        texts += error_texts(failure)
    return "\n".join([*texts, *logged])


@settings(max_examples=40)
@given(case=cases, password=passwords)
async def test_real_authentication_failures_show_no_piece_of_the_password(
    password_auth_postgres: str, redis_url: str, redis_acl_user: str, case: Case, password: str
) -> None:
    """asyncpg's InvalidPasswordError and redis' AuthenticationError, translated, rendered
    and logged: no piece of the wrong password appears (same criterion)."""
    shown = await render_against_servers(
        case, password, password_auth_postgres, redis_url, redis_acl_user
    )
    reference = await render_against_servers(
        case, control(password), password_auth_postgres, redis_url, redis_acl_user
    )
    found = leaks(password, shown, reference)
    assert not found, f"pieces of the password shown: {sorted(set(found), key=len)[-3:]}"

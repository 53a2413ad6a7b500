"""Caller input of the vector stores, checked before any I/O (shared by every store).

* **Ids** (:func:`check_point_id`): an unsigned 64-bit ``int`` or a UUID string -- what
  Qdrant accepts -- on every store, so code moves between engines unchanged. UUID
  strings are normalised to the canonical lower-case, hyphenated form the engines return.
  :func:`point_id` derives a stable UUID from any caller key, so re-upserting the same
  key replaces the point instead of adding one (idempotent writes).
* **Vectors** (:func:`check_vector`): a sequence of real numbers of the collection's
  dimension, each finite and inside the 32-bit float range: Qdrant and pgvector store
  ``float32``, where ``1e39`` is infinity. A wrong length is a
  :class:`DimensionMismatchError` with ``expected_dim``/``got_dim``; NaN, infinity, a
  value beyond +-3.4e38 or a non-number an ``InvalidArgumentError`` naming the point and
  position. Any real number is accepted -- numpy scalars, ``Decimal``, ``Fraction``,
  ``bool`` (0 or 1) -- and an engine whose wire format carries only plain floats
  converts with :func:`plain_floats` (the Qdrant server's JSON). The common case costs
  one C-level pass per vector, ``math.hypot``: non-finite when an element is, failing on
  a non-number, and an upper bound of every element, so a norm within the float32 range
  proves the whole vector fine; only a vector failing it is scanned in Python (for the
  position, or to find that its large elements are each in range). Checking 10,000 x
  384 values takes a few tens of milliseconds.
* **Payloads**: a mapping with ``str`` keys that encodes as JSON (no NaN); its encoded
  length also sizes the request (see :mod:`infra.vector.batching`). No text in it (keys
  included, at any depth) may hold U+0000 or a lone surrogate: PostgreSQL's ``jsonb``
  refuses both, a Qdrant server's UTF-8 JSON the second, so they are refused everywhere,
  naming the point, before anything is written (else pgvector would fail mid-upsert, with
  other batches already written). A float is encoded with its exact value: an integral
  float beyond 1e16 as ``100000000000000000000.0``, not ``1e+20``, which ``jsonb`` would
  keep as the integer ``10**20`` (returned as an ``int``, and equal to an integer filter).
  Lists and mappings nest at most :data:`MAX_PAYLOAD_DEPTH` (100) levels: a Qdrant server
  refuses deeper JSON, and deeper still Python's encoder failed with ``RecursionError``.
* **Duplicates** in one upsert are refused: batches run concurrently, so which of two
  points with one id would win is not defined.

Nothing here imports a client.
"""

from __future__ import annotations

import json
import math
import re
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from infra.exceptions import DimensionMismatchError, InvalidArgumentError
from infra.ports import VectorPoint
from infra.validation import shown
from infra.vector.filters import text_problem

__all__ = [
    "DISTANCES",
    "FLOAT32_MAX",
    "MAX_PAYLOAD_DEPTH",
    "MAX_POINT_ID",
    "PreparedPoints",
    "check_collection_name",
    "check_distance",
    "check_limit",
    "check_point_id",
    "check_point_ids",
    "check_vector",
    "plain_floats",
    "point_id",
    "prepare_points",
]

#: Deepest nesting of lists and mappings in a payload (the payload itself is level 1).
#: A Qdrant server parses requests with serde_json, whose recursion limit is 128 levels,
#: three of them the request's own; one limit on every engine keeps code portable.
MAX_PAYLOAD_DEPTH: Final = 100
#: Largest integer id (Qdrant ids are unsigned 64-bit).
MAX_POINT_ID: Final = 2**64 - 1
#: Distance names accepted, mapped to the canonical one.
DISTANCES: Final = {
    "cosine": "cosine",
    "dot": "dot",
    "euclid": "euclid",
    "euclidean": "euclid",
    "l2": "euclid",
}
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,48}")
#: Fixed namespace of :func:`point_id` (a constant: changing it would re-key every point).
_KEY_NAMESPACE: Final = uuid.UUID("4d8c1f0e-5b7a-4c39-9a43-2b1e3f6d7a10")
#: Largest magnitude of a vector element: the engines store 32-bit floats.
FLOAT32_MAX: Final = 3.4028234663852886e38
#: Most bytes a float takes in a JSON request: the longest ``repr`` of a double
#: ("-2.2250738585072014e-308", 24 characters) and a comma. An upper bound, so a batch
#: planned under ``max_request_bytes`` is never sent larger.
_FLOAT_BYTES: Final = 25
#: Most bytes of one point's JSON besides its vector and payload: ``{"id":`` a UUID in
#: quotes (38) ``,"vector":[`` ``],"payload":`` ``}`` and a comma (69), rounded up; the
#: spare bytes of two points cover the request's ``{"points":[`` ``]}``.
_POINT_BYTES: Final = 80
_ONE_FLOAT32: Final = struct.Struct("<f")
#: One encoder for every payload: ``json.dumps`` with options builds a new one per call.
_JSON: Final = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def point_id(key: str) -> str:
    """A stable UUID string for ``key``: the same key gives the same point id forever."""
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"key must be a non-empty str, got {shown(key)}", argument="key")
    return str(uuid.uuid5(_KEY_NAMESPACE, key))


def check_collection_name(name: object, *, component: str | None = None) -> str:
    """A collection name: 1-48 characters of ``A-Z a-z 0-9 _ -`` (safe on every engine,
    and as a PostgreSQL table name with our prefix)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"collection must be 1-48 characters of letters, digits, '_' or '-', got {shown(name)}",
            argument="collection",
            component=component,
        )
    return name


def check_distance(distance: object, *, component: str | None = None) -> str:
    """The canonical distance name: ``"cosine"``, ``"dot"`` or ``"euclid"``."""
    canonical = DISTANCES.get(distance.lower()) if isinstance(distance, str) else None
    if canonical is None:
        raise InvalidArgumentError(
            f"distance must be one of {sorted(DISTANCES)}, got {shown(distance)}",
            argument="distance",
            component=component,
        )
    return canonical


def check_limit(
    value: object, *, argument: str = "limit", component: str | None = None, most: int = 10_000
) -> int:
    """A positive ``int`` up to ``most``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= most:
        raise InvalidArgumentError(
            f"{argument} must be an int in 1..{most}, got {shown(value)}",
            argument=argument,
            component=component,
        )
    return value


def check_point_id(
    value: object, *, argument: str = "id", component: str | None = None
) -> str | int:
    """``value`` as a point id: an ``int`` in 0..2**64-1, or a canonical UUID string."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= MAX_POINT_ID:
            return value
    elif isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise InvalidArgumentError(
        f"{argument} must be an unsigned int (0..2**64-1) or a UUID string, got "
        f"{shown(value)}; derive a stable UUID from any key with infra.vector.point_id(key)",
        argument=argument,
        component=component,
    )


def check_point_ids(ids: object, *, component: str | None = None) -> list[str | int]:
    """A list or tuple of point ids, each checked with :func:`check_point_id`."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise InvalidArgumentError(
            f"ids must be a list or tuple of point ids, got {type(ids).__name__}",
            argument="ids",
            component=component,
        )
    return [
        check_point_id(value, argument=f"ids[{index}]", component=component)
        for index, value in enumerate(ids)
    ]


def check_vector(
    vector: object,
    dimension: int,
    *,
    argument: str = "vector",
    component: str | None = None,
) -> list[float]:
    """``vector`` as a list of ``dimension`` real numbers, each finite and inside the
    32-bit float range (see the module docstring)."""
    values = _as_list(vector, argument, component)
    if len(values) != dimension:
        raise DimensionMismatchError(
            f"{argument} has {len(values)} dimensions, the collection expects {dimension}; "
            "embed with the collection's model or use a collection of that size",
            component=component,
            details={"argument": argument, "expected_dim": dimension, "got_dim": len(values)},
        )
    try:
        # One C-level pass: the norm is a NaN or an infinity when an element is, fails on
        # a non-number, and bounds every element: no element exceeds it.
        if math.hypot(*values) <= FLOAT32_MAX:
            return values
    except (TypeError, ValueError, OverflowError):
        pass
    error = _first_bad_element(values, argument, component)
    if error is not None:
        raise error
    return values  # large elements, each inside the float32 range


def plain_floats(vector: list[Any]) -> list[float]:
    """A checked vector as plain Python floats, for a wire format that carries nothing
    else: qdrant-client's JSON encoder fails on a numpy ``float32`` and writes a
    ``Decimal`` or a ``Fraction`` as a string the server refuses."""
    return list(map(float, vector))


def _as_list(vector: object, argument: str, component: str | None) -> list[Any]:
    if type(vector) is list:
        return vector
    tolist = getattr(vector, "tolist", None)  # numpy arrays, without importing numpy
    if callable(tolist):
        values = tolist()
        if isinstance(values, list):
            return values
    if isinstance(vector, str | bytes | Mapping) or not isinstance(vector, Sequence):
        raise InvalidArgumentError(
            f"{argument} must be a sequence of numbers, got {type(vector).__name__}",
            argument=argument,
            component=component,
        )
    return list(vector)


def _first_bad_element(
    values: list[Any], argument: str, component: str | None
) -> InvalidArgumentError | None:
    """The error naming the first element that is not a finite real number in the float32
    range, if any (called only when the fast check in :func:`check_vector` failed)."""
    for index, value in enumerate(values):
        problem = _element_problem(value)
        if problem is not None:
            return InvalidArgumentError(
                f"{argument}[{index}] {problem}",
                argument=argument,
                component=component,
                details={"position": index},
            )
    return None


def _element_problem(value: Any) -> str | None:
    if isinstance(value, str | bytes | bytearray):  # float() would parse text
        return f"must be a number, got {type(value).__name__}"
    try:
        number = float(value)
        _ONE_FLOAT32.pack(number)
    except OverflowError:  # an int beyond any float, or a float beyond float32
        return (
            f"is {shown(value)}, beyond the 32-bit float range (+-3.4e38) in which the "
            "engines store vectors; check the embedding that produced it"
        )
    except (TypeError, ValueError):
        return f"must be a number, got {type(value).__name__}"
    if not math.isfinite(number):
        return (
            f"is {value!r}; vectors must be finite (no NaN or infinity): check the "
            "embedding that produced it"
        )
    return None


def _payload_json(payload: object, argument: str, component: str | None) -> str:
    if not payload and isinstance(payload, Mapping):
        return "{}"
    if not isinstance(payload, Mapping) or not all(isinstance(k, str) for k in payload):
        raise InvalidArgumentError(
            f"{argument} must be a mapping with str keys, got {shown(payload)}",
            argument=argument,
            component=component,
        )
    try:
        text = _JSON.encode(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"{argument} must encode as JSON (str keys; str, number, bool, None, lists "
            f"and mappings; no NaN): {exc}",
            argument=argument,
            component=component,
        ) from None
    except RecursionError:
        raise _too_deep(argument, component) from None
    # Only a payload with many brackets can be too deep: counted in C.
    if text.count("[") + text.count("{") > MAX_PAYLOAD_DEPTH and (
        _depth(json.loads(text)) > MAX_PAYLOAD_DEPTH
    ):
        raise _too_deep(argument, component)
    # Rare cases, found in the text in C: an escape (U+0000 and lone surrogates are
    # written as one) or a float written with a positive exponent.
    if "\\u" not in text and "e+" not in text:
        return text
    document = json.loads(text)
    problem = _stored_text_problem(document, "")
    if problem is not None:
        where, what = problem
        raise InvalidArgumentError(
            f"{argument}{where} {what}; remove or replace that character",
            argument=argument,
            component=component,
            details={"path": where},
        )
    return _exact_json(document) if "e+" in text else text


def _too_deep(argument: str, component: str | None) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{argument} nests lists and mappings more than {MAX_PAYLOAD_DEPTH} levels deep; "
        "a Qdrant server's JSON parser stops at 128 levels (the request's own included): "
        "flatten it",
        argument=argument,
        component=component,
    )


def _depth(document: Any) -> int:
    """How many lists and mappings deep ``document`` nests (iterative: any depth)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, level = pending.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            items = value.values() if isinstance(value, dict) else value
            pending.extend((item, level + 1) for item in items)
    return deepest


def _stored_text_problem(value: Any, where: str) -> tuple[str, str] | None:
    """``(path, problem)`` of the first key or string no engine can store, if any."""
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else (where, problem)
    if isinstance(value, dict):
        for key, item in value.items():
            place = f"{where}[{key!r}]"
            problem = text_problem(key)
            if problem is not None:
                return place, f"key {problem}"
            found = _stored_text_problem(item, place)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _stored_text_problem(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


def _exact_json(value: Any) -> str:
    """JSON of a decoded document with every integral float written positionally."""
    if isinstance(value, float):
        text = repr(value)
        return f"{int(value)}.0" if "e+" in text else text
    if isinstance(value, dict):
        items = ",".join(f"{_JSON.encode(key)}:{_exact_json(item)}" for key, item in value.items())
        return "{" + items + "}"
    if isinstance(value, list):
        return "[" + ",".join(_exact_json(item) for item in value) + "]"
    return _JSON.encode(value)


@dataclass(frozen=True, slots=True)
class PreparedPoints:
    """Checked points as parallel lists (what every engine sends)."""

    ids: list[str | int]
    vectors: list[list[float]]
    payloads: list[dict[str, Any]]
    payload_json: list[str]
    sizes: list[int]
    """Estimated request bytes of each point."""

    def __len__(self) -> int:
        return len(self.ids)


def prepare_points(
    points: object, dimension: int, *, component: str | None = None
) -> PreparedPoints:
    """Check every point of an upsert (see the module docstring)."""
    if isinstance(points, str | bytes) or not isinstance(points, Sequence):
        raise InvalidArgumentError(
            f"points must be a list of VectorPoint, got {type(points).__name__}",
            argument="points",
            component=component,
        )
    ids: list[str | int] = []
    vectors: list[list[float]] = []
    payloads: list[dict[str, Any]] = []
    payload_json: list[str] = []
    sizes: list[int] = []
    seen: dict[str | int, int] = {}
    vector_bytes = dimension * _FLOAT_BYTES + _POINT_BYTES
    for index, point in enumerate(points):
        if not isinstance(point, VectorPoint):
            raise InvalidArgumentError(
                f"points[{index}] must be a VectorPoint(id, vector, payload), got "
                f"{type(point).__name__}",
                argument=f"points[{index}]",
                component=component,
            )
        pid = check_point_id(point.id, argument=f"points[{index}].id", component=component)
        first = seen.setdefault(pid, index)
        if first != index:
            raise InvalidArgumentError(
                f"points[{index}] repeats the id {pid!r} of points[{first}]; batches run "
                "concurrently, so keep one point per id",
                argument=f"points[{index}].id",
                component=component,
            )
        vectors.append(
            check_vector(
                point.vector, dimension, argument=f"points[{index}].vector", component=component
            )
        )
        text = _payload_json(point.payload, f"points[{index}].payload", component)
        ids.append(pid)
        payloads.append(dict(point.payload))
        payload_json.append(text)
        sizes.append(vector_bytes + len(text))
    return PreparedPoints(ids, vectors, payloads, payload_json, sizes)

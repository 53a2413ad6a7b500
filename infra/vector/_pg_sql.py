"""The SQL of :class:`~infra.vector.pgvector.PgVectorStore`: one place, values always ``$n``.

Identifiers cannot be parameters: table names are built only from collection names that
passed :func:`~infra.vector.points.check_collection_name` (letters, digits, ``_``, ``-``)
and are always double-quoted (so case is kept: ``Docs`` and ``docs`` are two tables).
Index and primary key names have prefixes of their own (:func:`index_name`). Everything
else -- ids, vectors, payloads, filter values, even the filter's ``jsonpath`` text --
travels as a parameter.

* **Vectors** are sent as ``real[]`` (asyncpg's binary array encoder) and cast to
  ``vector`` on the server, so no text formatting of floats and no codec registration on
  the pool's connections.
* **Ids** are stored as text: an integer id as its decimal digits, a UUID in canonical
  form. Scroll order (integers first, numerically; then UUIDs) is
  ``(is_uuid, length(id), id)``: decimal strings without leading zeros sort by length
  first, canonical UUIDs sort as their 128-bit value.
* **Filters** become one ``jsonb_path_exists(payload, $p::jsonpath, $v::jsonb, true)`` in
  **strict** mode, each condition ``exists(@."a"."b" ? (test)) || exists(@."a"."b"[*] ?
  (test))``: the field itself or, when it holds an array, one of its elements -- Qdrant's
  semantics. Lax mode (the default) would also unwrap arrays met on the way (``{"a.b": 1}``
  matching ``{"a": [{"b": 1}]}``) and arrays of arrays, which Qdrant does not; strict mode
  makes such a step an error, which the ``silent`` flag turns into "no match".
  Comparisons are typed (``1`` is not ``true`` nor ``"1"``). ``jsonb`` compares numbers as
  decimals, so ``1`` would equal ``1.0``: on PostgreSQL 17 or later (jsonpath
  ``.string()``) an integer condition also requires the stored text to be that integer's,
  so a float never equals an int, as on Qdrant; on older servers it does (documented).
  Range bounds travel with their exact value (an int as is, a float as its shortest
  ``repr`` or, integral, its exact digits -- the form payload floats are stored in,
  :mod:`infra.vector.points`), so a bound equal to a stored number compares equal.
* **Scores**: cosine similarity ``1 - (e <=> q)``, dot product ``-(e <#> q)``, Euclidean
  distance ``e <-> q``. pgvector's cosine distance of a zero vector is NaN; Qdrant
  scores it 0 (its normalised form stays zero), so the score is ``0`` there and an exact
  ordering ranks it as distance 1. ``exact`` orders by an expression no index can serve,
  so the planner scans (Qdrant's ``exact=True``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from infra.vector.filters import Condition

__all__ = [
    "COLLECTIONS_TABLE",
    "create_table_sql",
    "filter_sql",
    "id_from_text",
    "id_text",
    "index_name",
    "order_sql",
    "primary_key_name",
    "score_sql",
    "table_name",
]

COLLECTIONS_TABLE: Final = "semantica_vector_collections"
CREATE_COLLECTIONS_TABLE: Final = (
    f"CREATE TABLE IF NOT EXISTS {COLLECTIONS_TABLE} ("
    "name text PRIMARY KEY, dimension integer NOT NULL, distance text NOT NULL, "
    "model text, created_at timestamptz NOT NULL DEFAULT now())"
)
#: pgvector's HNSW index takes ``vector`` columns of at most 2,000 dimensions.
MAX_INDEXED_DIMENSION: Final = 2_000
_OPS: Final = {"cosine": "vector_cosine_ops", "dot": "vector_ip_ops", "euclid": "vector_l2_ops"}
_DISTANCE_OP: Final = {"cosine": "<=>", "dot": "<#>", "euclid": "<->"}
ORDER_KEY: Final = "(CASE WHEN id ~ '^[0-9]+$' THEN 0 ELSE 1 END), length(id), id"


def table_name(collection: str) -> str:
    """The quoted table of a (checked) collection name."""
    return f'"semantica_vec_{collection}"'


def index_name(collection: str) -> str:
    """The quoted name of a collection's HNSW index. Tables, indexes and constraints
    share one namespace, and collection names may end in ``_hnsw`` or ``_pkey``: a prefix
    no table has keeps them apart (``semantica_vec_x_hnsw`` was both the index of ``x``
    and the table of ``x_hnsw``). At most 15 + 48 characters: within PostgreSQL's 63."""
    return f'"semantica_vidx_{collection}"'


def primary_key_name(collection: str) -> str:
    """The quoted primary key constraint (and index) name; see :func:`index_name`."""
    return f'"semantica_vpk_{collection}"'


def create_table_sql(
    collection: str, size: int, distance: str, m: int | None, ef_construct: int | None
) -> list[str]:
    """The table and, when the dimension allows, its HNSW index."""
    table = table_name(collection)
    statements = [
        (
            f"CREATE TABLE IF NOT EXISTS {table} (id text "
            f"CONSTRAINT {primary_key_name(collection)} PRIMARY KEY, "
            f"embedding vector({size}) NOT NULL, payload jsonb NOT NULL DEFAULT '{{}}')"
        )
    ]
    if size <= MAX_INDEXED_DIMENSION:
        options = {"m": m, "ef_construction": ef_construct}
        given = ", ".join(f"{key} = {int(value)}" for key, value in options.items() if value)
        with_clause = f" WITH ({given})" if given else ""
        index = index_name(collection)
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {index} ON {table} "
            f"USING hnsw (embedding {_OPS[distance]}){with_clause}"
        )
    return statements


def id_text(point_id: str | int) -> str:
    return str(point_id)


def id_from_text(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def distance_sql(distance: str, parameter: int) -> str:
    """The ordering distance of ``embedding`` to the query vector ``$parameter``."""
    return f"(embedding {_DISTANCE_OP[distance]} ${parameter}::real[]::vector)"


def score_sql(distance: str, parameter: int) -> str:
    """The score Qdrant would report, from the distance expression."""
    raw = distance_sql(distance, parameter)
    return {
        "cosine": f"COALESCE(NULLIF(1 - {raw}, 'NaN'::float8), 0)",
        "dot": f"(-{raw})",
        "euclid": raw,
    }[distance]


def order_sql(distance: str, parameter: int, *, exact: bool) -> str:
    """Best first; ``exact``: an expression no index serves (a zero vector's cosine
    distance, NaN, ranks as 1: score 0)."""
    raw = distance_sql(distance, parameter)
    if not exact:
        return raw
    return f"COALESCE(NULLIF({raw}, 'NaN'::float8), 1)" if distance == "cosine" else f"{raw} + 0"


def _path(condition: Condition) -> str:
    return "@" + "".join(f".{json.dumps(part)}" for part in condition.path)


def _number_json(value: float | int) -> str:
    """A bound's exact JSON number (see the module docstring)."""
    if isinstance(value, float):
        text = repr(value)
        return f"{int(value)}.0" if "e+" in text else text
    return str(value)


def filter_sql(
    conditions: Sequence[Condition], first_parameter: int, *, exact_ints: bool = True
) -> tuple[str, list[Any]]:
    """``(sql, parameters)`` of the filter: ``TRUE`` and none without conditions.
    ``exact_ints``: the server has jsonpath ``.string()`` (PostgreSQL 17+)."""
    if not conditions:
        return "TRUE", []
    variables: list[str] = []

    def variable(json_text: str) -> str:
        variables.append(f'"v{len(variables)}":{json_text}')
        return f"$v{len(variables) - 1}"

    parts: list[str] = []
    for condition in conditions:
        tests: list[str] = []
        if condition.is_range:
            symbols = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
            for name, bound in condition.bounds().items():
                tests.append(f"@ {symbols[name]} {variable(_number_json(bound))}")
            joined = " && ".join(tests)
        else:
            for value in condition.values:
                test = f"@ == {variable(json.dumps(value))}"
                if exact_ints and isinstance(value, int) and not isinstance(value, bool):
                    test = f"({test} && @.string() == {variable(json.dumps(str(value)))})"
                tests.append(test)
            joined = " || ".join(tests)
        path = _path(condition)
        parts.append(f"(exists({path} ? ({joined})) || exists({path}[*] ? ({joined})))")
    path = "strict $ ? (" + " && ".join(parts) + ")"
    sql = (
        f"jsonb_path_exists(payload, ${first_parameter}::jsonpath, "
        f"${first_parameter + 1}::jsonb, true)"
    )
    return sql, [path, "{" + ",".join(variables) + "}"]

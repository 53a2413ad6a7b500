"""The one seam where driver exceptions become :mod:`infra.exceptions` errors.

Adapters never ``except asyncpg.UniqueViolationError``; they run driver calls inside
:func:`translated` (or call :func:`translate_exception`) and callers see one hierarchy::

    async with translated("postgres", family="database", operation="fetch", timeout=5.0):
        rows = await conn.fetch(query, *args)

What the seam guarantees:

* **Most specific match wins.** Each driver supplies a table of ``(driver class,
  translator)`` rows; the seam walks ``type(exc).__mro__`` from the most derived class and
  takes the first translator that answers. Row order inside a table does not matter (see
  :mod:`infra.translation._registry` for why).
* **The family chooses generic types.** ``family`` says what kind of backend the call
  talks to, so a bare ``TimeoutError`` becomes ``QueryTimeoutError`` for ``"database"``,
  ``LLMTimeoutError`` for ``"llm"`` and ``OperationTimeoutError`` otherwise, and
  ``ConnectionResetError`` becomes ``DatabaseConnectionError`` / ``CacheConnectionError``
  / ... accordingly. Driver tables fill in their natural family when the caller says
  ``"generic"``.
* **Chained, never lossy.** The result's ``__cause__`` is the driver exception;
  ``details`` holds ``driver_error`` (qualified class name), ``operation``, and the facts
  worth keeping (postgres ``sqlstate``/``constraint``, neo4j ``code``, HTTP
  ``status_code``, LLM ``llm_provider``/``retry_after``, ``timeout``).
* **No secrets.** Driver messages can quote DSNs or API keys; every message and string
  fact passes through :func:`infra.redaction.redact_text`.
* **Control flow is untouchable.** ``asyncio.CancelledError``, ``KeyboardInterrupt``,
  ``SystemExit``, ``GeneratorExit`` and ``StopIteration``/``StopAsyncIteration`` are never
  translated or swallowed; an :class:`~infra.exceptions.InfraError` passes unchanged.
* **Lazy.** Importing this package imports no driver. A driver's table loads the first
  time one of its exceptions is translated -- when the driver is necessarily imported.

Built-in tables (one module each): builtins/OS/asyncio (``_builtins``), asyncpg
(``_postgres``), redis (``_redis``), qdrant-client and gRPC (``_vector``), httpx and
httpx2 (``_http``), neo4j (``_graph``), openai and litellm (``_llm``). Each module's
docstring records its mapping decisions. Adapters for other drivers add theirs with
:func:`register_driver_table`, typically built from :func:`to`.
"""

from __future__ import annotations

from infra.translation import _builtins, _graph, _http, _llm, _postgres, _redis, _vector
from infra.translation._context import (
    DriverTable,
    Family,
    Role,
    TableLoader,
    TranslationContext,
    Translator,
    to,
)
from infra.translation._registry import register_driver_table
from infra.translation._seam import TranslationScope, translate_exception, translated

__all__ = [
    "DriverTable",
    "Family",
    "Role",
    "TableLoader",
    "TranslationContext",
    "TranslationScope",
    "Translator",
    "register_driver_table",
    "to",
    "translate_exception",
    "translated",
]

for _root, _loader in (
    ("builtins", _builtins.load),
    ("asyncpg", _postgres.load),
    ("redis", _redis.load),
    ("httpx", _http.load_httpx),
    ("httpx2", _http.load_httpx2),
    ("qdrant_client", _vector.load_qdrant),
    ("grpc", _vector.load_grpc),
    ("neo4j", _graph.load),
    ("openai", _llm.load_openai),
    ("litellm", _llm.load_litellm),
):
    register_driver_table(_root, _loader)
del _root, _loader

"""``CachedEmbeddings``: an embedding model behind a per-text cache, with partial hits.

::

    embeddings = CachedEmbeddings(adapter, cache=three_tier, model="openai/e5-passage")
    vectors = await embeddings.embed(texts)     # 100 texts, 60 cached: the provider gets 40

Decisions:

* **Per item, order kept.** Each text is looked up on its own; only the misses go to the
  provider, in one batch (duplicates in a batch are sent once), and the answer is
  reassembled in the caller's order. A batch of 100 with 60 cached costs one provider
  call for 40 texts.
* **The key** is ``emb:<model>:<dimensions>:<input type>:<sha256 of the normalised
  text>``: the same text embedded by another model, at another requested size or as a
  query instead of a document is a different vector. ``<dimensions>`` is the size asked
  of the model (0: its own size), never one learned from an answer, so the key is the
  same before and after the first call and in every process. Normalisation is Unicode NFC with
  surrounding whitespace stripped and inner runs of whitespace collapsed to one space --
  differences a reader would not see must not cost a provider call. The text itself is
  never stored or logged, only its hash.
* **Backed by the 3-tier cache** (:class:`~infra.cache.ThreeTierCache`: L1 memory, L2
  Redis), so vectors survive a restart and are shared by processes; any object with the
  cache's ``get(key)`` / ``set(key, value, ttl=)`` works (a ``CacheStore`` too).
  Vectors are stored as lists of floats (JSON-serialisable).
* **Hits are saved spend.** With a :class:`~infra.observability.cost.CostTracker`, the
  tokens a hit would have cost (estimated at four characters per token: no tokenizer on
  the hit path) are recorded with ``cached=True`` -- counted in
  ``llm_cost_saved_usd_total``, not as spend.
* A failing cache read is a miss and a failing cache write is ignored (logged): the
  cache saves money, it must not take embeddings down with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from infra.exceptions import InfraError, InvalidArgumentError
from infra.llm.base import check_caller
from infra.llm.responses import check_texts

if TYPE_CHECKING:
    from infra.observability.cost import CostTracker

__all__ = ["CachedEmbeddings", "embedding_key", "normalise_text"]

_log = logging.getLogger("infra.llm.embedding_cache")
InputType = Literal["document", "query"]


class VectorCache(Protocol):
    """What the embedding cache needs from a cache."""

    async def get(self, key: str) -> Any:
        """The cached value, or ``None``."""
        ...

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds."""
        ...


class Embedder(Protocol):
    """The embedding model behind the cache (the litellm adapter or the fake)."""

    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        ...

    async def embed(
        self, texts: Sequence[str], *, input_type: InputType = "document", caller: str | None = None
    ) -> list[list[float]]:
        """One vector per text, in order."""
        ...


def normalise_text(text: str) -> str:
    """NFC, whitespace runs collapsed to one space, stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def embedding_key(model: str, dimensions: int | None, input_type: str, text: str) -> str:
    """The cache key of ``text``'s vector (see the module docstring)."""
    digest = hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()
    return f"emb:{model}:{dimensions or 0}:{input_type}:{digest}"


class CachedEmbeddings:
    """An :class:`~infra.ports.EmbeddingModel` that asks ``inner`` only for uncached texts.

    Args:
        inner: The embedding model.
        cache: Where vectors are kept (the 3-tier cache).
        model: Model name in the key (and for pricing saved spend).
        dimensions: The vector size requested from the model, in the key (``None``: the
            model's own size, which its name determines).
        ttl: Lifetime of a cached vector, seconds (``None``: the cache's default).
        cost: Records hits as saved spend.
    """

    def __init__(
        self,
        inner: Embedder,
        *,
        cache: VectorCache,
        model: str,
        dimensions: int | None = None,
        ttl: float | None = None,
        cost: CostTracker | None = None,
    ) -> None:
        self._inner = inner
        self._cache = cache
        self._model = model
        self._dimensions = dimensions
        self._ttl = ttl
        self._cost = cost
        #: Texts answered from the cache / sent to the provider, since construction.
        self.hits = 0
        self.misses = 0

    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        return self._inner.dimensions

    async def embed(
        self, texts: Sequence[str], *, input_type: InputType = "document", caller: str | None = None
    ) -> list[list[float]]:
        """One vector per text, in order; only the uncached texts reach ``inner``."""
        batch = check_texts(texts)
        who = check_caller(caller)
        if input_type not in ("document", "query"):
            raise InvalidArgumentError(
                f"input_type must be 'document' or 'query', got {input_type!r}",
                argument="input_type",
            )
        if not batch:
            return []
        keys = [self._key(input_type, text) for text in batch]
        size = self._expected_size()
        cached = await asyncio.gather(*(self._read(key, size) for key in keys))
        missing: dict[str, str] = {}  # key -> text, first occurrence, in order
        for key, text, vector in zip(keys, batch, cached, strict=True):
            if vector is None and key not in missing:
                missing[key] = text
        fresh: dict[str, list[float]] = {}
        if missing:
            vectors = await self._inner.embed(
                list(missing.values()), input_type=input_type, caller=who
            )
            fresh = dict(zip(missing, vectors, strict=True))
            await asyncio.gather(*(self._write(key, vector) for key, vector in fresh.items()))
        hit_texts = [text for text, vector in zip(batch, cached, strict=True) if vector is not None]
        self.hits += len(hit_texts)
        self.misses += len(missing)
        self._record_saved(hit_texts, who)
        return [
            vector if vector is not None else fresh[key]
            for key, vector in zip(keys, cached, strict=True)
        ]

    def _key(self, input_type: str, text: str) -> str:
        # The requested size only, never one the model learned from its first answer: a
        # key that changed after the first call would never find that call's vectors.
        return embedding_key(self._model, self._dimensions, input_type, text)

    def _expected_size(self) -> int | None:
        """The length a cached vector must have: the requested size, else the model's
        when it is known (the adapter learns it from its first answer)."""
        if self._dimensions is not None:
            return self._dimensions
        try:
            return self._inner.dimensions
        except InfraError:  # not known yet: ConfigurationError until the first answer
            return None

    async def _read(self, key: str, size: int | None) -> list[float] | None:
        try:
            value = await self._cache.get(key)
        except InfraError:
            _log.warning("embedding cache read failed; treating it as a miss", exc_info=True)
            return None
        return _usable(value, size)

    async def _write(self, key: str, vector: list[float]) -> None:
        try:
            await self._cache.set(key, vector, ttl=self._ttl)
        except InfraError:
            _log.warning("embedding cache write failed; the vector is not cached", exc_info=True)

    def _record_saved(self, hit_texts: list[str], caller: str) -> None:
        if self._cost is None or not hit_texts:
            return
        tokens = sum(len(text) // 4 + 1 for text in hit_texts)
        self._cost.record(
            self._model,
            input_tokens=tokens,
            output_tokens=0,
            caller=caller,
            cached=True,
        )

    def __repr__(self) -> str:
        return f"CachedEmbeddings(model={self._model!r}, hits={self.hits}, misses={self.misses})"


def _usable(value: object, size: int | None) -> list[float] | None:
    """``value`` as a vector, or ``None`` (a miss) unless it is a non-empty list of finite
    numbers (no ``bool``) of ``size`` when known: a corrupted or foreign entry is
    re-embedded, never handed out as a vector."""
    if not isinstance(value, list) or not value:
        return None
    if size is not None and len(value) != size:
        return None
    if not set(map(type, value)) <= _NUMBER_TYPES:  # bool is its own type: refused too
        return None
    vector = list(map(float, value))
    return vector if all(map(math.isfinite, vector)) else None


_NUMBER_TYPES = frozenset({float, int})

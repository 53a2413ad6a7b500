"""Ports: runtime-checkable protocols with resolvable annotations and plain value types."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from typing_extensions import is_protocol

from infra import ports

PROTOCOLS = [
    ports.HealthCheckable,
    ports.RelationalStore,
    ports.CacheStore,
    ports.DistributedLock,
    ports.VectorStore,
    ports.GraphStore,
    ports.LLMCompletion,
    ports.EmbeddingModel,
]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_every_port_is_a_runtime_checkable_protocol_with_resolvable_hints(protocol: type) -> None:
    """Each port is a Protocol whose method annotations resolve (wiring reads them)."""
    assert is_protocol(protocol)
    isinstance(object(), protocol)  # TypeError unless the protocol is runtime-checkable
    for name, member in vars(protocol).items():
        if callable(member) and not name.startswith("_"):
            typing.get_type_hints(member)


def test_an_object_missing_a_method_does_not_satisfy_the_cache_port() -> None:
    """isinstance against a port fails for an object that lacks part of the role."""

    class HalfCache:
        async def get(self, key: str) -> object:
            return None

    assert not isinstance(HalfCache(), ports.CacheStore)


def test_all_lists_every_public_name() -> None:
    """__all__ pins the public API of infra.ports."""
    public = {n for n in vars(ports) if not n.startswith("_") and n[0].isupper()}
    assert public - {"Any", "AsyncIterator", "Mapping", "Sequence", "Literal", "Protocol"} - {
        "AbstractAsyncContextManager"
    } == set(ports.__all__)


def test_value_types_are_frozen_and_usage_totals() -> None:
    """Port value objects are immutable; TokenUsage adds prompt and completion tokens."""
    usage = ports.TokenUsage(prompt_tokens=12, completion_tokens=30)
    assert usage.total_tokens == 42
    with pytest.raises(dataclasses.FrozenInstanceError):
        usage.prompt_tokens = 1  # type: ignore[misc]
    hit = ports.VectorHit(id="a", score=0.9)
    assert hit.payload == {}

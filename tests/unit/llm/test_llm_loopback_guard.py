"""``loopback_only``: what keeps the LLM tests off the internet refuses and reports every
destination beyond loopback, and lets loopback through."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from infra.testing.openai_server import BeyondLoopbackError, OpenAITestServer, loopback_only


@pytest.mark.parametrize(
    "call",
    [
        lambda: socket.getaddrinfo("api.openai.com", 443),
        lambda: socket.create_connection(("192.0.2.1", 443), timeout=0.01),  # TEST-NET-1
        lambda: socket.create_connection(("2001:db8::1", 443), timeout=0.01),  # documentation
    ],
)
def test_a_destination_beyond_loopback_is_refused_and_fails_the_guard(
    call: Callable[[], object],
) -> None:
    guard = loopback_only()
    refused = guard.__enter__()
    with pytest.raises(BeyondLoopbackError):
        call()
    assert len(refused) == 1
    with pytest.raises(AssertionError, match="beyond loopback"):
        guard.__exit__(None, None, None)


def test_loopback_passes_and_the_guard_ends_with_its_block() -> None:
    with OpenAITestServer() as server, loopback_only() as refused:
        socket.getaddrinfo("localhost", server.port)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass
    assert refused == []

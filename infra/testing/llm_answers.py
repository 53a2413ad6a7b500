"""The deterministic "model" behind the fake LLM and the loopback OpenAI test server.

Both answer from these functions, so one contract suite can pin exact behaviour on
either: a chat answer is ``"echo: "`` followed by the words of the last user message,
cut to ``max_tokens`` words; a token is a whitespace-separated word (the prompt's
count is the words of every message plus one per message); an embedding is a unit
vector derived from the SHA-256 of the text, so equal texts give equal vectors and
different texts (almost surely) different ones.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from typing import Final

__all__ = ["DEFAULT_DIMENSIONS", "answer", "answer_chunks", "count_tokens", "embedding"]

#: Length of the deterministic embeddings when the request names none.
DEFAULT_DIMENSIONS: Final = 16
_PREFIX: Final = "echo:"


def count_tokens(contents: Sequence[str]) -> int:
    """Prompt tokens of messages with these contents (words, plus one per message)."""
    return sum(len(text.split()) + 1 for text in contents)


def answer(last_user: str, max_tokens: int | None) -> tuple[str, int, str]:
    """``(text, completion_tokens, finish_reason)`` for the last user message."""
    words = [_PREFIX, *last_user.split()]
    finish = "stop"
    if max_tokens is not None and len(words) > max_tokens:
        words, finish = words[:max_tokens], "length"
    return " ".join(words), len(words), finish


def answer_chunks(text: str) -> list[str]:
    """How a streamed answer is cut: one word per chunk, joined back by concatenation."""
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


def embedding(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """A unit vector of ``dimensions`` floats determined by ``text``."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        block = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend(v / 2**31 - 1.0 for v in struct.unpack("<8I", block))
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]

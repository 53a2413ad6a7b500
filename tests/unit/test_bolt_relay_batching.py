"""The embedded Bolt relay forwards the client's pipelined messages as the client batched them.

FalkorDB answers a ``RESET`` only when it is the first unread message in its buffer; a
driver's ``RUN`` + ``PULL`` must therefore reach it in one write, or the ``PULL`` can still
be unread when the driver's ``RESET`` arrives and the connection hangs (see the relay's
docstring). These tests drive the relay's client-side pump with scripted reads -- any
message sizes, any read boundaries -- and check what it writes upstream: for every read,
exactly the messages that read completed, in one write; ``GOODBYE`` ends the pump and is
never forwarded.

The relay is a standalone script (it runs as its own process), so it is loaded from its
file, as the server runs it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
from pathlib import Path
from types import ModuleType

from hypothesis import given
from hypothesis import strategies as st

import infra.testing.embedded

HANDSHAKE = b"\x60\x60\xb0\x17" + bytes(16)
GOODBYE = b"\x00\x02\xb0\x02\x00\x00"


def load_relay() -> ModuleType:
    path = Path(infra.testing.embedded.__file__).with_name("_bolt_relay.py")
    spec = importlib.util.spec_from_file_location("bolt_relay_script", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RELAY = load_relay()


class ScriptedReader:
    """A client stream whose reads return the scripted pieces, one per ``read``."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)
        self._left = b""  # the rest of a piece that readexactly() took part of

    async def readexactly(self, n: int) -> bytes:
        while len(self._left) < n:
            if not self._pieces:
                raise asyncio.IncompleteReadError(self._left, n)
            self._left += self._pieces.pop(0)
        head, self._left = self._left[:n], self._left[n:]
        return head

    async def read(self, n: int) -> bytes:
        if self._left:
            head, self._left = self._left, b""
            return head
        return self._pieces.pop(0) if self._pieces else b""


class RecordingWriter:
    """The upstream socket: records each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    async def drain(self) -> None:
        await asyncio.sleep(0)


def frame(chunks: list[bytes]) -> bytes:
    """One Bolt message: each chunk with its 2-byte size, then the end marker."""
    return b"".join(len(c).to_bytes(2, "big") + c for c in chunks) + b"\x00\x00"


# A message body: a struct marker and signature that never spell GOODBYE, then any bytes.
bodies = st.tuples(st.integers(0xB1, 0xBF), st.integers(0, 0x7F), st.binary(max_size=40)).map(
    lambda t: bytes([t[0], t[1]]) + t[2]
)
messages = st.lists(
    bodies.flatmap(
        lambda body: st.lists(st.integers(1, 9), max_size=3).map(
            lambda cuts: frame(split_at(body, cuts))
        )
    ),
    min_size=1,
    max_size=8,
)


def split_at(body: bytes, cuts: list[int]) -> list[bytes]:
    """``body`` as non-empty chunks cut at the given offsets (a chunked message)."""
    points = sorted({c for c in cuts if 0 < c < len(body)})
    return [body[a:b] for a, b in itertools.pairwise([0, *points, len(body)])]


def reads_of(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise([0, *points, len(stream)])]


def expected_writes(msgs: list[bytes], reads: list[bytes]) -> list[bytes]:
    """Per read, the messages whose last byte it delivered, concatenated (if any)."""
    ends = list(itertools.accumulate(len(m) for m in msgs))
    writes: list[bytes] = []
    done = 0
    for end_of_read in itertools.accumulate(len(r) for r in reads):
        batch = [m for m, end in zip(msgs, ends, strict=True) if done < end <= end_of_read]
        done = end_of_read
        if batch:
            writes.append(b"".join(batch))
    return writes


def pump(pieces: list[bytes]) -> list[bytes]:
    writer = RecordingWriter()
    reader = ScriptedReader([HANDSHAKE, *pieces])
    asyncio.run(RELAY.relay_client_messages(reader, writer))
    assert writer.writes[0] == HANDSHAKE
    return writer.writes[1:]


@given(msgs=messages, cuts=st.lists(st.integers(1, 400), max_size=12))
def test_each_read_goes_upstream_as_one_write_of_whole_messages(
    msgs: list[bytes], cuts: list[int]
) -> None:
    """Whatever the read boundaries, the messages a read completes leave in one write."""
    reads = reads_of(b"".join(msgs), cuts)
    assert pump(reads) == expected_writes(msgs, reads)


@given(before=messages, after=messages, cuts=st.lists(st.integers(1, 400), max_size=12))
def test_goodbye_is_dropped_and_ends_the_pump(
    before: list[bytes], after: list[bytes], cuts: list[int]
) -> None:
    """Messages before GOODBYE are forwarded; GOODBYE and anything after it are not."""
    reads = reads_of(b"".join([*before, GOODBYE, *after]), cuts)
    assert b"".join(pump(reads)) == b"".join(before)


def test_a_pipelined_run_and_pull_stay_together() -> None:
    """The driver's RUN + PULL, written together, reach the server together."""
    run = frame([b"\xb3\x10\x88RETURN 1\xa0\xa0"])
    pull = frame([b"\xb1\x3f\xa1\x81n\xc9\x03\xe8"])
    assert pump([run + pull]) == [run + pull]

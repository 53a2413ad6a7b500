"""Fault paths through qdrant-client's real REST code, against a scripted loopback server.

No Qdrant server can be installed here, so :class:`QdrantFaultServer` answers the REST
endpoints the adapter uses (create collection, upsert, query, count, list) on loopback,
keeps the points it acknowledged, and follows a script per operation: an HTTP status
(429 with ``Retry-After``, 503), a slow answer, or a connection reset. The client under
test is an ordinary ``AsyncQdrantClient(url=...)``: its httpx transport, its response
parsing and its exceptions are the real ones, and so is our translation and policy.

Written on the standard library's ``ThreadingHTTPServer`` (one thread per connection):
a fake *server* for a client library is what no testing library ships, and a thread
keeps a slow answer from blocking the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import struct
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from dependency_injector import providers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import Settings
from containers.lifecycle import resolve, stop
from containers.vector import VectorContainer
from infra.exceptions import (
    InfraTimeoutError,
    VectorStoreConnectionError,
    VectorStoreError,
)
from infra.ports import VectorPoint
from infra.resilience import ManualClock, ResiliencePolicy, RetryConfig
from infra.vector import VectorUpsertError
from infra.vector.client import build_qdrant_client
from infra.vector.qdrant import QdrantVectorStore


@dataclass(frozen=True, slots=True)
class Action:
    """What the server does with one request: answer ``status`` (with ``headers``), after
    ``delay`` seconds, or reset the connection."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset: bool = False


_ROUTES = [
    ("GET", re.compile(r"^/collections$"), "list"),
    ("GET", re.compile(r"^/collections/[^/]+$"), "get_collection"),
    ("PUT", re.compile(r"^/collections/[^/]+$"), "create_collection"),
    ("PUT", re.compile(r"^/collections/[^/]+/points$"), "upsert"),
    ("POST", re.compile(r"^/collections/[^/]+/points/query$"), "query"),
    ("POST", re.compile(r"^/collections/[^/]+/points/count$"), "count"),
]


def upserted(body: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    """Id -> payload of an upsert body, in either of Qdrant's forms (a points list, or a
    batch of parallel lists)."""
    if "batch" in body:
        batch = body["batch"]
        payloads = batch.get("payloads") or [{}] * len(batch["ids"])
        return dict(zip(batch["ids"], payloads, strict=True))
    return {point["id"]: point.get("payload") or {} for point in body["points"]}


class QdrantFaultServer:
    """A scripted Qdrant REST endpoint on loopback; see the module docstring."""

    def __init__(self) -> None:
        self.script: dict[str, deque[Action]] = {}
        self.points: dict[Any, dict[str, Any]] = {}
        self.vectors: dict[Any, Any] = {}
        self.failing_ids: set[int] = set()
        self.requests: list[str] = []
        #: ``(points, body bytes)`` of every upsert request, as received.
        self.upserts: list[tuple[int, int]] = []
        #: The ``api-key`` header of every request (``None`` when absent).
        self.api_keys: list[str | None] = []
        #: Upserts being answered now, and the most at once.
        self.in_flight = 0
        self.peak_in_flight = 0
        #: When set, every upsert waits here until this many are being answered at once.
        self.upsert_barrier: threading.Barrier | None = None
        self.lock = threading.Lock()  # guards everything above
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def then(self, operation: str, *actions: Action) -> None:
        """Queue ``actions`` for the next requests of ``operation`` (then: success)."""
        self.script.setdefault(operation, deque()).extend(actions)

    def count(self, operation: str) -> int:
        return self.requests.count(operation)

    def __enter__(self) -> QdrantFaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def answer(self, operation: str, body: dict[str, Any]) -> tuple[int, Any]:  # noqa: PLR0911
        if operation == "get_collection":
            return 404, {"status": {"error": "Not found: Collection doesn't exist!"}}
        if operation == "upsert":
            sent = upserted(body)
            self.vectors.update({p["id"]: p["vector"] for p in body.get("points", [])})
            if self.failing_ids.intersection(sent):
                return 503, {"status": {"error": "scripted: this batch always fails"}}
            self.points.update(sent)
            return 200, {"operation_id": 1, "status": "completed"}
        if operation == "query":
            hits = [
                {"id": pid, "version": 0, "score": 0.5, "payload": p}
                for pid, p in self.points.items()
            ]
            return 200, {"points": hits[: body.get("limit", 10)]}
        if operation == "count":
            return 200, {"count": len(self.points)}
        if operation == "list":
            return 200, {"collections": []}
        return 200, True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Quiet: the tests read ``server.requests``."""

            def _serve(self) -> None:
                path = self.path.split("?")[0]
                operation = next(
                    (
                        op
                        for method, route, op in _ROUTES
                        if method == self.command and route.match(path)
                    ),
                    "unknown",
                )
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                with server.lock:
                    server.requests.append(operation)
                    server.api_keys.append(self.headers.get("api-key"))
                    queued = server.script.get(operation)
                    action = queued.popleft() if queued else Action()
                    if operation == "upsert":
                        server.upserts.append((len(upserted(json.loads(raw))), len(raw)))
                        server.in_flight += 1
                        server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                try:
                    self._act(operation, action, raw)
                finally:
                    if operation == "upsert":
                        with server.lock:
                            server.in_flight -= 1

            def _act(self, operation: str, action: Action, raw: bytes) -> None:
                if operation == "upsert" and server.upsert_barrier is not None:
                    # Broken (timed out) when the client never has that many in flight:
                    # then it answers anyway, and the test reads peak_in_flight.
                    with contextlib.suppress(threading.BrokenBarrierError):
                        server.upsert_barrier.wait()
                if action.reset:
                    # SO_LINGER 0: close() sends a TCP RST, what a crashed peer looks like.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()
                    self.close_connection = True
                    return
                if action.delay:
                    threading.Event().wait(action.delay)
                if action.status != 200:
                    status, result = action.status, {"status": {"error": "scripted fault"}}
                else:
                    with server.lock:
                        status, result = server.answer(operation, json.loads(raw or b"{}"))
                body = result if status != 200 else {"result": result, "status": "ok", "time": 0.0}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in action.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _serve  # noqa: N815 - http.server's names

        return Handler


@pytest.fixture
def server() -> Iterator[QdrantFaultServer]:
    with QdrantFaultServer() as running:
        yield running


def instant_policy(attempts: int = 3) -> ResiliencePolicy:
    """Retry on a virtual clock: backoff and Retry-After waits are recorded, not slept."""
    return ResiliencePolicy.instant("qdrant", retry=RetryConfig(max_attempts=attempts))


@pytest.fixture
async def store(server: QdrantFaultServer) -> AsyncIterator[QdrantVectorStore]:
    built = QdrantVectorStore(
        lambda: build_qdrant_client(url=server.url, timeout=1.0),
        policy=instant_policy(),
        batch_size=4,
        concurrency=2,
    )
    await built.ensure_collection("docs", vector_size=2)
    yield built
    await built.close()


def points(count: int) -> list[VectorPoint]:
    return [VectorPoint(i, [1.0, float(i)], {"i": i}) for i in range(count)]


async def test_a_429_is_retried_after_the_servers_retry_after(
    server: QdrantFaultServer, store: QdrantVectorStore
) -> None:
    """HTTP 429 with ``Retry-After: 7``: the batch is retried by our policy, after at least
    7 s (virtual), never by the client; every point arrives."""
    server.then("upsert", Action(429, {"Retry-After": "7"}))
    clock = store.policy.clock
    assert isinstance(clock, ManualClock)
    before = clock.now()
    assert await store.upsert("docs", points(3)) == 3
    assert clock.now() - before >= 7.0
    assert server.count("upsert") == 2
    assert sorted(server.points) == [0, 1, 2]


async def test_a_503_is_retried_with_backoff_until_it_passes(
    server: QdrantFaultServer, store: QdrantVectorStore
) -> None:
    server.then("query", Action(503), Action(503))
    hits = await store.search("docs", [1.0, 0.0])
    assert hits == []
    assert server.count("query") == 3
    retry = store.policy.retry
    assert retry is not None
    assert retry.stats.retries == 2


async def test_a_503_that_persists_gives_up_with_a_connection_error(
    server: QdrantFaultServer, store: QdrantVectorStore
) -> None:
    server.then("count", *[Action(503)] * 3)
    with pytest.raises(VectorStoreConnectionError) as caught:
        await store.count("docs")
    assert caught.value.details["status_code"] == 503
    assert server.count("count") == 3  # our 3 attempts, and no retry inside the client


async def test_a_slow_answer_times_out_in_the_client_and_is_retried(
    server: QdrantFaultServer, store: QdrantVectorStore
) -> None:
    """The server answers after 2.5 s; the client's 1 s timeout fires (a retryable
    timeout error), and the second attempt succeeds."""
    server.then("count", Action(delay=2.5))
    assert await store.count("docs") == 0
    assert server.count("count") == 2


async def test_a_slow_answer_that_persists_is_a_timeout_error(
    server: QdrantFaultServer, store: QdrantVectorStore
) -> None:
    server.then("count", *[Action(delay=1.5)] * 3)
    with pytest.raises(InfraTimeoutError):
        await store.count("docs")


async def test_a_connection_reset_is_retried(
    server: QdrantFaultServer, store: QdrantVectorStore
) -> None:
    server.then("upsert", Action(reset=True))
    assert await store.upsert("docs", points(2)) == 2
    assert sorted(server.points) == [0, 1]
    assert server.count("upsert") == 2


async def test_a_batch_failing_after_retries_reports_what_was_written(
    server: QdrantFaultServer, store: QdrantVectorStore
) -> None:
    """10 points in batches of 4: the batch holding id 5 always fails. The error lists
    exactly the points the server holds as written and the rest as not written."""
    server.failing_ids = {5}
    with pytest.raises(VectorUpsertError) as caught:
        await store.upsert("docs", points(10))
    error = caught.value
    assert error.written + error.failed == 10
    assert sorted(server.points) == sorted(set(range(10)) - set(error.failed_ids))
    assert 5 in error.failed_ids
    assert error.failed_ranges[0][0] <= 5 < error.failed_ranges[0][1]
    assert isinstance(error.__cause__, VectorStoreError)
    assert error.retryable  # a 503: upserting the failed points again may succeed


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.integers(1, 40),
    batch_size=st.integers(1, 9),
    concurrency=st.integers(1, 4),
    failing=st.sets(st.integers(0, 39), max_size=3),
)
def test_after_any_failure_the_ledger_matches_the_server(
    count: int, batch_size: int, concurrency: int, failing: set[int]
) -> None:
    """Whatever the sizes, concurrency and persistently failing points: either every point
    is written, or the error's written/not-written lists partition the input and the
    server holds exactly the ones said written -- nothing acknowledged is lost, nothing
    unsaid is claimed."""

    async def scenario(server: QdrantFaultServer) -> None:
        store = QdrantVectorStore(
            lambda: build_qdrant_client(url=server.url, timeout=5.0),
            policy=instant_policy(attempts=2),
            batch_size=batch_size,
            concurrency=concurrency,
        )
        try:
            await store.ensure_collection("docs", vector_size=2)
            outcome: int | VectorStoreError
            try:
                outcome = await store.upsert("docs", points(count))
            except VectorStoreError as raised:
                outcome = raised
            if isinstance(outcome, VectorUpsertError):
                assert outcome.written + outcome.failed == count
                assert sorted(server.points) == sorted(set(range(count)) - set(outcome.failed_ids))
                assert outcome.written == len(server.points) > 0
            elif isinstance(outcome, VectorStoreConnectionError):
                assert not server.points  # the first batches all failed: nothing written
            else:
                assert outcome == count
                assert not failing.intersection(range(count))
                assert sorted(server.points) == list(range(count))
        finally:
            await store.close()

    with QdrantFaultServer() as server:
        server.failing_ids = failing
        asyncio.run(scenario(server))


@pytest.mark.parametrize("concurrency", [1, 2, 4])
async def test_batches_are_in_flight_up_to_the_concurrency_and_never_more(
    server: QdrantFaultServer, concurrency: int
) -> None:
    """Through qdrant-client's real REST transport: the server holds every upsert until
    ``concurrency`` of them are being answered at once -- which happens only if the store
    really sends that many concurrently -- and never sees more."""
    store = QdrantVectorStore(
        lambda: build_qdrant_client(url=server.url, timeout=30.0),
        policy=instant_policy(),
        batch_size=2,
        concurrency=concurrency,
    )
    try:
        await store.ensure_collection("docs", vector_size=2)
        server.upsert_barrier = threading.Barrier(concurrency, timeout=10)
        assert await store.upsert("docs", points(8 * concurrency)) == 8 * concurrency
    finally:
        await store.close()
    assert server.peak_in_flight == concurrency
    assert not server.upsert_barrier.broken
    assert sorted(server.points) == list(range(8 * concurrency))


#: Any float32 value; and values with the longest JSON text (23 characters).
float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
longest = st.sampled_from(
    [-1.1754943508222875e-38, -3.4028234663852886e38, -2.3509885615147286e-38]
)
point_ids = st.one_of(st.integers(0, 2**64 - 1), st.uuids().map(str))
#: Any character a payload may hold (U+0000 and lone surrogates are refused before I/O).
storable = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dim=st.integers(1, 48),
    values=st.sampled_from([float32s, longest]),
    rows=st.lists(
        st.tuples(point_ids, st.data(), st.text(storable, max_size=30)),
        min_size=8,
        max_size=40,
        unique_by=lambda row: str(row[0]),
    ),
    max_request_bytes=st.integers(300, 20_000),
)
def test_no_request_is_larger_than_max_request_bytes(
    dim: int,
    values: st.SearchStrategy[float],
    rows: list[tuple[int | str, st.DataObject, str]],
    max_request_bytes: int,
) -> None:
    """Any dimension, values (the longest float texts included), ids (ints, UUIDs) and
    payloads (any Unicode): every upsert body qdrant-client sends holding more than one
    point is at most ``max_request_bytes`` -- the estimate is an upper bound of what goes
    on the wire -- and every point arrives."""
    batch = [
        VectorPoint(pid, data.draw(st.lists(values, min_size=dim, max_size=dim)), {"t": text})
        for pid, data, text in rows
    ]

    async def scenario(server: QdrantFaultServer) -> None:
        store = QdrantVectorStore(
            lambda: build_qdrant_client(url=server.url, timeout=5.0),
            policy=instant_policy(),
            batch_size=1_000,
            max_request_bytes=max_request_bytes,
        )
        try:
            await store.ensure_collection("docs", vector_size=dim)
            assert await store.upsert("docs", batch) == len(batch)
        finally:
            await store.close()

    with QdrantFaultServer() as server:
        asyncio.run(scenario(server))
        assert sum(count for count, _ in server.upserts) == len(batch)
        for count, size in server.upserts:
            assert count == 1 or size <= max_request_bytes, (count, size, max_request_bytes)


async def test_numpy_and_decimal_vectors_arrive_as_json_numbers(
    server: QdrantFaultServer, store: QdrantVectorStore
) -> None:
    """qdrant-client's encoder cannot write numpy float32 and writes a Decimal as a
    string; the store sends plain floats, so the server receives numbers."""
    vectors: list[Any] = [np.array([0.5, 1.5], dtype=np.float32), [Decimal("0.25"), 2]]
    await store.upsert("docs", [VectorPoint(i, v) for i, v in enumerate(vectors)])
    assert server.vectors == {0: [0.5, 1.5], 1: [0.25, 2.0]}


async def test_the_api_key_reaches_the_server_and_nothing_else(
    server: QdrantFaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The container's store for a server URL with an API key: every request carries the
    key in its ``api-key`` header; the key is in no log record (DEBUG included), error,
    error detail or repr, also when requests fail."""
    key = "s3cr3t-qdrant-key-4242"
    settings = Settings(qdrant_url=server.url, qdrant_api_key=key, qdrant_timeout=2)
    container = VectorContainer(settings=settings)
    container.policy.override(providers.Object(instant_policy(attempts=2)))
    caplog.set_level(logging.DEBUG)
    store = await resolve(container.store)
    try:
        assert isinstance(store, QdrantVectorStore)
        with pytest.warns(UserWarning, match="insecure connection"):  # http on loopback
            await store.ensure_collection("docs", vector_size=2)
        await store.upsert("docs", points(3))
        server.then("count", Action(503), Action(503))
        with pytest.raises(VectorStoreError) as caught:
            await store.count("docs")
        error = caught.value
        ok, details = await store.health_check()
        assert ok
        shown = [str(error), repr(error), repr(error.details), repr(store), repr(details)]
        shown += [str(container.settings().vector), repr(settings)]
    finally:
        await stop(container)
    assert set(server.api_keys) == {key}
    assert len(server.api_keys) >= 5
    logged = [record.getMessage() + str(record.__dict__) for record in caplog.records]
    assert logged  # the failures were logged
    assert not [text for text in shown + logged if key in text]

"""Both adapters raise only IndexUnavailable (transient) or IndexRejected (permanent for this
input) for what their engine or client raised, from every method the consumer and the API
call. The server adapter is pointed at a small HTTP stub that answers like a Qdrant server
(its collection JSON comes from qdrant-client's own models) and then fails every data call
with a chosen status; a closed port stands for an unreachable server."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from handwerk.index.edge import errors as edge
from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.protocol import (
    IndexRejected,
    IndexUnavailable,
    SearchFilters,
    Tombstone,
    UpsertPoint,
    VectorIndex,
)
from handwerk.index.qdrant import errors as qdrant_server
from handwerk.index.qdrant.adapter import QdrantServerIndex
from handwerk.index.qdrant.connection import QdrantConnection
from handwerk.kafka import free_port

DIM = 8
ANY = SearchFilters()
ALIAS, COLLECTION = "projects", "projects_g0001"


def vec(hot: int = 0, dim: int = DIM) -> list[float]:
    return [1.0 if i == hot else 0.0 for i in range(dim)]


def point(pid: str | None = None, vector: list[float] | None = None, **payload: Any) -> UpsertPoint:
    return UpsertPoint(pid or str(uuid.uuid4()), 1, vector or vec(),
                       {"version": 1, "state": "live", "text_hash": "h", **payload})


Call = Callable[[VectorIndex], Awaitable[object]]
PID = str(uuid.uuid4())
CALLS: dict[str, Call] = {
    "get_states": lambda i: i.get_states([PID]),
    "get_vectors": lambda i: i.get_vectors([PID]),
    "write": lambda i: i.write([point()], [Tombstone(str(uuid.uuid4()), 2)]),
    "search": lambda i: i.search(vec(), top_k=3, threshold=0.0, filters=ANY),
    "search_batch": lambda i: i.search_batch([vec(), vec(1)], top_k=3, threshold=0.0, filters=ANY),
    "all_states": lambda i: i.all_states(),
    "stats": lambda i: i.stats(),
}


# --- Qdrant server adapter against a stub server -------------------------------------------

async def collection_info_json() -> bytes:
    """What GET /collections/{name} returns, produced by qdrant-client's local mode."""
    client = AsyncQdrantClient(location=":memory:")
    try:
        await client.create_collection(COLLECTION, vectors_config=models.VectorParams(
            size=DIM, distance=models.Distance.COSINE))
        info = await client.get_collection(COLLECTION)
    finally:
        await client.close()
    return json.dumps({"result": info.model_dump(mode="json"), "status": "ok", "time": 0}).encode()


class StubQdrant:
    """Answers the calls ``open`` makes like a healthy server; every other call gets
    ``status`` with a Qdrant-shaped error body."""

    def __init__(self, info: bytes) -> None:
        self.status = 503
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?")[0]
                if self.command == "GET" and path == "/":
                    self._send(200, b'{"title": "qdrant", "version": "1.16.2"}')
                elif self.command == "GET" and path == "/aliases":
                    self._send(200, json.dumps({"result": {"aliases": [
                        {"alias_name": ALIAS, "collection_name": COLLECTION}]},
                        "status": "ok", "time": 0}).encode())
                elif self.command == "GET" and path == f"/collections/{COLLECTION}":
                    self._send(200, info)
                else:
                    self._send(stub.status, json.dumps({"status": {
                        "error": f"stub says {stub.status}"}, "time": 0}).encode())

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubQdrant:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture(scope="module")
async def stub_info() -> bytes:
    return await collection_info_json()


@pytest.fixture
async def stub_index(stub_info: bytes) -> AsyncIterator[tuple[StubQdrant, QdrantServerIndex]]:
    with StubQdrant(stub_info) as stub:
        index = QdrantServerIndex(alias=ALIAS, model="test-model", dimension=DIM,
                                  connection=QdrantConnection(url=stub.url,
                                                              check_compatibility=False))
        await index.open()
        try:
            yield stub, index
        finally:
            await index.close()


@pytest.mark.parametrize("method", CALLS)
@pytest.mark.parametrize(("status", "expected"), [
    (400, IndexRejected), (422, IndexRejected), (409, IndexRejected),
    (404, IndexUnavailable), (408, IndexUnavailable), (429, IndexUnavailable),
    (500, IndexUnavailable), (503, IndexUnavailable),
])
async def test_server_status_is_classified(stub_index: tuple[StubQdrant, QdrantServerIndex],
                                           method: str, status: int, expected: type) -> None:
    stub, index = stub_index
    stub.status = status
    with pytest.raises(expected) as caught:
        await CALLS[method](index)
    assert isinstance(caught.value.__cause__, UnexpectedResponse)
    assert f"HTTP {status}" in str(caught.value) and f"stub says {status}" in str(caught.value)


async def test_unreachable_server_is_unavailable(stub_info: bytes) -> None:
    closed = QdrantServerIndex(alias=ALIAS, model="test-model", dimension=DIM,
                               connection=QdrantConnection(url=f"http://127.0.0.1:{free_port()}",
                                                           check_compatibility=False))
    with pytest.raises(IndexUnavailable) as caught:
        await closed.open()
    assert isinstance(caught.value.__cause__, ResponseHandlingException)

    with StubQdrant(stub_info) as stub:  # reachable while opening, then gone
        index = QdrantServerIndex(alias=ALIAS, model="test-model", dimension=DIM,
                                  connection=QdrantConnection(url=stub.url,
                                                              check_compatibility=False))
        await index.open()
    try:
        for call in CALLS.values():
            with pytest.raises(IndexUnavailable):
                await call(index)
    finally:
        await index.close()


@pytest.mark.parametrize(("error", "expected"), [
    (UnexpectedResponse(400, "Bad Request", b'{"status": {"error": "Wrong input"}}', {}), IndexRejected),
    (UnexpectedResponse(401, "Unauthorized", b"", {}), IndexUnavailable),
    (UnexpectedResponse(403, "Forbidden", b"", {}), IndexUnavailable),
    (UnexpectedResponse(413, "Payload Too Large", b"", {}), IndexRejected),
    (UnexpectedResponse(502, "Bad Gateway", b"<html>", {}), IndexUnavailable),
    (UnexpectedResponse(None, "", b"", {}), IndexUnavailable),
    (ResponseHandlingException(TimeoutError("read timed out")), IndexUnavailable),
    (ConnectionResetError("reset"), IndexUnavailable),
    (ValueError("Wrong input: Vector dimension error"), IndexRejected),  # local mode, pydantic
    (MemoryError(), IndexUnavailable),
])
def test_server_classify(error: Exception, expected: type) -> None:
    assert type(qdrant_server.classify(error, "write")) is expected


# --- Qdrant Edge adapter ---------------------------------------------------------------------

@pytest.fixture
async def edge_index(tmp_path: Path) -> AsyncIterator[EdgeVectorIndex]:
    index = EdgeVectorIndex(tmp_path, ALIAS, model="test-model", dimension=DIM)
    await index.open()
    try:
        yield index
    finally:
        await index.close()


@pytest.fixture(params=["edge", "qdrant-local"])
async def any_index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    index: VectorIndex
    if request.param == "edge":
        index = EdgeVectorIndex(tmp_path, ALIAS, model="test-model", dimension=DIM)
    else:
        index = QdrantServerIndex(alias=ALIAS, model="test-model", dimension=DIM,
                                  connection=QdrantConnection(path=str(tmp_path / "local")))
    await index.open()
    try:
        yield index
    finally:
        await index.close()


BAD_INPUT: dict[str, Call] = {
    "write: vector too short": lambda i: i.write([point(vector=vec(dim=DIM - 2))], []),
    "write: NaN in vector": lambda i: i.write([point(vector=[float("nan")] * DIM)], []),
    "write: id not a UUID": lambda i: i.write([point(pid="project-7")], []),
    "get_states: id not a UUID": lambda i: i.get_states(["not-a-uuid"]),
    "get_vectors: id not a UUID": lambda i: i.get_vectors(["not-a-uuid"]),
    "search: query too long": lambda i: i.search(vec(dim=DIM + 1), top_k=3, threshold=0.0,
                                                 filters=ANY),
    "search_batch: one query too short": lambda i: i.search_batch(
        [vec(), vec(dim=2)], top_k=3, threshold=0.0, filters=ANY),
}


@pytest.mark.parametrize("case", BAD_INPUT)
async def test_invalid_input_is_rejected_by_both(any_index: VectorIndex, case: str) -> None:
    keep = str(uuid.uuid4())
    await any_index.write([point(keep)], [])
    with pytest.raises(IndexRejected):
        await BAD_INPUT[case](any_index)
    assert (await any_index.get_states([keep]))[keep].version == 1  # still usable


async def test_edge_payload_the_engine_cannot_store_is_rejected(edge_index: EdgeVectorIndex) -> None:
    good = point()
    with pytest.raises(IndexRejected) as caught:
        await edge_index.write([good, point(extra=object())], [])
    assert isinstance(caught.value.__cause__, TypeError)
    assert await edge_index.get_states([good.project_id]) == {}  # nothing of the batch written


async def test_edge_engine_failure_is_unavailable_everywhere(edge_index: EdgeVectorIndex) -> None:
    await edge_index.write([point(PID)], [])
    edge_index._shard.close()  # type: ignore[union-attr]  # the engine fails underneath us
    for call in CALLS.values():
        with pytest.raises(IndexUnavailable) as caught:
            await call(edge_index)
        assert type(caught.value.__cause__) is Exception  # what the binding raises
    with pytest.raises(IndexUnavailable):
        await edge_index.close()


@pytest.mark.parametrize(("error", "expected"), [
    (Exception("Service runtime error: failed to open WAL /x/wal: Can't init WAL: WouldBlock"),
     IndexUnavailable),
    (Exception("Service runtime error: Tracker journal is shorter than expected"), IndexUnavailable),
    (Exception("Inconsistent storage: segment is missing"), IndexUnavailable),
    (Exception("Timeout error: flush took too long"), IndexUnavailable),
    (MemoryError(), IndexUnavailable),
    (Exception("Vector dimension error: expected dim: 4, got 2"), IndexRejected),
    (Exception("Wrong input: Bad vector name"), IndexRejected),
    (ValueError("failed to parse not-a-uuid as UUID"), IndexRejected),
    (TypeError("failed to extract enum Helper ('Bool | Uint | ...')"), IndexRejected),
])
def test_edge_classify(error: Exception, expected: type) -> None:
    assert type(edge.classify(error, "write")) is expected

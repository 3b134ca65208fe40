"""Concurrency at the adapters: several processes creating the same Qdrant collection and
alias at once, and the Edge adapter keeping the event loop free while the engine works
(mutations on one writer thread, full scans paged) without giving up consistency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient

from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.protocol import SearchFilters, Tombstone, UpsertPoint
from handwerk.index.qdrant.adapter import QdrantServerIndex
from handwerk.index.qdrant.connection import QdrantConnection

DIM = 8
ANY = SearchFilters()


def vec(hot: int) -> list[float]:
    return [1.0 if i == hot % DIM else 0.0 for i in range(DIM)]


def point(pid: str, version: int) -> UpsertPoint:
    return UpsertPoint(pid, version, vec(version),
                       {"version": version, "state": "live", "text_hash": f"h{version}"})


class Interleaving:
    """A qdrant-client whose every call first yields to the loop, as a call over the network
    does: local mode answers without awaiting, so it would never interleave two callers."""

    def __init__(self, client: AsyncQdrantClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            result = await target(*args, **kwargs)
            await asyncio.sleep(0)
            return result
        return call


async def test_concurrent_opens_create_collection_and_alias_once() -> None:
    """api and two consumers starting together against one server: all see the collection
    missing, all try to create it; everyone must end up on the same generation."""
    client = AsyncQdrantClient(location=":memory:")
    try:
        shared: Any = Interleaving(client)
        openers = [QdrantServerIndex(alias="projects", model="m", dimension=DIM,
                                     connection=QdrantConnection(path=":memory:"))
                   for _ in range(3)]
        collections = await asyncio.gather(*(o._resolve_or_create(shared) for o in openers))
        assert collections == ["projects_g0001"] * 3
        aliases = (await client.get_aliases()).aliases
        assert [(a.alias_name, a.collection_name) for a in aliases] == [("projects", "projects_g0001")]
        assert [c.name for c in (await client.get_collections()).collections] == ["projects_g0001"]
    finally:
        await client.close()


@pytest.fixture
async def edge_index(tmp_path: Path) -> Any:
    index = EdgeVectorIndex(tmp_path, "projects", model="m", dimension=DIM)
    await index.open()
    try:
        yield index
    finally:
        await index.close()


async def loop_ran_during(call: Callable[[], Awaitable[object]]) -> int:
    """How many times another task got the loop while ``call`` was being awaited."""
    running, ticks = True, 0

    async def other() -> None:
        nonlocal ticks
        while running:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    try:
        await call()
    finally:
        running = False
        during = ticks
        await task
    return during


async def test_edge_write_leaves_the_loop_free(edge_index: EdgeVectorIndex) -> None:
    batch = [point(str(uuid.uuid4()), 1) for _ in range(256)]
    assert await loop_ran_during(lambda: edge_index.write(batch, [])) > 0
    assert len(await edge_index.get_states([p.project_id for p in batch])) == 256


async def test_edge_full_scan_yields_between_pages(edge_index: EdgeVectorIndex) -> None:
    await edge_index.write([point(str(uuid.uuid4()), 1) for _ in range(1500)], [])
    states: dict[str, Any] = {}

    async def scan() -> None:
        states.update(await edge_index.all_states())

    assert await loop_ran_during(scan) >= 3
    assert len(states) == 1500


async def test_edge_concurrent_writers_and_readers_stay_consistent(
        edge_index: EdgeVectorIndex) -> None:
    """Writes from several tasks (serialized on the writer thread) while searches, state
    reads and full scans run on the loop: every project ends at its newest version."""
    ids = [str(uuid.uuid4()) for _ in range(200)]
    versions = list(range(1, 9))
    writes = [edge_index.write([point(pid, v) for pid in ids[i::4]], [])
              for v in reversed(versions) for i in range(4)]  # newest first: older ones refused
    reads: list[Awaitable[object]] = []
    for n in range(20):
        reads += [edge_index.search(vec(n), top_k=5, threshold=0.0, filters=ANY),
                  edge_index.get_states(ids[:50]), edge_index.all_states()]
    await asyncio.gather(*writes, *reads)
    await edge_index.write([], [Tombstone(ids[0], 100)])
    states = await edge_index.all_states()
    assert states[ids[0]].deleted and states[ids[0]].version == 100
    assert {states[pid].version for pid in ids[1:]} == {max(versions)}
    vectors = await edge_index.get_vectors(ids[1:3])
    assert all(v == pytest.approx(vec(max(versions))) for v in vectors.values())


async def test_edge_close_waits_for_writes_in_flight(tmp_path: Path) -> None:
    index = EdgeVectorIndex(tmp_path, "projects", model="m", dimension=DIM)
    await index.open()
    batch = [point(str(uuid.uuid4()), 3) for _ in range(500)]
    write = asyncio.create_task(index.write(batch, []))
    await asyncio.sleep(0)  # the write is on the writer thread now
    await index.close()
    await write
    again = EdgeVectorIndex(tmp_path, "projects", model="m", dimension=DIM)
    await again.open()
    try:
        assert len(await again.get_states([p.project_id for p in batch])) == 500
    finally:
        await again.close()

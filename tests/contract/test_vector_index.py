"""One contract, two adapters: Qdrant Edge (embedded) and qdrant-client (local mode standing in
for a Qdrant server). Every behaviour the pipeline relies on is asserted against both."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.protocol import (
    IndexMismatch,
    PointState,
    SearchFilters,
    Tombstone,
    UpsertPoint,
    VectorIndex,
)
from handwerk.index.qdrant.adapter import QdrantServerIndex
from handwerk.index.qdrant.connection import QdrantConnection

DIM = 8
ANY = SearchFilters()


def make_index(kind: str, folder: Path, dimension: int = DIM, model: str = "test-model") -> VectorIndex:
    if kind == "edge":
        return EdgeVectorIndex(folder, "projects", model=model, dimension=dimension)
    return QdrantServerIndex(alias="projects", model=model, dimension=dimension,
                             connection=QdrantConnection(path=str(folder / "qdrant-local")))


@pytest.fixture(params=["edge", "qdrant-local"])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    idx = make_index(request.param, tmp_path)
    await idx.open()
    try:
        yield idx
    finally:
        await idx.close()


def vec(*hot: int) -> list[float]:
    v = [0.0] * DIM
    for i in hot:
        v[i] = 1.0
    return v


def point(pid: str, version: int, vector: list[float], **payload: object) -> UpsertPoint:
    base = {"name": "n", "project_type": "kitchen", "region": "Bayern", "final_price": 100.0,
            "text_hash": f"h{version}", "source": "urn:handwerk:outbox"}
    return UpsertPoint(pid, version, vector, {**base, **payload, "version": version, "state": "live"})


async def test_conditional_upsert_refuses_older_versions(index: VectorIndex) -> None:
    pid = str(uuid.uuid4())
    await index.write([point(pid, 5, vec(0), name="v5")], [])
    await index.write([point(pid, 3, vec(1), name="v3")], [])
    assert (await index.get_states([pid]))[pid].version == 5
    await index.write([point(pid, 5, vec(1), name="dup")], [])
    hits = await index.search(vec(0), top_k=1, threshold=0.0, filters=ANY)
    assert hits[0].payload["name"] == "v5"
    await index.write([point(pid, 7, vec(1), name="v7")], [])
    hits = await index.search(vec(1), top_k=1, threshold=0.0, filters=ANY)
    assert (hits[0].project_id, hits[0].payload["name"]) == (pid, "v7")


async def test_tombstone_hides_point_and_blocks_older_upserts(index: VectorIndex) -> None:
    pid, other = str(uuid.uuid4()), str(uuid.uuid4())
    await index.write([point(pid, 1, vec(0)), point(other, 1, vec(2))], [])
    await index.write([], [Tombstone(pid, 2)])
    await index.write([point(pid, 1, vec(0))], [])  # a late redelivery of the create
    state = (await index.get_states([pid]))[pid]
    assert state.deleted and state.version == 2
    hits = await index.search(vec(0), top_k=10, threshold=0.0, filters=ANY)
    assert pid not in {h.project_id for h in hits}
    stats = await index.stats()
    assert (stats.points_count, stats.tombstones_count) == (1, 1)
    await index.write([], [Tombstone(pid, 1)])  # an older delete changes nothing either
    assert (await index.get_states([pid]))[pid].version == 2


async def test_mixed_versions_in_one_write_each_guarded(index: VectorIndex) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    await index.write([point(a, 4, vec(0)), point(b, 1, vec(1))], [])
    await index.write([point(a, 2, vec(3)), point(b, 2, vec(3))], [])
    states = await index.get_states([a, b])
    assert (states[a].version, states[b].version) == (4, 2)


async def test_filters_threshold_and_top_k(index: VectorIndex) -> None:
    ids = [str(uuid.uuid4()) for _ in range(4)]
    await index.write([
        point(ids[0], 1, vec(0), project_type="kitchen", region="Bayern", final_price=10_000.0),
        point(ids[1], 1, vec(0, 1), project_type="stairs", region="Bayern", final_price=5_000.0),
        point(ids[2], 1, vec(0, 2), project_type="kitchen", region="Berlin", final_price=50_000.0),
        point(ids[3], 1, [0.2, 0, 0, 0, 0, 1.0, 0, 0], project_type="kitchen", region="Bayern",
              final_price=20_000.0),
    ], [])
    kitchens = await index.search(vec(0), top_k=10, threshold=0.0,
                                  filters=SearchFilters(project_type="kitchen"))
    assert {h.project_id for h in kitchens} == {ids[0], ids[2], ids[3]}
    assert kitchens[0].project_id == ids[0] and kitchens[0].score == pytest.approx(1.0, abs=1e-5)
    bayern_cheap = await index.search(vec(0), top_k=10, threshold=0.0,
                                      filters=SearchFilters(region="Bayern", max_price=15_000))
    assert {h.project_id for h in bayern_cheap} == {ids[0], ids[1]}
    priced = await index.search(vec(0), top_k=10, threshold=0.0,
                                filters=SearchFilters(min_price=15_000, max_price=60_000))
    assert {h.project_id for h in priced} == {ids[2], ids[3]}
    close = await index.search(vec(0), top_k=10, threshold=0.5, filters=ANY)
    assert {h.project_id for h in close} == {ids[0], ids[1], ids[2]}
    assert len(await index.search(vec(0), top_k=2, threshold=0.0, filters=ANY)) == 2


async def test_batch_search_equals_single_searches(index: VectorIndex) -> None:
    await index.write([point(str(uuid.uuid4()), 1, vec(i, (i + 1) % DIM)) for i in range(DIM)], [])
    queries = [vec(0), vec(3), vec(6, 7)]
    batch = await index.search_batch(queries, top_k=3, threshold=0.0, filters=ANY)
    singles = [await index.search(q, top_k=3, threshold=0.0, filters=ANY) for q in queries]
    assert [[h.project_id for h in hs] for hs in batch] == [[h.project_id for h in hs] for hs in singles]


async def test_states_vectors_and_full_scan(index: VectorIndex) -> None:
    ids = [str(uuid.uuid4()) for _ in range(1200)]
    await index.write([point(pid, 1 + i % 3, vec(i % DIM)) for i, pid in enumerate(ids)], [])
    await index.write([], [Tombstone(ids[0], 9)])
    everything = await index.all_states()
    assert len(everything) == 1200 and everything[ids[0]].deleted
    assert everything[ids[4]].version == 1 + 4 % 3 and everything[ids[4]].text_hash == f"h{1 + 4 % 3}"
    vectors = await index.get_vectors([ids[1]])
    assert vectors[ids[1]] == pytest.approx([x / 1.0 for x in vec(1)], abs=1e-6)
    assert await index.get_states([str(uuid.uuid4())]) == {}


async def test_records_give_state_and_vector_of_one_point_in_one_read(index: VectorIndex) -> None:
    """What a caller reuses a stored vector by: the text hash and the vector of the same
    record (two reads could straddle another writer's upsert, issue 19 #5)."""
    live, gone, absent = (str(uuid.uuid4()) for _ in range(3))
    await index.write([point(live, 2, vec(1), text_hash="h-first")], [Tombstone(gone, 3)])
    records = await index.get_records([live, gone, absent])
    assert set(records) == {live, gone}
    assert records[live].state == PointState(live, 2, False, "h-first", "urn:handwerk:outbox")
    assert records[live].vector == pytest.approx(vec(1), abs=1e-6)
    assert records[gone].state.deleted and records[gone].state.version == 3
    await index.write([point(live, 4, vec(2), text_hash="h-second")], [])
    again = (await index.get_records([live]))[live]
    assert (again.state.version, again.state.text_hash) == (4, "h-second")
    assert again.vector == pytest.approx(vec(2), abs=1e-6)
    assert await index.get_records([]) == {}


@pytest.mark.parametrize("kind", ["edge", "qdrant-local"])
async def test_reopen_keeps_points_and_rejects_another_model(kind: str, tmp_path: Path) -> None:
    pid = str(uuid.uuid4())
    first = make_index(kind, tmp_path)
    await first.open()
    await first.write([point(pid, 2, vec(0))], [])
    await first.close()
    again = make_index(kind, tmp_path)
    await again.open()
    try:
        assert (await again.get_states([pid]))[pid].version == 2
        assert (await again.stats()).model == "test-model"
    finally:
        await again.close()
    other: Callable[[], VectorIndex] = lambda: make_index(kind, tmp_path, model="other-model")  # noqa: E731
    with pytest.raises(IndexMismatch):
        await other().open()


async def test_visible_is_called_once_on_the_loop_when_searches_see_the_write(
        index: VectorIndex) -> None:
    """The consumer wakes ``wait_indexed`` requests from ``visible``; on Qdrant Edge it comes
    before the flush, so a read started from it must already see the new version."""
    import asyncio
    import threading

    pid = str(uuid.uuid4())
    await index.write([point(pid, 1, vec(0))], [])
    reads: list[asyncio.Task[object]] = []
    threads: list[threading.Thread] = []

    def visible() -> None:
        threads.append(threading.current_thread())
        reads.append(asyncio.ensure_future(index.get_states([pid])))

    await index.write([point(pid, 2, vec(1))], [], visible=visible)
    assert threads == [threading.current_thread()]
    states = await reads[0]
    assert isinstance(states, dict) and states[pid].version == 2
    await index.write([point(pid, 2, vec(1))], [], visible=visible)  # a duplicate: still called
    assert len(threads) == 2


async def test_a_failing_visible_callback_does_not_fail_the_write(index: VectorIndex) -> None:
    """A bug in the caller's callback must not look like an index refusal (which would
    dead-letter a good batch): the write completes and is stored."""
    pid = str(uuid.uuid4())

    def broken() -> None:
        raise ValueError("caller bug")

    await index.write([point(pid, 1, vec(0))], [], visible=broken)
    assert (await index.get_states([pid]))[pid].version == 1

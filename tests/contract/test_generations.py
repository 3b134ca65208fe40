"""Generations behind one alias, against both backends: Qdrant Edge (a shard folder per
generation, ``CURRENT`` names the live one) and qdrant-client local mode standing in for a
Qdrant server (a collection per generation, a Qdrant alias names the live one). Real engines,
tiny vectors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from handwerk.index.catalog import AliasFolder, GenerationCatalog
from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.edge.catalog import EdgeCatalog
from handwerk.index.factory import IndexFactory
from handwerk.index.protocol import (
    SearchFilters,
    StoredPoint,
    Tombstone,
    UpsertPoint,
    VectorIndex,
    tombstone_payload,
)
from handwerk.index.qdrant.adapter import QdrantServerIndex
from handwerk.index.qdrant.catalog import QdrantCatalog
from handwerk.index.qdrant.connection import QdrantConnection
from handwerk.settings import Settings

DIM = 4
ALIAS = "projects"
MODEL = "test-model"
ANY = SearchFilters()
KINDS = ["edge", "qdrant-local"]


def local_path(root: Path) -> str:
    return str(root / "qdrant-local")


def make_catalog(kind: str, root: Path) -> GenerationCatalog:
    if kind == "edge":
        return EdgeCatalog(root, ALIAS)
    return QdrantCatalog(root, ALIAS, connection=QdrantConnection(path=local_path(root)))


def unbound_index(kind: str, root: Path, catalog: GenerationCatalog | None = None) -> VectorIndex:
    """What the api and the live consumer open: whatever the alias names. Local mode allows
    one client per folder in a process, so beside a ``catalog`` it shares the catalog's
    connection."""
    if kind == "edge":
        return EdgeVectorIndex(root, ALIAS, model=MODEL, dimension=DIM)
    connection = catalog.connection if isinstance(catalog, QdrantCatalog) else \
        QdrantConnection(path=local_path(root))
    return QdrantServerIndex(alias=ALIAS, model=MODEL, dimension=DIM, connection=connection,
                             folder=AliasFolder(root, ALIAS))


def generation_of(index: VectorIndex) -> str:
    assert isinstance(index, EdgeVectorIndex | QdrantServerIndex)  # not in the Protocol
    return index.generation


def vec(hot: int) -> list[float]:
    return [1.0 if i == hot % DIM else 0.0 for i in range(DIM)]


def point(pid: str, version: int, vector: list[float], **payload: object) -> UpsertPoint:
    return UpsertPoint(pid, version, vector, {"name": "n", "project_type": "kitchen",
                                              "region": "Bayern", "final_price": 100.0,
                                              "text_hash": f"h{version}", **payload,
                                              "version": version, "state": "live"})


async def all_points(index: VectorIndex, page: int = 256) -> list[StoredPoint]:
    pages = [p async for p in index.iter_points(page=page)]
    assert all(len(p) <= page for p in pages)
    return [stored for p in pages for stored in p]


@pytest.fixture(params=KINDS)
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    idx = unbound_index(request.param, tmp_path)
    await idx.open()
    try:
        yield idx
    finally:
        await idx.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_new_generation_fills_beside_the_live_one_then_takes_over(
        kind: str, tmp_path: Path) -> None:
    catalog = make_catalog(kind, tmp_path)
    old_pid, new_pid = str(uuid.uuid4()), str(uuid.uuid4())

    live = unbound_index(kind, tmp_path, catalog)
    await live.open()  # first start: creates g0001 and points the alias at it
    assert await catalog.current() == "g0001"
    assert generation_of(live) == "g0001"
    assert catalog.folder.read_meta("g0001") is not None
    await live.write([point(old_pid, 1, vec(0), name="old")], [])

    building = catalog.index("g0002", model=MODEL, dimension=DIM)
    await building.open()  # beside the live one, the alias untouched
    assert generation_of(building) == "g0002"
    meta = catalog.folder.read_meta("g0002")
    assert meta is not None and (meta.model, meta.dimension) == (MODEL, DIM)
    await building.write([point(new_pid, 1, vec(1), name="new")], [])
    assert set(await building.get_states([old_pid, new_pid])) == {new_pid}
    assert set(await live.get_states([old_pid, new_pid])) == {old_pid}
    assert await catalog.current() == "g0001"
    await building.close()
    await live.close()

    with pytest.raises(FileNotFoundError):
        await catalog.activate("g0009")
    await catalog.activate("g0002")
    assert await catalog.current() == "g0002"

    fresh = unbound_index(kind, tmp_path, catalog)
    await fresh.open()
    try:
        assert set(await fresh.get_states([old_pid, new_pid])) == {new_pid}
        hits = await fresh.search(vec(1), top_k=5, threshold=0.0, filters=ANY)
        assert [(h.project_id, h.payload["name"]) for h in hits] == [(new_pid, "new")]
        assert (await fresh.stats()).generation == "g0002"
    finally:
        await fresh.close()

    with pytest.raises(ValueError, match="active"):
        await catalog.drop("g0002")
    await catalog.drop("g0001")
    assert catalog.folder.names() == ["g0002"]
    assert await catalog.current() == "g0002"
    gone = catalog.index("g0001", model=MODEL, dimension=DIM)
    await gone.open()  # opening it again creates an empty one: its points went with the drop
    try:
        assert await gone.get_states([old_pid]) == {}
    finally:
        await gone.close()
    await catalog.drop("g0001")


async def test_qdrant_unbound_index_follows_the_alias_while_open(tmp_path: Path) -> None:
    """On a server the unbound adapter reads through the alias, so an activation reaches an
    adapter that is already open (Qdrant Edge swaps by reopening instead)."""
    catalog = make_catalog("qdrant-local", tmp_path)
    live, pid = unbound_index("qdrant-local", tmp_path, catalog), str(uuid.uuid4())
    await live.open()
    try:
        building = catalog.index("g0002", model=MODEL, dimension=DIM)
        await building.open()  # the same local folder, open twice in this process at once
        try:
            await building.write([point(pid, 1, vec(2))], [])
        finally:
            await building.close()
        assert await live.get_states([pid]) == {}
        await catalog.activate("g0002")
        assert set(await live.get_states([pid])) == {pid}
        assert (await live.stats()).generation == "g0002"
    finally:
        await live.close()


async def test_qdrant_catalog_in_memory_shares_its_store_with_its_indexes(tmp_path: Path) -> None:
    catalog = QdrantCatalog(tmp_path, ALIAS, connection=QdrantConnection(path=":memory:"))
    first = catalog.index("g0001", model=MODEL, dimension=DIM)
    second = catalog.index("g0002", model=MODEL, dimension=DIM)
    await first.open()
    await second.open()
    try:
        await catalog.activate("g0001")
        await catalog.activate("g0002")
        assert await catalog.current() == "g0002"
        await catalog.drop("g0001")
    finally:
        await first.close()
        await second.close()
    assert await catalog.current() is None  # an in-memory store lives while an index is open


async def test_iter_points_returns_every_point_with_vector_and_payload(index: VectorIndex) -> None:
    live = {str(uuid.uuid4()): i for i in range(5)}
    dead, undated = str(uuid.uuid4()), str(uuid.uuid4())
    await index.write([point(pid, 1 + i, vec(i), name=f"p{i}") for pid, i in live.items()], [])
    await index.write([], [Tombstone(dead, 3, "2024-05-01T10:00:00+00:00"), Tombstone(undated, 2)])

    points = {p.project_id: p for p in await all_points(index, page=2)}
    assert set(points) == set(live) | {dead, undated}
    for pid, i in live.items():
        stored = points[pid]
        assert not stored.deleted
        assert stored.vector == pytest.approx(vec(i), abs=1e-6)
        assert stored.payload == point(pid, 1 + i, vec(i), name=f"p{i}").payload
    assert points[dead].deleted and points[undated].deleted
    assert points[dead].payload == tombstone_payload(3, "2024-05-01T10:00:00+00:00")
    assert points[undated].payload == tombstone_payload(2)
    assert all(p.vector is not None and len(p.vector) == DIM for p in points.values())


async def test_drop_tombstones_drops_only_those_deleted_before_the_cutoff(
        index: VectorIndex) -> None:
    alive, old, older, recent, undated = (str(uuid.uuid4()) for _ in range(5))
    await index.write([point(alive, 1, vec(0))], [
        Tombstone(old, 4, "2024-03-01T12:00:00+00:00"),
        Tombstone(older, 2, "2024-01-15T08:30:00.250000+00:00"),
        Tombstone(recent, 5, "2025-02-01T00:00:00+00:00"),
        Tombstone(undated, 6),
    ])

    assert await index.drop_tombstones("2025-01-01T00:00:00+00:00") == \
        (2, "2024-03-01T12:00:00+00:00")

    states = await index.get_states([alive, old, older, recent, undated])
    assert set(states) == {alive, recent, undated}
    assert not states[alive].deleted and states[recent].deleted and states[undated].deleted
    stats = await index.stats()
    assert (stats.points_count, stats.tombstones_count) == (1, 2)
    assert await index.drop_tombstones("2025-01-01T00:00:00+00:00") == (0, None)

    # A kept tombstone still guards its project: an older upsert stays refused.
    await index.write([point(recent, 3, vec(1)), point(undated, 5, vec(2))], [])
    states = await index.get_states([recent, undated])
    assert (states[recent].deleted, states[recent].version) == (True, 5)
    assert (states[undated].deleted, states[undated].version) == (True, 6)
    hits = await index.search(vec(0), top_k=10, threshold=0.0, filters=ANY)
    assert {h.project_id for h in hits} == {alive}


@pytest.mark.parametrize("kind", KINDS)
async def test_index_factory_follows_the_configured_backend(kind: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, index_alias=ALIAS, index_backend="edge") \
        if kind == "edge" else \
        Settings(data_dir=tmp_path, index_alias=ALIAS, index_backend="qdrant",
                 qdrant_path=local_path(tmp_path))
    factory = IndexFactory(settings)  # as a process wires it: one connection for both
    catalog = factory.catalog()
    assert isinstance(catalog, EdgeCatalog if kind == "edge" else QdrantCatalog)
    assert catalog.folder.path == settings.index_dir / ALIAS
    assert await catalog.current() is None
    index = factory.vector_index(model=MODEL, dimension=DIM)
    await index.open()
    try:
        assert await catalog.current() == "g0001"
        assert catalog.folder.read_meta("g0001") is not None
    finally:
        await index.close()

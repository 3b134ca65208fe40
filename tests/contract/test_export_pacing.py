"""The serving process exports the live generation (a compaction's copy, a rebuild's known
vectors) while it serves, on the event loop (the engine's scroll holds the GIL): the export
must be complete, read small pages, and after each page leave the loop to the searches for at
least as long as the page took (issue 18 §6: a search waited 154 ms behind the export; it
needs several loop turns and each waited for a whole 256-point page). Timings of searches are
no test on this shared machine; this is the property that bounds them. Real Qdrant Edge
shard, real vector cache, 384-d vectors."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from handwerk.embedding.embedder import Embedder
from handwerk.embedding.specs import model_key
from handwerk.embedding.vector_cache import VectorCache
from handwerk.generations.export import count_exported, export_points, export_rows, export_vectors
from handwerk.index.active import IndexTarget
from handwerk.index.catalog import new_meta
from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.protocol import StoredPoint, Tombstone, UpsertPoint, VectorIndex

DIM = 384
LIVE, DEAD = 3000, 40
KEY = "sha256:export-pacing-test"
SMALL_PAGE = 64  # points: about 2 ms of scroll and conversion at 384-d


class Probe:
    """The real index; notes when each page of ``iter_points`` was asked for and handed over."""

    def __init__(self, index: VectorIndex) -> None:
        self.index = index
        self.pages: list[tuple[float, float, int]] = []  # (asked, handed, points)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.index, name)

    async def iter_points(self, *, page: int = 256) -> AsyncIterator[list[StoredPoint]]:
        pages = self.index.iter_points(page=page)
        while True:
            asked = time.perf_counter()
            got = await anext(pages, None)
            if got is None:
                return
            self.pages.append((asked, time.perf_counter(), len(got)))
            yield got


def assert_paced(probe: Probe) -> None:
    """Small pages, and before the next one the loop went to others at least as long as
    reading this one held it."""
    assert sum(n for *_, n in probe.pages) == LIVE + DEAD
    assert max(n for *_, n in probe.pages) <= SMALL_PAGE
    for (asked, handed, _), (next_asked, _, _) in zip(probe.pages, probe.pages[1:], strict=False):
        assert next_asked - handed >= (handed - asked) - 1e-4  # clock resolution


@pytest.fixture
async def target(tmp_path: Path, embedder: Embedder) -> AsyncIterator[IndexTarget]:
    index = EdgeVectorIndex(tmp_path / "index", "projects", model="m", dimension=DIM)
    await index.open()
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(LIVE, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    points = [UpsertPoint(str(uuid.uuid4()), 1, v.tolist(), {
        "name": f"p{i}", "project_type": "kitchen", "region": "Bayern", "final_price": 100.0,
        "text_hash": f"h{i}", "version": 1, "state": "live"}) for i, v in enumerate(vectors)]
    await index.write(points, [Tombstone(str(uuid.uuid4()), 2, "2024-05-01T10:00:00+00:00")
                               for _ in range(DEAD)])
    assert embedder.dimension == DIM
    try:
        yield IndexTarget("g0001", cast(VectorIndex, Probe(index)), embedder,
                          new_meta("g0001", "m", DIM, content_key=KEY))
    finally:
        await index.close()


async def test_the_export_of_every_point_is_complete_and_paced(
        target: IndexTarget, tmp_path: Path) -> None:
    path = tmp_path / "g0002" / "export.sqlite"
    exported = await export_points(target, path)
    assert_paced(cast(Probe, target.index))

    assert exported == count_exported(path) == LIVE + DEAD  # tombstones included
    rows = {p.project_id: p for page in export_rows(path) for p in page}
    assert sum(1 for p in rows.values() if p.deleted and p.vector is None) == DEAD
    stored = {p.project_id: p for page in [p async for p in target.index.iter_points()]
              for p in page}
    assert set(rows) == set(stored)
    for pid, p in rows.items():
        assert p.payload == stored[pid].payload
        if not p.deleted:
            assert p.vector == pytest.approx(stored[pid].vector, abs=1e-6)


async def test_the_export_of_known_vectors_is_complete_and_paced(
        target: IndexTarget, tmp_path: Path) -> None:
    exported = await export_vectors(tmp_path / "cache.sqlite", target)
    assert_paced(cast(Probe, target.index))

    assert exported == LIVE  # tombstones carry no vector to reuse
    cache = VectorCache(tmp_path / "cache.sqlite")
    try:
        found = cache.get_many(model_key(KEY, DIM), [f"h{i}" for i in range(LIVE)])
    finally:
        cache.close()
    assert len(found) == LIVE

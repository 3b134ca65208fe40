"""The apply logic against both real index adapters and the real model: version guard,
tombstones, and re-embedding only when the embedded text changes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from handwerk.consumer.applier import IndexApplier
from handwerk.contract.events import DELETED, UPSERTED, ProjectEvent
from handwerk.contract.text import project_text
from handwerk.embedding.embedder import Embedder
from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.protocol import SearchFilters, VectorIndex
from handwerk.index.qdrant.adapter import QdrantServerIndex
from handwerk.index.qdrant.connection import QdrantConnection
from handwerk.metrics import Metrics


def data(pid: str, description: str = "Landhausküche mit Kochinsel", price: float = 20_000.0
         ) -> dict[str, object]:
    return {"id": pid, "name": "Küche Eiche", "description": description,
            "project_type": "kitchen", "region": "Bayern", "total_area_sqm": 14.0,
            "wood_type": "Eiche", "complexity": 3, "final_price": price}


def upsert(pid: str, version: int, **fields: object) -> ProjectEvent:
    return ProjectEvent(str(uuid.uuid4()), "urn:handwerk:outbox", UPSERTED, pid, version,
                        datetime.now(UTC), data(pid, **fields))  # type: ignore[arg-type]


def delete(pid: str, version: int) -> ProjectEvent:
    return ProjectEvent(str(uuid.uuid4()), "urn:handwerk:outbox", DELETED, pid, version,
                        datetime.now(UTC), None)


def open_index(kind: str, folder: Path, embedder: Embedder) -> VectorIndex:
    if kind == "edge":
        return EdgeVectorIndex(folder, "projects", model=embedder.model_name,
                               dimension=embedder.dimension)
    return QdrantServerIndex(alias="projects", model=embedder.model_name,
                             dimension=embedder.dimension,
                             connection=QdrantConnection(path=str(folder / "local")))


@pytest.fixture(params=["edge", "qdrant-local"])
async def index(request: pytest.FixtureRequest, tmp_path: Path,
                embedder: Embedder) -> AsyncIterator[VectorIndex]:
    idx = open_index(request.param, tmp_path, embedder)
    await idx.open()
    try:
        yield idx
    finally:
        await idx.close()


async def test_price_only_update_keeps_vector_without_embedding(index: VectorIndex,
                                                                 embedder: Embedder) -> None:
    applier, pid = IndexApplier(index, embedder, Metrics()), str(uuid.uuid4())
    first = await applier.apply([upsert(pid, 1)])
    before = (await index.get_vectors([pid]))[pid]
    price_only = await applier.apply([upsert(pid, 2, price=99_000.0)])
    assert (first.embedded, price_only.embedded, price_only.reused) == (1, 0, 1)
    assert (await index.get_vectors([pid]))[pid] == pytest.approx(before)
    hits = await index.search(before, top_k=1, threshold=0.0, filters=SearchFilters())
    assert (hits[0].payload["final_price"], hits[0].payload["version"]) == (99_000.0, 2)

    text_change = await applier.apply([upsert(pid, 3, description="Wendeltreppe aus Stahl")])
    assert text_change.embedded == 1
    after = np.array((await index.get_vectors([pid]))[pid])
    expected = embedder.encode([project_text(data(pid, description="Wendeltreppe aus Stahl"))])[0]
    assert float(after @ expected) == pytest.approx(1.0, abs=1e-4)


async def test_duplicates_stale_and_resurrection_are_refused(index: VectorIndex,
                                                             embedder: Embedder) -> None:
    applier, pid = IndexApplier(index, embedder, Metrics()), str(uuid.uuid4())
    result = await applier.apply([upsert(pid, 2, price=2.0), upsert(pid, 1, price=1.0),
                                  upsert(pid, 2, price=2.0)])
    assert (result.upserts, result.coalesced) == (1, 2)
    assert (await applier.apply([upsert(pid, 2, price=2.0)])).skipped_stale == 1
    await applier.apply([delete(pid, 3)])
    late = await applier.apply([upsert(pid, 2, price=2.0)])
    assert (late.upserts, late.skipped_stale) == (0, 1)
    state = (await index.get_states([pid]))[pid]
    assert state.deleted and state.version == 3


async def test_guard_holds_without_the_pre_read(index: VectorIndex, embedder: Embedder) -> None:
    """A zombie that read old state before a newer write landed still cannot overwrite it:
    the condition is evaluated inside the index, not by the caller."""
    pid = str(uuid.uuid4())
    await IndexApplier(index, embedder, Metrics()).apply([upsert(pid, 5, price=5.0)])
    vector = (await index.get_vectors([pid]))[pid]
    from handwerk.index.protocol import UpsertPoint

    await index.write([UpsertPoint(pid, 4, vector, {"version": 4, "state": "live",
                                                      "final_price": 4.0})], [])
    hits = await index.search(vector, top_k=1, threshold=0.0, filters=SearchFilters())
    assert hits[0].payload["final_price"] == 5.0


async def test_catch_up_takes_vectors_of_the_same_text_from_a_donor_index(
        index: VectorIndex, embedder: Embedder, tmp_path: Path) -> None:
    """A handover's catch-up replays records the live generation already embedded: it must take
    those vectors from the live index (same model, same text) rather than the encoder, which
    could never catch up with steady writes. A changed text is still embedded."""
    live = open_index("edge", tmp_path / "live", embedder)
    await live.open()
    try:
        same, changed = str(uuid.uuid4()), str(uuid.uuid4())
        await IndexApplier(live, embedder, Metrics()).apply([upsert(same, 1), upsert(changed, 1)])
        catch_up = IndexApplier(index, embedder, Metrics(), donor=live)
        result = await catch_up.apply([upsert(same, 2, price=1.0),
                                       upsert(changed, 2, description="Wendeltreppe aus Stahl")])
        assert (result.embedded, result.reused) == (1, 1)
        assert (await index.get_vectors([same]))[same] == pytest.approx(
            (await live.get_vectors([same]))[same])
    finally:
        await live.close()

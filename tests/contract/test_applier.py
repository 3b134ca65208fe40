"""The apply logic against both real index adapters and the real model: version guard,
tombstones, and re-embedding only when the embedded text changes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from handwerk.consumer.applier import IndexApplier
from handwerk.contract.events import DELETED, UPSERTED, ProjectEvent
from handwerk.contract.text import project_text, text_hash
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


class AnotherWriterBetweenReads:
    """The real index, with another writer's upsert landing right after the applier's first
    read of it (a zombie consumer after a rebalance, the live consumer beside a catch-up)."""

    def __init__(self, inner: VectorIndex, write: Callable[[], Awaitable[object]]) -> None:
        self._inner, self._write, self.interleaved = inner, write, False

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def _after_first_read(self) -> None:
        if not self.interleaved:
            self.interleaved = True
            await self._write()

    async def get_states(self, project_ids: list[str]) -> object:
        states = await self._inner.get_states(project_ids)
        await self._after_first_read()
        return states

    async def get_vectors(self, project_ids: list[str]) -> object:
        vectors = await self._inner.get_vectors(project_ids)
        await self._after_first_read()
        return vectors

    async def get_records(self, project_ids: list[str]) -> object:
        records = await self._inner.get_records(project_ids)  # type: ignore[attr-defined]
        await self._after_first_read()
        return records


EDITED = "Wendeltreppe aus Stahl"


async def assert_holds_the_vector_of_its_own_text(index: VectorIndex, embedder: Embedder,
                                                  pid: str, version: int) -> None:
    text = project_text(data(pid))
    state = (await index.get_states([pid]))[pid]
    assert (state.version, state.text_hash) == (version, text_hash(text))
    stored = np.array((await index.get_vectors([pid]))[pid])
    assert float(stored @ embedder.encode([text])[0]) == pytest.approx(1.0, abs=1e-4)
    assert float(stored @ embedder.encode([project_text(data(pid, description=EDITED))])[0]) < 0.99


async def test_an_edit_and_revert_racing_the_reads_never_pairs_a_hash_with_another_vector(
        index: VectorIndex, embedder: Embedder) -> None:
    """H1 -> H2 -> H1: the applier reads the point (v1, H1) for the revert v3 (H1 again: the
    same text, so its vector may be reused), another writer stores v2 (H2) before the
    applier reads the vector. Reusing that vector would store H2's vector under H1's hash,
    and every later write of the unchanged text would reuse it again."""
    pid = str(uuid.uuid4())
    await IndexApplier(index, embedder, Metrics()).apply([upsert(pid, 1)])
    racing = AnotherWriterBetweenReads(index, lambda: IndexApplier(index, embedder, Metrics())
                                       .apply([upsert(pid, 2, description=EDITED)]))
    await IndexApplier(racing, embedder, Metrics()).apply([upsert(pid, 3)])  # type: ignore[arg-type]
    assert racing.interleaved
    await assert_holds_the_vector_of_its_own_text(index, embedder, pid, 3)


async def test_a_donor_written_between_the_reads_lends_no_vector_of_another_text(
        index: VectorIndex, embedder: Embedder, tmp_path: Path) -> None:
    """The same race on a handover's catch-up: the live consumer rewrites the donor (the live
    generation) between the catch-up's reads of it."""
    live = open_index("edge", tmp_path / "live", embedder)
    await live.open()
    try:
        pid = str(uuid.uuid4())
        await IndexApplier(live, embedder, Metrics()).apply([upsert(pid, 1)])
        donor = AnotherWriterBetweenReads(live, lambda: IndexApplier(live, embedder, Metrics())
                                          .apply([upsert(pid, 2, description=EDITED)]))
        catch_up = IndexApplier(index, embedder, Metrics(), donor=donor)  # type: ignore[arg-type]
        await catch_up.apply([upsert(pid, 3)])
        assert donor.interleaved
        await assert_holds_the_vector_of_its_own_text(index, embedder, pid, 3)
    finally:
        await live.close()

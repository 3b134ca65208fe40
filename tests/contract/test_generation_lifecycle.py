"""Lifecycle rules of generations in the serving process: a consumer that writes through the
alias adopts the generation it names (or stalls on another model), a replaced generation is
closed only once no search uses it, and clean-up never removes the generation a running job
works on. Real engines (Qdrant Edge, qdrant-client local mode), tiny vectors."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from handwerk.consumer.applier import IndexApplier
from handwerk.contract.events import UPSERTED, ProjectEvent
from handwerk.generations import builder, prepare
from handwerk.generations.jobs import ReindexJob
from handwerk.generations.manager import ReindexManager
from handwerk.generations.replay import TopicPosition
from handwerk.index.active import ActiveIndex, IndexTarget
from handwerk.index.catalog import AliasFolder, new_meta
from handwerk.index.edge.catalog import EdgeCatalog
from handwerk.index.factory import open_catalog
from handwerk.index.protocol import IndexUnavailable, Tombstone, UpsertPoint
from handwerk.index.qdrant.adapter import QdrantServerIndex
from handwerk.index.qdrant.catalog import QdrantCatalog
from handwerk.index.qdrant.connection import QdrantConnection
from handwerk.metrics import Metrics
from handwerk.settings import Settings

DIM, ALIAS, MODEL = 4, "projects", "test-model"


class Model:
    """Stands in for an embedder where only its identity matters (no text is embedded)."""

    def __init__(self, name: str = MODEL, dimension: int = DIM) -> None:
        self.model_name, self.dimension = name, dimension
        self.content_key = f"sha256:{name}"

    async def aclose(self) -> None:
        self.closed = True


def upsert(pid: str, version: int) -> UpsertPoint:
    return UpsertPoint(pid, version, [1.0, 0.0, 0.0, 0.0],
                       {"project_id": pid, "version": version, "state": "live", "text_hash": "h"})


async def test_an_alias_follower_adopts_the_new_generations_rules_or_stalls(tmp_path: Path) -> None:
    catalog = QdrantCatalog(tmp_path, ALIAS, connection=QdrantConnection(path=str(tmp_path / "q")))
    live = QdrantServerIndex(alias=ALIAS, model=MODEL, dimension=DIM, connection=catalog.connection,
                             folder=AliasFolder(tmp_path, ALIAS))
    await live.open()
    try:
        active = ActiveIndex(IndexTarget("g0001", live, Model()))  # type: ignore[arg-type]
        active.follow_alias(catalog)
        await active.refresh()
        assert active.target.generation == "g0001"

        # another process compacted into g0002 (tombstones of deletes up to T dropped)
        dropped = "2026-11-01T00:00:00+00:00"
        catalog.folder.write_meta(new_meta("g0002", MODEL, DIM, state="active",
                                           dropped_deletes_before=dropped))
        built = catalog.index("g0002", model=MODEL, dimension=DIM)
        await built.open()
        await built.close()
        await catalog.activate("g0002")
        await active.refresh()
        assert active.target.generation == "g0002"
        assert active.target.refuse_creations_before == dropped

        # and then into g0003, built with another model: writing on would mix models
        catalog.folder.write_meta(new_meta("g0003", "other-model", DIM, state="active"))
        other = catalog.index("g0003", model="other-model", dimension=DIM)
        await other.open()
        await other.close()
        await catalog.activate("g0003")
        with pytest.raises(IndexUnavailable, match="restart it"):
            await active.refresh()
        assert active.target.generation == "g0002"
    finally:
        await live.close()


async def test_an_alias_follower_stalls_on_new_weights_under_the_same_name(tmp_path: Path) -> None:
    """Issue 19 #4: the alias names a generation built from new weights in the same folder
    (same model name): a consumer still running the old weights must not write into it."""
    catalog = QdrantCatalog(tmp_path, ALIAS, connection=QdrantConnection(path=str(tmp_path / "q")))
    live = QdrantServerIndex(alias=ALIAS, model=MODEL, dimension=DIM, connection=catalog.connection,
                             folder=AliasFolder(tmp_path, ALIAS))
    await live.open()
    try:
        running = Model()
        active = ActiveIndex(IndexTarget("g0001", live, running))  # type: ignore[arg-type]
        active.follow_alias(catalog)
        for generation, weights in (("g0002", "sha256:new-weights"), ("g0003", running.content_key)):
            catalog.folder.write_meta(new_meta(generation, MODEL, DIM, state="active",
                                               content_key=weights))
            built = catalog.index(generation, model=MODEL, dimension=DIM)
            await built.open()
            await built.close()
        await catalog.activate("g0002")
        with pytest.raises(IndexUnavailable, match="restart it"):
            await active.refresh()
        assert active.target.generation == "g0001"
        await catalog.activate("g0003")  # the weights it runs: followed
        await active.refresh()
        assert active.target.generation == "g0003"
    finally:
        await live.close()


def manager(tmp_path: Path, active: Any, **settings: Any) -> ReindexManager:
    return ReindexManager(Settings(data_dir=tmp_path, **settings), EdgeCatalog(tmp_path, ALIAS),
                          active, None, SimpleNamespace(), None)  # type: ignore[arg-type]


async def test_a_replaced_generation_closes_only_once_its_searches_ended(tmp_path: Path) -> None:
    catalog = EdgeCatalog(tmp_path, ALIAS)
    old, new = (catalog.index(g, model=MODEL, dimension=DIM) for g in ("g0001", "g0002"))
    await old.open()
    await new.open()
    active = ActiveIndex(IndexTarget("g0001", old, Model()))  # type: ignore[arg-type]
    m = manager(tmp_path, active)
    pid = str(uuid.uuid4())
    await old.write([upsert(pid, 1)], [])
    with active.using() as searching:  # a search took the old target ...
        previous = active.switch(IndexTarget("g0002", new, searching.embedder))
        m._handover.retire(previous)  # noqa: SLF001 - the handover's last step
        closing = m._handover._closing["g0001"]  # noqa: SLF001
        with pytest.raises(TimeoutError):  # not closed while the search still holds it
            await asyncio.wait_for(asyncio.shield(closing), 0.5)
        assert set(await searching.index.get_states([pid])) == {pid}  # ... and may finish
    await asyncio.wait_for(asyncio.gather(*m._handover._closing.values()), 5)  # noqa: SLF001
    with pytest.raises(IndexUnavailable):
        await old.get_states([pid])  # closed once nobody used it
    await new.close()


async def test_clean_up_spares_the_generation_a_running_job_hands_over(tmp_path: Path) -> None:
    catalog = EdgeCatalog(tmp_path, ALIAS)
    live = catalog.index("g0001", model=MODEL, dimension=DIM)
    await live.open()
    active = ActiveIndex(IndexTarget("g0001", live, Model()))  # type: ignore[arg-type]
    m = manager(tmp_path, active, generation_grace_s=1)
    long_ago = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    for name in ("g0002", "g0003"):  # built long ago, both past the grace period
        catalog.folder.write_meta(new_meta(name, MODEL, DIM, state="ready", ready_at=long_ago)
                                  .with_(created_at=long_ago))
        (catalog.folder.generation_dir(name) / "shard").mkdir(parents=True)
    m.job = SimpleNamespace(generation="g0002")  # type: ignore[assignment]
    m._task = asyncio.get_running_loop().create_future()  # noqa: SLF001 - a handover in progress
    try:
        await m.clean_up()
        names = set(catalog.folder.names())
        assert "g0002" in names and "g0003" not in names and "g0001" in names
    finally:
        m._task.cancel()  # noqa: SLF001
        await asyncio.gather(m._task, return_exceptions=True)  # noqa: SLF001
    await m.clean_up()
    assert set(catalog.folder.names()) == {"g0001"}
    await live.write([], [Tombstone(str(uuid.uuid4()), 2)])
    await live.close()


class Encoder(Model):
    async def embed_documents(self, texts: list[str]) -> list[np.ndarray]:
        return [np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32) for _ in texts]


def event(pid: str, version: int, at: datetime) -> ProjectEvent:
    return ProjectEvent(str(uuid.uuid4()), "urn:handwerk:outbox", UPSERTED, pid, version, at,
                        {"id": pid, "name": "Küche", "description": "Landhausküche",
                         "project_type": "kitchen", "region": "Bayern", "total_area_sqm": 14.0,
                         "wood_type": "Eiche", "complexity": 3, "final_price": 1.0})


@pytest.mark.parametrize("model", [MODEL, "other-model"])
async def test_a_rebuild_from_the_topic_keeps_the_live_generations_tombstone_cutoff(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str) -> None:
    """After ``reindex --from db`` the live generation refuses upserts of unknown projects older
    than its snapshot (deletes before it left no tombstone). A later rebuild from the topic (or
    a model switch) must keep that cutoff, or a stale upsert of a project deleted before the
    backfill (a DLQ replay, an upstream re-send) comes back. Real prepare and builder (a fake
    topic and model), real Qdrant Edge; the stale upsert goes through the real applier."""
    settings = Settings(data_dir=tmp_path, index_alias=ALIAS)
    cutoff = (datetime.now(UTC) - timedelta(hours=1)).isoformat()  # the backfill's snapshot
    catalog = open_catalog(settings)
    backfilled = new_meta("g0001", MODEL, DIM, state="active", source="db",
                          dropped_deletes_before=cutoff)
    catalog.folder.write_meta(backfilled)
    live = IndexTarget("g0001", None, Model(), backfilled)  # type: ignore[arg-type]

    async def position(_settings: Settings) -> TopicPosition:
        return TopicPosition({0: 5}, {0: 5})

    async def topic(_settings: Settings, _applier: Any, *, start: dict[int, int] | None,
                    until: dict[int, int], on_progress: Any = None) -> dict[int, int]:
        return until  # the whole topic replayed (nothing in it for this test)

    monkeypatch.setattr(prepare, "read_position", position)
    monkeypatch.setattr(builder, "replay", topic)
    monkeypatch.setattr(builder, "load_embedder", lambda _s, name, **_: Encoder(name))
    job = ReindexJob(kind="reindex", source="topic", model=model, generation="g0002",
                     reuse_vectors=False)
    catalog.folder.write_meta(new_meta("g0002", model, 0, state="building", source="topic"))
    gdir = catalog.folder.generation_dir("g0002")
    await prepare.prepare(job, gdir, live, settings, None)  # type: ignore[arg-type]
    await builder.build(settings, gdir)

    meta = catalog.folder.read_meta("g0002")
    assert meta is not None and meta.state == "ready"
    assert meta.dropped_deletes_before == cutoff

    index = catalog.index("g0002", model=model, dimension=DIM)
    await index.open()
    try:
        applier = IndexApplier(ActiveIndex(IndexTarget("g0002", index, Encoder(model), meta)),
                               Encoder(model), Metrics())
        deleted_before_the_backfill, new = str(uuid.uuid4()), str(uuid.uuid4())
        result = await applier.apply([
            event(deleted_before_the_backfill, 3, datetime.now(UTC) - timedelta(days=2)),
            event(new, 1, datetime.now(UTC))])
        assert (result.refused_late, result.upserts) == (1, 1)
        assert set(await index.get_states([deleted_before_the_backfill, new])) == {new}
    finally:
        await index.close()

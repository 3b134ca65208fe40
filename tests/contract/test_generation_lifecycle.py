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

import pytest

from handwerk.generations.manager import ReindexManager
from handwerk.index.active import ActiveIndex, IndexTarget
from handwerk.index.catalog import AliasFolder, new_meta
from handwerk.index.edge.catalog import EdgeCatalog
from handwerk.index.protocol import IndexUnavailable, Tombstone, UpsertPoint
from handwerk.index.qdrant.adapter import QdrantServerIndex
from handwerk.index.qdrant.catalog import QdrantCatalog
from handwerk.index.qdrant.connection import QdrantConnection
from handwerk.settings import Settings

DIM, ALIAS, MODEL = 4, "projects", "test-model"


class Model:
    """Stands in for an embedder where only its identity matters (no text is embedded)."""

    def __init__(self, name: str = MODEL, dimension: int = DIM) -> None:
        self.model_name, self.dimension = name, dimension

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

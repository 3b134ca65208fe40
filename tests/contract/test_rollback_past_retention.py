"""A rollback catches the retired generation up by replaying the topic from its recorded
offsets. Where the log start has moved past them (retention, DeleteRecords), the events in
between are gone, and a delete among them would be undone: the project, deleted since the
generation retired, would be found again. The activation must be refused instead.

The local broker cannot move a log start (tansu 0.6.0 keeps every record: retention is not
applied, DeleteRecords closes the connection), so its answers are given here: the topic
position, the log starts, and a replay that reads what the log still holds. Real manager,
handover and Qdrant Edge generations, tiny vectors."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from handwerk.generations import handover
from handwerk.generations.jobs import JobState
from handwerk.generations.manager import ReindexManager
from handwerk.generations.replay import TopicPosition
from handwerk.index.active import ActiveIndex, IndexTarget
from handwerk.index.catalog import new_meta
from handwerk.index.edge.catalog import EdgeCatalog
from handwerk.index.protocol import Tombstone, UpsertPoint
from handwerk.metrics import Metrics
from handwerk.settings import Settings

DIM, ALIAS, MODEL = 4, "projects", "test-model"


class Model:
    """Stands in for an embedder where only its identity matters (no text is embedded)."""

    def __init__(self) -> None:
        self.model_name, self.dimension = MODEL, DIM
        self.content_key = f"sha256:{MODEL}"

    async def aclose(self) -> None:
        pass


def live_point(pid: str, version: int) -> UpsertPoint:
    return UpsertPoint(pid, version, [1.0, 0.0, 0.0, 0.0],
                       {"project_id": pid, "version": version, "state": "live", "text_hash": "h"})


@pytest.mark.parametrize(("offsets", "log_start"), [
    ({"0": 5}, 7),  # retention took offsets 5 and 6: the delete was at 6
    ({}, 3),  # a crashed active generation, "replay all": the log no longer starts at 0
])
async def test_a_rollback_past_the_log_start_is_refused_and_the_delete_stays(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offsets: dict[str, int],
        log_start: int) -> None:
    catalog = EdgeCatalog(tmp_path, ALIAS)
    pid = str(uuid.uuid4())
    retired, live = (catalog.index(g, model=MODEL, dimension=DIM) for g in ("g0001", "g0002"))
    await retired.open()
    await retired.write([live_point(pid, 1)], [])  # retired before the project was deleted
    await retired.close()
    await live.open()
    await live.write([live_point(pid, 1)], [])
    await live.write([], [Tombstone(pid, 2)])  # the delete, at offset 6 of the topic
    catalog.folder.write_meta(new_meta("g0001", MODEL, DIM, state="retired", offsets=offsets,
                                       content_key=f"sha256:{MODEL}", retired_at="2026-01-01"))
    serving = new_meta("g0002", MODEL, DIM, state="active", content_key=f"sha256:{MODEL}")
    catalog.folder.write_meta(serving)
    await catalog.activate("g0002")
    model = Model()
    active = ActiveIndex(IndexTarget("g0002", live, model, serving))  # type: ignore[arg-type]

    async def position(_settings: Settings) -> TopicPosition:
        return TopicPosition({0: 9}, {0: 9})

    async def log_starts(_settings: Settings, partitions: Any) -> dict[int, int]:
        return dict.fromkeys(partitions, log_start)

    async def replay(_settings: Settings, _applier: Any, *, start: Any, until: dict[int, int],
                     **_: Any) -> dict[int, int]:
        return dict(until)  # what the log still holds: nothing about this project

    monkeypatch.setattr(handover, "read_position", position)
    monkeypatch.setattr(handover, "read_log_starts", log_starts)
    monkeypatch.setattr(handover, "replay", replay)
    manager = ReindexManager(Settings(data_dir=tmp_path, index_alias=ALIAS), catalog, active,
                             None, Metrics(), lambda _name: model)  # type: ignore[arg-type]
    try:
        job = manager.activate("g0001")
        await manager.wait()
        assert job.state is JobState.REFUSED, (job.state, job.error)
        assert job.error is not None and "reindex --from db" in job.error
        assert f"the log starts at {log_start}" in job.error
        assert active.target.generation == "g0002" and await catalog.current() == "g0002"
        assert (await active.target.index.get_states([pid]))[pid].deleted
    finally:
        await manager.close()
        await live.close()

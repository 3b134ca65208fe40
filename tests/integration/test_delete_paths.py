"""Every path that could undo a delete, against the real database (SQLite and PostgreSQL) and
Qdrant Edge (issue 18 §1): the database remembers every delete, a backfill re-asserts the
recent ones, and reconcile's repairs never bring a deleted project back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from handwerk.consumer.applier import IndexApplier
from handwerk.contract.events import DELETED, SOURCE, decode_event
from handwerk.contract.text import project_text, text_hash
from handwerk.embedding.embedder import Embedder
from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.protocol import Tombstone, UpsertPoint
from handwerk.metrics import Metrics
from handwerk.operations.reconcile import find_drift, repair
from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import DeletedProject, OutboxRow
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectNotFound, ProjectStore, project_data
from handwerk.timestamps import as_utc

pytestmark = pytest.mark.integration

FIELDS = ProjectFields(name="Dachstuhl Fichte", description="Pfettendach aus Fichte, abgebunden",
                       project_type="roof", region="Thüringen", total_area_sqm=120.0,
                       wood_type="Fichte", complexity=4, final_price=38_000.0)


@dataclass
class World:
    store: ProjectStore
    index: EdgeVectorIndex
    applier: IndexApplier
    applied: int = 0  # outbox rows applied so far


@pytest.fixture
async def world(tmp_path: Path, database_url: str, embedder: Embedder) -> AsyncIterator[World]:
    engine = create_engine(database_url)
    await run_migrations(engine)
    index = EdgeVectorIndex(tmp_path / "index", "p", model=embedder.model_name,
                            dimension=embedder.dimension)
    await index.open()
    try:
        yield World(ProjectStore(session_factory(engine)), index,
                    IndexApplier(index, embedder, Metrics()))
    finally:
        await index.close()
        await engine.dispose()


async def relay_and_apply(world: World) -> None:
    """What relay + consumer do, in-process: apply the new outbox events in order."""
    async with world.store.sessions() as session:
        rows = (await session.scalars(select(OutboxRow).where(OutboxRow.seq > world.applied)
                                      .order_by(OutboxRow.seq))).all()
    for row in rows:
        await world.applier.apply([decode_event(row.event.encode())])
        world.applied = row.seq


async def outbox_since(world: World, seq: int) -> list[dict[str, object]]:
    async with world.store.sessions() as session:
        rows = (await session.scalars(select(OutboxRow).where(OutboxRow.seq > seq)
                                      .order_by(OutboxRow.seq))).all()
    return [json.loads(r.event) for r in rows]


async def last_seq(world: World) -> int:
    async with world.store.sessions() as session:
        return int(await session.scalar(select(OutboxRow.seq).order_by(OutboxRow.seq.desc())
                                         .limit(1)) or 0)


async def deleted_rows(world: World) -> dict[str, tuple[int, datetime]]:
    async with world.store.sessions() as session:
        rows = (await session.execute(select(DeletedProject.project_id, DeletedProject.version,
                                             DeletedProject.deleted_at))).all()
    return {pid: (version, as_utc(at)) for pid, version, at in rows}


async def test_a_backfill_reasserts_every_delete_since_its_cutoff_at_its_version_and_time(
        world: World) -> None:
    """``reemit_deletes``: what the database build adds to its snapshot so the new generation
    holds the tombstones its time cutoff does not cover (keyset pages: chunk=1)."""
    old, *recent = [await world.store.create(FIELDS) for _ in range(3)]
    await world.store.delete(old.id)
    since = datetime.now(UTC)
    await world.store.update(recent[0].id, FIELDS.model_copy(update={"final_price": 1.0}))
    versions = {p.id: await world.store.delete(p.id) for p in recent}
    assert versions == {recent[0].id: 3, recent[1].id: 2}
    seq = await last_seq(world)

    assert await world.store.reemit_deletes(since, chunk=1) == 2
    recorded = await deleted_rows(world)
    events = await outbox_since(world, seq)
    assert {(e["subject"], e["version"], e["type"]) for e in events} == \
        {(pid, v, DELETED) for pid, v in versions.items()}
    for e in events:
        assert datetime.fromisoformat(str(e["time"])) == recorded[str(e["subject"])][1]
        assert str(e["source"]).endswith(":backfill")


async def test_a_project_deleted_before_reconciles_repair_stays_deleted(world: World) -> None:
    """Reconcile found a project missing, stale or hidden; the user deletes it before the
    repair runs. The repair re-reads the row (gone) and emits nothing that outranks the
    delete: the project stays deleted in the database and in the index."""
    stale = await world.store.create(FIELDS)
    hidden = await world.store.create(FIELDS)
    await relay_and_apply(world)
    await world.index.write([], [Tombstone(hidden.id, 2)])  # a racing orphan repair
    missing = await world.store.create(FIELDS)
    await world.store.update(stale.id, FIELDS.model_copy(update={"description": "neu"}))
    world.applied = await last_seq(world)  # the broker lost both events
    report = await find_drift(world.store, world.index)
    assert (report.missing, report.stale, report.hidden) == ([missing.id], [stale.id],
                                                             [(hidden.id, 2)])
    for p in (missing, stale, hidden):
        await world.store.delete(p.id)

    await repair(world.store, report)
    await relay_and_apply(world)
    states = await world.index.get_states([missing.id, stale.id, hidden.id])
    for p in (missing, stale, hidden):
        with pytest.raises(ProjectNotFound):
            await world.store.get(p.id)
        assert states[p.id].deleted, p.id
    assert (await find_drift(world.store, world.index)).drift == 0


async def test_a_delete_of_a_project_an_upstream_wrote_ahead_is_not_lost(
        world: World, embedder: Embedder) -> None:
    """An upstream producer that shares the version counter wrote v7 (reconcile would call it
    ``ahead``); the user deletes the project before any repair. The delete's event (v2) is
    refused by the index's v7, and the point is no longer ours by its source: reconcile must
    still see that the database deleted it, and tombstone it above v7."""
    row = await world.store.create(FIELDS)
    await relay_and_apply(world)
    text = project_text(project_data(row))
    vector = (await embedder.embed_documents([text]))[0].tolist()
    await world.index.write([UpsertPoint(row.id, 7, vector, {
        **project_data(row), "project_id": row.id, "version": 7, "state": "live",
        "text_hash": text_hash(text), "source": "urn:erp:upstream"})], [])
    assert await world.store.delete(row.id) == 2
    await relay_and_apply(world)
    assert not (await world.index.get_states([row.id]))[row.id].deleted  # v2 < v7: refused

    report = await find_drift(world.store, world.index)
    assert report.orphaned == [(row.id, 7)] and report.external == 0
    await repair(world.store, report)
    await relay_and_apply(world)
    state = (await world.index.get_states([row.id]))[row.id]
    assert state.deleted and state.version == 8
    assert (await find_drift(world.store, world.index)).drift == 0


async def test_an_orphan_repair_is_remembered_as_a_delete(world: World, embedder: Embedder) -> None:
    """Reconcile's orphan repair is a delete too: the database records it (a later backfill
    re-asserts it, a legacy re-import skips it), at the tombstone's version."""
    ghost = "0b0b0b0b-0000-4000-8000-000000000001"
    vector = (await embedder.embed_documents(["Gartenhaus"]))[0].tolist()
    await world.index.write([UpsertPoint(ghost, 4, vector, {
        "project_id": ghost, "version": 4, "state": "live", "text_hash": "x",
        "source": SOURCE})], [])
    since = datetime.now(UTC)
    report = await find_drift(world.store, world.index)
    assert report.orphaned == [(ghost, 4)]
    await repair(world.store, report)
    assert (await deleted_rows(world))[ghost][0] == 5
    seq = await last_seq(world)
    assert await world.store.reemit_deletes(since) == 1
    assert [(e["subject"], e["version"]) for e in await outbox_since(world, seq)] == [(ghost, 5)]

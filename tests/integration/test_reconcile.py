"""Reconcile against the real database and index: the read order that keeps a concurrent
create from looking orphaned, and projects the guard would otherwise hide forever."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from handwerk.consumer.applier import IndexApplier
from handwerk.contract.events import SOURCE, decode_event
from handwerk.contract.text import project_text, text_hash
from handwerk.embedding.embedder import Embedder
from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.protocol import PointState, Tombstone, UpsertPoint
from handwerk.metrics import Metrics
from handwerk.operations.legacy import ImportReport, import_legacy, legacy_project_id
from handwerk.operations.reconcile import find_drift, repair
from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import OutboxRow
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectNotFound, ProjectStore, project_data
from tests.legacy_db import make_legacy_db

pytestmark = pytest.mark.integration

FIELDS = ProjectFields(name="Wendeltreppe Buche", description="Wendeltreppe mit Spindel",
                       project_type="stairs", region="Sachsen", total_area_sqm=6.0,
                       wood_type="Buche", complexity=4, final_price=14_000.0)


@dataclass
class World:
    store: ProjectStore
    index: EdgeVectorIndex
    applier: IndexApplier


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
    """What relay + consumer do, in-process: apply every outbox event in order."""
    async with world.store.sessions() as session:
        rows = (await session.scalars(select(OutboxRow).order_by(OutboxRow.seq))).all()
    for row in rows:
        await world.applier.apply([decode_event(row.event.encode())])


async def point(world: World, pid: str, version: int, embedder: Embedder) -> UpsertPoint:
    row = await world.store.get(pid)
    text = project_text(project_data(row))
    vector = (await embedder.embed_documents([text]))[0].tolist()
    return UpsertPoint(pid, version, vector, {
        **project_data(row), "project_id": pid, "version": version, "state": "live",
        "text_hash": text_hash(text), "source": SOURCE})


async def test_a_project_created_and_indexed_during_the_check_is_not_orphaned(
        world: World, embedder: Embedder) -> None:
    """Regression (review #6.4): find_drift read the database before the index, so a project
    created and indexed between the two reads looked orphaned; its repair tombstoned it at
    version + 1 and it stayed hidden. Reading the index first makes it at worst 'missing'."""
    created: list[str] = []
    real_all_states = world.index.all_states

    async def all_states_while_a_create_lands() -> dict[str, PointState]:
        row = await world.store.create(FIELDS)  # the pipeline creates and indexes it now
        created.append(row.id)
        await world.index.write([await point(world, row.id, 1, embedder)], [])
        return await real_all_states()

    world.index.all_states = all_states_while_a_create_lands  # type: ignore[method-assign]
    report = await find_drift(world.store, world.index)
    world.index.all_states = real_all_states  # type: ignore[method-assign]
    assert report.orphaned == [] and report.hidden == []
    await repair(world.store, report)
    await relay_and_apply(world)
    state = (await world.index.get_states(created))[created[0]]
    assert not state.deleted and state.version == 1
    assert (await find_drift(world.store, world.index)).drift == 0


async def test_live_in_the_database_but_tombstoned_in_the_index_is_repaired(
        world: World) -> None:
    """A tombstone at the database's version (or above) hides a live project forever: the
    guard refuses every re-emit at that version. Reconcile supersedes the row above it."""
    row = await world.store.create(FIELDS)
    await relay_and_apply(world)
    await world.index.write([], [Tombstone(row.id, 2)])  # e.g. a racing orphan repair
    report = await find_drift(world.store, world.index)
    assert report.hidden == [(row.id, 2)] and report.drift == 1
    await repair(world.store, report)
    await relay_and_apply(world)
    state = (await world.index.get_states([row.id]))[row.id]
    assert not state.deleted and state.version == 3
    assert (await world.store.get(row.id)).version == 3
    assert (await find_drift(world.store, world.index)).drift == 0
    # and the project's next write is indexed, not refused
    await world.store.update(row.id, FIELDS.model_copy(update={"final_price": 15_000.0}))
    await relay_and_apply(world)
    assert (await world.index.get_states([row.id]))[row.id].version == 4


async def test_an_index_version_ahead_of_the_database_is_superseded(
        world: World, embedder: Embedder) -> None:
    """An upstream producer sharing the version counter wrote v7 while the database says v1:
    the database is the truth, so its state is re-asserted above the index's version (else
    every later write of the project would be refused)."""
    row = await world.store.create(FIELDS)
    upstream = await point(world, row.id, 7, embedder)
    await world.index.write([UpsertPoint(row.id, 7, upstream.vector,
                                         {**upstream.payload, "source": "urn:erp:upstream",
                                          "final_price": 1.0})], [])
    report = await find_drift(world.store, world.index)
    assert report.ahead == [(row.id, 7)]
    await repair(world.store, report)
    await relay_and_apply(world)
    state = (await world.index.get_states([row.id]))[row.id]
    assert state.version == 8
    async with world.store.sessions() as session:
        last = (await session.scalars(select(OutboxRow).order_by(OutboxRow.seq.desc()))).first()
    assert last is not None and json.loads(last.event)["data"]["final_price"] == 14_000.0
    assert (await find_drift(world.store, world.index)).drift == 0


async def test_a_legacy_reimport_never_resurrects_a_deleted_project(
        world: World, tmp_path: Path) -> None:
    """Regression (issue 18 §1): a re-import after a delete re-created the row at version 1;
    the index refused it (its tombstone is newer), reconcile called it hidden and superseded
    it: the deleted project came back. A re-import skips it and says so; only
    ``restore_deleted`` brings it back, above the tombstone, so the index takes it."""
    legacy = make_legacy_db(tmp_path / "legacy.sqlite", 3)

    async def run(**kwargs: bool) -> ImportReport:
        return await import_legacy(legacy, world.store, None, model_name="m", dimension=384,
                                   embed=None, **kwargs)

    assert (await run()).migrated == 3
    await relay_and_apply(world)
    deleted, kept = legacy_project_id(2), legacy_project_id(3)
    assert await world.store.delete(deleted) == 2
    await relay_and_apply(world)

    again = await run()
    await relay_and_apply(world)
    await repair(world.store, await find_drift(world.store, world.index))
    await relay_and_apply(world)
    with pytest.raises(ProjectNotFound):  # the user deleted it: it stays deleted
        await world.store.get(deleted)
    state = (await world.index.get_states([deleted]))[deleted]
    assert state.deleted and state.version == 2
    assert (await find_drift(world.store, world.index)).drift == 0
    assert (again.migrated, again.already_present, again.deleted_skipped) == (0, 2, 1)
    assert again.deleted_ids == [deleted] and again.restored == 0

    # deliberately: back above the tombstone, indexed, and no drift
    restored = await run(restore_deleted=True)
    assert (restored.migrated, restored.restored, restored.deleted_skipped) == (1, 1, 0)
    assert restored.restored_ids == [deleted] and restored.already_present == 2
    await relay_and_apply(world)
    assert (await world.store.get(deleted)).version == 3
    states = await world.index.get_states([deleted, kept])
    assert not states[deleted].deleted and states[deleted].version == 3
    assert not states[kept].deleted and states[kept].version == 1
    assert (await find_drift(world.store, world.index)).drift == 0
    # a restored project is an ordinary one again: a later re-import leaves it alone
    assert (await run(restore_deleted=True)).already_present == 3

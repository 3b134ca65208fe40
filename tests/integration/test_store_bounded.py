"""Bounded work in the store: reemit commits in chunks (API writes interleave), optimistic
retries back off, and versions can be read in keyset pages."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import attributes

from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import OutboxRow, Project
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ConcurrentModification, ProjectStore
from handwerk.process.backoff import Backoff

FIELDS = ProjectFields(name="Dachstuhl", description="Pfettendach, Fichte KVH",
                       project_type="roof", region="Allgäu", total_area_sqm=140.0,
                       wood_type="Fichte", complexity=3, final_price=38_000.0)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await run_migrations(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def insert_projects(store: ProjectStore, count: int) -> list[str]:
    """Rows only (no outbox), in one transaction: fast setup for large counts."""
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    async with store.sessions.begin() as session:
        session.add_all(Project(id=pid, version=3, created_at=now, updated_at=now,
                                **FIELDS.model_dump()) for pid in ids)
    return ids


async def test_reemit_commits_in_chunks(engine: AsyncEngine) -> None:
    """Before: every re-emitted event went into one transaction, holding off API writes for
    the whole repair. Now at most 200 events per transaction."""
    store = ProjectStore(session_factory(engine))
    live = await insert_projects(store, 250)
    tombstones = [(str(uuid.uuid4()), 7) for _ in range(200)]
    outbox_rows_at_commit: list[int] = []

    def on_commit(connection: Any) -> None:
        count = connection.exec_driver_sql("SELECT count(*) FROM outbox").scalar()
        outbox_rows_at_commit.append(int(count))

    event.listen(engine.sync_engine, "commit", on_commit)
    try:
        emitted = await store.reemit(live, tombstones)
    finally:
        event.remove(engine.sync_engine, "commit", on_commit)
    assert emitted == 450
    per_transaction = [b - a for a, b in zip([0, *outbox_rows_at_commit], outbox_rows_at_commit,
                                             strict=False)]
    assert sum(per_transaction) == 450
    assert max(per_transaction) <= 200, per_transaction
    async with store.sessions() as session:
        events = [json.loads(e) for e in (await session.scalars(select(OutboxRow.event))).all()]
    assert sorted(e["subject"] for e in events) == sorted(live + [pid for pid, _ in tombstones])
    assert {e["version"] for e in events if e["type"].endswith("upserted")} == {3}
    assert {e["version"] for e in events if e["type"].endswith("deleted")} == {7}


async def test_optimistic_retries_back_off(engine: AsyncEngine,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the five attempts of update/delete ran back to back. Now each retry waits a
    short jittered backoff (and the last failure raises ConcurrentModification)."""
    store = ProjectStore(session_factory(engine))
    project = await store.create(FIELDS)
    waits: list[float] = []

    async def record(self: Backoff, stop: object = None) -> bool:
        waits.append(self.next_delay())
        return False

    def stale_read(target: Project, _context: Any) -> None:
        # Every read sees a version another writer has already replaced: the conditional
        # UPDATE/DELETE then matches no row, as under a constant stream of concurrent writes.
        attributes.set_committed_value(target, "version", target.version + 1000)

    monkeypatch.setattr(Backoff, "wait", record)
    event.listen(Project, "load", stale_read)
    try:
        with pytest.raises(ConcurrentModification):
            await store.update(project.id, FIELDS.model_copy(update={"final_price": 1.0}))
        assert len(waits) == 4  # between five attempts, none after the last
        assert all(0 < w <= 0.15 for w in waits)  # short: a writer is waiting on this
        waits.clear()
        with pytest.raises(ConcurrentModification):
            await store.delete(project.id)
        assert len(waits) == 4
    finally:
        event.remove(Project, "load", stale_read)
    assert (await store.get(project.id)).version == 1  # nothing was written


async def test_iter_versions_reads_keyset_pages(engine: AsyncEngine) -> None:
    store = ProjectStore(session_factory(engine))
    assert [item async for item in store.iter_versions(chunk=3)] == []
    ids = await insert_projects(store, 7)
    await store.update(ids[0], FIELDS)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        paged = [item async for item in store.iter_versions(chunk=3)]
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert paged == sorted((await store.versions()).items())
    assert dict(paged)[ids[0]] == 4
    assert len(statements) == 3  # pages of 3, 3 and 1 rows
    assert all("LIMIT" in s.upper() for s in statements)
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Project)) == 7
    assert [item async for item in store.iter_versions(chunk=7)] == paged
    with pytest.raises(ValueError):
        [item async for item in store.iter_versions(chunk=0)]

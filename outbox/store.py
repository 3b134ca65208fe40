"""The unit of work: every project change and its CloudEvent commit in one transaction.

Nothing here touches Kafka or the index; the relay publishes what this writes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, text, tuple_, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handwerk.contract.events import DELETED, SOURCE, UPSERTED, build_event
from handwerk.outbox.models import DeletedProject, OutboxRow, Project
from handwerk.outbox.notify import notify_relay
from handwerk.outbox.project_fields import PROJECT_FIELDS, ProjectFields
from handwerk.process.backoff import Backoff
from handwerk.process.crash_points import NO_CRASH, STORE_AFTER_OUTBOX_WRITE, CrashPoints
from handwerk.process.storage import StorageFull, StorageWatch, storage_exhausted
from handwerk.timestamps import as_utc


class ProjectNotFound(LookupError):
    def __init__(self, project_id: str) -> None:
        super().__init__(f"project {project_id} not found")
        self.project_id = project_id


class ConcurrentModification(RuntimeError):
    """The project kept changing under this write; the caller may retry."""

    def __init__(self, project_id: str) -> None:
        super().__init__(f"project {project_id} was modified concurrently, retry")
        self.project_id = project_id


_ATTEMPTS = 5
_REEMIT_CHUNK = 200  # events per transaction: API writes interleave between chunks


def _retry_backoff() -> Backoff:
    """Between optimistic attempts: short and jittered, so colliding writers spread out."""
    return Backoff(initial=0.005, maximum=0.1)


class OutboxSignal:
    """Wakes an in-process relay right after a commit; other processes poll, or on
    PostgreSQL are woken by NOTIFY through the relay's listener."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass
        self._event.clear()


def project_data(row: Project) -> dict[str, Any]:
    """The fat event body: the full project state."""
    return {
        "id": row.id, **{name: getattr(row, name) for name in PROJECT_FIELDS},
        "created_at": as_utc(row.created_at).isoformat(),
        "updated_at": as_utc(row.updated_at).isoformat(),
    }


@dataclass(frozen=True, slots=True)
class NewProject:
    """A project to create under an id the caller chose (e.g. derived from a legacy id, so a
    re-run finds it again); ``created_at`` keeps the original creation time if known."""

    id: str
    fields: ProjectFields
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CreatedMany:
    """What ``create_many`` did: ``created`` holds every row written (restored ones included);
    ``deleted`` the ids it left alone because they were deleted, with the delete's version;
    ``restored`` the ids among ``created`` that were deleted and came back on request."""

    created: list[Project]
    deleted: list[tuple[str, int]]
    restored: list[str]


@dataclass(frozen=True, slots=True)
class ProjectPage:
    items: list[Project]
    total: int | None


class ProjectStore:
    """Writes raise ``StorageFull`` (nothing stored) when the database refuses them for lack
    of space, and report every refusal and every stored write to ``storage`` (the episode
    log and ``/readyz``)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 signal: OutboxSignal | None = None, *,
                 crash_points: CrashPoints = NO_CRASH, storage: StorageWatch | None = None) -> None:
        self.sessions = sessions
        self._signal = signal
        self._crash_points = crash_points
        self.storage = storage or StorageWatch()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """One write transaction (``sessions.begin()``). A refusal for lack of space (SQLite
        SQLITE_FULL, PostgreSQL 53100, ENOSPC: by code, see ``handwerk.process.storage``)
        becomes ``StorageFull``; the transaction was rolled back, so nothing of it is stored."""
        try:
            async with self.sessions.begin() as session:
                yield session
        except (DBAPIError, OSError) as e:
            reason = storage_exhausted(e)
            if reason is None:
                raise
            self.storage.refused(reason)
            raise StorageFull(reason) from e

    async def ping(self) -> None:
        async with self.sessions() as session:
            await session.execute(text("SELECT 1"))

    def _enqueue(self, session: AsyncSession, event: dict[str, Any]) -> None:
        session.add(OutboxRow(
            event_id=event["id"], project_id=event["subject"], version=event["version"],
            event=json.dumps(event, separators=(",", ":"), ensure_ascii=False),
            created_at=datetime.now(UTC)))

    async def _outbox_written(self, session: AsyncSession) -> None:
        """The change and its outbox row are in the transaction, not yet committed (the
        relay's NOTIFY, on PostgreSQL, is delivered only if it commits)."""
        await session.flush()
        await notify_relay(session)
        self._crash_points.reached(STORE_AFTER_OUTBOX_WRITE)

    def _committed(self) -> None:
        self.storage.wrote()
        if self._signal is not None:
            self._signal.notify()

    async def create(self, fields: ProjectFields) -> Project:
        now = datetime.now(UTC)
        row = Project(id=str(uuid.uuid4()), version=1, created_at=now, updated_at=now,
                      **fields.model_dump())
        async with self._transaction() as session:
            session.add(row)
            self._enqueue(session, build_event(event_type=UPSERTED, project_id=row.id,
                                               version=1, data=project_data(row), time=now))
            await self._outbox_written(session)
        self._committed()
        return row

    async def create_many(self, items: Sequence[NewProject], *, source: str = SOURCE,
                          restore_deleted: bool = False) -> CreatedMany:
        """Create the projects whose ids are not present yet, each with its outbox event, all
        in ONE transaction (callers pass a bounded chunk, so API writes wait only that long).
        Ids already present are skipped, so a re-run writes nothing twice. Ids that were
        deleted (``deleted_projects``) are skipped too: a delete is never undone by a re-run.
        With ``restore_deleted`` they are re-created deliberately, at the delete's version + 1
        (above the index's tombstone, so the index takes it), and forgotten as deleted. A
        concurrent writer that takes one of the ids first makes the transaction retry on
        fresh state."""
        if not items:
            return CreatedMany([], [], [])
        ids = [item.id for item in items]
        if len(set(ids)) != len(items):
            raise ValueError("create_many: duplicate project ids in one call")
        backoff = _retry_backoff()
        for attempt in range(_ATTEMPTS):
            if attempt:
                await backoff.wait()
            now = datetime.now(UTC)
            try:
                async with self._transaction() as session:
                    present = set((await session.scalars(
                        select(Project.id).where(Project.id.in_(ids)))).all())
                    deleted = {pid: version for pid, version in (await session.execute(
                        select(DeletedProject.project_id, DeletedProject.version)
                        .where(DeletedProject.project_id.in_(ids)))).all()
                        if pid not in present}
                    rows = [Project(id=item.id, version=deleted.get(item.id, 0) + 1,
                                    created_at=item.created_at or now, updated_at=now,
                                    **item.fields.model_dump())
                            for item in items if item.id not in present
                            and (restore_deleted or item.id not in deleted)]
                    restored = [row.id for row in rows if row.id in deleted]
                    if restored:
                        await session.execute(
                            delete(DeletedProject).where(DeletedProject.project_id.in_(restored))
                            .execution_options(synchronize_session=False))
                    for row in rows:
                        session.add(row)
                        self._enqueue(session, build_event(
                            event_type=UPSERTED, project_id=row.id, version=row.version,
                            data=project_data(row), time=now, source=source))
                    if rows:
                        await self._outbox_written(session)
            except IntegrityError:
                continue  # an id appeared meanwhile: redo, skipping it
            if rows:
                self._committed()
            skipped = [] if restore_deleted else [(item.id, deleted[item.id]) for item in items
                                                  if item.id in deleted]
            return CreatedMany(rows, skipped, restored)
        raise ConcurrentModification(items[0].id)

    async def update(self, project_id: str, fields: ProjectFields) -> Project:
        """Replace the fields; optimistic: the row changes only if its version is still the
        one read, else the unit of work is redone on fresh state (two writers must never both
        produce the same version with different content)."""
        backoff = _retry_backoff()
        for attempt in range(_ATTEMPTS):
            if attempt:
                await backoff.wait()
            now = datetime.now(UTC)
            async with self._transaction() as session:
                row = await session.get(Project, project_id, with_for_update=True)
                if row is None:
                    raise ProjectNotFound(project_id)
                read_version = row.version
                changed = await session.execute(
                    update(Project).where(Project.id == project_id, Project.version == read_version)
                    .values(**fields.model_dump(), version=read_version + 1, updated_at=now)
                    .execution_options(synchronize_session=False))
                if changed.rowcount != 1:  # type: ignore[attr-defined]
                    await session.rollback()
                    continue
                session.expunge(row)  # now a plain snapshot of what was written
                for name, value in fields.model_dump().items():
                    setattr(row, name, value)
                row.version, row.updated_at = read_version + 1, now
                self._enqueue(session, build_event(event_type=UPSERTED, project_id=row.id,
                                                   version=row.version, data=project_data(row),
                                                   time=now))
                await self._outbox_written(session)
            self._committed()
            return row
        raise ConcurrentModification(project_id)

    async def delete(self, project_id: str) -> int:
        """Delete the row; the event carries version + 1 so it outranks every upsert. The
        database remembers the delete at that version (``deleted_projects``, same
        transaction), after the outbox row is long pruned."""
        backoff = _retry_backoff()
        for attempt in range(_ATTEMPTS):
            if attempt:
                await backoff.wait()
            async with self._transaction() as session:
                row = await session.get(Project, project_id, with_for_update=True)
                if row is None:
                    raise ProjectNotFound(project_id)
                version = row.version + 1
                gone = await session.execute(
                    delete(Project).where(Project.id == project_id, Project.version == row.version)
                    .execution_options(synchronize_session=False))
                if gone.rowcount != 1:  # type: ignore[attr-defined]
                    await session.rollback()
                    continue
                session.expunge(row)
                await session.merge(DeletedProject(project_id=project_id, version=version,
                                                   deleted_at=datetime.now(UTC)))
                self._enqueue(session, build_event(event_type=DELETED, project_id=project_id,
                                                   version=version, data=None))
                await self._outbox_written(session)
            self._committed()
            return version
        raise ConcurrentModification(project_id)

    async def get(self, project_id: str) -> Project:
        async with self.sessions() as session:
            row = await session.get(Project, project_id)
        if row is None:
            raise ProjectNotFound(project_id)
        return row

    async def list(self, *, limit: int, offset: int = 0, project_type: str | None = None,
                   region: str | None = None,
                   after: tuple[datetime, str] | None = None) -> ProjectPage:
        """A page in (created_at, id) order. ``after``: keyset paging from that key (index
        ``ix_projects_created_at_id``; as fast at any depth, no total counted)."""
        conditions = []
        if project_type is not None:
            conditions.append(Project.project_type == project_type)
        if region is not None:
            conditions.append(Project.region == region)
        if after is not None:  # aware UTC: PostgreSQL compares instants (SQLite stores UTC text)
            conditions.append(tuple_(Project.created_at, Project.id) > tuple_(as_utc(after[0]),
                                                                               after[1]))
        query = select(Project).where(*conditions)
        async with self.sessions() as session:
            rows = (await session.scalars(
                query.order_by(Project.created_at, Project.id).limit(limit).offset(offset))).all()
            total = None if after is not None else int(await session.scalar(
                select(func.count()).select_from(Project).where(*conditions)) or 0)
        return ProjectPage(items=list(rows), total=total)

    async def deleted_versions(self, ids: Iterable[str], *, chunk: int = 1000) -> dict[str, int]:
        """The delete version of each of ``ids`` the database recorded as deleted."""
        wanted, found = list(ids), dict[str, int]()
        for start in range(0, len(wanted), chunk):
            async with self.sessions() as session:
                found.update((await session.execute(
                    select(DeletedProject.project_id, DeletedProject.version).where(
                        DeletedProject.project_id.in_(wanted[start:start + chunk])))).tuples().all())
        return found

    async def versions(self) -> dict[str, int]:
        async with self.sessions() as session:
            result = await session.execute(select(Project.id, Project.version))
            return {pid: version for pid, version in result.all()}

    async def iter_versions(self, chunk: int = 5000) -> AsyncIterator[tuple[str, int]]:
        """Every (id, version), in id order, read in keyset pages of ``chunk`` rows, each page
        in its own short read, so no query result (or read snapshot) spans the whole table."""
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        after: str | None = None
        while True:
            query = select(Project.id, Project.version).order_by(Project.id).limit(chunk)
            if after is not None:
                query = query.where(Project.id > after)
            async with self.sessions() as session:
                page = [(pid, version) for pid, version in (await session.execute(query)).all()]
            for item in page:
                yield item
            if len(page) < chunk:
                return
            after = page[-1][0]

    async def reemit(self, live_ids: Iterable[str], tombstones: Sequence[tuple[str, int]],
                     *, chunk: int = _REEMIT_CHUNK, why: str = "reconcile") -> int:
        """Repair drift through the pipeline: current state for live ids, deletes for orphans.

        Commits every ``chunk`` events, so API writes are never held off for the whole repair;
        each committed chunk is complete on its own (a crash midway loses nothing that the next
        reconcile would not find again). Never writes the index directly; the consumer's version
        guard makes duplicates free. The rows are locked (PostgreSQL) while their events are
        written, so no newer version of them can take an earlier outbox position.
        """
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        emitted = 0
        ids = list(live_ids)
        for start in range(0, len(ids), chunk):
            async with self._transaction() as session:
                rows = (await session.scalars(
                    select(Project).where(Project.id.in_(ids[start:start + chunk]))
                    .order_by(Project.id).with_for_update())).all()  # locks in one order
                for row in rows:
                    self._enqueue(session, build_event(
                        event_type=UPSERTED, project_id=row.id, version=row.version,
                        data=project_data(row), source=f"{SOURCE}:{why}"))
                emitted += len(rows)
                await notify_relay(session)
            self._committed()
        for start in range(0, len(tombstones), chunk):
            async with self._transaction() as session:
                page = tombstones[start:start + chunk]
                await self._remember_deletes(session, page)
                for project_id, version in page:
                    self._enqueue(session, build_event(event_type=DELETED, project_id=project_id,
                                                       version=version, data=None,
                                                       source=f"{SOURCE}:{why}"))
                await notify_relay(session)
            emitted += len(tombstones[start:start + chunk])
            self._committed()
        return emitted

    async def _remember_deletes(self, session: AsyncSession,
                                tombstones: Sequence[tuple[str, int]]) -> None:
        """A delete emitted for a project without a row (an orphan) is recorded like an API
        delete (``deleted_projects``, the higher version wins), so a backfill re-asserts it and
        a legacy re-import skips it. One that has a row again is not a delete of it."""
        newest: dict[str, int] = {}
        for project_id, version in tombstones:
            newest[project_id] = max(version, newest.get(project_id, version))
        live = set((await session.scalars(
            select(Project.id).where(Project.id.in_(newest)))).all())
        known = {row.project_id: row for row in (await session.scalars(
            select(DeletedProject).where(DeletedProject.project_id.in_(newest)))).all()}
        now = datetime.now(UTC)
        for project_id, version in newest.items():
            if project_id in live:
                continue
            if (row := known.get(project_id)) is None:
                session.add(DeletedProject(project_id=project_id, version=version, deleted_at=now))
            elif row.version < version:
                row.version, row.deleted_at = version, now

    async def reemit_deletes(self, since: datetime, *, chunk: int = _REEMIT_CHUNK,
                             why: str = "backfill") -> int:
        """A delete event for every delete recorded (``deleted_projects``) at or after
        ``since``, at the delete's version and with its time, so that the index keeps (or
        regains) the tombstone it had: a generation built from a database snapshot knows
        nothing of deletes before it otherwise. Keyset pages, one transaction each. A project
        restored meanwhile is written above the delete's version, so this never hides it."""
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        emitted, after = 0, ""
        while True:
            async with self._transaction() as session:
                page = (await session.execute(
                    select(DeletedProject.project_id, DeletedProject.version,
                           DeletedProject.deleted_at)
                    .where(DeletedProject.deleted_at >= since, DeletedProject.project_id > after)
                    .order_by(DeletedProject.project_id).limit(chunk))).all()
                for project_id, version, deleted_at in page:
                    self._enqueue(session, build_event(
                        event_type=DELETED, project_id=project_id, version=version, data=None,
                        time=as_utc(deleted_at), source=f"{SOURCE}:{why}"))
                if page:
                    await notify_relay(session)
            if page:
                self._committed()
            emitted += len(page)
            if len(page) < chunk:
                return emitted
            after = page[-1][0]

    async def supersede(self, floors: Sequence[tuple[str, int]], *, chunk: int = _REEMIT_CHUNK) -> int:
        """Re-assert the database's state above a version the index already holds.

        For a project the index hides (tombstoned at the row's version or newer) or holds at
        a higher version than the database (an upstream writer shares the counter): re-emitting
        at the row's version would be refused by the guard forever. The row's version becomes
        ``max(row.version, floor) + 1`` (version-conditional, like every write here) and its
        state is emitted at that version. A row that changed or vanished meanwhile is left to
        the next check.
        """
        emitted = 0
        for start in range(0, len(floors), chunk):
            async with self._transaction() as session:
                for project_id, floor in floors[start:start + chunk]:
                    row = await session.get(Project, project_id, with_for_update=True)
                    if row is None:
                        continue
                    read_version, new_version = row.version, max(row.version, floor) + 1
                    changed = await session.execute(
                        update(Project).where(Project.id == project_id, Project.version == read_version)
                        .values(version=new_version).execution_options(synchronize_session=False))
                    if changed.rowcount != 1:  # type: ignore[attr-defined]
                        continue
                    session.expunge(row)
                    row.version = new_version
                    self._enqueue(session, build_event(
                        event_type=UPSERTED, project_id=project_id, version=new_version,
                        data=project_data(row), source=f"{SOURCE}:reconcile"))
                    emitted += 1
                await notify_relay(session)
            self._committed()
        return emitted

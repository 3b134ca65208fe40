"""The unit of work on the real database: the row and its event commit together, and
concurrent writers never produce two different events with the same version."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import select, text

from handwerk.contract.text import project_text
from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import OutboxRow, Project
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ConcurrentModification, ProjectNotFound, ProjectStore

FIELDS = ProjectFields(name="Esstisch", description="Nussbaum mit Baumkante",
                       project_type="furniture", region="Bayern", total_area_sqm=2.5,
                       wood_type="Nussbaum", complexity=3, final_price=5_000.0)


async def test_concurrent_writers_never_share_a_version(database_url: str) -> None:
    engine = create_engine(database_url)
    await run_migrations(engine)
    store = ProjectStore(session_factory(engine))
    try:
        project = await store.create(FIELDS)

        async def write(n: int) -> str:
            try:
                if n % 7 == 6:
                    await store.delete(project.id)
                    return "deleted"
                await store.update(project.id, FIELDS.model_copy(update={"description": f"Text {n}"}))
                return "updated"
            except (ProjectNotFound, ConcurrentModification) as e:
                return type(e).__name__

        outcomes = await asyncio.gather(*(write(n) for n in range(12)))
        async with store.sessions() as session:
            events = [json.loads(e) for e in (await session.scalars(
                select(OutboxRow.event).where(OutboxRow.project_id == project.id)
                .order_by(OutboxRow.seq))).all()]
            row = await session.get(Project, project.id)
        versions = [e["version"] for e in events]
        assert versions == list(range(1, len(events) + 1)), (versions, outcomes)  # unique, gapless
        assert len(events) == 1 + outcomes.count("updated") + outcomes.count("deleted")
        last = events[-1]
        if row is None:
            assert last["type"] == "handwerk.project.deleted"
        else:
            assert (row.version, project_text(last["data"])) == (last["version"], project_text(
                {**FIELDS.model_dump(), "description": row.description}))
    finally:
        await engine.dispose()


async def test_keyset_pages_walk_every_project_once_in_order(database_url: str) -> None:
    """Cursor paging gives the same rows as offset paging, filters included, at any depth."""
    from handwerk.api.cursor import decode_cursor, encode_cursor

    engine = create_engine(database_url)
    await run_migrations(engine)
    store = ProjectStore(session_factory(engine))
    try:
        for n in range(120):
            await store.create(FIELDS.model_copy(update={
                "name": f"Tisch {n}", "region": "Bayern" if n % 3 else "Berlin"}))
        for region in (None, "Bayern"):
            by_offset = (await store.list(limit=500, region=region)).items
            walked, after = [], None
            while True:
                page = await store.list(limit=50, region=region, after=after)
                assert (page.total is None) == (after is not None)  # no count per keyset page
                walked += page.items
                if len(page.items) < 50:
                    break
                last = page.items[-1]
                after = decode_cursor(encode_cursor(last.created_at, last.id))
            assert [p.id for p in walked] == [p.id for p in by_offset]
            assert len(walked) == (120 if region is None else 80)
    finally:
        await engine.dispose()


async def test_versions_and_outbox_seq_beyond_32_bits(database_url: str) -> None:
    """The event contract allows versions up to 2**53 - 1: reconcile's supersede above an
    index floor of 5e9 and a tombstone at the maximum are stored (PostgreSQL's 32-bit
    ``integer`` refused both), and the outbox sequence runs past 2**31."""
    engine = create_engine(database_url)
    await run_migrations(engine)
    store = ProjectStore(session_factory(engine))
    top = 2**53 - 1
    try:
        project = await store.create(FIELDS)
        assert await store.supersede([(project.id, 5_000_000_000)]) == 1
        assert (await store.get(project.id)).version == 5_000_000_001
        updated = await store.update(project.id, FIELDS.model_copy(update={"name": "Tisch"}))
        assert updated.version == 5_000_000_002
        async with engine.begin() as connection:  # a busy outbox: past the 32-bit range
            if engine.dialect.name == "postgresql":
                await connection.execute(text("ALTER SEQUENCE outbox_seq_seq RESTART WITH 3000000000"))
            else:
                await connection.execute(text("UPDATE outbox SET seq = 2999999999 "
                                              "WHERE seq = (SELECT max(seq) FROM outbox)"))
        assert await store.reemit([], [("gone", top)]) == 1
        async with store.sessions() as session:
            rows = (await session.execute(select(OutboxRow.seq, OutboxRow.version, OutboxRow.event)
                                          .order_by(OutboxRow.seq))).all()
        assert [version for _, version, _ in rows] == [1, 5_000_000_001, 5_000_000_002, top]
        assert [json.loads(event)["version"] for _, _, event in rows] == [
            1, 5_000_000_001, 5_000_000_002, top]
        assert rows[-1].seq >= 3_000_000_000 > 2**31
    finally:
        await engine.dispose()

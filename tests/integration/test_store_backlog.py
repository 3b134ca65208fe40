"""The outbox backlog (rows the broker has not acknowledged) is a query on the outbox, owned
by the outbox package; the relay module keeps re-exporting it for older importers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from handwerk.outbox.backlog import oldest_unpublished_age_s, outbox_backlog
from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import OutboxRow
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectStore

FIELDS = ProjectFields(name="Carport", description="Lärche, Flachdach", project_type="carport",
                       region="Steiermark", total_area_sqm=18.0, wood_type="Lärche",
                       complexity=2, final_price=9_500.0)


async def test_backlog_counts_unpublished_rows_and_the_oldest_age(database_url: str) -> None:
    engine = create_engine(database_url)
    await run_migrations(engine)
    sessions = session_factory(engine)
    try:
        assert await outbox_backlog(sessions) == 0
        assert await oldest_unpublished_age_s(sessions) == 0.0
        store = ProjectStore(sessions)
        rows = [await store.create(FIELDS) for _ in range(3)]
        await store.delete(rows[0].id)
        assert await outbox_backlog(sessions) == 4

        later = datetime.now(UTC) + timedelta(seconds=90)
        age = await oldest_unpublished_age_s(sessions, now=later)
        assert 89 < age < 120
        async with sessions.begin() as session:  # the relay marks the two oldest
            await session.execute(update(OutboxRow).where(OutboxRow.seq <= 2)
                                  .values(published_at=datetime.now(UTC)))
        assert await outbox_backlog(sessions) == 2
        assert await oldest_unpublished_age_s(sessions, now=later) <= age
        async with sessions.begin() as session:
            await session.execute(update(OutboxRow).values(published_at=datetime.now(UTC)))
        assert await outbox_backlog(sessions) == 0
        assert await oldest_unpublished_age_s(sessions, now=later) == 0.0
    finally:
        await engine.dispose()


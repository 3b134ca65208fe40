"""Published outbox rows do not stay: the relay deletes them once older than
``HANDWERK_OUTBOX_RETENTION_S`` (its purge, once a minute); unpublished ones are never
deleted. Real relay process, broker and database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import OutboxRow
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectStore
from tests.conftest import Stack
from tests.helpers import async_wait_until
from tests.integration.server import HandwerkProcess, isolated_env

pytestmark = pytest.mark.integration

FIELDS = ProjectFields(name="Gartenhaus", description="Blockbohlen, Satteldach",
                       project_type="garden", region="Sachsen", total_area_sqm=9.0,
                       wood_type="Fichte", complexity=2, final_price=6_500.0)


async def test_published_rows_are_purged_after_retention(stack: Stack, tmp_path: Path,
                                                         database_url: str) -> None:
    env = isolated_env(stack.env, tmp_path / "data", HANDWERK_OUTBOX_RETENTION_S="0",
                       HANDWERK_DATABASE_URL=database_url)
    engine = create_engine(database_url)
    await run_migrations(engine)
    sessions = session_factory(engine)
    for _ in range(20):
        await ProjectStore(sessions).create(FIELDS)

    async def outbox_rows() -> int:
        async with sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(OutboxRow)) or 0)

    assert await outbox_rows() == 20
    relay = HandwerkProcess(["relay"], env, tmp_path / "relay.log").start()
    try:
        await async_wait_until(lambda: _none(outbox_rows), timeout=60,
                               message="published outbox rows purged")
    finally:
        assert relay.stop() == 0
        await engine.dispose()


async def _none(check: object) -> bool:
    return await check() == 0  # type: ignore[operator,no-any-return]

"""Deterministic crashes on the write side: a real process is SIGKILLed at a named step
(handwerk/process/crash_points.py) and what it leaves behind is checked.

- store.after_outbox_write_before_commit: the change and its outbox row are both gone (on
  PostgreSQL: the server rolls back the dead client's transaction).
- relay.after_publish_before_mark: every event still reaches the topic (at least once, in
  order per project) and every row ends up marked, by the next relay run.

The subprocesses build the ProjectStore / Relay themselves and pass ``crash_points`` in, so
these tests depend only on the outbox and producer packages, not on the runtime's wiring.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import OutboxRow, Project
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectStore
from handwerk.process.crash_points import RELAY_AFTER_PUBLISH, STORE_AFTER_OUTBOX_WRITE
from tests.conftest import Stack
from tests.helpers import async_wait_until
from tests.integration.server import isolated_env
from tests.integration.test_relay import assert_at_least_once_in_order, read_topic

FIELDS = ProjectFields(name="Wintergarten", description="Holz-Alu, Dreifachverglasung",
                       project_type="conservatory", region="Kärnten", total_area_sqm=24.0,
                       wood_type="Lärche", complexity=4, final_price=46_000.0)

STORE_SCRIPT = """
import asyncio, sys
from handwerk.process.crash_points import CrashPoints
from handwerk.outbox.database import create_engine, session_factory
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectStore

async def main(url, point, operation, project_id, fields):
    engine = create_engine(url)
    store = ProjectStore(session_factory(engine), crash_points=CrashPoints(point))
    fields = ProjectFields.model_validate_json(fields)
    if operation == "create":
        await store.create(fields)
    elif operation == "update":
        await store.update(project_id, fields)
    else:
        await store.delete(project_id)
    await engine.dispose()

asyncio.run(main(*sys.argv[1:]))
"""

RELAY_SCRIPT = """
import asyncio, logging, signal
from handwerk.process.crash_points import CrashPoints
from handwerk.metrics import Metrics
from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.producer.relay import Relay
from handwerk.settings import Settings

async def main():
    logging.basicConfig(level=logging.INFO)
    settings = Settings()
    engine = create_engine(settings.resolved_database_url)
    await run_migrations(engine)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    relay = Relay(settings, session_factory(engine), Metrics(),
                  crash_points=CrashPoints(settings.crash_point))
    try:
        await relay.run(stop)
    finally:
        await engine.dispose()

asyncio.run(main())
"""


async def outbox_counts(store: ProjectStore) -> tuple[int, int]:
    async with store.sessions() as session:
        total = await session.scalar(select(func.count()).select_from(OutboxRow))
        unpublished = await session.scalar(select(func.count()).select_from(OutboxRow)
                                           .where(OutboxRow.published_at.is_(None)))
    return int(total or 0), int(unpublished or 0)


@pytest.mark.parametrize("operation", ["create", "update", "delete"])
async def test_crash_after_outbox_write_commits_neither(database_url: str, operation: str) -> None:
    url = database_url
    engine = create_engine(url)
    await run_migrations(engine)
    store = ProjectStore(session_factory(engine))
    try:
        existing = await store.create(FIELDS)
        changed = FIELDS.model_copy(update={"description": "geändert", "final_price": 1.0})
        before_rows = await _projects(store)
        before_outbox = await outbox_counts(store)

        crashed = await asyncio.create_subprocess_exec(
            sys.executable, "-c", STORE_SCRIPT, url, STORE_AFTER_OUTBOX_WRITE, operation,
            existing.id, changed.model_dump_json(), stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(crashed.communicate(), 120)
        assert crashed.returncode == -signal.SIGKILL, stderr.decode()[-3000:]
        assert STORE_AFTER_OUTBOX_WRITE in stderr.decode()

        assert await _projects(store) == before_rows  # neither the change ...
        assert await outbox_counts(store) == before_outbox  # ... nor its event

        # The database is fine afterwards: the same write goes through, with its event.
        if operation == "create":
            await store.create(changed)
        elif operation == "update":
            assert (await store.update(existing.id, changed)).version == 2
        else:
            assert await store.delete(existing.id) == 2
        assert await outbox_counts(store) == (before_outbox[0] + 1, before_outbox[1] + 1)
    finally:
        await engine.dispose()


@pytest.mark.integration
async def test_crash_after_publish_before_mark_republishes(stack: Stack, tmp_path: Path,
                                                           database_url: str) -> None:
    data = tmp_path / "data"
    env = isolated_env(stack.env, data, HANDWERK_RELAY_BATCH_SIZE="5",
                       HANDWERK_RELAY_LEASE_TTL_S="2", HANDWERK_DATABASE_URL=database_url)
    engine = create_engine(database_url)
    await run_migrations(engine)
    store = ProjectStore(session_factory(engine))
    relay: asyncio.subprocess.Process | None = None
    try:
        projects = [await store.create(FIELDS) for _ in range(4)]
        for n in range(2):
            for project in projects[:3]:
                await store.update(project.id, FIELDS.model_copy(update={"final_price": float(n)}))
        async with store.sessions() as session:
            outbox = [json.loads(e) for e in (await session.scalars(
                select(OutboxRow.event).order_by(OutboxRow.seq))).all()]
        assert len(outbox) == 10

        crashing = await asyncio.create_subprocess_exec(
            sys.executable, "-c", RELAY_SCRIPT, stderr=asyncio.subprocess.PIPE,
            env={**env, "HANDWERK_CRASH_POINT": RELAY_AFTER_PUBLISH})
        _, stderr = await asyncio.wait_for(crashing.communicate(), 120)
        assert crashing.returncode == -signal.SIGKILL, stderr.decode()[-3000:]
        assert await outbox_counts(store) == (10, 10)  # published, acknowledged, never marked

        log = tmp_path / "relay.log"
        with log.open("wb") as output:
            relay = await asyncio.create_subprocess_exec(
                sys.executable, "-c", RELAY_SCRIPT, env=env, stdout=output, stderr=output)
            await async_wait_until(lambda: _all_marked(store), timeout=60,
                                   message="the next relay republished and marked every row")
            relay.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(relay.wait(), 30) == 0, log.read_text()[-3000:]

        events = read_topic(env["HANDWERK_KAFKA_BOOTSTRAP_SERVERS"], env["HANDWERK_KAFKA_TOPIC"],
                            len(outbox) + 5)
        assert_at_least_once_in_order(events, outbox)
        # The crashed batch (the first five rows) was acknowledged before the crash, so it is
        # in the topic twice: proof the crash sat between the ack and the mark.
        first_batch = {e["id"] for e in outbox[:5]}
        assert sum(1 for e in events if e["id"] in first_batch) >= 10
    finally:
        if relay is not None and relay.returncode is None:
            relay.kill()
            await relay.wait()
        await engine.dispose()


async def _projects(store: ProjectStore) -> list[tuple[Any, ...]]:
    async with store.sessions() as session:
        rows = (await session.execute(select(Project.id, Project.version, Project.description)
                                      .order_by(Project.id))).all()
    return [tuple(row) for row in rows]


async def _all_marked(store: ProjectStore) -> bool:
    return (await outbox_counts(store))[1] == 0

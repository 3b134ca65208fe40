"""What only PostgreSQL brings to the outbox, on a real server: the relay is woken by writers
in other processes (LISTEN/NOTIFY) long before its poll; a row that commits after a higher
``seq`` was already published is still published (no high-water mark); and several processes
may migrate the same database at once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from handwerk.contract.events import UPSERTED, build_event
from handwerk.metrics import Metrics
from handwerk.outbox.database import async_url, create_engine, run_migrations, session_factory
from handwerk.outbox.models import OutboxRow
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectStore
from handwerk.producer.relay import Relay
from handwerk.settings import Settings
from tests.conftest import Stack
from tests.helpers import async_wait_until

pytestmark = pytest.mark.integration

FIELDS = ProjectFields(name="Gartenhaus Douglasie", description="Satteldach, Nut und Feder",
                       project_type="garden", region="Kärnten", total_area_sqm=12.0,
                       wood_type="Douglasie", complexity=3, final_price=11_000.0)


@pytest.fixture
async def engines(pg_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two engines on one database: the relay's process and a writer's process."""
    relay_engine, writer_engine = create_engine(pg_url), create_engine(pg_url)
    await run_migrations(writer_engine)
    try:
        yield relay_engine, writer_engine
    finally:
        await relay_engine.dispose()
        await writer_engine.dispose()


def settings(tmp_path: Path, stack: Stack, poll_s: float) -> Settings:
    name = uuid.uuid4().hex[:8]
    return Settings(data_dir=tmp_path, kafka_bootstrap_servers=stack.bootstrap_servers,
                    kafka_topic=f"pg.{name}", kafka_dlq_topic=f"pg.{name}.dlq", kafka_partitions=2,
                    relay_poll_interval_s=poll_s, relay_lease_ttl_s=10.0)


async def unpublished(engine: AsyncEngine, *seqs: int) -> int:
    async with session_factory(engine)() as session:
        query = select(func.count()).select_from(OutboxRow).where(OutboxRow.published_at.is_(None))
        if seqs:
            query = query.where(OutboxRow.seq.in_(seqs))
        return int(await session.scalar(query) or 0)


async def test_a_write_in_another_process_wakes_the_relay_long_before_its_poll(
        tmp_path: Path, stack: Stack, engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    relay_engine, writer_engine = engines
    poll_s = 30.0
    relay = Relay(settings(tmp_path, stack, poll_s), session_factory(relay_engine), Metrics())
    assert relay.listener is not None
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        async def idle() -> bool:  # listening, holding the lease, and nothing left to publish
            return relay.listener is not None and relay.listener.listening and \
                relay.lease.token is not None
        await async_wait_until(idle, timeout=30, message="relay listening with the lease")
        # the writer's store has no in-process signal: only NOTIFY can reach the relay
        store = ProjectStore(session_factory(writer_engine))
        for n in range(3):
            written = asyncio.get_running_loop().time()
            await store.create(FIELDS.model_copy(update={"name": f"Gartenhaus {n}"}))
            await async_wait_until(lambda: _zero(writer_engine), timeout=poll_s / 6,
                                   message=f"write {n} published well within the {poll_s}s poll")
            assert asyncio.get_running_loop().time() - written < poll_s / 6
        assert relay.listener.notifications >= 3
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)


async def test_the_listener_reconnects_after_its_connection_is_killed(
        tmp_path: Path, stack: Stack, engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    """A dropped LISTEN connection (server restart, network) must not leave the relay deaf
    until its next poll forever: the listener reconnects and NOTIFY wakes the relay again."""
    relay_engine, writer_engine = engines
    poll_s = 30.0
    relay = Relay(settings(tmp_path, stack, poll_s), session_factory(relay_engine), Metrics())
    listener = relay.listener
    assert listener is not None
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        async def listening_backends() -> list[int]:
            async with session_factory(writer_engine)() as session:
                return list((await session.scalars(text(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"))).all())

        async def ready() -> bool:
            return listener.listening and relay.lease.token is not None
        await async_wait_until(ready, timeout=30, message="relay listening")
        first = await async_wait_until(listening_backends, timeout=30, message="LISTEN backend")
        async with session_factory(writer_engine)() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first[0]})

        async def reconnected() -> list[int]:
            pids = await listening_backends()
            return pids if listener.listening and pids and pids != first else []
        await async_wait_until(reconnected, timeout=30, message="listener reconnected")
        written = asyncio.get_running_loop().time()
        await ProjectStore(session_factory(writer_engine)).create(FIELDS)
        await async_wait_until(lambda: _zero(writer_engine), timeout=poll_s / 6,
                               message="published through the new LISTEN connection")
        assert asyncio.get_running_loop().time() - written < poll_s / 6
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)


async def test_a_row_committed_after_a_higher_seq_was_published_is_still_published(
        tmp_path: Path, stack: Stack, engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    """PostgreSQL draws ``seq`` at insert, not at commit: a relay that advanced a high-water
    mark past a published higher ``seq`` would skip the slow transaction's row forever."""
    relay_engine, writer_engine = engines
    relay = Relay(settings(tmp_path, stack, 0.05), session_factory(relay_engine), Metrics())
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    slow = session_factory(writer_engine)()
    try:
        await slow.begin()
        project_id, now = str(uuid.uuid4()), datetime.now(UTC)
        event = build_event(event_type=UPSERTED, project_id=project_id, version=1,
                            data={"id": project_id, **FIELDS.model_dump()}, time=now)
        row = OutboxRow(event_id=event["id"], project_id=project_id, version=1,
                        event=json.dumps(event), created_at=now)
        slow.add(row)
        await slow.flush()  # seq drawn, not committed
        slow_seq = row.seq

        fast = await ProjectStore(session_factory(writer_engine)).create(FIELDS)
        async with session_factory(writer_engine)() as session:
            fast_seq = await session.scalar(
                select(OutboxRow.seq).where(OutboxRow.project_id == fast.id))
        assert fast_seq is not None and fast_seq > slow_seq
        await async_wait_until(lambda: _zero(writer_engine, fast_seq), timeout=30,
                               message="the later row published first")
        await slow.commit()
        await async_wait_until(lambda: _zero(writer_engine, slow_seq), timeout=30,
                               message="the earlier seq, committed later, published too")
    finally:
        await slow.close()
        stop.set()
        await asyncio.wait_for(running, 30)


async def test_several_processes_migrate_one_database_at_once(pg_url: str) -> None:
    engines = [create_engine(pg_url) for _ in range(4)]
    try:
        await asyncio.gather(*(run_migrations(engine) for engine in engines))
        store = ProjectStore(session_factory(engines[0]))
        assert (await store.create(FIELDS)).version == 1
    finally:
        for engine in engines:
            await engine.dispose()


def test_a_plain_postgresql_url_means_asyncpg() -> None:
    assert async_url("postgresql://u@db:5432/h") == "postgresql+asyncpg://u@db:5432/h"
    assert async_url("postgres://u@db/h") == "postgresql+asyncpg://u@db/h"
    assert async_url("postgresql+asyncpg://u@db/h") == "postgresql+asyncpg://u@db/h"
    with pytest.raises(ValueError, match="asyncpg"):
        create_engine("postgresql+psycopg2://u@db/h")


async def _zero(engine: AsyncEngine, *seqs: int) -> bool:
    return await unpublished(engine, *seqs) == 0


class _StopFails:
    """A producer whose ``stop`` raises (a broker error on the way out)."""

    def __init__(self, **_options: object) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        raise RuntimeError("producer stop failed")


async def test_relay_shutdown_awaits_its_listener_and_releases_the_lease_even_if_stop_fails(
        tmp_path: Path, stack: Stack, engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    relay_engine, _ = engines
    relay = Relay(settings(tmp_path, stack, 0.05), session_factory(relay_engine), Metrics(),
                  producer_factory=_StopFails)  # type: ignore[arg-type]
    listener = relay.listener
    assert listener is not None
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))

    async def ready() -> bool:
        return listener.listening and relay.lease.token is not None

    await async_wait_until(ready, timeout=30, message="the relay listens and holds the lease")
    stop.set()
    with pytest.raises(RuntimeError, match="producer stop failed"):
        await running
    pending = [t for t in asyncio.all_tasks()
               if t.get_name() == "relay-outbox-listener" and not t.done()]
    assert not pending, "the listener task was left running"
    assert not listener.listening
    async with session_factory(relay_engine)() as session:
        assert await session.scalar(text("SELECT expires_at FROM relay_lease")) == 0.0

"""The relay lease is fenced: a relay renews it while a batch is in flight, and it marks rows
published only while it still holds the lease under the token it published with.

These run two relays in one process against a real SQLite file and the real broker; each
relay's producer is the real AIOKafkaProducer behind a gate that holds its acks until the test
releases them, so "the lease expired mid-publish" happens exactly when the test says.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handwerk.metrics import Metrics
from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import OutboxRow, RelayLease
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectStore
from handwerk.producer.relay import Relay
from handwerk.settings import Settings
from tests.conftest import Stack
from tests.helpers import async_wait_until

FIELDS = ProjectFields(name="Treppe Eiche", description="gewendelt, offene Stufen",
                       project_type="stairs", region="Sachsen", total_area_sqm=6.0,
                       wood_type="Eiche", complexity=4, final_price=18_000.0)


class GatedProducer:
    """The real AIOKafkaProducer (records go to the broker) whose acks reach the relay only
    once ``acks`` is set; records what was sent."""

    def __init__(self, **options: Any) -> None:
        self._real = AIOKafkaProducer(**options)
        self.sent: list[dict[str, Any]] = []
        self.acks = asyncio.Event()

    async def start(self) -> None:
        await self._real.start()

    async def stop(self) -> None:
        await self._real.stop()

    async def send(self, topic: str, *, value: bytes, key: bytes,
                   headers: list[tuple[str, bytes]]) -> asyncio.Future[Any]:
        self.sent.append(json.loads(value))
        delivered = await self._real.send(topic, value=value, key=key, headers=headers)

        async def gated_ack() -> Any:
            await self.acks.wait()
            return await delivered
        return asyncio.ensure_future(gated_ack())


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    await run_migrations(engine)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def producers() -> list[GatedProducer]:
    """The gated producers the relays made, in the order they started."""
    return []


def gated(made: list[GatedProducer]) -> Any:
    def make(**options: Any) -> GatedProducer:
        made.append(GatedProducer(**options))
        return made[-1]
    return make


def relay_settings(tmp_path: Path, ttl: float, stack: Stack) -> Settings:
    name = uuid.uuid4().hex[:8]
    return Settings(data_dir=tmp_path, kafka_bootstrap_servers=stack.bootstrap_servers,
                    kafka_topic=f"lease.{name}", kafka_dlq_topic=f"lease.{name}.dlq",
                    kafka_partitions=2, relay_lease_ttl_s=ttl, relay_poll_interval_s=0.05)


async def unpublished(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxRow)
                                        .where(OutboxRow.published_at.is_(None))) or 0)


async def lease_row(sessions: async_sessionmaker[AsyncSession]) -> RelayLease | None:
    async with sessions() as session:
        return await session.get(RelayLease, "relay")


async def write_rows(sessions: async_sessionmaker[AsyncSession]) -> int:
    store = ProjectStore(sessions)
    rows = [await store.create(FIELDS) for _ in range(3)]
    await store.update(rows[0].id, FIELDS.model_copy(update={"final_price": 1.0}))
    return 4


def in_order_per_project(events: list[dict[str, Any]]) -> bool:
    versions: dict[str, list[int]] = {}
    for event in events:
        versions.setdefault(event["subject"], []).append(event["version"])
    return all(v == sorted(v) for v in versions.values())


async def test_relay_renews_the_lease_while_a_batch_is_in_flight(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        producers: list[GatedProducer], stack: Stack) -> None:
    """A publish slower than the TTL must not let the standby take over and publish the same
    rows (before: the lease was renewed once per loop, so it lapsed during a slow publish)."""
    ttl = 3.0  # renewed every 1 s: a loaded machine has 2 s of slack
    rows = await write_rows(sessions)
    settings = relay_settings(tmp_path, ttl, stack)
    first, standby = (Relay(settings, sessions, Metrics(), producer_factory=gated(producers))
                      for _ in range(2))
    stop_first, stop_standby = asyncio.Event(), asyncio.Event()
    first_task = asyncio.create_task(first.run(stop_first))
    await async_wait_until(lambda: _sent(producers, 0, rows), message="first relay sent its batch")
    holder = (await lease_row(sessions)).holder  # type: ignore[union-attr]
    standby_task = asyncio.create_task(standby.run(stop_standby))
    try:
        await async_wait_until(lambda: _started(producers, 2), message="standby started")
        # Proving a negative: the acks stay out for twice the TTL (the standby polls every
        # TTL/3), and the standby must neither take the lease nor publish anything.
        await asyncio.sleep(2 * ttl)
        assert producers[1].sent == []
        assert (await lease_row(sessions)).holder == holder  # type: ignore[union-attr]

        producers[0].acks.set()
        producers[1].acks.set()
        await async_wait_until(lambda: _none_left(sessions), message="first relay marked")
        assert producers[1].sent == []
        assert in_order_per_project(producers[0].sent)
    finally:
        stop_first.set()
        stop_standby.set()
        producers[0].acks.set()
        await asyncio.wait_for(asyncio.gather(first_task, standby_task), 30)


async def test_relay_that_lost_the_lease_mid_publish_does_not_mark(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        producers: list[GatedProducer], stack: Stack) -> None:
    """The first relay stalls past its TTL mid-publish (emulated: its lease is expired while
    its acks are out) and the second takes over. The first's acks then arrive: it must not
    mark, the second republishes and marks (at-least-once, in order per project)."""
    ttl = 30.0  # the first relay's own renewal (every TTL/3) stays out of the way
    rows = await write_rows(sessions)
    settings = relay_settings(tmp_path, ttl, stack)
    first, second = (Relay(settings, sessions, Metrics(), producer_factory=gated(producers))
                     for _ in range(2))
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    first_task = asyncio.create_task(first.run(stop_first))
    second_task: asyncio.Task[None] | None = None
    try:
        await async_wait_until(lambda: _sent(producers, 0, rows), message="first relay sent")
        first_token = first.lease.token
        async with sessions.begin() as session:  # the first relay stalled past its TTL
            await session.execute(update(RelayLease).values(expires_at=0.0))
        assert await second.lease.acquire()
        assert first_token is not None and second.lease.token == first_token + 1
        second_task = asyncio.create_task(second.run(stop_second))
        await async_wait_until(lambda: _sent(producers, 1, rows), message="second relay sent")

        producers[0].acks.set()  # the stalled relay wakes up: its acks are all in
        stop_first.set()
        await asyncio.wait_for(first_task, 30)
        assert await unpublished(sessions) == rows  # it did not mark what it no longer owns

        producers[1].acks.set()
        await async_wait_until(lambda: _none_left(sessions), message="second relay marked")
        lease = await lease_row(sessions)
        assert lease is not None and lease.holder == second.lease.holder
        for producer in producers:
            assert in_order_per_project(producer.sent)
    finally:
        stop_first.set()
        stop_second.set()
        for producer in producers:
            producer.acks.set()
        await asyncio.wait_for(asyncio.gather(
            first_task, *([second_task] if second_task else [])), 30)


async def test_a_stale_holder_cannot_mark(tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
                                          stack: Stack) -> None:
    rows = await write_rows(sessions)
    async with sessions() as session:
        seqs = list((await session.scalars(select(OutboxRow.seq).order_by(OutboxRow.seq))).all())
    settings = relay_settings(tmp_path, 30.0, stack)
    a, b = Relay(settings, sessions, Metrics()), Relay(settings, sessions, Metrics())

    assert await a.lease.acquire()
    first = a.lease.token
    assert first is not None
    assert await a.lease.acquire() and a.lease.token == first  # renewing keeps the token
    assert not await b.lease.acquire()  # unexpired: the standby waits

    async with sessions.begin() as session:  # a stalls past its TTL; b takes over
        await session.execute(update(RelayLease).values(expires_at=0.0))
    assert await b.lease.acquire()
    second = b.lease.token
    assert second is not None and second > first

    assert not await a.mark_published(seqs, first)
    assert await unpublished(sessions) == rows
    assert not await a.lease.renew(first) and a.lease.token is None
    assert await b.mark_published(seqs[:1], second)
    assert await unpublished(sessions) == rows - 1

    await b.lease.release()  # a gets it back: same holder name, new token
    assert await a.lease.acquire()
    third = a.lease.token
    assert third is not None and third > second
    assert not await a.mark_published(seqs, first)  # a batch from its previous tenure
    assert await unpublished(sessions) == rows - 1
    assert await a.mark_published(seqs, third)
    assert await unpublished(sessions) == 0


async def test_the_relay_skips_acquire_only_while_its_lease_was_recently_confirmed(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession], stack: Stack) -> None:
    """The relay loop skips the lease's write transaction while the lease was confirmed within
    a third of its TTL; a failed mark (taken over) must end that at once, or the stale holder
    would keep publishing batches it can never mark."""
    await write_rows(sessions)
    async with sessions() as session:
        seqs = list((await session.scalars(select(OutboxRow.seq).order_by(OutboxRow.seq))).all())
    settings = relay_settings(tmp_path, 30.0, stack)
    a, b = Relay(settings, sessions, Metrics()), Relay(settings, sessions, Metrics())
    assert not a.lease.recently_confirmed()
    assert await a.lease.acquire()
    first = a.lease.token
    assert first is not None and a.lease.recently_confirmed()
    assert await a.mark_published(seqs[:1], first) and a.lease.recently_confirmed()

    async with sessions.begin() as session:  # a stalls past its TTL; b takes over
        await session.execute(update(RelayLease).values(expires_at=0.0))
    assert await b.lease.acquire()
    assert a.lease.recently_confirmed()  # a cannot know yet
    assert not await a.mark_published(seqs[1:], first)
    assert not a.lease.recently_confirmed() and a.lease.token is None
    assert not await a.lease.acquire()  # so its next loop asks, and stands by


async def test_recently_confirmed_lapses_after_a_third_of_the_ttl(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession], stack: Stack) -> None:
    relay = Relay(relay_settings(tmp_path, 0.3, stack), sessions, Metrics())
    assert await relay.lease.acquire() and relay.lease.recently_confirmed()
    await async_wait_until(lambda: _lapsed(relay), timeout=5)
    assert relay.lease.token is not None  # still held: acquire renews it next loop


async def _lapsed(relay: Relay) -> bool:
    return not relay.lease.recently_confirmed()


async def _sent(producers: list[GatedProducer], index: int, count: int) -> bool:
    return len(producers) > index and len(producers[index].sent) >= count


async def _started(producers: list[GatedProducer], count: int) -> bool:
    return len(producers) >= count


async def _none_left(sessions: async_sessionmaker[AsyncSession]) -> bool:
    return await unpublished(sessions) == 0


async def test_a_relay_whose_clock_runs_ahead_cannot_take_a_live_lease(
        sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    """Expiry is the database's clock: a relay host 60 s ahead (more than the TTL) sees the
    holder's lease as live, and its own lease expires by the database's clock too."""
    import time

    from handwerk.producer.lease import RelayLeaseKeeper

    first = RelayLeaseKeeper(sessions, "relay-a", ttl=10.0)
    second = RelayLeaseKeeper(sessions, "relay-b", ttl=10.0)
    before = time.time()
    assert await first.acquire()
    lease = await lease_row(sessions)
    assert lease is not None and before + 9 < lease.expires_at < time.time() + 11
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 60.0)
    assert not await second.acquire()
    assert second.token is None
    assert await first.renew(1) and await first.acquire() and first.token == 1
    monkeypatch.setattr(time, "time", lambda: real_time() - 60.0)  # behind: no early expiry
    assert await first.renew(1)
    assert not await second.acquire()
    async with sessions.begin() as session:  # the TTL passes on the database's clock
        await session.execute(update(RelayLease).values(expires_at=RelayLease.expires_at - 11.0))
    assert await second.acquire() and second.token == 2
    assert not await first.renew(1)

"""Outbox relay: claim, publish with acks=all, await every ack, then mark published.

A crash between publish and mark re-publishes the rows: at-least-once, and the consumer's
version guard makes the duplicates harmless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handwerk.events import CONTENT_TYPE
from handwerk.kafka import ensure_topics, producer_options
from handwerk.metrics import Metrics
from handwerk.outbox.models import OutboxRow
from handwerk.outbox.store import OutboxSignal
from handwerk.producer.lease import RelayLeaseKeeper
from handwerk.settings import Settings
from handwerk.stopping import stopped_within

log = logging.getLogger(__name__)


class Relay:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                 metrics: Metrics, signal: OutboxSignal | None = None) -> None:
        self._settings = settings
        self._sessions = sessions
        self._metrics = metrics
        self._signal = signal or OutboxSignal()
        self._lease = RelayLeaseKeeper(sessions, f"{os.getpid()}-{uuid.uuid4().hex[:8]}",
                                       settings.relay_lease_ttl_s)
        self.published_total = 0
        self.connected = False

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        producer: AIOKafkaProducer | None = None
        next_topic_check = next_purge = 0.0
        try:
            while not stop.is_set():
                try:
                    if producer is None:
                        producer = AIOKafkaProducer(**producer_options(self._settings))
                        await producer.start()
                        self.connected = True
                    if not await self._lease.acquire():
                        await stopped_within(stop, self._settings.relay_lease_ttl_s / 3)
                        continue
                    now = time.monotonic()
                    if now >= next_topic_check:
                        await ensure_topics(self._settings)
                        next_topic_check = now + self._settings.topic_check_interval_s
                    if now >= next_purge:
                        await self._purge()
                        next_purge = now + 60
                    sent = await self.publish_batch(producer)
                    backoff = 0.2
                    if sent < self._settings.relay_batch_size:
                        await self._wait_for_work(stop)
                except (KafkaError, OSError) as e:
                    self._metrics.relay_errors.inc()
                    log.warning("relay publish failed, retrying in %.1fs: %s", backoff, e)
                    next_topic_check = 0.0
                    if producer is not None:
                        self.connected = False
                        await producer.stop()
                        producer = None
                    await stopped_within(stop, backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, 10.0)
        finally:
            if producer is not None:
                await producer.stop()
            await self._lease.release()

    async def _wait_for_work(self, stop: asyncio.Event) -> None:
        waiter = asyncio.create_task(self._signal.wait(self._settings.relay_poll_interval_s))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiter, stopper):
            task.cancel()

    async def publish_batch(self, producer: AIOKafkaProducer) -> int:
        """Publish the oldest unpublished rows; mark them only once all are acknowledged."""
        async with self._sessions() as session:
            rows = (await session.execute(
                select(OutboxRow.seq, OutboxRow.project_id, OutboxRow.event)
                .where(OutboxRow.published_at.is_(None))
                .order_by(OutboxRow.seq).limit(self._settings.relay_batch_size))).all()
            backlog = await session.scalar(
                select(func.count()).select_from(OutboxRow).where(OutboxRow.published_at.is_(None)))
        self._metrics.outbox_backlog.set(backlog or 0)
        if not rows:
            return 0
        started = time.perf_counter()
        headers = [("content-type", CONTENT_TYPE.encode())]
        acks = [
            await producer.send(self._settings.kafka_topic, value=event.encode(),
                                key=project_id.encode(), headers=headers)
            for _seq, project_id, event in rows
        ]
        await asyncio.gather(*acks)
        async with self._sessions.begin() as session:
            await session.execute(
                update(OutboxRow).where(OutboxRow.seq.in_([r.seq for r in rows]))
                .values(published_at=datetime.now(UTC)))
        self._metrics.relay_publish_seconds.observe(time.perf_counter() - started)
        self._metrics.relay_published.inc(len(rows))
        self._metrics.outbox_backlog.set(max(0, (backlog or 0) - len(rows)))
        self.published_total += len(rows)
        return len(rows)

    async def _purge(self) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=self._settings.outbox_retention_s)
        async with self._sessions.begin() as session:
            await session.execute(delete(OutboxRow).where(OutboxRow.published_at < cutoff))


async def outbox_backlog(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(
            select(func.count()).select_from(OutboxRow).where(OutboxRow.published_at.is_(None)))
            or 0)

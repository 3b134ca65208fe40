"""Outbox relay: hold the lease, claim, publish with acks=all, await every ack, then mark
published under the same lease.

A crash between publish and mark re-publishes the rows: at-least-once, and the consumer's
version guard makes the duplicates harmless. The lease is renewed while a batch is in flight
and the mark is fenced by the lease token (see ``lease.py``): a relay that lost the lease
never marks, so rows are only ever marked by the relay that holds the lease; the new holder
republishes whatever the old one had in flight.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handwerk.contract.events import CONTENT_TYPE
from handwerk.kafka import ensure_topics, producer_options
from handwerk.metrics import Metrics
from handwerk.outbox.backlog import count_unpublished
from handwerk.outbox.database import engine_of, is_postgres
from handwerk.outbox.models import OutboxRow
from handwerk.outbox.store import OutboxSignal
from handwerk.process.backoff import Backoff
from handwerk.process.crash_points import NO_CRASH, RELAY_AFTER_PUBLISH, CrashPoints
from handwerk.process.storage import StorageWatch, storage_exhausted
from handwerk.process.waiting import stopped_within
from handwerk.producer.lease import LeaseLost, RelayLeaseKeeper
from handwerk.producer.listener import OutboxListener
from handwerk.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["LeaseLost", "Relay"]


class Relay:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                 metrics: Metrics, signal: OutboxSignal | None = None, *,
                 crash_points: CrashPoints = NO_CRASH, storage: StorageWatch | None = None,
                 producer_factory: Callable[..., AIOKafkaProducer] = AIOKafkaProducer,
                 on_topic_created: Callable[[str], None] | None = None) -> None:
        """``on_topic_created``: told when this relay had to create the event topic (a broker
        that lost its log has none: reconcile then repairs what the log held)."""
        self._settings = settings
        self._on_topic_created = on_topic_created
        self._sessions = sessions
        self._metrics = metrics
        self._signal = signal or OutboxSignal()
        self._crash_points = crash_points
        self._producer_factory = producer_factory  # tests wrap the real producer to gate acks
        self._storage = storage or StorageWatch()
        self.lease = RelayLeaseKeeper(sessions, f"{os.getpid()}-{uuid.uuid4().hex[:8]}",
                                      settings.relay.lease_ttl_s)
        self.connected = False  # read by readiness
        engine = engine_of(sessions)
        # PostgreSQL: woken by writers in any process (LISTEN/NOTIFY); the poll stays
        self.listener = OutboxListener(engine, self._signal) \
            if engine is not None and is_postgres(engine) else None

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(initial=0.2, maximum=10.0)
        producer: AIOKafkaProducer | None = None
        next_topic_check = next_purge = 0.0
        stop_listening = asyncio.Event()
        listening = None if self.listener is None else asyncio.create_task(
            self.listener.run(stop_listening), name="relay-outbox-listener")
        try:
            while not stop.is_set():
                try:
                    if producer is None:
                        producer = self._producer_factory(**producer_options(self._settings))
                        await producer.start()
                        self.connected = True
                    now = time.monotonic()
                    if now >= next_topic_check:  # before the lease: it can be slow
                        created = await ensure_topics(self._settings.kafka)
                        if self._settings.kafka.topic in created and self._on_topic_created:
                            self._on_topic_created(f"the relay re-created topic "
                                                   f"{self._settings.kafka.topic!r}")
                        next_topic_check = now + self._settings.relay.topic_check_interval_s
                    if not self.lease.recently_confirmed() and not await self.lease.acquire():
                        await stopped_within(stop, self.lease.ttl / 3)
                        continue
                    sent = await self.publish_batch(producer)
                    backoff.reset()
                    if now >= next_purge:
                        await self._purge()
                        next_purge = now + 60
                    if sent < self._settings.relay.batch_size:
                        await self._wait_for_work(stop)
                except LeaseLost as e:
                    self._metrics.relay_errors.inc()
                    log.warning("%s; not marking the batch in flight, the holder republishes it", e)
                except (KafkaError, OSError) as e:
                    self._metrics.relay_errors.inc()
                    log.warning("relay publish failed (attempt %d), retrying: %s",
                                backoff.attempts + 1, e)
                    next_topic_check = 0.0
                    if producer is not None:
                        self.connected = False
                        await producer.stop()
                        producer = None
                    await backoff.wait(stop)
                except SQLAlchemyError as e:
                    # A full disk refuses the lease or the mark: wait it out (what was sent but
                    # not marked is sent again, harmlessly). The watch logs the episode once.
                    # Any other database error still crashes the role.
                    reason = storage_exhausted(e)
                    if reason is None:
                        raise
                    self._metrics.relay_errors.inc()
                    self._storage.refused(reason, writer="relay")
                    await backoff.wait(stop)
        finally:  # in reverse order; each step runs even if the one before it raised
            stop_listening.set()
            try:
                try:
                    if producer is not None:
                        await producer.stop()
                finally:
                    await self.lease.release()
            finally:
                if listening is not None:
                    await listening

    async def _wait_for_work(self, stop: asyncio.Event) -> None:
        waiter = asyncio.create_task(self._signal.wait(self._settings.relay.poll_interval_s))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiter, stopper):
            task.cancel()

    async def publish_batch(self, producer: AIOKafkaProducer) -> int:
        """Publish the oldest unpublished rows; mark them only once all are acknowledged and
        only while this relay still holds the lease it published under.

        Raises ``LeaseLost`` (and marks nothing) if the lease was taken over meanwhile.

        No high-water mark: every call reads the unpublished rows afresh. On PostgreSQL a row's
        ``seq`` is drawn at insert, not at commit, so a row may commit after a higher ``seq``
        was published; it is found on the next call all the same. Per project, rows commit in
        ``seq`` order: each write inserts its outbox row while holding that project's row lock
        (``store.py``), so the next write of the project draws its ``seq`` only afterwards."""
        token = self.lease.token
        if token is None:
            raise LeaseLost(self.lease.name, self.lease.holder, token)
        async with self._sessions() as session:
            rows = (await session.execute(
                select(OutboxRow.seq, OutboxRow.project_id, OutboxRow.event)
                .where(OutboxRow.published_at.is_(None))
                .order_by(OutboxRow.seq).limit(self._settings.relay.batch_size))).all()
            # A page that is not full is the whole backlog: count only behind a full one.
            backlog = (await count_unpublished(session)
                       if len(rows) == self._settings.relay.batch_size else len(rows))
        self._metrics.outbox_backlog.set(backlog)
        if not rows:
            return 0
        started = time.perf_counter()
        lost, sent = asyncio.Event(), asyncio.Event()
        renewer = asyncio.create_task(self._keep_lease(token, lost, sent),
                                      name="relay-lease-renewal")
        try:
            await self._send_all(producer, rows, lost)
        finally:
            sent.set()  # never cancel the renewer inside a database transaction
            await renewer
        if lost.is_set():
            raise LeaseLost(self.lease.name, self.lease.holder, token)
        self._crash_points.reached(RELAY_AFTER_PUBLISH)
        if not await self.mark_published([r.seq for r in rows], token):
            raise LeaseLost(self.lease.name, self.lease.holder, token)
        self._metrics.relay_publish_seconds.observe(time.perf_counter() - started)
        self._metrics.relay_published.inc(len(rows))
        self._metrics.outbox_backlog.set(max(0, backlog - len(rows)))
        return len(rows)

    async def _send_all(self, producer: AIOKafkaProducer, rows: Sequence[tuple[int, str, str]],
                        lost: asyncio.Event) -> None:
        """Queue every row (in outbox order), then await every ack. Stops queueing once the
        lease is lost; what is already queued cannot be recalled (the holder republishes it,
        and the consumer's version guard drops the stale copies)."""
        headers = [("content-type", CONTENT_TYPE.encode())]
        acks: list[Awaitable[object]] = []
        for _seq, project_id, event in rows:
            if lost.is_set():
                break
            acks.append(await producer.send(self._settings.kafka.topic, value=event.encode(),
                                            key=project_id.encode(), headers=headers))
        await asyncio.gather(*acks)

    async def _keep_lease(self, token: int, lost: asyncio.Event, done: asyncio.Event) -> None:
        """Renew every third of the TTL until ``done``; set ``lost`` once taken over."""
        while not await stopped_within(done, self.lease.ttl / 3):
            try:
                if not await self.lease.renew(token):
                    lost.set()
                    return
            except (SQLAlchemyError, OSError) as e:  # e.g. database locked: the mark decides
                log.warning("relay lease renewal failed, retrying: %s", e)

    async def mark_published(self, seqs: Sequence[int], token: int) -> bool:
        """Mark ``seqs`` published iff this relay still holds the lease under ``token``, in one
        transaction with the lease check. False (nothing marked) if the lease changed hands."""
        asked = time.monotonic()
        async with self._sessions.begin() as session:
            held = await self.lease.confirm(session, token)
            if held:
                await session.execute(
                    update(OutboxRow).where(OutboxRow.seq.in_(list(seqs)))
                    .values(published_at=datetime.now(UTC))
                    .execution_options(synchronize_session=False))
        self.lease.confirmed(token, held, asked)
        self._storage.wrote(writer="relay")
        return held

    async def _purge(self) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=self._settings.relay.outbox_retention_s)
        async with self._sessions.begin() as session:
            await session.execute(delete(OutboxRow).where(OutboxRow.published_at < cutoff))

"""The consumer-group member: fetch a micro-batch, apply it, and only then commit offsets.

Failure rules: an unappliable record goes to the DLQ and the batch goes on; an index that
is down pauses fetching and retries with backoff and jitter, committing nothing; a commit
refused after a rebalance is dropped (the new owner redoes the work, harmlessly).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from handwerk.consumer.applier import IndexApplier
from handwerk.consumer.batch import DeadLetter, Decoded, RawRecord, decode_records
from handwerk.consumer.dead_letters import publish_dead_letters
from handwerk.index.base import IndexUnavailable
from handwerk.kafka import bootstrap, producer_options
from handwerk.metrics import Metrics
from handwerk.settings import Settings
from handwerk.stopping import stopped_within

log = logging.getLogger(__name__)


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: IndexingConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self._owner.assigned -= set(revoked)
        for tp in revoked:
            self._owner.forget_lag(tp)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._owner.assigned = set(assigned)
        self._owner.ever_assigned.set()


class IndexingConsumer:
    def __init__(self, settings: Settings, applier: IndexApplier, metrics: Metrics,
                 *, client_id: str = "handwerk-consumer") -> None:
        self._settings = settings
        self._applier = applier
        self._metrics = metrics
        self._client_id = client_id
        self.assigned: set[TopicPartition] = set()
        self.ever_assigned = asyncio.Event()
        self.index_healthy = True
        self.lag: dict[int, int] = {}
        self.applied_batches = 0

    def forget_lag(self, tp: TopicPartition) -> None:
        self.lag.pop(tp.partition, None)
        self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(0)

    @property
    def ready(self) -> bool:
        return bool(self.assigned) and self.index_healthy

    def _consumer(self) -> AIOKafkaConsumer:
        s = self._settings
        return AIOKafkaConsumer(
            bootstrap_servers=bootstrap(s), group_id=s.consumer_group, client_id=self._client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(500, s.kafka_session_timeout_ms // 5),
            max_poll_interval_ms=300_000, fetch_max_wait_ms=50,
            max_partition_fetch_bytes=256 * 1024, fetch_max_bytes=1024 * 1024)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self._consumer()
        dlq = AIOKafkaProducer(**producer_options(self._settings))
        await _start_with_retry(consumer, stop)
        await _start_with_retry(dlq, stop)
        try:
            consumer.subscribe([self._settings.kafka_topic], listener=_Assignment(self))
            while not stop.is_set():
                records = await self._fetch(consumer)
                if records and await self._handle(consumer, dlq, records, stop):
                    await self._commit(consumer, records)
        finally:
            await consumer.stop()  # leaves the group so partitions move at once
            await dlq.stop()
            self.assigned.clear()

    async def _fetch(self, consumer: AIOKafkaConsumer) -> list[RawRecord]:
        """One micro-batch: wait for the first records, then fill up for at most max_wait."""
        s = self._settings
        batches = await consumer.getmany(timeout_ms=500, max_records=s.batch_max_records)
        records = [r for rs in batches.values() for r in rs]
        deadline = time.monotonic() + s.batch_max_wait_ms / 1000
        while records and len(records) < s.batch_max_records:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = await consumer.getmany(timeout_ms=int(remaining * 1000),
                                          max_records=s.batch_max_records - len(records))
            if not more:
                break
            records.extend(r for rs in more.values() for r in rs)
        await self._observe_positions(consumer)
        return [RawRecord(r.topic, r.partition, r.offset, r.key, r.value,
                          tuple((k, bytes(v)) for k, v in (r.headers or ())))
                for r in records]

    async def _observe_positions(self, consumer: AIOKafkaConsumer) -> None:
        """Lag from the fetched high watermark (tansu's end_offsets() is wrong); detect a log
        that restarted below our position (a memory-only broker restart) and rewind."""
        for tp in list(self.assigned):
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await consumer.position(tp)
            except KafkaError:
                continue
            if highwater < position:
                log.warning("partition %s log restarted (hw %d < position %d): rewinding",
                            tp, highwater, position)
                await consumer.seek_to_beginning(tp)
                position = 0
            lag = max(0, highwater - position)
            self.lag[tp.partition] = lag
            self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def _handle(self, consumer: AIOKafkaConsumer, dlq: AIOKafkaProducer,
                      records: list[RawRecord], stop: asyncio.Event) -> bool:
        """Apply one batch; True once it is safe to commit, False if abandoned on shutdown."""
        self._metrics.batch_size.observe(len(records))
        decoded = decode_records(records)
        backoff = 0.2
        while True:
            try:
                dead = decoded.dead + await self._apply_isolating_poison(decoded)
                if dead:
                    await publish_dead_letters(dlq, self._settings.kafka_dlq_topic,
                                               self._settings.consumer_group, dead)
                    if self._applier.journal is not None:
                        self._applier.journal.dead_lettered(letter.reason for letter in dead)
                    for letter in dead:
                        self._metrics.events_dead_lettered.labels(
                            letter.reason.split(":", 1)[0][:40]).inc()
                if not self.index_healthy:
                    log.info("index reachable again, resuming")
                    consumer.resume(*consumer.assignment())
                self.index_healthy = True
                self.applied_batches += 1
                return True
            except (IndexUnavailable, KafkaError) as e:
                self._metrics.index_write_failures.inc()
                if self.index_healthy:
                    consumer.pause(*consumer.assignment())
                self.index_healthy = False
                log.warning("batch not applied, retrying in %.1fs: %s", backoff, e)
                if await stopped_within(stop, backoff * (0.5 + random.random())):
                    return False
                await consumer.getmany(timeout_ms=0)  # keep the poll interval alive while paused
                backoff = min(backoff * 2, 30.0)

    async def _apply_isolating_poison(self, decoded: Decoded) -> list[DeadLetter]:
        """Apply the batch; if something other than an outage fails, find the culprits one
        by one so a single unappliable event never blocks the rest."""
        try:
            await self._applier.apply(decoded.events)
            return []
        except IndexUnavailable:
            raise
        except Exception:
            log.exception("batch failed; isolating the unappliable events")
        dead: list[DeadLetter] = []
        for record, event in decoded.items:
            try:
                await self._applier.apply([event])
            except IndexUnavailable:
                raise
            except Exception as e:
                dead.append(DeadLetter(record, f"apply: {type(e).__name__}: {str(e)[:200]}"))
        return dead

    async def _commit(self, consumer: AIOKafkaConsumer, records: list[RawRecord]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        try:
            await asyncio.wait_for(consumer.commit(offsets), self._settings.kafka_commit_timeout_s)
        except CommitFailedError as e:
            log.warning("commit refused after a rebalance; the new owner redoes it: %s", e)
        except (TimeoutError, KafkaError) as e:
            log.warning("commit failed; the work will be redone (harmless): %s", e)


async def _start_with_retry(client: AIOKafkaConsumer | AIOKafkaProducer, stop: asyncio.Event) -> None:
    backoff = 0.2
    while True:
        try:
            await client.start()
            return
        except KafkaError as e:
            log.warning("kafka not reachable (%s), retrying in %.1fs", e, backoff)
            if await stopped_within(stop, backoff):
                raise
            backoff = min(backoff * 2, 10.0)

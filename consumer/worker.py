"""The consumer-group member: fetch a micro-batch, apply it, and only then commit offsets.

Failure rules (sorted once, in ``failures.py``): a record that can never be applied goes to
the DLQ alone and the batch goes on; a dependency that is down (index, embedder, broker)
pauses every assigned partition, retries the same batch with backoff and jitter, commits
nothing, and resumes by itself. Partitions assigned during an outage are paused too (aiokafka
builds a fresh, unpaused assignment on every rebalance), and anything fetched anyway is
rewound, so no record is ever skipped. A commit refused after a rebalance is dropped (the new
owner redoes the work, harmlessly).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from enum import StrEnum

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import CommitFailedError, KafkaError

from handwerk.consumer.applier import IndexApplier
from handwerk.consumer.batch import DeadLetter, Decoded, RawRecord, decode_records
from handwerk.consumer.dead_letters import publish_dead_letters
from handwerk.consumer.failures import Failure, classify, dependency_of
from handwerk.kafka import client_options, producer_options
from handwerk.metrics import Metrics
from handwerk.process.backoff import Backoff
from handwerk.process.crash_points import CONSUMER_AFTER_INDEX_WRITE, NO_CRASH, CrashPoints
from handwerk.settings import Settings

log = logging.getLogger(__name__)


class IndexerState(StrEnum):
    """What /readyz and stats report about indexing (search and writes need none of it)."""

    JOINING = "joining"  # no partitions yet: the group is (re)balancing
    CATCHING_UP = "catching_up"  # partitions held, records behind the high watermark
    LIVE = "live"  # caught up
    STALLED = "stalled"  # a dependency is down; offsets held, retrying
    STOPPED = "stopped"


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: IndexingConsumer, consumer: AIOKafkaConsumer) -> None:
        self._owner = owner
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self._owner.assigned -= set(revoked)
        for tp in revoked:
            self._owner.forget_lag(tp)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._owner.assigned = set(assigned)
        if self._owner.outage_since is not None and assigned:
            # A new assignment starts unpaused: during an outage nothing may be fetched.
            self._consumer.pause(*assigned)
        self._owner.ever_assigned.set()


class _Abandoned(Exception):
    """Shutdown arrived while a batch was waiting for a dependency: commit nothing."""


class IndexingConsumer:
    def __init__(self, settings: Settings, applier: IndexApplier, metrics: Metrics,
                 *, client_id: str = "handwerk-consumer", crash_points: CrashPoints = NO_CRASH,
                 on_log_restart: Callable[[str], None] | None = None) -> None:
        """``on_log_restart``: told when a partition's log restarted below our position (what
        the lost log held is then for reconcile to repair)."""
        self._settings = settings
        self._on_log_restart = on_log_restart
        self._applier = applier
        self._metrics = metrics
        self._client_id = client_id
        self._crash_points = crash_points
        self.assigned: set[TopicPartition] = set()
        self.ever_assigned = asyncio.Event()
        self.outage_since: float | None = None
        self.last_failure: str | None = None
        self.running = False
        self.lag: dict[int, int] = {}

    def forget_lag(self, tp: TopicPartition) -> None:
        self.lag.pop(tp.partition, None)
        self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(0)

    @property
    def index_healthy(self) -> bool:
        return self.outage_since is None

    @property
    def ready(self) -> bool:
        """Holding partitions and not stalled past the threshold."""
        return bool(self.assigned) and not self.stalled_too_long

    @property
    def stalled_too_long(self) -> bool:
        return (self.outage_since is not None and
                time.monotonic() - self.outage_since >= self._settings.consumer.unready_after_s)

    @property
    def state(self) -> IndexerState:
        if not self.running:
            return IndexerState.STOPPED
        if self.outage_since is not None:
            return IndexerState.STALLED
        if not self.assigned:
            return IndexerState.JOINING
        return IndexerState.CATCHING_UP if sum(self.lag.values()) > 0 else IndexerState.LIVE

    def _consumer(self) -> AIOKafkaConsumer:
        s = self._settings
        return AIOKafkaConsumer(
            **client_options(s.kafka), group_id=s.consumer.group, client_id=self._client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=s.kafka.session_timeout_ms,
            heartbeat_interval_ms=max(500, s.kafka.session_timeout_ms // 5),
            max_poll_interval_ms=300_000, fetch_max_wait_ms=s.consumer.fetch_max_wait_ms,
            max_partition_fetch_bytes=256 * 1024, fetch_max_bytes=1024 * 1024)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self._consumer()
        dlq = AIOKafkaProducer(**producer_options(self._settings))
        self.running = True
        try:
            await _start_with_retry(consumer, stop)
            await _start_with_retry(dlq, stop)
            consumer.subscribe([self._settings.kafka.topic], listener=_Assignment(self, consumer))
            while not stop.is_set():
                records = await self._fetch(consumer)
                if not records:
                    continue
                try:
                    await self._handle(consumer, dlq, records, stop)
                except _Abandoned:
                    return
                await self._commit(consumer, records)
        finally:
            self.running = False
            await consumer.stop()  # leaves the group so partitions move at once
            await dlq.stop()
            self.assigned.clear()

    async def _fetch(self, consumer: AIOKafkaConsumer) -> list[RawRecord]:
        """One micro-batch: wait for the first records, then fill up for at most max_wait,
        but only while the broker has more queued than we hold (see ``_more_queued``)."""
        s = self._settings
        batches = await consumer.getmany(timeout_ms=500, max_records=s.consumer.batch_max_records)
        records = [r for rs in batches.values() for r in rs]
        self._observe_fetched(records)
        first_fetched = time.monotonic()
        deadline = first_fetched + s.consumer.batch_max_wait_ms / 1000
        while records and len(records) < s.consumer.batch_max_records and await self._more_queued(consumer):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = await consumer.getmany(timeout_ms=int(remaining * 1000),
                                          max_records=s.consumer.batch_max_records - len(records))
            if not more:
                break
            fetched = [r for rs in more.values() for r in rs]
            self._observe_fetched(fetched)
            records.extend(fetched)
        await self._observe_positions(consumer)
        if records:
            self._metrics.batch_gather.observe(time.monotonic() - first_fetched)
        return [RawRecord(r.topic, r.partition, r.offset, r.key, r.value,
                          tuple((k, bytes(v)) for k, v in (r.headers or ())),
                          r.timestamp if r.timestamp is not None and r.timestamp >= 0 else None)
                for r in records]

    def _observe_fetched(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Record timestamp -> fetched, per record (wall clock: the timestamp is one)."""
        now_ms = time.time() * 1000
        for r in records:
            if r.timestamp is not None and r.timestamp >= 0:
                self._metrics.broker_to_fetch.observe(max(0.0, now_ms - r.timestamp) / 1000)

    @staticmethod
    async def _more_queued(consumer: AIOKafkaConsumer) -> bool:
        """Whether the last fetch responses showed records beyond our position on some
        partition (Kafka sends each partition's high watermark with every fetch response), or
        it cannot tell (a partition not fetched yet). Waiting to fill a batch pays only then:
        a lone write is applied at once, while under load the records that arrive during one
        batch's embedding make the next batch large by themselves."""
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                return True
            try:
                if await consumer.position(tp) < highwater:
                    return True
            except KafkaError:
                return True
        return False

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
                if self._on_log_restart is not None:
                    self._on_log_restart(f"partition {tp.partition}: high watermark {highwater} "
                                         f"below the consumer's position")
            lag = max(0, highwater - position)
            self.lag[tp.partition] = lag
            self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def _handle(self, consumer: AIOKafkaConsumer, dlq: AIOKafkaProducer,
                      records: list[RawRecord], stop: asyncio.Event) -> None:
        """Apply one batch and make its dead letters durable; returns once it is safe to
        commit, raises _Abandoned if shutdown came first. Each step retries on its own, so a
        DLQ outage never re-applies the batch and never counts as an index failure."""
        self._metrics.batch_size.observe(len(records))
        closed = time.monotonic()
        # JSON-Schema validation of a whole batch is CPU work: off the loop (heartbeats, API).
        decoded = await asyncio.to_thread(decode_records, records)
        for record, event in decoded.items:
            if record.timestamp_ms is not None:
                self._metrics.event_to_broker.observe(
                    max(0.0, record.timestamp_ms / 1000 - event.time.timestamp()))
        backoff = Backoff(initial=0.2, maximum=30.0)
        while True:
            try:
                dead = decoded.dead + await self._apply_isolating_poison(decoded)
                self._metrics.batch_apply.observe(time.monotonic() - closed)
                break
            except Exception as e:  # isolation re-raises only transient failures
                await self._wait_out(consumer, e, backoff, stop)
        self._crash_points.reached(CONSUMER_AFTER_INDEX_WRITE)
        while dead:
            try:
                await publish_dead_letters(dlq, self._settings.kafka.dlq_topic,
                                           self._settings.consumer.group, dead)
                break
            except KafkaError as e:
                await self._wait_out(consumer, e, backoff, stop)
        self._record_dead(dead)
        self._recovered(consumer)

    async def _apply_isolating_poison(self, decoded: Decoded) -> list[DeadLetter]:
        """Apply the batch; if it fails because of its content, find the culprits one by one
        so a single unappliable event never blocks the rest. Transient failures propagate."""
        try:
            await self._applier.apply(decoded.events)
            return []
        except Exception as e:
            if classify(e) is Failure.TRANSIENT:
                raise
            log.warning("batch refused (%s: %s); isolating the unappliable events",
                        type(e).__name__, str(e)[:200])
        dead: list[DeadLetter] = []
        for record, event in decoded.items:
            try:
                await self._applier.apply([event])
            except Exception as e:
                if classify(e) is Failure.TRANSIENT:
                    raise
                log.warning("dead-lettering %s v%d (%s/%d@%d): %s", event.project_id,
                            event.version, record.topic, record.partition, record.offset, e)
                dead.append(DeadLetter(record, f"apply: {type(e).__name__}: {str(e)[:200]}"))
        return dead

    async def _wait_out(self, consumer: AIOKafkaConsumer, error: Exception, backoff: Backoff,
                        stop: asyncio.Event) -> None:
        """A dependency is down: hold every assigned partition paused, keep the group
        membership alive, and wait; raise _Abandoned on shutdown."""
        dependency = dependency_of(error)
        self._metrics.dependency_failures.labels(dependency).inc()
        if dependency == "index":
            self._metrics.index_write_failures.inc()
        if self.outage_since is None:
            self.outage_since = time.monotonic()
        self.last_failure = f"{dependency}: {type(error).__name__}: {str(error)[:200]}"
        consumer.pause(*consumer.assignment())
        delay = backoff.next_delay()
        log.warning("batch not applied (%s), retrying in %.1fs", self.last_failure, delay)
        deadline = time.monotonic() + delay
        while (remaining := deadline - time.monotonic()) > 0:
            if stop.is_set():
                raise _Abandoned
            await self._keep_alive(consumer, timeout_s=min(remaining, 1.0))
        if stop.is_set():
            raise _Abandoned

    async def _keep_alive(self, consumer: AIOKafkaConsumer, timeout_s: float) -> None:
        """Poll while paused (aiokafka needs polls to stay in the group). Re-pause whatever a
        rebalance assigned meanwhile; anything fetched anyway is rewound, never dropped."""
        consumer.pause(*consumer.assignment())
        fetched = await consumer.getmany(timeout_ms=int(timeout_s * 1000))
        for tp, records in fetched.items():
            if records:
                first = min(r.offset for r in records)
                log.info("rewinding %s to %d: fetched during an outage", tp, first)
                consumer.seek(tp, first)

    def _recovered(self, consumer: AIOKafkaConsumer) -> None:
        if self.outage_since is not None:
            log.info("dependency reachable again after %.1fs, resuming",
                     time.monotonic() - self.outage_since)
            self.outage_since = None
            self.last_failure = None
        consumer.resume(*consumer.assignment())

    def _record_dead(self, dead: list[DeadLetter]) -> None:
        if not dead:
            return
        if self._applier.journal is not None:
            self._applier.journal.dead_lettered(letter.reason for letter in dead)
        for letter in dead:
            self._metrics.events_dead_lettered.labels(letter.reason.split(":", 1)[0][:40]).inc()

    async def _commit(self, consumer: AIOKafkaConsumer, records: list[RawRecord]) -> None:
        """Commit ``offset + 1`` per partition still assigned (others belong to a new owner,
        who redoes them harmlessly)."""
        owned = consumer.assignment()
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            if tp in owned:
                offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        if not offsets:
            return
        started = time.monotonic()
        try:
            await asyncio.wait_for(consumer.commit(offsets), self._settings.kafka.commit_timeout_s)
            self._metrics.offset_commit.observe(time.monotonic() - started)
        except CommitFailedError as e:
            log.warning("commit refused after a rebalance; the new owner redoes it: %s", e)
        except (TimeoutError, KafkaError) as e:
            log.warning("commit failed; the work will be redone (harmless): %s", e)


async def _start_with_retry(client: AIOKafkaConsumer | AIOKafkaProducer, stop: asyncio.Event) -> None:
    backoff = Backoff(initial=0.2, maximum=10.0)
    while True:
        try:
            await client.start()
            return
        except KafkaError as e:
            log.warning("kafka not reachable (%s), retrying", e)
            if await backoff.wait(stop):
                raise

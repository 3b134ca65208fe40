"""Read a range of the event topic into one generation, outside any consumer group.

A builder (and a handover's catch-up) reads with a group-less consumer that is assigned
every partition: it never joins or disturbs the live group, and the position it reached is
kept with the generation it wrote (``GenerationMeta.offsets``), not in the broker, so the
offsets and the data they describe can never disagree. Where to stop is read first: the high
watermarks from a fetch (``end_offsets()`` is wrong on the local broker), with the lag
monitor's read, which also gives the live group's committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from handwerk.consumer.applier import ApplyResult, IndexApplier
from handwerk.consumer.batch import RawRecord, decode_records
from handwerk.consumer.failures import Failure, classify
from handwerk.kafka import client_options, stop_consumer
from handwerk.operations.lag import LagMonitor
from handwerk.process.backoff import Backoff
from handwerk.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicPosition:
    """One read of the topic: where each partition ends, and where the live group stands."""

    high_watermarks: dict[int, int]
    committed: dict[int, int | None]

    def applied_by_live_group(self) -> dict[int, int]:
        """Offsets the live generation has certainly applied (committed only after applying;
        0 where the group never committed: the whole partition must be replayed)."""
        return {p: (c or 0) for p, c in self.committed.items()}


def log_identity(settings: Settings) -> str:
    """Which log recorded offsets belong to (offsets mean nothing in another one)."""
    return f"{settings.kafka.bootstrap_servers}/{settings.kafka.topic}"


def replay_gaps(start: Mapping[int, int], log_starts: Mapping[int, int],
                ) -> dict[int, tuple[int, int]]:
    """Partitions whose replay from ``start`` cannot be complete: the log now starts above the
    stored offset (retention or DeleteRecords took what lay between), as ``{partition:
    (stored, log start)}``. A partition missing from ``start`` replays from 0 (``offsets={}``
    means "replay all"), so any log start above 0 is a gap there."""
    return {p: (start.get(p, 0), first) for p, first in sorted(log_starts.items())
            if start.get(p, 0) < first}


async def read_log_starts(settings: Settings, partitions: Collection[int]) -> dict[int, int]:
    """Each partition's log start (ListOffsets earliest: plain Kafka protocol, right on the
    local broker too, unlike its latest offsets)."""
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(**client_options(settings.kafka), group_id=None,
                                enable_auto_commit=False, client_id="handwerk-log-start")
    await consumer.start()
    try:
        tps = [TopicPartition(settings.kafka.topic, p) for p in sorted(partitions)]
        starts = await asyncio.wait_for(consumer.beginning_offsets(tps), 30.0)
        return {tp.partition: offset for tp, offset in starts.items()}
    finally:
        await stop_consumer(consumer)


async def read_position(settings: Settings) -> TopicPosition:
    async with LagMonitor(settings) as monitor:
        snapshot = await monitor.read()
    return TopicPosition({p.partition: p.high_watermark for p in snapshot.partitions},
                         {p.partition: p.committed for p in snapshot.partitions})


@dataclass(slots=True)
class ReplayProgress:
    total: int  # records between the start and the stop offsets
    read: int = 0
    applied: int = 0
    embedded: int = 0
    reused: int = 0
    skipped: int = 0  # undecodable or refused records (the live consumer dead-lettered them)
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.read / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        return max(0.0, (self.total - self.read) / rate) if rate > 0 else None

    def add(self, result: ApplyResult) -> None:
        self.applied += result.upserts + result.deletes
        self.embedded += result.embedded
        self.reused += result.reused
        self.skipped += result.refused_late


async def replay(settings: Settings, applier: IndexApplier, *, start: Mapping[int, int] | None,
                 until: Mapping[int, int], stop: asyncio.Event | None = None,
                 on_progress: Callable[[ReplayProgress], None] | None = None,
                 max_records: int = 512) -> dict[int, int]:
    """Apply every record from ``start`` (None: the log start) up to ``until`` (exclusive)
    per partition; returns the next unapplied offset per partition (at least ``until``'s
    where it got there). Records are applied in batches with the live consumer's rules:
    transient failures are retried with backoff, a record that can never be applied is
    skipped (the live consumer dead-letters it already). Raises ``asyncio.CancelledError``
    when ``stop`` is set before the end."""
    topic = settings.kafka.topic
    start = dict(start or {})
    progress = ReplayProgress(total=sum(max(0, hw - start.get(p, 0)) for p, hw in until.items()))
    if all(p in start and start[p] >= hw for p, hw in until.items()):
        # Nothing to read (a catch-up with no new record): no consumer. aiokafka 0.14 leaks
        # the fetch connection of a consumer stopped right after ``assign`` (its first fetch
        # still in flight): seen as unclosed sockets after every empty catch-up.
        return {p: start[p] for p in until}
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka), group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", client_id="handwerk-replay", fetch_max_wait_ms=100,
        max_partition_fetch_bytes=1024 * 1024, fetch_max_bytes=8 * 1024 * 1024)
    await consumer.start()
    reached = {p: start.get(p, 0) for p in until}
    try:
        tps = {p: TopicPartition(topic, p) for p in until}
        consumer.assign(list(tps.values()))
        for p, tp in tps.items():
            if p in start:
                consumer.seek(tp, start[p])
            else:
                await consumer.seek_to_beginning(tp)
        pending = {p for p in until if until[p] > start.get(p, 0)}
        while pending:
            if stop is not None and stop.is_set():
                raise asyncio.CancelledError("replay stopped")
            fetched = await consumer.getmany(*(tps[p] for p in pending), timeout_ms=200,
                                             max_records=max_records)
            records = [RawRecord(r.topic, r.partition, r.offset, r.key, r.value)
                       for rs in fetched.values() for r in rs]
            if records:
                await _apply(applier, records, progress, stop)
                for tp, rs in fetched.items():
                    reached[tp.partition] = max(reached[tp.partition], rs[-1].offset + 1)
                if on_progress is not None:
                    on_progress(progress)
            for p in list(pending):
                position = await consumer.position(tps[p])
                reached[p] = max(reached[p], position)
                if position >= until[p]:
                    pending.discard(p)
        return reached
    finally:
        await stop_consumer(consumer)


async def _apply(applier: IndexApplier, records: list[RawRecord], progress: ReplayProgress,
                 stop: asyncio.Event | None) -> None:
    decoded = await asyncio.to_thread(decode_records, records)
    progress.read += len(records)
    progress.skipped += len(decoded.dead)
    backoff = Backoff(initial=0.2, maximum=10.0)
    while True:
        try:
            progress.add(await applier.apply(decoded.events))
            return
        except Exception as e:
            if classify(e) is Failure.POISON:
                await _apply_one_by_one(applier, decoded.events, progress)
                return
            log.warning("replay: %s; retrying the batch", e)
            if await backoff.wait(stop):
                raise asyncio.CancelledError("replay stopped") from e


async def _apply_one_by_one(applier: IndexApplier, events: list, progress: ReplayProgress) -> None:  # type: ignore[type-arg]
    for event in events:
        try:
            progress.add(await applier.apply([event]))
        except Exception as e:
            if classify(e) is not Failure.POISON:
                raise
            progress.skipped += 1
            log.warning("replay: skipped %s v%d: %s", event.project_id, event.version, e)

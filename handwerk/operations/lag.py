"""Consumer-group lag read from the broker alone, so it stays visible while the consumer is down.

Per partition of the event topic:

- the group's **committed offset** (the next record the indexer will apply), from a consumer
  that carries the group id but never subscribes, so it never joins or disturbs the group;
- the partition's **high watermark**, from a second, group-less consumer that is assigned
  every partition, seeks one record before the committed offset (or to the log start when the
  group never committed), fetches a record or two and reads ``highwater()`` from that fetch.
  The record at the committed offset is the **oldest unapplied event**: its Kafka timestamp
  gives its age; the record just before it is the last applied one.

``end_offsets()`` is not used: it is wrong on the local tansu broker. Everything here is
plain Kafka protocol (OffsetFetch, Fetch, ListOffsets for the log start) and works on
Apache Kafka alike. Lag = high watermark - committed; without a commit, high watermark - log
start (every record is still to apply).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from handwerk.kafka import client_options
from handwerk.kafka import stop_consumer as _stop_client
from handwerk.metrics import Metrics
from handwerk.process.backoff import Backoff
from handwerk.process.waiting import stopped_within
from handwerk.settings import Settings

log = logging.getLogger(__name__)


class LagUnavailable(Exception):
    """No complete read: broker unreachable or too slow, or the topic does not exist."""


@dataclass(frozen=True, slots=True)
class PartitionLag:
    partition: int
    committed: int | None  # next offset the group will apply; None: it never committed here
    high_watermark: int
    log_start: int | None  # read only when nothing is committed (the lag then counts from it)
    oldest_unapplied_at: datetime | None  # Kafka timestamp of the record at the committed offset
    last_applied_at: datetime | None  # Kafka timestamp of the record at committed - 1

    @property
    def lag(self) -> int:
        base = self.committed if self.committed is not None else (self.log_start or 0)
        return max(0, self.high_watermark - base)

    def oldest_unapplied_age_s(self, now: float) -> float:
        """Seconds the oldest unapplied event has waited at ``now``; 0 when nothing waits."""
        if self.lag == 0 or self.oldest_unapplied_at is None:
            return 0.0
        return max(0.0, now - self.oldest_unapplied_at.timestamp())


@dataclass(frozen=True, slots=True)
class LagSnapshot:
    """One complete read: every partition at (nearly) the same moment."""

    group: str
    topic: str
    read_at: float  # unix time the read completed
    partitions: tuple[PartitionLag, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def oldest_unapplied_age_s(self, now: float | None = None) -> float:
        at = self.read_at if now is None else now
        return max((p.oldest_unapplied_age_s(at) for p in self.partitions), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        """The ``handwerk lag --json`` document (ages as of the read)."""
        return {
            "group": self.group, "topic": self.topic, "read_at": _iso(self.read_at),
            "partitions": [{
                "partition": p.partition, "committed_offset": p.committed,
                "high_watermark": p.high_watermark, "log_start_offset": p.log_start,
                "lag": p.lag,
                "oldest_unapplied_event_time": _iso_dt(p.oldest_unapplied_at),
                "oldest_unapplied_event_age_s": round(p.oldest_unapplied_age_s(self.read_at), 3),
                "last_applied_event_time": _iso_dt(p.last_applied_at),
            } for p in self.partitions],
            "totals": {"partitions": len(self.partitions), "lag": self.total_lag,
                       "oldest_unapplied_event_age_s": round(self.oldest_unapplied_age_s(), 3)},
        }


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")


def _iso_dt(at: datetime | None) -> str | None:
    return at.isoformat(timespec="milliseconds") if at is not None else None


def _record_time(timestamp_ms: int | None) -> datetime | None:
    if timestamp_ms is None or timestamp_ms < 0:  # -1: the record carries no timestamp
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


class LagMonitor:
    """Reads the lag of ``settings.consumer.group`` on ``settings.kafka.topic``.

    ``read()`` makes one complete read (connecting on first use, reconnecting after a
    failure), keeps it as ``snapshot`` and sets the gauges; ``run(stop)`` reads every
    ``lag_interval_s`` and never raises: a failed read is logged, the last snapshot and gauges
    stay (``handwerk_ml_lag_monitor_last_success_timestamp_seconds`` shows how old they are)
    and the next interval retries. States: created → started → closed; ``close()`` is
    idempotent and a closed monitor refuses to read.
    """

    def __init__(self, settings: Settings, metrics: Metrics | None = None, *,
                 read_timeout_s: float = 10.0,
                 on_read: Callable[[LagSnapshot], None] | None = None) -> None:
        """``on_read``: called with every complete read (it watches for a lost log)."""
        self._settings = settings
        self._metrics = metrics
        self._read_timeout_s = read_timeout_s
        self._on_read = on_read
        self._offsets: AIOKafkaConsumer | None = None  # group id, never subscribes: committed()
        self._reader: AIOKafkaConsumer | None = None  # no group: assign, seek, fetch, highwater()
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._exported: set[int] = set()
        self._closed = False
        self.snapshot: LagSnapshot | None = None
        self.last_error: str | None = None
        if metrics is not None and metrics.lag_monitor_last_success.get() is None:
            metrics.lag_monitor_last_success.set(0)  # a monitor runs here; no read yet

    async def start(self) -> None:
        """Connect now (``read`` would connect on first use anyway)."""
        self._check_open()
        try:
            await asyncio.wait_for(self._connect(), self._read_timeout_s)
        except (KafkaError, OSError, TimeoutError) as e:
            await self._disconnect()
            raise LagUnavailable(f"broker {self._settings.kafka.bootstrap_servers}: "
                                 f"{type(e).__name__}: {e}") from e

    async def close(self) -> None:
        self._closed = True
        await self._disconnect()

    async def __aenter__(self) -> LagMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the lag monitor is closed")

    async def run(self, stop: asyncio.Event) -> None:
        """Read every ``lag_interval_s`` until ``stop``; stop also interrupts a read."""
        interval = self._settings.observability.lag_interval_s
        backoff = Backoff(initial=interval, maximum=max(interval, 60.0))
        try:
            while not stop.is_set():
                delay = interval
                try:
                    if not await self._read_unless_stopped(stop):
                        return
                    if backoff.attempts:
                        log.info("lag monitor: reading again after %d failed reads", backoff.attempts)
                    backoff.reset()
                except Exception as e:  # never crash the process; the next interval retries
                    self.last_error = f"{type(e).__name__}: {str(e)[:300]}"
                    delay = backoff.next_delay()
                    log.warning("lag monitor: read failed (%s); keeping the last snapshot, "
                                "retrying in %.1fs", self.last_error, delay,
                                exc_info=not isinstance(e, LagUnavailable))
                if await stopped_within(stop, delay):
                    return
        finally:
            await self._disconnect()

    async def _read_unless_stopped(self, stop: asyncio.Event) -> bool:
        """One read; False if ``stop`` came first (the read is cancelled)."""
        reading = asyncio.ensure_future(self.read())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not reading.done():
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
        if stop.is_set():
            return False
        if reading.cancelled():  # not by us: a stray CancelledError out of the Kafka client
            raise LagUnavailable("the read was cancelled inside the Kafka client")
        reading.result()
        return True

    async def read(self) -> LagSnapshot:
        """One complete read of every partition; raises ``LagUnavailable`` (and keeps the
        previous snapshot) when the broker cannot answer."""
        self._check_open()
        try:
            snapshot = await asyncio.wait_for(self._read(), self._read_timeout_s)
        except (KafkaError, OSError, TimeoutError, LagUnavailable) as e:
            await self._disconnect()  # half-done fetches and seeks: start clean next time
            self.last_error = f"{type(e).__name__}: {str(e)[:300]}"
            if isinstance(e, LagUnavailable):
                raise
            raise LagUnavailable(f"broker {self._settings.kafka.bootstrap_servers}: "
                                 f"{type(e).__name__}: {e}") from e
        except asyncio.CancelledError:
            await asyncio.shield(self._disconnect())
            raise
        self.snapshot, self.last_error = snapshot, None
        self._export(snapshot)
        if self._on_read is not None:
            self._on_read(snapshot)
        return snapshot

    async def _connect(self) -> tuple[AIOKafkaConsumer, AIOKafkaConsumer]:
        if self._offsets is not None and self._reader is not None:
            return self._offsets, self._reader
        s = self._settings
        common: dict[str, Any] = {**client_options(s.kafka),
                                  "client_id": "handwerk-lag-monitor",
                                  "enable_auto_commit": False, "metadata_max_age_ms": 30_000}
        self._offsets = AIOKafkaConsumer(group_id=s.consumer.group, **common)
        self._reader = AIOKafkaConsumer(
            group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=100,
            max_partition_fetch_bytes=64 * 1024, fetch_max_bytes=1024 * 1024, **common)
        self._assigned = frozenset()
        await self._offsets.start()
        await self._reader.start()
        return self._offsets, self._reader

    async def _disconnect(self) -> None:
        clients = [c for c in (self._reader, self._offsets) if c is not None]
        self._offsets = self._reader = None
        self._assigned = frozenset()
        for client in clients:
            await _stop_client(client)

    async def _read(self) -> LagSnapshot:
        offsets, reader = await self._connect()
        topic = self._settings.kafka.topic
        ids = reader.partitions_for_topic(topic)
        if not ids:  # unknown after this client's last metadata: reconnecting refreshes it
            raise LagUnavailable(f"topic {topic!r} not found on the broker")
        tps = [TopicPartition(topic, p) for p in sorted(ids)]
        if frozenset(tps) != self._assigned:
            reader.assign(tps)
            reader.pause(*tps)  # fetch only while reading
            self._assigned = frozenset(tps)

        committed: dict[TopicPartition, int | None] = {}
        for tp in tps:
            committed[tp] = await offsets.committed(tp)
        for tp in tps:  # one record early: that one is the last applied
            c = committed[tp]
            if c is None:
                await reader.seek_to_beginning(tp)
            else:
                reader.seek(tp, max(0, c - 1))
        since_ms = int(time.time() * 1000)
        reader.resume(*tps)
        try:
            start: dict[TopicPartition, int] = {}  # the first offset still to apply
            for tp in tps:
                c = committed[tp]
                start[tp] = c if c is not None else await reader.position(tp)  # the log start
            first, before = await self._fetch_edges(reader, tps, start, since_ms)
        finally:
            reader.pause(*tps)

        read_at = time.time()
        partitions = []
        for tp in tps:
            high = reader.highwater(tp)
            if high is None:  # _fetch_edges returns only once every partition answered
                raise LagUnavailable(f"no high watermark for {tp}")
            partitions.append(PartitionLag(
                partition=tp.partition, committed=committed[tp], high_watermark=high,
                log_start=start[tp] if committed[tp] is None else None,
                oldest_unapplied_at=first.get(tp), last_applied_at=before.get(tp)))
        return LagSnapshot(self._settings.consumer.group, topic, read_at, tuple(partitions))

    async def _fetch_edges(self, reader: AIOKafkaConsumer, tps: list[TopicPartition],
                           start: dict[TopicPartition, int], since_ms: int,
                           ) -> tuple[dict[TopicPartition, datetime | None],
                                      dict[TopicPartition, datetime | None]]:
        """Fetch until every partition has answered a fetch at its new position (so its high
        watermark is current) and either its first record at or after ``start`` arrived or
        nothing is left there. Returns that record's time, and the time of the record at
        ``start - 1`` where it came along."""
        first: dict[TopicPartition, datetime | None] = {}
        before: dict[TopicPartition, datetime | None] = {}
        pending = set(tps)
        while pending:
            fetched = await reader.getmany(*pending, timeout_ms=100, max_records=2 * len(pending))
            for tp, records in fetched.items():
                for record in records:
                    if record.offset == start[tp] - 1:
                        before[tp] = _record_time(record.timestamp)
                    elif record.offset >= start[tp] and tp not in first:
                        first[tp] = _record_time(record.timestamp)
            for tp in list(pending):
                polled = reader.last_poll_timestamp(tp)
                high = reader.highwater(tp)
                if polled is None or polled < since_ms or high is None:
                    continue  # no fetch answered at the new position yet
                if tp in first or high <= start[tp] or await reader.position(tp) >= high:
                    reader.pause(tp)
                    pending.discard(tp)
        return first, before

    def _export(self, snapshot: LagSnapshot) -> None:
        m = self._metrics
        if m is None:
            return
        group, topic = snapshot.group, snapshot.topic
        seen = set()
        for p in snapshot.partitions:
            label = str(p.partition)
            seen.add(p.partition)
            m.consumer_group_lag.labels(group, topic, label).set(p.lag)
            if p.committed is None:
                _remove(m.consumer_group_committed_offset, group, topic, label)
            else:
                m.consumer_group_committed_offset.labels(group, topic, label).set(p.committed)
            m.topic_high_watermark.labels(topic, label).set(p.high_watermark)
            m.oldest_unapplied_event_age.labels(group, topic, label).set(
                p.oldest_unapplied_age_s(snapshot.read_at))
        for gone in self._exported - seen:  # the topic was recreated with fewer partitions
            label = str(gone)
            for gauge in (m.consumer_group_lag, m.consumer_group_committed_offset,
                          m.oldest_unapplied_event_age):
                _remove(gauge, group, topic, label)
            _remove(m.topic_high_watermark, topic, label)
        self._exported = seen
        m.lag_monitor_last_success.set(snapshot.read_at)


def _remove(gauge: Any, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass

"""Events still on their way to the index, so that reconcile never counts them as drift.

An event is in flight while its outbox row is unpublished, or while it sits in the topic at
or beyond the consumer group's committed offset of its partition: the pipeline applies it
without help. Re-emitting it would only make every restart reprocess the backlog.

The reads are ordered so that nothing falls between them (``reconcile.find_drift`` calls
them around its own reads):

1. ``start()``: the group's committed offsets, *before* the index is read. A record below
   them was applied (offsets are committed after the index write) before the index read.
2. the index, then the database (reconcile).
3. ``newest(candidates)``: unpublished outbox rows, then the topic from the offsets read in 1
   up to the high watermark of a fetch made after that outbox read. A row the relay had
   published by then lies below that high watermark.

Only plain Kafka protocol is used (OffsetFetch, Fetch and the high watermark a fetch
answers), never ``end_offsets()`` (wrong on the local tansu broker), so the same holds on
Apache Kafka. A log the broker lost is simply not there to read: its events are drift.
Whatever cannot be read (broker down, a scan past its deadline) makes the answer
incomplete, never wider: unknown events count as drift, and their re-emit is a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handwerk.kafka import client_options, stop_consumer
from handwerk.outbox.models import OutboxRow
from handwerk.settings import Settings

log = logging.getLogger(__name__)

_IN_CLAUSE = 500  # ids per outbox query


@dataclass(slots=True)
class InFlight:
    """The newest in-flight version per candidate project; ``complete`` when both the outbox
    and every partition's unapplied records were read."""

    newest: dict[str, int] = field(default_factory=dict)
    complete: bool = True

    def covers(self, project_id: str, version: int) -> bool:
        """An event at ``version`` or newer for the project is on its way."""
        return self.newest.get(project_id, -1) >= version


class InFlightEvents:
    """One reconcile's view of what the pipeline still owes the index (used once)."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], *,
                 scan_timeout_s: float = 30.0) -> None:
        self._settings = settings
        self._sessions = sessions
        self._scan_timeout_s = scan_timeout_s
        self._committed: dict[TopicPartition, int | None] | None = None

    async def start(self) -> None:
        """Read the group's committed offsets (before the index is read)."""
        try:
            self._committed = await asyncio.wait_for(self._read_committed(),
                                                     self._scan_timeout_s)
        except (KafkaError, OSError, TimeoutError) as e:
            log.warning("reconcile: committed offsets unreadable (%s: %s); events in the topic "
                        "count as drift this time", type(e).__name__, e)
            self._committed = None

    async def newest(self, candidates: Collection[str]) -> InFlight:
        """Newest in-flight version of each candidate: the outbox first, then the topic."""
        found = InFlight()
        if not candidates:
            return found
        wanted = set(candidates)
        await self._unpublished(wanted, found)
        if self._committed is None:
            found.complete = False
            return found
        try:
            done = await self._scan(wanted, found)
        except (KafkaError, OSError) as e:
            log.warning("reconcile: topic scan failed (%s: %s)", type(e).__name__, e)
            done = False
        found.complete = done
        return found

    async def _unpublished(self, wanted: set[str], found: InFlight) -> None:
        ids = sorted(wanted)
        async with self._sessions() as session:
            for start in range(0, len(ids), _IN_CLAUSE):
                rows = await session.execute(
                    select(OutboxRow.project_id, func.max(OutboxRow.version))
                    .where(OutboxRow.published_at.is_(None),
                           OutboxRow.project_id.in_(ids[start:start + _IN_CLAUSE]))
                    .group_by(OutboxRow.project_id))
                for project_id, version in rows.all():
                    _note(found, project_id, int(version))

    def _client(self, **extra: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(**client_options(self._settings.kafka),
                                client_id="handwerk-reconcile", enable_auto_commit=False,
                                **extra)

    async def _read_committed(self) -> dict[TopicPartition, int | None]:
        """A client with the group id that never subscribes: it reads, never joins."""
        topic = self._settings.kafka.topic
        client = self._client(group_id=self._settings.consumer.group)
        await client.start()
        try:
            if topic not in await client.topics():
                return {}  # no topic, nothing in it
            ids = client.partitions_for_topic(topic) or set()
            return {tp: await client.committed(tp)
                    for tp in (TopicPartition(topic, p) for p in sorted(ids))}
        finally:
            await stop_consumer(client)

    async def _scan(self, wanted: set[str], found: InFlight) -> bool:
        """Read every partition from its committed offset (the log start where the group never
        committed, or where the offset lies beyond a log that restarted) up to the high
        watermark its first fetch reports. False if the deadline came first."""
        committed = self._committed or {}
        if not committed:
            return True
        reader = self._client(group_id=None, auto_offset_reset="earliest",
                              fetch_max_wait_ms=100, max_partition_fetch_bytes=1024 * 1024)
        await reader.start()
        deadline = time.monotonic() + self._scan_timeout_s
        try:
            tps = sorted(committed, key=lambda tp: tp.partition)
            reader.assign(tps)
            for tp in tps:
                offset = committed[tp]
                if offset is None:
                    await reader.seek_to_beginning(tp)
                else:
                    reader.seek(tp, offset)
            target: dict[TopicPartition, int] = {}
            pending = set(tps)
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("reconcile: topic scan incomplete after %.0fs (%d partitions "
                                "left); their unread events count as drift",
                                self._scan_timeout_s, len(pending))
                    return False
                fetched = await reader.getmany(*pending, timeout_ms=int(min(remaining, 0.2) * 1000),
                                               max_records=5000)
                for records in fetched.values():
                    for record in records:
                        _consider(record.key, record.value, wanted, found)
                for tp in list(pending):
                    high = reader.highwater(tp)
                    if high is None:
                        continue  # no fetch answered yet
                    target.setdefault(tp, high)
                    if await reader.position(tp) >= target[tp]:
                        pending.discard(tp)
                        reader.pause(tp)
            return True
        finally:
            await stop_consumer(reader)


def _consider(key: bytes | None, value: bytes | None, wanted: set[str], found: InFlight) -> None:
    if key is None or value is None:
        return
    try:
        project_id = key.decode()
    except UnicodeDecodeError:
        return
    if project_id not in wanted:
        return
    try:
        version = json.loads(value).get("version")
    except (ValueError, RecursionError, AttributeError):
        return  # malformed: the consumer dead-letters it, it fixes nothing
    if isinstance(version, int) and not isinstance(version, bool):
        _note(found, project_id, version)


def _note(found: InFlight, project_id: str, version: int) -> None:
    if version > found.newest.get(project_id, -1):
        found.newest[project_id] = version

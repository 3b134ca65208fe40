"""Pure batch logic: decode, coalesce per project, and the version guard's plan."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from handwerk.contract.events import InvalidEvent, ProjectEvent, decode_event
from handwerk.index.protocol import PointState


@dataclass(frozen=True, slots=True)
class RawRecord:
    """What the consumer needs of a Kafka record (independent of the client library)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None  # the record's Kafka timestamp (stage metrics only)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: RawRecord
    reason: str


@dataclass(slots=True)
class Decoded:
    items: list[tuple[RawRecord, ProjectEvent]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    tombstones: int = 0

    @property
    def events(self) -> list[ProjectEvent]:
        return [event for _record, event in self.items]


def decode_records(records: Iterable[RawRecord]) -> Decoded:
    """Validate every record; invalid ones become dead letters, null values are ignored.

    Whatever decoding raises, for whatever reason, is about that record alone: it is
    dead-lettered with the reason and never escapes (one record must not stop a partition).
    """
    out = Decoded()
    for record in records:
        if record.value is None:
            out.tombstones += 1  # compaction tombstone: nothing to apply, nothing to report
            continue
        try:
            out.items.append((record, decode_event(record.value, record.key)))
        except InvalidEvent as e:
            out.dead.append(DeadLetter(record, e.reason))
        except Exception as e:  # noqa: BLE001 - any decoding failure is this record's fault
            out.dead.append(DeadLetter(record, f"undecodable: {type(e).__name__}: {str(e)[:160]}"))
    return out


def coalesce(events: Iterable[ProjectEvent]) -> dict[str, ProjectEvent]:
    """Keep only the newest version per project; older ones in the same batch never matter."""
    newest: dict[str, ProjectEvent] = {}
    for event in events:
        current = newest.get(event.project_id)
        if current is None or event.version > current.version:
            newest[event.project_id] = event
    return newest


def newer_than_index(events: Mapping[str, ProjectEvent],
                     states: Mapping[str, PointState]) -> list[ProjectEvent]:
    """Drop events the index already holds (or has superseded, tombstones included)."""
    return [e for pid, e in events.items()
            if pid not in states or e.version > states[pid].version]

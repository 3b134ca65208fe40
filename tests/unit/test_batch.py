"""Coalescing and the version guard's pure plan."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from handwerk.consumer.batch import RawRecord, coalesce, decode_records, newer_than_index
from handwerk.contract.events import DELETED, UPSERTED, ProjectEvent, build_event, encode_event
from handwerk.index.protocol import PointState


def ev(pid: str, version: int, kind: str = UPSERTED) -> ProjectEvent:
    return ProjectEvent(event_id=str(uuid.uuid4()), source="test", type=kind,  # type: ignore[arg-type]
                        project_id=pid, version=version, time=datetime.now(UTC),
                        data=None if kind == DELETED else {"id": pid})


def test_coalesce_keeps_newest_version_per_project_regardless_of_order() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    newest = coalesce([ev(a, 2), ev(b, 1), ev(a, 5, DELETED), ev(a, 3), ev(b, 1)])
    assert newest[a].version == 5 and newest[a].is_delete
    assert newest[b].version == 1


def test_guard_drops_duplicates_and_stale_and_respects_tombstones() -> None:
    a, b, c, d = (str(uuid.uuid4()) for _ in range(4))
    states = {a: PointState(a, 3, False, None), b: PointState(b, 4, True, None),
              c: PointState(c, 1, False, None)}
    events = {a: ev(a, 3), b: ev(b, 3), c: ev(c, 2), d: ev(d, 1)}
    assert sorted(e.project_id for e in newer_than_index(events, states)) == sorted([c, d])


def test_decode_records_splits_valid_dead_and_null() -> None:
    pid = str(uuid.uuid4())
    good = encode_event(build_event(event_type=DELETED, project_id=pid, version=2, data=None))
    records = [RawRecord("t", 0, 0, pid.encode(), good), RawRecord("t", 0, 1, b"k", b"{oops"),
               RawRecord("t", 0, 2, b"k", None)]
    decoded = decode_records(records)
    assert [e.project_id for e in decoded.events] == [pid]
    assert [d.record.offset for d in decoded.dead] == [1]
    assert decoded.tombstones == 1


def test_any_undecodable_record_is_dead_lettered_never_raised() -> None:
    """Regression (review #6.2): JSON nested ~100k deep is far below the size limit, but
    Python's json raises RecursionError (not a decode error) on it. It must become a dead
    letter with a reason, and the records after it must still decode."""
    from handwerk.consumer.batch import RawRecord, decode_records

    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    deep_list = b"[" * 200_000 + b"]" * 200_000
    records = [RawRecord("t", 0, 0, None, deep), RawRecord("t", 0, 1, None, deep_list)]
    decoded = decode_records(records)
    assert [d.record.offset for d in decoded.dead] == [0, 1]
    assert all("nested too deeply" in d.reason for d in decoded.dead)

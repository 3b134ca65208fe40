"""The public event contract: what is accepted, and what is dead-lettered with which reason."""

from __future__ import annotations

import json
import uuid

import pytest

from handwerk.contract.events import DELETED, UPSERTED, InvalidEvent, build_event, decode_event, encode_event


def project(pid: str) -> dict[str, object]:
    return {"id": pid, "name": "Küche Eiche", "description": "Landhausküche", "project_type":
            "kitchen", "region": "Bayern", "total_area_sqm": 12.5, "wood_type": "Eiche",
            "complexity": 3, "final_price": 18500.0}


def test_round_trip_upsert() -> None:
    pid = str(uuid.uuid4())
    event = decode_event(encode_event(build_event(event_type=UPSERTED, project_id=pid, version=3,
                                                  data=project(pid))), pid.encode())
    assert (event.project_id, event.version, event.type) == (pid, 3, UPSERTED)
    assert event.data is not None and event.data["final_price"] == 18500.0


def test_delete_without_data_is_valid() -> None:
    pid = str(uuid.uuid4())
    event = decode_event(encode_event(build_event(event_type=DELETED, project_id=pid, version=4,
                                                  data=None)))
    assert event.is_delete and event.data is None


def _mutated(**changes: object) -> bytes:
    pid = str(uuid.uuid4())
    event = build_event(event_type=UPSERTED, project_id=pid, version=1, data=project(pid))
    for key, value in changes.items():
        if value is None:
            event.pop(key)
        else:
            event[key] = value
    return json.dumps(event).encode()


@pytest.mark.parametrize(("value", "reason"), [
    (b"\xff\xfe not json", "not JSON"),
    (b"[1, 2]", "schema"),
    (_mutated(type="handwerk.project.renamed"), "schema: type"),
    (_mutated(version=None), "schema"),
    (_mutated(version="7"), "schema: version"),
    (_mutated(version=1.5), "schema: version"),
    (_mutated(subject="not-a-uuid"), "schema: subject"),
    (_mutated(data=None), "schema"),
    (_mutated(specversion="0.3"), "schema: specversion"),
    (_mutated(time="yesterday"), "time is not RFC 3339"),
])
def test_invalid_events_name_the_reason(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as error:
        decode_event(value)
    assert error.value.reason.startswith(reason), error.value.reason


def test_key_must_match_subject() -> None:
    pid = str(uuid.uuid4())
    value = encode_event(build_event(event_type=UPSERTED, project_id=pid, version=1, data=project(pid)))
    with pytest.raises(InvalidEvent, match="key does not match"):
        decode_event(value, str(uuid.uuid4()).encode())


def test_data_id_must_match_subject() -> None:
    pid = str(uuid.uuid4())
    value = encode_event(build_event(event_type=UPSERTED, project_id=pid, version=1,
                                     data=project(str(uuid.uuid4()))))
    with pytest.raises(InvalidEvent, match="data.id"):
        decode_event(value)


def test_oversized_record_is_rejected_before_parsing() -> None:
    with pytest.raises(InvalidEvent, match="too large"):
        decode_event(b"{" + b" " * 2_000_000 + b"}")


def test_null_value_is_a_tombstone_not_a_crash() -> None:
    with pytest.raises(InvalidEvent, match="tombstone"):
        decode_event(None)

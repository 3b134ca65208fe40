"""The public event contract: CloudEvents 1.0 in structured JSON mode, one per Kafka record.

Both our outbox and upstream systems produce these; the consumer trusts nothing it has not
validated against the JSON Schema shipped in ``handwerk/contract``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Final, Literal

from jsonschema import Draft202012Validator, FormatChecker

UPSERTED: Final = "handwerk.project.upserted"
DELETED: Final = "handwerk.project.deleted"
CONTENT_TYPE = "application/cloudevents+json"
SOURCE = "urn:handwerk:outbox"
MAX_EVENT_BYTES = 1_000_000

EventType = Literal["handwerk.project.upserted", "handwerk.project.deleted"]


class InvalidEvent(ValueError):
    """A record that can never be applied; ``reason`` is short and safe to put in a header."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ProjectEvent:
    """A validated event. ``data`` is the full project state for upserts, None for deletes."""

    event_id: str
    source: str
    type: EventType
    project_id: str
    version: int
    time: datetime
    data: dict[str, Any] | None

    @property
    def is_delete(self) -> bool:
        return self.type == DELETED


@cache
def event_schema() -> dict[str, Any]:
    text = resources.files("handwerk.contract").joinpath("project-event.schema.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(event_schema(), format_checker=FormatChecker())


def build_event(
    *, event_type: EventType, project_id: str, version: int, data: dict[str, Any] | None,
    time: datetime | None = None, source: str = SOURCE,
) -> dict[str, Any]:
    """Build the CloudEvent dict the outbox stores and the relay publishes verbatim."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "subject": project_id,
        "time": (time or datetime.now(UTC)).isoformat(),
        "datacontenttype": "application/json",
        "version": version,
    }
    if data is not None:
        event["data"] = data
    return event


def encode_event(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def _first_error(document: Any) -> str | None:
    error = next(iter(sorted(_validator().iter_errors(document), key=lambda e: e.path)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"schema: {where}: {error.message[:200]}"


def decode_event(value: bytes | None, key: bytes | None = None) -> ProjectEvent:
    """Parse and validate one record value; raise InvalidEvent with a bounded reason."""
    if value is None:
        raise InvalidEvent("tombstone record (null value)")
    if len(value) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"record too large: {len(value)} bytes")
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidEvent(f"not JSON: {str(e)[:120]}") from e
    except RecursionError as e:  # json raises this, not a decode error, for deep nesting
        raise InvalidEvent("not JSON we accept: nested too deeply") from e
    try:
        reason = _first_error(document)
    except RecursionError as e:
        raise InvalidEvent("schema: nested too deeply") from e
    if reason is not None:
        raise InvalidEvent(reason)
    project_id = str(uuid.UUID(document["subject"]))
    data = document.get("data") if document["type"] == UPSERTED else None
    if data is not None and str(uuid.UUID(data["id"])) != project_id:
        raise InvalidEvent("data.id does not match subject")
    if key is not None and key.decode(errors="replace").lower() != project_id:
        raise InvalidEvent("record key does not match subject")
    try:
        time = datetime.fromisoformat(document["time"].replace("Z", "+00:00"))
    except ValueError as e:
        raise InvalidEvent("time is not RFC 3339") from e
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    return ProjectEvent(
        event_id=document["id"], source=document["source"], type=document["type"], project_id=project_id,
        version=document["version"], time=time, data=data,
    )

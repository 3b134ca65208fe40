"""The opaque keyset cursor of the project list: the (created_at, id) of a page's last row."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime

from handwerk.timestamps import as_utc


def encode_cursor(created_at: datetime, project_id: str) -> str:
    moment = as_utc(created_at)
    raw = json.dumps([moment.astimezone(UTC).isoformat(), project_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError for anything that is not a cursor this service handed out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, project_id = json.loads(raw)
        at = datetime.fromisoformat(moment)
        uuid.UUID(project_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as e:
        raise ValueError("not a cursor from this API: pass a previous page's next_cursor") from e
    if at.tzinfo is None:
        raise ValueError("not a cursor from this API: pass a previous page's next_cursor")
    # stored naive (SQLite): compare in the same terms
    return at.astimezone(UTC).replace(tzinfo=None), project_id

"""Naive timestamps are UTC: SQLite hands ``DateTime(timezone=True)`` columns back naive (they
were written in UTC), and so do ISO strings without an offset in our own formats."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(moment: datetime) -> datetime:
    """``moment`` with UTC attached if it has no zone; an aware one is returned unchanged."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def now_iso() -> str:
    """Now, in UTC, as ISO 8601 (how generation metadata and jobs record times)."""
    return datetime.now(UTC).isoformat()

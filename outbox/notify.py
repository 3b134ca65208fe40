"""Cross-process wake-up of the relay on PostgreSQL: every transaction that writes outbox rows
also queues a NOTIFY, which PostgreSQL delivers when (and only if) the transaction commits.
The relay listens (``producer/listener.py``) and publishes at once instead of at its next poll.

SQLite has no such thing: there the in-process ``OutboxSignal`` and the poll remain."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

OUTBOX_CHANNEL = "handwerk_outbox"


async def notify_relay(session: AsyncSession) -> None:
    """Inside the writing transaction; a no-op on databases without LISTEN/NOTIFY. PostgreSQL
    folds identical notifications of one transaction into one."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_notify(OUTBOX_CHANNEL, "")))

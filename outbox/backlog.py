"""What the outbox still owes the broker: how many rows, and how long the oldest has waited."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handwerk.outbox.models import OutboxRow
from handwerk.timestamps import as_utc

_UNPUBLISHED = OutboxRow.published_at.is_(None)


async def outbox_backlog(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Outbox rows not yet acknowledged by the broker."""
    async with sessions() as session:
        return await count_unpublished(session)


async def count_unpublished(session: AsyncSession) -> int:
    return int(await session.scalar(
        select(func.count()).select_from(OutboxRow).where(_UNPUBLISHED)) or 0)


async def oldest_unpublished_age_s(sessions: async_sessionmaker[AsyncSession],
                                   now: datetime | None = None) -> float:
    """Seconds the oldest unpublished row has waited; 0.0 when nothing is waiting."""
    async with sessions() as session:
        oldest = await session.scalar(
            select(OutboxRow.created_at).where(_UNPUBLISHED).order_by(OutboxRow.seq).limit(1))
    if oldest is None:
        return 0.0
    return max(0.0, ((now or datetime.now(UTC)) - as_utc(oldest)).total_seconds())


async def last_outbox_seq(sessions: async_sessionmaker[AsyncSession]) -> int:
    """The newest outbox row's publish position (0 for an empty outbox)."""
    async with sessions() as session:
        return int(await session.scalar(select(func.max(OutboxRow.seq))) or 0)


async def unpublished_through(sessions: async_sessionmaker[AsyncSession], seq: int) -> int:
    """Rows up to ``seq`` the broker has not acknowledged yet (later writes do not count, so
    a steady stream of API writes never keeps this from reaching 0)."""
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxRow).where(
            _UNPUBLISHED, OutboxRow.seq <= seq)) or 0)

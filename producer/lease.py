"""A lease row so only one relay process publishes at a time (SQLite has no SKIP LOCKED)."""

from __future__ import annotations

import time

from sqlalchemy import or_, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handwerk.outbox.models import RelayLease


class RelayLeaseKeeper:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], holder: str, ttl: float,
                 name: str = "relay") -> None:
        self._sessions = sessions
        self.holder = holder
        self._ttl = ttl
        self._name = name

    async def acquire(self) -> bool:
        """Take or renew the lease; False while another holder's lease is unexpired."""
        now = time.time()
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(RelayLease)
                .where(RelayLease.name == self._name,
                       or_(RelayLease.holder == self.holder, RelayLease.expires_at < now))
                .values(holder=self.holder, expires_at=now + self._ttl))
            if result.rowcount:  # type: ignore[attr-defined]
                return True
            inserted = await session.execute(
                sqlite_insert(RelayLease)
                .values(name=self._name, holder=self.holder, expires_at=now + self._ttl)
                .on_conflict_do_nothing())
            return bool(inserted.rowcount)  # type: ignore[attr-defined]

    async def release(self) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(RelayLease)
                .where(RelayLease.name == self._name, RelayLease.holder == self.holder)
                .values(expires_at=0.0))

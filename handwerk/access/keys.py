"""API keys: the table, the token format, and the store that creates, lists and revokes them.

A key is ``hw_<id>_<secret>``: the visible prefix lets secret scanners and people recognise
it, ``id`` (12 hex characters) names the row, and only the SHA-256 of the whole token is
stored. The secret has 256 bits of entropy, so a plain hash (no slow KDF) is enough; the
stored hash is compared in constant time. The key itself is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, Float, Index, String, func, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import Base
from handwerk.timestamps import as_utc

TOKEN_PREFIX = "hw_"
_TOKEN = re.compile(r"^hw_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")


class Scope(StrEnum):
    """What a key may do. Scopes are independent (an admin key cannot write projects), except
    that ``/metrics`` accepts ``metrics`` or ``admin``."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    METRICS = "metrics"


class ApiKey(Base):
    """One API key: its hash, never the key. Revoked keys are kept (audit), marked."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[str] = mapped_column(String(200))  # space-separated, sorted
    key_hash: Mapped[str] = mapped_column(String(64))
    rate_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_api_keys_revoked_at", "revoked_at"),)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    name: str
    scopes: frozenset[Scope]
    key_hash: str
    rate_per_s: float | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def matches(self, token: str) -> bool:
        """Whether ``token`` is this key (constant-time comparison of the hashes)."""
        return hmac.compare_digest(hash_token(token), self.key_hash)


def new_token() -> tuple[str, str]:
    """A fresh ``(key_id, token)``."""
    key_id = secrets.token_hex(6)
    return key_id, f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(token: str) -> str | None:
    """The id a well-formed token names, or None for anything that is not one of our keys."""
    match = _TOKEN.match(token)
    return match.group(1) if match else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Scopes from text; ValueError names an unknown one."""
    out = set()
    for value in values:
        try:
            out.add(Scope(value.strip().lower()))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise ValueError(f"unknown scope {value!r} (known: {known})") from None
    if not out:
        raise ValueError("a key needs at least one scope")
    return frozenset(out)


def _record(row: ApiKey) -> KeyRecord:
    return KeyRecord(key_id=row.id, name=row.name,
                     scopes=frozenset(Scope(s) for s in row.scopes.split()),
                     key_hash=row.key_hash, rate_per_s=row.rate_per_s,
                     created_at=as_utc(row.created_at),
                     revoked_at=None if row.revoked_at is None else as_utc(row.revoked_at))


class KeyStore:
    """API keys in the projects database (same engine, same migrations)."""

    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self.sessions = sessions

    async def create(self, name: str, scopes: Iterable[Scope],
                     rate_per_s: float | None = None) -> tuple[KeyRecord, str]:
        """A new key; the token is returned here and never again."""
        key_id, token = new_token()
        row = ApiKey(id=key_id, name=name, scopes=" ".join(sorted(s.value for s in scopes)),
                     key_hash=hash_token(token), rate_per_s=rate_per_s,
                     created_at=datetime.now(UTC), revoked_at=None)
        async with self.sessions() as session, session.begin():
            session.add(row)
        return _record(row), token

    async def get(self, key_id: str) -> KeyRecord | None:
        async with self.sessions() as session:
            row = await session.get(ApiKey, key_id)
            return _record(row) if row is not None else None

    async def list(self, *, include_revoked: bool = False) -> list[KeyRecord]:
        query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        async with self.sessions() as session:
            return [_record(row) for row in (await session.scalars(query)).all()]

    async def revoke(self, key_id: str) -> bool:
        """Mark the key revoked; False if no active key has that id."""
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC)))
        return bool(getattr(result, "rowcount", 0))

    async def count_active(self) -> int:
        async with self.sessions() as session:
            count = await session.scalar(select(func.count()).select_from(ApiKey)
                                         .where(ApiKey.revoked_at.is_(None)))
        return int(count or 0)

    async def counts(self) -> tuple[int, int]:
        """``(keys, active keys)``: every key ever created (revoked ones are kept), and those
        not revoked."""
        async with self.sessions() as session:
            row = (await session.execute(select(
                func.count(), func.count().filter(ApiKey.revoked_at.is_(None)))
                .select_from(ApiKey))).one()
        return int(row[0] or 0), int(row[1] or 0)

    async def ids(self) -> frozenset[str]:
        """The id of every key, active or revoked."""
        async with self.sessions() as session:
            return frozenset((await session.scalars(select(ApiKey.id))).all())


@asynccontextmanager
async def open_key_store(database_url: str) -> AsyncIterator[KeyStore]:
    """A key store on its own engine (CLI, startup checks), schema migrated to head."""
    engine = create_engine(database_url)
    try:
        await run_migrations(engine)
        yield KeyStore(session_factory(engine))
    finally:
        await engine.dispose()

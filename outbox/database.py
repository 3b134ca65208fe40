"""Engine, sessions and migrations for the two databases behind the same SQLAlchemy code:
SQLite (embedded default; WAL mode, so a relay process can read while the serving process
writes) and PostgreSQL through asyncpg (production: several API and relay processes)."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key that serialises migrations across processes ("hwmg" in ASCII)
_MIGRATION_LOCK = 0x68776D67
# The WAL is cut back to this once a checkpoint let it restart: without it the file keeps the
# size of the largest transaction it ever held (a backfill, a reemit, a migration).
SQLITE_WAL_LIMIT = 16 * 1024 * 1024


def async_url(url: str) -> str:
    """A plain ``postgresql://`` (or ``postgres://``) URL, as operators and compose files
    write it, means the asyncpg driver; any URL that names its driver is kept as it is."""
    for plain in ("postgres://", "postgresql://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url[len(plain):]
    return url


def is_postgres(engine: AsyncEngine) -> bool:
    """The relay's LISTEN/NOTIFY and the cross-process migration lock exist only there."""
    return engine.dialect.name == "postgresql"


def engine_of(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine | None:
    """The engine a session factory from ``session_factory`` is bound to."""
    bind = sessions.kw.get("bind")
    return bind if isinstance(bind, AsyncEngine) else None


def create_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() != "asyncpg":
        raise ValueError(f"PostgreSQL needs the asyncpg driver (postgresql+asyncpg://...), got "
                         f"{parsed.drivername!r}")
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_LIMIT}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def run_migrations(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision (runs at every startup).

    Several processes (serve, relay) may start at once on one database: a lock (a file lock
    beside the SQLite file; a transaction-scoped advisory lock on PostgreSQL, whose DDL is
    transactional) makes the others wait and then find the schema at head instead of racing
    to create it."""
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    lock_fd = None
    if database and database != ":memory:":
        lock_fd = os.open(f"{database}.migrate.lock", os.O_RDWR | os.O_CREAT, 0o644)
        await asyncio.to_thread(fcntl.flock, lock_fd, fcntl.LOCK_EX)
    try:
        async with engine.begin() as connection:
            if is_postgres(engine):
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                         {"key": _MIGRATION_LOCK})
            await connection.run_sync(_upgrade)
    finally:
        if lock_fd is not None:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)

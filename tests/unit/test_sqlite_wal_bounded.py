"""The SQLite database's WAL does not keep the size of its largest transaction (a backfill, a
reemit, a migration): once checkpointed it is cut back to ``journal_size_limit``."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from handwerk.outbox.database import SQLITE_WAL_LIMIT, create_engine


async def test_the_wal_shrinks_after_a_large_transaction(tmp_path: Path) -> None:
    path = tmp_path / "handwerk.sqlite"
    wal = path.with_name(path.name + "-wal")
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)"))
        async with engine.begin() as connection:  # one large transaction: about 40 MB
            await connection.execute(text("INSERT INTO blobs (b) SELECT randomblob(100000) "
                                          "FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                                          "SELECT i + 1 FROM n WHERE i < 400) SELECT i FROM n)"))
        largest = wal.stat().st_size
        assert largest > 2 * SQLITE_WAL_LIMIT
        for _ in range(3):  # the autocheckpoint copied it; the next writers restart the WAL
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO blobs (b) VALUES (x'00')"))
        assert wal.stat().st_size <= SQLITE_WAL_LIMIT, (wal.stat().st_size, largest)
    finally:
        await engine.dispose()

"""List-projects paging at 100,000 rows on SQLite and on PostgreSQL, at the store (the query
the API runs, without HTTP): first page with its total, a deep offset page, and a deep keyset
cursor page (``after=(created_at, id)``), 50 rows each, p50/p99 over ``--requests``.

PostgreSQL comes from Debian's package, started by the test suite's helper on a free port in a
temporary folder (as the ``postgres`` user when run as root). Rows are inserted in bulk (no
outbox: paging does not read it). Over HTTP add what `handwerk bench` reports on top.

    .venv/bin/python scripts/bench_list.py --rows 100000 --out bench-results/list-100k.json
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handwerk.outbox.database import create_engine, run_migrations, session_factory  # noqa: E402
from handwerk.outbox.models import Project  # noqa: E402
from handwerk.outbox.store import ProjectStore  # noqa: E402
from tooling.benchmark import latency_summary  # noqa: E402
from tooling.demo import demo_projects  # noqa: E402


async def _fill(url: str, rows: int) -> None:
    engine = create_engine(url)
    await run_migrations(engine)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    projects = demo_projects(min(rows, 5000), seed=9)
    async with engine.begin() as connection:
        for chunk in range(0, rows, 5000):
            await connection.execute(insert(Project), [
                projects[i % len(projects)] | {
                    "id": str(uuid.UUID(int=random.getrandbits(128), version=4)), "version": 1,
                    "created_at": start + timedelta(seconds=i),
                    "updated_at": start + timedelta(seconds=i)}
                for i in range(chunk, min(rows, chunk + 5000))])
    await engine.dispose()


async def _measure(url: str, rows: int, requests: int) -> dict[str, Any]:
    engine = create_engine(url)
    store = ProjectStore(session_factory(engine))
    rng = random.Random(3)
    deep = max(0, rows - 50)
    # the key of a row near the end, for the deep cursor page
    walk = await store.list(limit=1, offset=deep - 1)
    key = (walk.items[0].created_at, walk.items[0].id)
    first, offset, cursor = [], [], []
    for _ in range(10):
        await store.list(limit=50)
    for _ in range(requests):
        started = time.perf_counter()
        await store.list(limit=50)
        first.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await store.list(limit=50, offset=deep - rng.randrange(0, rows // 10))
        offset.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        page = await store.list(limit=50, after=key)
        cursor.append((time.perf_counter() - started) * 1000)
        assert len(page.items) == 50 and page.total is None
    await engine.dispose()
    return {"first_page_with_total": latency_summary(first), "deep_offset": latency_summary(offset),
            "deep_cursor": latency_summary(cursor)}


def main(rows: int = 100_000, requests: int = 200,
         out: Path = Path("bench-results/list-100k.json")) -> None:
    import tempfile

    from tests.postgres import PostgresServer

    results: dict[str, Any] = {"rows": rows, "requests": requests}
    with tempfile.TemporaryDirectory(prefix="handwerk-list-") as folder:
        sqlite = f"sqlite+aiosqlite:///{folder}/list.db"
        started = time.perf_counter()
        asyncio.run(_fill(sqlite, rows))
        print(f"sqlite: {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
        results["sqlite"] = asyncio.run(_measure(sqlite, rows, requests))
    with PostgresServer() as server:
        url = asyncio.run(server.create_database())
        started = time.perf_counter()
        asyncio.run(_fill(url, rows))
        print(f"postgres: {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
        results["postgres"] = asyncio.run(_measure(url, rows, requests))
    for db in ("sqlite", "postgres"):
        print(db, {k: (v["p50_ms"], v["p99_ms"]) for k, v in results[db].items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"JSON: {out}")


if __name__ == "__main__":
    typer.run(main)

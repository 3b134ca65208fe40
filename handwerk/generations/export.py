"""What the serving process hands a builder from the live generation.

Two exports, both written by the serving process (the only one that may open the live shard):

* for a compaction, every point of the live generation into ``export.sqlite`` in the new
  generation's folder: one table ``points (id TEXT PRIMARY KEY, vector BLOB, payload TEXT)``,
  vectors as float32 bytes (NULL for a tombstone), payloads as JSON; the builder copies it;
* for a rebuild with the same model, the live generation's vectors into the vector cache, keyed
  by the content key of the weights that made them and the text hash, so the builder embeds
  nothing it already knows.

Both run beside the searches, on the event loop, and the engine's ``scroll`` holds the GIL (a
thread would not help): so they read small pages and, after each, leave the loop to the
searches for at least as long as the page took on it (``_paced``). A search then waits for at
most one small page per loop turn it needs; with 256-point pages and a bare ``sleep(0)`` one
waited 154 ms (issue 18 §6, ``scripts/measure_export_pause.py``).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from handwerk.embedding.specs import model_key
from handwerk.embedding.vector_cache import VectorCache
from handwerk.index.active import IndexTarget
from handwerk.index.protocol import StoredPoint

EXPORT = "export.sqlite"
PAGE = 64  # points per page: about 2 ms of scroll and conversion on the loop at 384-d
REST = 1.0  # after each page, the loop goes to others for REST times what the page took

T = TypeVar("T")


async def _paced(pages: AsyncIterator[list[StoredPoint]],
                 convert: Callable[[list[StoredPoint]], T]) -> AsyncIterator[T]:
    """Each page of ``pages`` through ``convert``; then, before the next page, the loop is
    left to others for at least as long as reading and converting this one took (what the
    caller awaits meanwhile, e.g. its write in a thread, counts): the export takes at most
    half of the loop's time, in slices of one page."""
    while True:
        started = time.perf_counter()
        page = await anext(pages, None)
        if page is None:
            return
        converted = convert(page)
        handed = time.perf_counter()
        yield converted
        await asyncio.sleep(max(0.0, REST * (handed - started) - (time.perf_counter() - handed)))


def _export_rows(page: list[StoredPoint]) -> list[tuple[str, bytes | None, str]]:
    return [(p.project_id,
             np.asarray(p.vector, dtype=np.float32).tobytes() if p.vector and not p.deleted
             else None,
             json.dumps(p.payload)) for p in page]


def _insert(db: sqlite3.Connection, rows: list[tuple[str, bytes | None, str]]) -> None:
    """In the worker thread, cursor and all: a cursor handed back to the loop and collected
    there later resets its statement, which the next write may be running in the worker
    (``InterfaceError: bad parameter or other API misuse``, seen once the export paused)."""
    db.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?)", rows).close()


async def export_points(target: IndexTarget, path: Path) -> int:
    """Every point of ``target`` (tombstones included) into an export at ``path``."""
    db = await asyncio.to_thread(_create_export, path)  # file and schema: disk waits
    exported = 0
    try:
        async for rows in _paced(target.index.iter_points(page=PAGE), _export_rows):
            await asyncio.to_thread(_insert, db, rows)
            exported += len(rows)
        await asyncio.to_thread(db.commit)
    finally:
        await asyncio.to_thread(db.close)
    return exported


def _create_export(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False)
    try:
        db.execute("CREATE TABLE IF NOT EXISTS points (id TEXT PRIMARY KEY, vector BLOB, "
                   "payload TEXT NOT NULL)")
    except BaseException:
        db.close()
        raise
    return db


def count_exported(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM points").fetchone()[0])


def export_rows(path: Path) -> Iterator[list[StoredPoint]]:
    """The export the serving process wrote, page by page."""
    with sqlite3.connect(path) as db:
        cursor = db.execute("SELECT id, vector, payload FROM points")
        while rows := cursor.fetchmany(256):
            yield [StoredPoint(pid, np.frombuffer(vector, dtype=np.float32).tolist()
                               if vector else None, json.loads(payload))
                   for pid, vector, payload in rows]


def _known_vectors(page: list[StoredPoint]) -> list[tuple[str, np.ndarray]]:
    """float32 here, on the loop, where the pause accounts for it: the cache's check of
    each row then holds the GIL in its thread as briefly as it can."""
    return [(p.payload["text_hash"], np.asarray(p.vector, dtype=np.float32)) for p in page
            if not p.deleted and p.vector is not None and p.payload.get("text_hash")]


async def export_vectors(cache_path: Path, target: IndexTarget) -> int:
    """Known vectors of ``target`` into the vector cache, so the builder embeds nothing it
    already knows (same model, same text). Keyed by the content key of the weights that made
    them (the generation's): a builder with other weights, even under the same name, finds
    none. A generation that records no content key exports nothing."""
    if target.content_key is None:
        return 0
    cache = await asyncio.to_thread(VectorCache, cache_path)  # may create it: disk waits
    key = model_key(target.content_key, target.embedder.dimension)
    exported = 0
    try:
        async for items in _paced(target.index.iter_points(page=PAGE), _known_vectors):
            if items:
                exported += await asyncio.to_thread(cache.put_many, key, items)
    finally:
        await asyncio.to_thread(cache.close)
    return exported

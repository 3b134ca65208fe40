"""What the serving process hands a builder from the live generation.

Two exports, both written by the serving process (the only one that may open the live shard):

* for a compaction, every point of the live generation into ``export.sqlite`` in the new
  generation's folder: one table ``points (id TEXT PRIMARY KEY, vector BLOB, payload TEXT)``,
  vectors as float32 bytes (NULL for a tombstone), payloads as JSON; the builder copies it;
* for a rebuild with the same model, the live generation's vectors into the vector cache, keyed
  by the content key of the weights that made them and the text hash, so the builder embeds
  nothing it already knows.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from handwerk.embedding.specs import model_key
from handwerk.embedding.vector_cache import VectorCache
from handwerk.index.active import IndexTarget
from handwerk.index.protocol import StoredPoint

EXPORT = "export.sqlite"


async def export_points(target: IndexTarget, path: Path) -> int:
    """Every point of ``target`` (tombstones included) into an export at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False)
    exported = 0
    try:
        db.execute("CREATE TABLE IF NOT EXISTS points (id TEXT PRIMARY KEY, vector BLOB, "
                   "payload TEXT NOT NULL)")
        async for page in target.index.iter_points():
            rows = [(p.project_id,
                     np.asarray(p.vector, dtype=np.float32).tobytes()
                     if p.vector and not p.deleted else None,
                     json.dumps(p.payload)) for p in page]
            await asyncio.to_thread(db.executemany,
                                    "INSERT OR REPLACE INTO points VALUES (?, ?, ?)", rows)
            exported += len(rows)
        await asyncio.to_thread(db.commit)
    finally:
        db.close()
    return exported


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


async def export_vectors(cache_path: Path, target: IndexTarget) -> int:
    """Known vectors of ``target`` into the vector cache, so the builder embeds nothing it
    already knows (same model, same text). Keyed by the content key of the weights that made
    them (the generation's): a builder with other weights, even under the same name, finds
    none. A generation that records no content key exports nothing."""
    if target.content_key is None:
        return 0
    cache = VectorCache(cache_path)
    key = model_key(target.content_key, target.embedder.dimension)
    exported = 0
    try:
        async for page in target.index.iter_points():
            items = [(p.payload["text_hash"], p.vector) for p in page
                     if not p.deleted and p.vector is not None and p.payload.get("text_hash")]
            if items:
                exported += await asyncio.to_thread(cache.put_many, key, items)
    finally:
        cache.close()
    return exported

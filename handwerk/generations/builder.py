"""Build one generation in a process of its own (``handwerk build-generation``).

The serving process never builds: Qdrant Edge's ``optimize()`` holds the GIL for its whole
run, and a second process must never open the live shard. So the serving process writes a
``request.json`` into the new generation's folder and starts this builder as a child; the
builder opens only its own, new generation, fills it (from the topic, or from an export of
the live generation for a compaction), drops the tombstones the rule allows, builds the HNSW
graph, closes cleanly and marks the generation ``ready`` with the offsets it reached. It
reports progress in ``progress.json``. If it dies, the generation stays ``building`` and is
removed: the live generation is never touched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from handwerk.consumer.applier import IndexApplier
from handwerk.embedding import Embedder, resolve_model
from handwerk.embedding.vector_cache import VectorCache
from handwerk.files import write_json_atomically
from handwerk.generations.replay import ReplayProgress, replay
from handwerk.index.catalog import now_iso
from handwerk.index.factory import open_catalog
from handwerk.index.protocol import StoredPoint, Tombstone, UpsertPoint, VectorIndex
from handwerk.metrics import Metrics
from handwerk.settings import Settings

log = logging.getLogger(__name__)

REQUEST, PROGRESS, EXPORT = "request.json", "progress.json", "export.sqlite"


@dataclass(frozen=True, slots=True)
class BuildRequest:
    generation: str
    source: str  # topic | db | compaction | model
    model: str
    start: dict[str, int] | None  # partition -> first offset to replay; None: the log start
    until: dict[str, int]  # partition -> stop before this offset
    drop_deletes_before: str  # tombstones of deletes before this time may go
    inherited_refuse_before: str | None = None  # the replaced lineage's dropped-deletes time
    reuse_vectors: bool = True  # take known vectors from the cache (same model, same text)
    settings: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        write_json_atomically(folder / REQUEST, request_document(self))

    @classmethod
    def read(cls, folder: Path) -> BuildRequest:
        return cls(**json.loads((folder / REQUEST).read_text()))


def request_document(request: BuildRequest) -> dict[str, Any]:
    return {k: getattr(request, k) for k in BuildRequest.__dataclass_fields__}


def load_embedder(settings: Settings, model: str | None, *, latency: bool = True) -> Embedder:
    """The embedder for a model spec, with this deployment's threads and caches; ``latency``
    False: no session for lone writes (a builder embeds in batches)."""
    embedder = Embedder.from_spec(
        resolve_model(model, default_backend=settings.embedding_backend),
        cache_dir=settings.model_cache_dir or settings.data_dir / "models",
        threads=settings.embedding_threads, query_threads=settings.query_threads,
        batch_size=settings.embedding_batch_size, query_quantization=settings.query_quantization,
        latency_threads=settings.embedding_latency_threads if latency else 0)
    embedder.load()
    return embedder


def later(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return max(a, b, key=datetime.fromisoformat)


class _ProgressFile:
    def __init__(self, path: Path, phase: str) -> None:
        self._path, self._last = path, 0.0
        self.document: dict[str, Any] = {"phase": phase, "started_at": now_iso()}

    def update(self, force: bool = False, **fields: Any) -> None:
        self.document.update(fields, updated_at=now_iso())
        if force or time.monotonic() - self._last >= 0.5:
            write_json_atomically(self._path, self.document)
            self._last = time.monotonic()

    def replaying(self, progress: ReplayProgress) -> None:
        self.update(total=progress.total, read=progress.read, applied=progress.applied,
                    embedded=progress.embedded, reused=progress.reused, skipped=progress.skipped,
                    rate=round(progress.rate, 1),
                    eta_s=None if progress.eta_s is None else round(progress.eta_s, 1))


def export_rows(path: Path) -> Iterator[list[StoredPoint]]:
    """The export the serving process wrote (vectors as float32 blobs, payloads as JSON)."""
    with sqlite3.connect(path) as db:
        cursor = db.execute("SELECT id, vector, payload FROM points")
        while rows := cursor.fetchmany(256):
            yield [StoredPoint(pid, np.frombuffer(vector, dtype=np.float32).tolist()
                               if vector else None, json.loads(payload))
                   for pid, vector, payload in rows]


async def _copy_export(index: VectorIndex, path: Path, progress: _ProgressFile,
                       total: int) -> None:
    copied = 0
    for page in export_rows(path):
        upserts = [UpsertPoint(p.project_id, int(p.payload["version"]), p.vector, p.payload)
                   for p in page if not p.deleted and p.vector is not None]
        tombstones = [Tombstone(p.project_id, int(p.payload["version"]), p.payload.get("deleted_at"))
                      for p in page if p.deleted]
        await index.write(upserts, tombstones)
        copied += len(page)
        progress.update(total=total, read=copied, applied=copied)


async def build(settings: Settings, folder: Path) -> None:
    """Runs in the builder process. Raises on failure (the caller exits non-zero)."""
    request = BuildRequest.read(folder)
    catalog = open_catalog(settings)
    meta = catalog.folder.read_meta(request.generation)
    if meta is None or meta.state != "building":
        raise RuntimeError(f"generation {request.generation} is not being built")
    progress = _ProgressFile(folder / PROGRESS, "loading model")
    progress.update(force=True)
    embedder = await asyncio.to_thread(partial(load_embedder, latency=False), settings,
                                       request.model)
    meta = meta.with_(model=embedder.model_name, dimension=embedder.dimension)
    catalog.folder.write_meta(meta)
    index = catalog.index(request.generation, model=embedder.model_name,
                          dimension=embedder.dimension)
    await index.open()
    cache = VectorCache(settings.vector_cache_path)
    try:
        started = time.monotonic()
        if request.source == "compaction":
            with sqlite3.connect(folder / EXPORT) as db:
                total = int(db.execute("SELECT count(*) FROM points").fetchone()[0])
            progress.update(force=True, phase="copying", total=total, read=0)
            await _copy_export(index, folder / EXPORT, progress, total)
            reached = dict(request.start or {})
        else:
            progress.update(force=True, phase="replaying")
            applier = IndexApplier(index, embedder, Metrics(),
                                   cache=cache if request.reuse_vectors else None)
            reached_int = await replay(
                settings, applier,
                start=None if request.start is None else {int(p): o for p, o in request.start.items()},
                until={int(p): o for p, o in request.until.items()},
                on_progress=progress.replaying)
            reached = {str(p): o for p, o in reached_int.items()}
        filled_s = time.monotonic() - started
        progress.update(force=True, phase="dropping tombstones")
        dropped, newest = await index.drop_tombstones(request.drop_deletes_before)
        progress.update(force=True, phase="building HNSW")
        optimize_started = time.monotonic()
        await asyncio.to_thread(index.optimize)  # this process serves nothing: GIL is fine
        optimize_s = time.monotonic() - optimize_started
        stats = await index.stats()
        await index.close()
        catalog.folder.write_meta(meta.with_(
            state="ready", offsets=reached, points=stats.points_count,
            tombstones_dropped=dropped,
            dropped_deletes_before=later(request.inherited_refuse_before, newest)))
        progress.update(force=True, phase="ready", points=stats.points_count,
                        tombstones=stats.tombstones_count, tombstones_dropped=dropped,
                        fill_s=round(filled_s, 2), optimize_s=round(optimize_s, 2))
    finally:
        await index.close()
        cache.close()
        await embedder.aclose()


def tombstone_cutoff(horizon_s: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=horizon_s)).isoformat()

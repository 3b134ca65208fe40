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
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from handwerk.consumer.applier import IndexApplier
from handwerk.embedding.embedder import Embedder
from handwerk.embedding.loading import load_embedder
from handwerk.embedding.vector_cache import VectorCache
from handwerk.files import write_json_atomically
from handwerk.generations.export import EXPORT, count_exported, export_rows
from handwerk.generations.replay import ReplayProgress, replay
from handwerk.index.factory import open_catalog
from handwerk.index.protocol import Tombstone, UpsertPoint, VectorIndex
from handwerk.metrics import Metrics
from handwerk.settings import Settings
from handwerk.timestamps import now_iso

log = logging.getLogger(__name__)

REQUEST, PROGRESS = "request.json", "progress.json"


@dataclass(frozen=True, slots=True)
class BuildRequest:
    generation: str
    source: str  # topic | db | compaction | model
    model: str
    start: dict[str, int] | None  # partition -> first offset to replay; None: the log start
    until: dict[str, int]  # partition -> stop before this offset
    drop_deletes_before: str  # tombstones of deletes before this time may go
    # the live generation's cutoff (for a database build, the later of it and the snapshot's)
    inherited_refuse_before: str | None = None
    reuse_vectors: bool = True  # take known vectors from the cache (same model, same text)
    # compaction: the live generation's content key (its vectors are copied, not embedded)
    content_key: str | None = None
    # flat settings without secrets (``child.settings_document``); these come by environment
    settings: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        write_json_atomically(folder / REQUEST, request_document(self))

    @classmethod
    def read(cls, folder: Path) -> BuildRequest:
        return cls(**json.loads((folder / REQUEST).read_text()))


def request_document(request: BuildRequest) -> dict[str, Any]:
    return {k: getattr(request, k) for k in BuildRequest.__dataclass_fields__}


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


async def _fill(settings: Settings, folder: Path, request: BuildRequest, index: VectorIndex,
                embedder: Embedder, cache: VectorCache, progress: _ProgressFile) -> dict[str, int]:
    """Copy the export (compaction) or replay the topic into the new generation; returns the
    offsets it then stands at."""
    if request.source == "compaction":
        total = count_exported(folder / EXPORT)
        progress.update(force=True, phase="copying", total=total, read=0)
        await _copy_export(index, folder / EXPORT, progress, total)
        return dict(request.start or {})
    progress.update(force=True, phase="replaying")
    applier = IndexApplier(index, embedder, Metrics(),
                           cache=cache if request.reuse_vectors else None)
    reached = await replay(
        settings, applier,
        start=None if request.start is None else {int(p): o for p, o in request.start.items()},
        until={int(p): o for p, o in request.until.items()},
        on_progress=progress.replaying)
    return {str(p): o for p, o in reached.items()}


async def build(settings: Settings, folder: Path) -> None:
    """Runs in the builder process. Raises on failure (the caller exits non-zero)."""
    request = BuildRequest.read(folder)
    catalog = open_catalog(settings)
    meta = catalog.folder.read_meta(request.generation)
    if meta is None or meta.state != "building":
        raise RuntimeError(f"generation {request.generation} is not being built")
    progress = _ProgressFile(folder / PROGRESS, "loading model")
    progress.update(force=True)
    # every core by default: this process runs at background priority (child.py)
    threads = settings.generations.builder_threads or os.cpu_count() or 1
    embedder = await asyncio.to_thread(partial(load_embedder, latency=False),
                                       settings.replaced(embedding_threads=threads), request.model)
    # the weights that make (or, for a compaction, made) the vectors it will hold
    weights = request.content_key if request.source == "compaction" else embedder.content_key
    meta = meta.with_(model=embedder.model_name, dimension=embedder.dimension,
                      content_key=weights)
    catalog.folder.write_meta(meta)
    index = catalog.index(request.generation, model=embedder.model_name,
                          dimension=embedder.dimension)
    await index.open()
    cache = VectorCache(settings.vector_cache_path)
    try:
        started = time.monotonic()
        reached = await _fill(settings, folder, request, index, embedder, cache, progress)
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

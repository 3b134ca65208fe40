"""Import the older service's projects database into handwerk, through the outbox.

The legacy format (one SQLite table, the embedding a JSON array in a TEXT column)::

    projects(id INTEGER PRIMARY KEY, name TEXT, description TEXT, project_type TEXT,
             region TEXT, total_area_sqm REAL, wood_type TEXT, complexity INTEGER,
             final_price REAL, embedding TEXT /* JSON array of floats, or NULL */,
             created_at TEXT)

Every valid row becomes a normal write (project row + outbox event in one transaction, a
chunk per transaction), so the relay and the consumer index it like any other write. The
project id is derived from the legacy id (``legacy_project_id``): a re-run finds what it
already wrote and skips it. A project deleted since an earlier run stays deleted (the database
remembers deletes, ``deleted_projects``): a re-run skips and reports it, unless asked to
restore deleted projects, which re-creates them above their tombstone version. Rows that fail
``ProjectFields`` are counted with their reason and never stop the import.

Legacy vectors are reused only when they provably are what the consumer would compute: the
same model and dimension, and a sample of rows re-embedded here agrees (cosine >= 0.99).
Reused vectors go into the shared ``VectorCache`` *before* the rows are written, so the
consumer can take them from there instead of embedding. Otherwise nothing is cached and the
consumer embeds as usual; the report says which case it was and why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from handwerk.contract.events import SOURCE
from handwerk.contract.text import project_text, text_hash
from handwerk.embedding.specs import model_key
from handwerk.embedding.vector_cache import VectorCache
from handwerk.outbox.project_fields import PROJECT_FIELDS, ProjectFields
from handwerk.outbox.store import NewProject, ProjectStore
from handwerk.timestamps import as_utc

if TYPE_CHECKING:
    from handwerk.settings import Settings

log = logging.getLogger(__name__)

LEGACY_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
"""What the older service embedded with; its database does not record it."""
LEGACY_NAMESPACE = uuid.UUID("d8aff6ce-963d-4dc5-b9c8-616f60babbd6")
LEGACY_SOURCE = f"{SOURCE}:legacy-import"
LEGACY_COLUMNS = ("id", *PROJECT_FIELDS, "embedding", "created_at")
SAMPLE_SIZE = 5
MIN_COSINE = 0.99
FAILURE_SAMPLES = 20

Embed = Callable[[list[str]], Awaitable[np.ndarray]]
Progress = Callable[[int, int], None]


class LegacyFormatError(ValueError):
    """The file is not a legacy projects database (missing, unreadable, wrong columns)."""


def legacy_project_id(legacy_id: int) -> str:
    """Deterministic, so a re-run (or a second importer) writes the same project."""
    return str(uuid.uuid5(LEGACY_NAMESPACE, f"legacy:{legacy_id}"))


@dataclass(slots=True)
class ImportReport:
    source: str
    total: int = 0
    migrated: int = 0
    already_present: int = 0
    deleted_skipped: int = 0
    """Rows whose project was deleted after an earlier import: left deleted."""
    deleted_ids: list[str] = field(default_factory=list)
    """Their project ids (all of them)."""
    restored: int = 0
    """Deleted projects re-created on request (``restore_deleted``; counted in ``migrated``)."""
    restored_ids: list[str] = field(default_factory=list)
    failed: int = 0
    failed_samples: list[tuple[int, str]] = field(default_factory=list)
    """Up to ``FAILURE_SAMPLES`` (legacy id, reason) pairs."""
    vectors_reused: int = 0
    """Migrated projects whose verified legacy vector is in the cache for the consumer."""
    vectors_recomputed: int = 0
    """Migrated projects the consumer embeds itself (no legacy vector, or not reusable)."""
    vectors_reusable: bool = False
    vector_check: str = ""
    """Why the legacy vectors were or were not reused."""
    sample_min_cosine: float | None = None
    seconds: float = 0.0

    @property
    def per_project_ms(self) -> float:
        """Wall time per legacy row (migrated, skipped or failed alike)."""
        return self.seconds * 1000 / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed_samples": [list(s) for s in self.failed_samples],
                "per_project_ms": round(self.per_project_ms, 3), "seconds": round(self.seconds, 3)}


@dataclass(frozen=True, slots=True)
class LegacyRow:
    legacy_id: int
    fields: ProjectFields | None
    error: str | None
    vector: np.ndarray | None
    created_at: datetime | None


class LegacyDatabase:
    """Read-only access to a legacy file (blocking: call through ``asyncio.to_thread``)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise LegacyFormatError(f"{path}: no such file")
        try:
            self._connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                               check_same_thread=False)
            columns = {row[1] for row in self._connection.execute("PRAGMA table_info(projects)")}
        except sqlite3.DatabaseError as e:
            raise LegacyFormatError(f"{path}: not a readable SQLite database ({e})") from e
        missing = [c for c in LEGACY_COLUMNS if c not in columns]
        if missing:
            self._connection.close()
            raise LegacyFormatError(f"{path}: table 'projects' lacks the legacy column(s) "
                                    f"{', '.join(missing)}" if columns else
                                    f"{path}: no table 'projects'")
        self._select = f"SELECT {', '.join(LEGACY_COLUMNS)} FROM projects"

    def close(self) -> None:
        self._connection.close()

    def count(self) -> int:
        return int(self._connection.execute("SELECT count(*) FROM projects").fetchone()[0])

    def count_with_vectors(self) -> int:
        return int(self._connection.execute(
            "SELECT count(*) FROM projects WHERE embedding IS NOT NULL").fetchone()[0])

    def page(self, after: int | None, limit: int) -> list[dict[str, Any]]:
        """Rows in legacy id order after ``after`` (keyset paging)."""
        if after is None:
            cursor = self._connection.execute(f"{self._select} ORDER BY id LIMIT ?", (limit,))
        else:
            cursor = self._connection.execute(f"{self._select} WHERE id > ? ORDER BY id LIMIT ?",
                                              (after, limit))
        return [dict(zip(LEGACY_COLUMNS, row, strict=True)) for row in cursor.fetchall()]

    def spread_with_vectors(self, n: int) -> list[dict[str, Any]]:
        """Up to ``n`` rows with a vector, evenly spread over the table (not just its start)."""
        having = self.count_with_vectors()
        offsets = sorted({i * having // n for i in range(n)}) if having else []
        rows = []
        for offset in offsets:
            row = self._connection.execute(
                f"{self._select} WHERE embedding IS NOT NULL ORDER BY id LIMIT 1 OFFSET ?",
                (offset,)).fetchone()
            if row is not None:
                rows.append(dict(zip(LEGACY_COLUMNS, row, strict=True)))
        return rows


def _reason(error: ValidationError) -> str:
    """The field and what is wrong, never the value itself."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}"
                     for e in error.errors())


def _vector(raw: Any) -> np.ndarray | None:
    """The stored embedding, or None where there is none or it is not a finite float array."""
    if raw is None:
        return None
    try:
        array = np.asarray(json.loads(raw), dtype=np.float32)
    except (TypeError, ValueError):
        return None
    if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
        return None
    return array


def _created_at(raw: Any) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    return as_utc(moment)


def parse_row(raw: Mapping[str, Any]) -> LegacyRow:
    """Validate one legacy row. NULL description or wood type (both optional in handwerk)
    read as empty; anything else ``ProjectFields`` refuses makes the row fail."""
    values = {name: raw.get(name) for name in PROJECT_FIELDS}
    for optional in ("description", "wood_type"):
        if values[optional] is None:
            values[optional] = ""
    try:
        fields: ProjectFields | None = ProjectFields.model_validate(values)
        error = None
    except ValidationError as e:
        fields, error = None, _reason(e)
    return LegacyRow(legacy_id=int(raw["id"]), fields=fields, error=error,
                     vector=_vector(raw.get("embedding")), created_at=_created_at(raw.get("created_at")))


def _cosines(stored: np.ndarray, fresh: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(stored, axis=1) * np.linalg.norm(fresh, axis=1)
    return (stored * fresh).sum(axis=1) / np.maximum(norms, 1e-12)  # type: ignore[no-any-return]


async def _check_vectors(legacy: LegacyDatabase, *, legacy_model: str, model_name: str,
                         dimension: int, embed: Embed | None, report: ImportReport) -> None:
    """Decide whether the legacy vectors are what the consumer would compute; record why."""
    having = await asyncio.to_thread(legacy.count_with_vectors)
    if having == 0:
        report.vector_check = "the legacy database holds no vectors: the consumer embeds"
        return
    if legacy_model != model_name:
        report.vector_check = (f"legacy vectors are from {legacy_model}, the index uses "
                               f"{model_name}: not reused, the consumer embeds")
        return
    if embed is None:
        report.vector_check = "no encoder to verify the legacy vectors: not reused, the consumer embeds"
        return
    candidates = [parse_row(r) for r in await asyncio.to_thread(legacy.spread_with_vectors,
                                                                 SAMPLE_SIZE * 4)]
    usable = [r for r in candidates if r.fields is not None and r.vector is not None]
    sample = [r for r in usable if r.vector is not None and r.vector.size == dimension][:SAMPLE_SIZE]
    if not sample:
        sizes = sorted({r.vector.size for r in usable if r.vector is not None})
        report.vector_check = (f"legacy vectors have dimension {sizes or 'unreadable'}, the index "
                               f"uses {dimension}: not reused, the consumer embeds")
        return
    texts = [project_text(r.fields.model_dump()) for r in sample if r.fields is not None]
    fresh = np.asarray(await embed(texts), dtype=np.float32)
    stored = np.vstack([r.vector for r in sample if r.vector is not None])
    lowest = float(_cosines(stored, fresh).min())
    report.sample_min_cosine = round(lowest, 6)
    if lowest < MIN_COSINE or math.isnan(lowest):
        report.vector_check = (
            f"sample check failed: re-embedding {len(sample)} legacy rows gives cosine {lowest:.3f} "
            f"< {MIN_COSINE} to the stored vectors (the old service embedded another text or "
            "model): not reused, the consumer embeds")
        return
    report.vectors_reusable = True
    report.vector_check = (f"verified on {len(sample)} sampled rows (min cosine {lowest:.4f}): "
                           f"legacy vectors reused through the vector cache")


async def import_legacy(path: Path, store: ProjectStore, cache: VectorCache | None, *,
                        model_name: str, dimension: int, embed: Embed | None,
                        progress: Progress | None = None, chunk: int = 200,
                        legacy_model: str = LEGACY_MODEL,
                        restore_deleted: bool = False) -> ImportReport:
    """Migrate every row of the legacy database at ``path``; idempotent (see module doc).
    Projects deleted since an earlier import are skipped and reported, or with
    ``restore_deleted`` re-created above the version of their delete.

    ``embed`` embeds the verification sample only (``SAMPLE_SIZE`` texts); without it, or
    without ``cache``, no legacy vector is reused. ``progress(done, total)`` is called after
    every chunk. Raises ``LegacyFormatError`` if ``path`` is not a legacy database.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    started = time.perf_counter()
    legacy = await asyncio.to_thread(LegacyDatabase, path)
    report = ImportReport(source=str(path))
    try:
        report.total = await asyncio.to_thread(legacy.count)
        await _check_vectors(legacy, legacy_model=legacy_model, model_name=model_name,
                             dimension=dimension, embed=embed, report=report)
        if cache is None and report.vectors_reusable:
            report.vectors_reusable = False
            report.vector_check += "; but no vector cache was given: not reused"
        key = model_key(model_name, dimension)
        done, after = 0, None
        while page := await asyncio.to_thread(legacy.page, after, chunk):
            after = page[-1]["id"]
            done += len(page)
            await _import_chunk([parse_row(raw) for raw in page], store, cache, key,
                                dimension, report, restore_deleted=restore_deleted)
            if progress is not None:
                progress(done, max(report.total, done))
    finally:
        await asyncio.to_thread(legacy.close)
        report.seconds = time.perf_counter() - started
    return report


async def _import_chunk(rows: Sequence[LegacyRow], store: ProjectStore, cache: VectorCache | None,
                        key: str, dimension: int, report: ImportReport, *,
                        restore_deleted: bool) -> None:
    items: list[NewProject] = []
    cached: set[str] = set()
    to_cache: list[tuple[str, list[float]]] = []
    for row in rows:
        if row.fields is None:
            report.failed += 1
            if len(report.failed_samples) < FAILURE_SAMPLES:
                report.failed_samples.append((row.legacy_id, row.error or "invalid"))
            continue
        project_id = legacy_project_id(row.legacy_id)
        items.append(NewProject(project_id, row.fields, row.created_at))
        if report.vectors_reusable and row.vector is not None and row.vector.size == dimension:
            unit = row.vector / max(float(np.linalg.norm(row.vector)), 1e-12)
            to_cache.append((text_hash(project_text(row.fields.model_dump())), unit.tolist()))
            cached.add(project_id)
    if to_cache and cache is not None:  # before the rows: the consumer may see them at once
        await asyncio.to_thread(cache.put_many, key, to_cache)
    result = await store.create_many(items, source=LEGACY_SOURCE, restore_deleted=restore_deleted)
    created = result.created
    report.migrated += len(created)
    report.deleted_skipped += len(result.deleted)
    report.deleted_ids.extend(pid for pid, _ in result.deleted)
    report.restored += len(result.restored)
    report.restored_ids.extend(result.restored)
    report.already_present += len(items) - len(created) - len(result.deleted)
    reused = sum(1 for row in created if row.id in cached)
    report.vectors_reused += reused
    report.vectors_recomputed += len(created) - reused


def legacy_vector_count(path: Path) -> int:
    """How many legacy rows carry a vector (blocking; raises ``LegacyFormatError``)."""
    legacy = LegacyDatabase(path)
    try:
        return legacy.count_with_vectors()
    finally:
        legacy.close()


async def _index_model(settings: Settings, indexes: Any) -> str | Path | None:
    """The model of the live generation, as serve runs it (a data folder keeps the model that
    built its index, whatever is configured now); the configured one before there is an index
    or when the index cannot be asked (the legacy vectors are then only reused if they match
    the configured model, and a vector cache entry is keyed by its model's content key, so a
    wrong guess costs an embedding, never a wrong vector)."""
    try:
        catalog = indexes.catalog()
        current = await catalog.current()
        meta = catalog.folder.read_meta(current) if current is not None else None
    except Exception as e:  # an unreachable Qdrant server: the import needs only the database
        log.warning("could not read the live generation's model (%s); assuming the configured one", e)
        meta = None
    return meta.model if meta is not None else settings.embedding.model_path


async def run_legacy_import(settings: Settings, path: Path, *, legacy_model: str = LEGACY_MODEL,
                            chunk: int = 200, progress: Progress | None = None,
                            restore_deleted: bool = False) -> ImportReport:
    """What ``handwerk import-legacy`` runs: the database through a Runtime that opens neither
    index nor relay (so no data-folder lock: it runs next to ``handwerk serve``), the shared
    vector cache, and the encoder loaded only when there are legacy vectors of the model the
    index uses to verify (``SAMPLE_SIZE`` texts)."""
    from handwerk.embedding.embedder import Embedder
    from handwerk.index.factory import IndexFactory
    from handwerk.process.runtime import Roles, Runtime

    model = await _index_model(settings, IndexFactory(settings))
    embedder = Embedder(None if model is None else Path(model), backend=settings.embedding.backend,
                        cache_dir=settings.embedding.model_cache_dir or settings.data_dir / "models",
                        threads=settings.embedding.threads, query_threads=1,
                        batch_size=settings.embedding.batch_size)
    verify = (legacy_model == embedder.model_name
              and await asyncio.to_thread(legacy_vector_count, path) > 0)
    roles = Roles(api=False, relay=False, consumer=False, reconcile_on_start=False)
    cache = await asyncio.to_thread(VectorCache, settings.vector_cache_path,
                                    max_bytes=settings.embedding.vector_cache_max_bytes)
    try:
        async with Runtime(settings, roles) as runtime:
            if verify:
                await asyncio.to_thread(embedder.load)
            return await import_legacy(
                path, runtime.require_store(), cache, model_name=embedder.model_name,
                # without the encoder nothing is cached, so no cache key needs the dimension
                dimension=embedder.dimension if verify else 0,
                embed=embedder.embed_documents if verify else None,
                progress=progress, chunk=chunk, legacy_model=legacy_model,
                restore_deleted=restore_deleted)
    finally:
        await embedder.aclose()
        await asyncio.to_thread(cache.close)

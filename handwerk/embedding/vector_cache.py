"""A persistent cache of computed vectors: (model key, text hash) -> float32 vector.

One SQLite file (WAL) that several processes share: an importer writes vectors it already
has (e.g. from a legacy database), the consumer reads them instead of embedding the same text
again. The key is the model *and* its dimension (``handwerk.embedding.specs.model_key``) plus
``text_hash`` of the embedded text (``handwerk.contract.text``), so a vector is only ever reused
for the exact text and model it was made by.

Bounded on disk: ``max_bytes`` caps the database file (a write past it evicts the least
recently used vectors), ``prune`` drops the models no generation uses any more
(``prune_vector_cache``, called by the generations' upkeep), and freed pages go back to the
filesystem (incremental auto-vacuum, then a WAL checkpoint), so the file shrinks, not only its
row count. A rowid table, not WITHOUT ROWID: a row of a 384-d vector (about 1.7 KB) is over
that layout's in-page limit (about 1 KB at 4 KiB pages), so each row took an overflow page:
4.7 KB per vector instead of 2.2 KB (measured, 10,000 vectors). Files of that first schema are
migrated when opened.

Synchronous on purpose (SQLite is): callers on the event loop use ``asyncio.to_thread``.
One connection guarded by a lock, so one instance may be shared by several threads; other
processes open their own instance on the same file.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np

from handwerk.embedding.specs import model_key

__all__ = ["KeyedGeneration", "VectorCache", "VectorCacheClosed", "prune_vector_cache",
           "retained_model_keys"]

log = logging.getLogger(__name__)

_CHUNK = 500  # keys per SELECT: far below SQLite's bound-variable limit (999 on old builds)
_SCHEMA_VERSION = 1  # PRAGMA user_version; 0 on a file of the first schema (WITHOUT ROWID)
_TABLE = """
CREATE TABLE IF NOT EXISTS vectors (
    model TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    vector BLOB NOT NULL,
    used_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (model, text_hash)
)
"""
_USED_AT_INDEX = "CREATE INDEX IF NOT EXISTS vectors_used_at ON vectors (used_at)"
_WAL_LIMIT = 4 * 1024 * 1024  # the WAL is cut back to this after a checkpoint resets it
_EVICT_TO = 0.9  # past the bound, evict down to this share of it: not at every write


class VectorCacheClosed(RuntimeError):
    """The cache was used after ``close()``."""


class KeyedGeneration(Protocol):
    """What a generation tells about the model of its vectors (``GenerationMeta`` has it)."""

    @property
    def content_key(self) -> str | None: ...

    @property
    def model(self) -> str: ...

    @property
    def dimension(self) -> int: ...


class VectorCache:
    """(model key, text hash) -> float32 vector, in a SQLite file (WAL) that several
    processes share. ``max_bytes``: the database file's bound (None: unbounded); a write that
    passes it evicts the least recently used vectors (written or found) down to 90 % of it."""

    def __init__(self, path: Path, *, max_bytes: int | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        connection = sqlite3.connect(path, timeout=30, check_same_thread=False,
                                     isolation_level=None)  # explicit BEGIN/COMMIT below
        try:
            connection.execute("PRAGMA busy_timeout=30000")
            connection.execute("PRAGMA auto_vacuum=INCREMENTAL")  # before the first table only
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
            _ensure_schema(connection, path)
        except BaseException:
            connection.close()
            raise
        self._connection: sqlite3.Connection | None = connection

    def _require(self) -> sqlite3.Connection:
        if self._connection is None:
            raise VectorCacheClosed(f"vector cache {self.path} used after close()")
        return self._connection

    def put_many(self, model: str,
                 items: Iterable[tuple[str, Sequence[float] | np.ndarray]]) -> int:
        """Insert or replace; one transaction, then the bound is enforced. Returns how many
        vectors were written."""
        now = time.time_ns()
        rows = []
        for text_hash, vector in items:
            array = np.asarray(vector, dtype=np.float32)
            if array.ndim != 1 or array.size == 0:
                raise ValueError(f"vector for {text_hash} must be one non-empty row, "
                                 f"got shape {array.shape}")
            if not np.isfinite(array).all():
                raise ValueError(f"vector for {text_hash} holds NaN or infinity")
            rows.append((model, text_hash, int(array.size), array.tobytes(), now))
        if not rows:
            return 0
        with self._lock:
            connection = self._require()
            _in_transaction(connection, lambda: connection.executemany(
                "INSERT INTO vectors (model, text_hash, dimension, vector, used_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, text_hash) DO UPDATE SET "
                "dimension = excluded.dimension, vector = excluded.vector, "
                "used_at = excluded.used_at", rows))
            if self.max_bytes is not None:
                self._evict_locked(connection, self.max_bytes)
        return len(rows)

    def get_many(self, model: str, text_hashes: Sequence[str]) -> dict[str, list[float]]:
        """The cached vectors among ``text_hashes``; absent ones are simply not in the result."""
        return {h: v.tolist() for h, v in self.get_arrays(model, text_hashes).items()}

    def get_arrays(self, model: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Like ``get_many``, as read-only float32 arrays (no Python floats: 100,000 vectors as
        lists would take about 1 GB). A hit counts as a use (least recently used eviction)."""
        wanted = list(dict.fromkeys(text_hashes))
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(wanted), _CHUNK):
            part = wanted[start:start + _CHUNK]
            marks = ",".join("?" * len(part))
            with self._lock:
                rows = self._require().execute(
                    f"SELECT text_hash, dimension, vector FROM vectors "
                    f"WHERE model = ? AND text_hash IN ({marks})", [model, *part]).fetchall()
            for text_hash, dimension, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.size == dimension:  # a torn or foreign row is a miss, not an error
                    found[text_hash] = vector
        if found:
            self._touch(model, list(found))
        return found

    def _touch(self, model: str, text_hashes: list[str]) -> None:
        """Mark vectors used now. Best effort: a busy or full file never fails a read."""
        now = time.time_ns()
        try:
            with self._lock:
                connection = self._require()
                for start in range(0, len(text_hashes), _CHUNK):
                    part = text_hashes[start:start + _CHUNK]
                    marks = ",".join("?" * len(part))
                    connection.execute(
                        f"UPDATE vectors SET used_at = ? WHERE model = ? "
                        f"AND text_hash IN ({marks})", [now, model, *part])
        except sqlite3.OperationalError as e:
            log.debug("vector cache %s: use times not updated (%s)", self.path, e)

    def count(self, model: str | None = None) -> int:
        with self._lock:
            connection = self._require()
            if model is None:
                row = connection.execute("SELECT count(*) FROM vectors").fetchone()
            else:
                row = connection.execute("SELECT count(*) FROM vectors WHERE model = ?",
                                         (model,)).fetchone()
        return int(row[0])

    def size_bytes(self) -> int:
        """Bytes on disk: the database file and its WAL."""
        return file_bytes(self.path)

    def prune(self, keep: Collection[str]) -> int:
        """Delete the vectors of every model key not in ``keep`` (all of them if it is empty)
        and give the freed pages back to the filesystem. Returns how many were deleted."""
        with self._lock:
            connection = self._require()
            deleted = 0
            for model in set(_models(connection)) - set(keep):
                deleted += _in_transaction(connection, partial(
                    connection.execute, "DELETE FROM vectors WHERE model = ?", (model,))).rowcount
            if deleted:
                _release_pages(connection, self.path)
        return deleted

    def enforce_bound(self) -> int:
        """Evict least recently used vectors while the file is over ``max_bytes``."""
        if self.max_bytes is None:
            return 0
        with self._lock:
            return self._evict_locked(self._require(), self.max_bytes)

    def checkpoint(self) -> None:
        """Copy the WAL into the file and cut it to nothing (where no reader holds it)."""
        with self._lock:
            _checkpoint(self._require(), self.path)

    def _evict_locked(self, connection: sqlite3.Connection, max_bytes: int) -> int:
        if _used_bytes(connection) <= max_bytes:
            return 0
        target = int(max_bytes * _EVICT_TO)
        evicted = 0
        while (used := _used_bytes(connection)) > target:
            rows = int(connection.execute("SELECT count(*) FROM vectors").fetchone()[0])
            if rows == 0:
                break
            # rows to go, from the bytes per row so far; freed space that leaves pages partly
            # used is seen on the next turn
            n = min(rows, max(1, math.ceil((used - target) * rows / used)))
            _in_transaction(connection, partial(
                connection.execute, "DELETE FROM vectors WHERE rowid IN "
                "(SELECT rowid FROM vectors ORDER BY used_at LIMIT ?)", (n,)))
            evicted += n
            _release_pages(connection, self.path)
        log.info("vector cache %s: evicted %d least recently used vectors (bound %d bytes)",
                 self.path, evicted, max_bytes)
        return evicted

    def close(self) -> None:
        """Idempotent."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def __enter__(self) -> VectorCache:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def file_bytes(path: Path) -> int:
    """Bytes of a SQLite file and its WAL and shared-memory files that exist."""
    total = 0
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            total += part.stat().st_size
        except FileNotFoundError:
            pass
    return total


def retained_model_keys(generations: Iterable[KeyedGeneration]) -> set[str]:
    """The vector-cache keys the given generations may reuse vectors by: the content key of
    their weights; for a generation that recorded none, its model name's key as an importer
    makes it (``model_key``)."""
    return {model_key(g.content_key or g.model, g.dimension) for g in generations}


def prune_vector_cache(path: Path, generations: Iterable[KeyedGeneration], *,
                       max_bytes: int | None) -> int:
    """Drop the vectors no generation in ``generations`` (the catalog: live, retained,
    building) can use, then enforce ``max_bytes``. Nothing is pruned while no generation is
    known (a fresh data folder an importer fills first) or a model's key cannot be read.
    Never raises for SQLite or filesystem errors (logged): upkeep must go on. Returns how
    many vectors were pruned."""
    kept = list(generations)
    if not path.exists():
        return 0
    try:
        keep = retained_model_keys(kept) if kept else None
    except Exception:  # noqa: BLE001 - a model folder gone or unreadable: keep everything
        log.warning("vector cache %s: not pruned, a generation's model key is unknown", path,
                    exc_info=True)
        keep = None
    try:
        with VectorCache(path, max_bytes=max_bytes) as cache:
            pruned = cache.prune(keep) if keep else 0
            evicted = cache.enforce_bound()
    except (sqlite3.Error, OSError):
        log.warning("vector cache %s: pruning failed", path, exc_info=True)
        return 0
    if pruned or evicted:
        log.info("vector cache %s: pruned %d vectors of models no generation uses, evicted %d; "
                 "%d bytes on disk", path, pruned, evicted, file_bytes(path))
    return pruned


def _in_transaction(connection: sqlite3.Connection,
                    work: Callable[[], sqlite3.Cursor]) -> sqlite3.Cursor:
    connection.execute("BEGIN IMMEDIATE")
    try:
        cursor = work()
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return cursor


def _models(connection: sqlite3.Connection) -> Iterator[str]:
    """Distinct model keys, one index seek each (not a scan of every row: upkeep asks every
    minute)."""
    row = connection.execute("SELECT min(model) FROM vectors").fetchone()
    while row is not None and row[0] is not None:
        yield str(row[0])
        row = connection.execute("SELECT model FROM vectors WHERE model > ? ORDER BY model "
                                 "LIMIT 1", (row[0],)).fetchone()


def _used_bytes(connection: sqlite3.Connection) -> int:
    """The database's size as SQLite sees it (uncommitted pages in the WAL included), less
    its free pages."""
    pages = int(connection.execute("PRAGMA page_count").fetchone()[0])
    free = int(connection.execute("PRAGMA freelist_count").fetchone()[0])
    return (pages - free) * int(connection.execute("PRAGMA page_size").fetchone()[0])


def _release_pages(connection: sqlite3.Connection, path: Path) -> None:
    """Free pages back to the filesystem: moved to the end and cut off (incremental
    auto-vacuum), then checkpointed, which truncates the file. Through ``executescript``:
    the pragma frees one page per step and returns no columns, and ``execute`` steps such a
    statement only once (one page freed, measured with Python 3.11's sqlite3)."""
    connection.executescript("PRAGMA incremental_vacuum;")
    _checkpoint(connection, path)


def _checkpoint(connection: sqlite3.Connection, path: Path) -> None:
    busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        log.debug("vector cache %s: checkpoint deferred, a reader holds the WAL", path)


def _ensure_schema(connection: sqlite3.Connection, path: Path) -> None:
    """Create the table, or migrate one of the first schema (WITHOUT ROWID, no use time) in
    one transaction; then, where the file has no incremental auto-vacuum yet, a VACUUM turns
    it on (and compacts the file)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        exists = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                    "AND name = 'vectors'").fetchone() is not None
        migrate = exists and version < _SCHEMA_VERSION
        if migrate:
            connection.execute("ALTER TABLE vectors RENAME TO vectors_v0")
        connection.execute(_TABLE)
        connection.execute(_USED_AT_INDEX)
        if migrate:
            connection.execute("INSERT INTO vectors (model, text_hash, dimension, vector) "
                               "SELECT model, text_hash, dimension, vector FROM vectors_v0")
            connection.execute("DROP TABLE vectors_v0")
        if version != _SCHEMA_VERSION:
            connection.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    if migrate:
        log.info("vector cache %s: migrated to schema %d", path, _SCHEMA_VERSION)
    if int(connection.execute("PRAGMA auto_vacuum").fetchone()[0]) != 2:
        try:
            connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
            connection.execute("VACUUM")
        except sqlite3.OperationalError as e:  # another process busy on it: next time
            log.warning("vector cache %s: incremental auto-vacuum not enabled yet (%s)", path, e)

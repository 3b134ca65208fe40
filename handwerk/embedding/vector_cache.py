"""A persistent cache of computed vectors: (model key, text hash) -> float32 vector.

One SQLite file (WAL) that several processes share: an importer writes vectors it already
has (e.g. from a legacy database), the consumer reads them instead of embedding the same text
again. The key is the model *and* its dimension (``handwerk.embedding.specs.model_key``) plus
``text_hash`` of the embedded text (``handwerk.contract.text``), so a vector is only ever reused
for the exact text and model it was made by.

Synchronous on purpose (SQLite is): callers on the event loop use ``asyncio.to_thread``.
One connection guarded by a lock, so one instance may be shared by several threads; other
processes open their own instance on the same file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["VectorCache", "VectorCacheClosed"]

_CHUNK = 500  # keys per SELECT: far below SQLite's bound-variable limit (999 on old builds)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    model TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, text_hash)
) WITHOUT ROWID
"""


class VectorCacheClosed(RuntimeError):
    """The cache was used after ``close()``."""


class VectorCache:
    """(model key, text hash) -> float32 vector, in a SQLite file (WAL) that several
    processes share."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        connection = sqlite3.connect(path, timeout=30, check_same_thread=False,
                                     isolation_level=None)  # explicit BEGIN/COMMIT below
        try:
            connection.execute("PRAGMA busy_timeout=30000")
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        self._connection: sqlite3.Connection | None = connection

    def _require(self) -> sqlite3.Connection:
        if self._connection is None:
            raise VectorCacheClosed(f"vector cache {self.path} used after close()")
        return self._connection

    def put_many(self, model: str, items: Iterable[tuple[str, Sequence[float]]]) -> int:
        """Insert or replace; one transaction. Returns how many vectors were written."""
        rows = []
        for text_hash, vector in items:
            array = np.asarray(vector, dtype=np.float32)
            if array.ndim != 1 or array.size == 0:
                raise ValueError(f"vector for {text_hash} must be one non-empty row, "
                                 f"got shape {array.shape}")
            if not np.isfinite(array).all():
                raise ValueError(f"vector for {text_hash} holds NaN or infinity")
            rows.append((model, text_hash, int(array.size), array.tobytes()))
        if not rows:
            return 0
        with self._lock:
            connection = self._require()
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(
                    "INSERT INTO vectors (model, text_hash, dimension, vector) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (model, text_hash) DO UPDATE SET "
                    "dimension = excluded.dimension, vector = excluded.vector", rows)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return len(rows)

    def get_many(self, model: str, text_hashes: Sequence[str]) -> dict[str, list[float]]:
        """The cached vectors among ``text_hashes``; absent ones are simply not in the result."""
        return {h: v.tolist() for h, v in self.get_arrays(model, text_hashes).items()}

    def get_arrays(self, model: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Like ``get_many``, as read-only float32 arrays (no Python floats: 100,000 vectors as
        lists would take about 1 GB)."""
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
        return found

    def count(self, model: str | None = None) -> int:
        with self._lock:
            connection = self._require()
            if model is None:
                row = connection.execute("SELECT count(*) FROM vectors").fetchone()
            else:
                row = connection.execute("SELECT count(*) FROM vectors WHERE model = ?",
                                         (model,)).fetchone()
        return int(row[0])

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

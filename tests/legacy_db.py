"""Legacy databases for tests and benchmarks: the older service's SQLite format.

The older service kept projects in one table, the embedding as a JSON array of floats in a
TEXT column (NULL when it never embedded the row)::

    CREATE TABLE projects (
        id INTEGER PRIMARY KEY, name TEXT, description TEXT, project_type TEXT, region TEXT,
        total_area_sqm REAL, wood_type TEXT, complexity INTEGER, final_price REAL,
        embedding TEXT, created_at TEXT)

The projects come from ``tooling.demo``'s generator, so they read like real ones.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from handwerk.contract.text import project_text
from handwerk.embedding.embedder import Embedder
from tooling.demo import demo_projects

LEGACY_SCHEMA = """
CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    name TEXT,
    description TEXT,
    project_type TEXT,
    region TEXT,
    total_area_sqm REAL,
    wood_type TEXT,
    complexity INTEGER,
    final_price REAL,
    embedding TEXT,
    created_at TEXT
)
"""
COLUMNS = ("id", "name", "description", "project_type", "region", "total_area_sqm",
           "wood_type", "complexity", "final_price", "embedding", "created_at")
_BREAKAGES: tuple[dict[str, Any], ...] = ({"complexity": 9}, {"name": ""}, {"total_area_sqm": -3.0})


def make_legacy_db(path: Path, count: int, *, seed: int = 7, embedder: Embedder | None = None,
                   broken: int = 0, text_of: Callable[[Mapping[str, Any]], str] = project_text,
                   batch: int = 64) -> Path:
    """Write ``count`` legacy projects (ids 1..count) to a new SQLite file at ``path``.

    With ``embedder`` each row's embedding is ``embedder`` over ``text_of(row)`` (by default
    ``project_text``, what handwerk embeds; pass another function to imitate an old service
    that embedded a different text), stored as a JSON array; without it, NULL. ``broken`` rows
    (spread deterministically) fail validation: complexity 9, an empty name or a negative area.
    """
    if not 0 <= broken <= count:
        raise ValueError(f"broken must be between 0 and count ({count}), got {broken}")
    if path.exists():
        raise FileExistsError(path)
    rng = random.Random(seed)
    projects = demo_projects(count, seed)
    broken_at = set(rng.sample(range(count), broken))
    start = datetime(2019, 3, 1, 8, 0, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    breakages = 0
    for n, project in enumerate(projects):
        if n in broken_at:
            project = {**project, **_BREAKAGES[breakages % len(_BREAKAGES)]}
            breakages += 1
        created = start + timedelta(hours=n * 7, minutes=rng.randrange(60))
        rows.append({"id": n + 1, **project, "embedding": None,
                     "created_at": created.strftime("%Y-%m-%d %H:%M:%S")})
    if embedder is not None:
        for first in range(0, len(rows), batch):
            part = rows[first:first + batch]
            vectors = embedder.encode([text_of(row) for row in part], "document")
            for row, vector in zip(part, vectors, strict=True):
                row["embedding"] = json.dumps([float(x) for x in vector])
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.execute(LEGACY_SCHEMA)
            connection.executemany(
                f"INSERT INTO projects ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join(':' + c for c in COLUMNS)})", rows)
    finally:
        connection.close()
    return path

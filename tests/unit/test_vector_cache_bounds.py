"""The vector cache stays bounded on disk: a size limit evicts the least recently used vectors,
a prune drops the models no generation uses, and the file itself shrinks (bytes on disk, not
only rows). A file of the first schema (WITHOUT ROWID, no use time) is migrated in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from prometheus_client import CollectorRegistry

from handwerk.embedding.specs import model_key
from handwerk.embedding.vector_cache import VectorCache, prune_vector_cache, retained_model_keys
from handwerk.metrics import Metrics

DIM = 384
A, B = model_key("sha256:aaaa", DIM), model_key("sha256:bbbb", DIM)


def rows(n: int, prefix: str = "h", seed: int = 1) -> list[tuple[str, np.ndarray]]:
    data = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return [(f"{prefix}{i}", data[i]) for i in range(n)]


def on_disk(path: Path) -> int:
    """Bytes of the file and its WAL, as the filesystem sees them."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def test_a_size_bound_evicts_the_least_recently_used(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    bound = 1_000_000  # about 450 vectors of 384 floats
    with VectorCache(path, max_bytes=bound) as cache:
        cache.put_many(A, rows(100, "old"))
        cache.put_many(A, rows(100, "kept"))
        for batch in range(10):
            hot = cache.get_many(A, [f"old{i}" for i in range(50)])  # in use all along
            assert len(hot) == 50
            cache.put_many(A, rows(100, f"new{batch}-", seed=batch + 2))
            assert cache.size_bytes() <= bound + 300_000  # at most one batch over
        assert on_disk(path) <= bound + 300_000
        used_again = cache.get_many(A, [f"old{i}" for i in range(50)])
        never_used = cache.get_many(A, [f"old{i}" for i in range(50, 100)])
        newest = cache.get_many(A, [f"new9-{i}" for i in range(100)])
        assert len(newest) == 100 and len(used_again) == 50 and never_used == {}
        assert cache.get_many(A, ["kept0", "new0-0"]) == {}
        assert 250 <= cache.count() <= 450


def test_pruning_a_model_shrinks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with VectorCache(path) as cache:
        for start in range(0, 3000, 500):
            cache.put_many(A, rows(500, f"a{start}-", seed=start))
            cache.put_many(B, rows(500, f"b{start}-", seed=start + 1))
        cache.checkpoint()
        full = on_disk(path)
        assert full > 10_000_000
        assert cache.prune(keep={A}) == 3000
        assert (cache.count(A), cache.count(B)) == (3000, 0)
        assert on_disk(path) < 0.6 * full, (on_disk(path), full)
    assert on_disk(path) < 0.6 * full  # closed: still small


def test_a_file_of_the_first_schema_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE vectors (model TEXT NOT NULL, text_hash TEXT NOT NULL, dimension "
                "INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, text_hash)) "
                "WITHOUT ROWID")
    old.executemany("INSERT INTO vectors VALUES (?, ?, ?, ?)",
                    [(A, h, DIM, v.tobytes()) for h, v in rows(2000)])
    old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    old.close()
    before = on_disk(path)
    with VectorCache(path, max_bytes=100_000_000) as cache:
        got = cache.get_arrays(A, ["h0", "h1999"])
        assert np.array_equal(got["h1999"], rows(2000)[1999][1])
        assert cache.count() == 2000
        cache.put_many(A, rows(1, "fresh"))
        cache.checkpoint()
        assert on_disk(path) < 0.6 * before, (on_disk(path), before)  # no overflow page per row
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental


def test_retained_keys_are_those_of_the_generations_in_the_catalog() -> None:
    kept = retained_model_keys([
        SimpleNamespace(content_key="sha256:aaaa", model="m", dimension=DIM),
        SimpleNamespace(content_key=None, model="unknown-model-name", dimension=8)])
    assert kept == {A, "unknown-model-name|8"}  # no key recorded: the name's key, as importers


def test_prune_keeps_everything_while_no_generation_is_known(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with VectorCache(path) as cache:
        cache.put_many(A, rows(10))
        cache.put_many(B, rows(10))
    assert prune_vector_cache(path, [], max_bytes=10**9) == 0  # a fresh data folder: no catalog
    assert prune_vector_cache(
        path, [SimpleNamespace(content_key="sha256:aaaa", model="m", dimension=DIM)],
        max_bytes=10**9) == 10
    with VectorCache(path) as cache:
        assert (cache.count(A), cache.count(B)) == (10, 0)


def test_the_size_is_a_gauge_read_at_scrape_time(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    path = tmp_path / "cache.sqlite"

    def sample() -> list[float]:
        return [s.value for m in metrics.registry.collect() for s in m.samples
                if s.name == "handwerk_ml_vector_cache_bytes"]

    assert sample() == []  # nothing bound: no sample
    metrics.vector_cache_bytes.bind(path)
    assert sample() == [0.0]  # no file yet: nothing on disk
    with VectorCache(path) as cache:
        cache.put_many(A, rows(200))
        assert sample() == [float(on_disk(path) + path.with_name(path.name + "-shm").stat().st_size)]
        assert sample()[0] > 200 * DIM * 4

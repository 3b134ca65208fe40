"""The persistent vector cache: exact float32 round trip, models kept apart, one file shared
by several instances (and threads), and lookups larger than SQLite's variable limit."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from handwerk.embedding.specs import model_key
from handwerk.embedding.vector_cache import VectorCache, VectorCacheClosed

MINILM = model_key("sentence-transformers/all-MiniLM-L6-v2", 384)


def vectors(n: int, dimension: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dimension)).astype(np.float32)


def test_model_key_names_model_and_dimension() -> None:
    assert model_key("m", 384) == "m|384"
    assert model_key("m", 384) != model_key("m", 768)


def test_round_trip_is_exact_float32(tmp_path: Path) -> None:
    data = vectors(3, 384)
    with VectorCache(tmp_path / "cache.sqlite") as cache:
        assert cache.put_many(MINILM, [(f"h{i}", data[i]) for i in range(3)]) == 3
        assert cache.put_many(MINILM, [("h0", data[0].tolist())]) == 1  # plain lists too
        got = cache.get_many(MINILM, ["h0", "h1", "h2", "absent", "h1"])
        assert set(got) == {"h0", "h1", "h2"}
        for i in range(3):
            assert np.array_equal(np.asarray(got[f"h{i}"], dtype=np.float32), data[i])
            assert all(isinstance(x, float) for x in got[f"h{i}"][:3])
        assert cache.count() == cache.count(MINILM) == 3
        assert cache.get_many(MINILM, []) == {}
        assert cache.put_many(MINILM, []) == 0


def test_upsert_replaces_the_vector(tmp_path: Path) -> None:
    first, second = vectors(2, 8)
    with VectorCache(tmp_path / "cache.sqlite") as cache:
        cache.put_many(MINILM, [("h", first)])
        cache.put_many(MINILM, [("h", second)])
        assert np.array_equal(np.asarray(cache.get_many(MINILM, ["h"])["h"], np.float32), second)
        assert cache.count(MINILM) == 1


def test_models_are_kept_apart(tmp_path: Path) -> None:
    other = model_key("sentence-transformers/all-MiniLM-L6-v2", 256)
    a, b = vectors(1, 384)[0], vectors(1, 256, seed=2)[0]
    with VectorCache(tmp_path / "cache.sqlite") as cache:
        cache.put_many(MINILM, [("same-text", a)])
        cache.put_many(other, [("same-text", b)])
        assert len(cache.get_many(MINILM, ["same-text"])["same-text"]) == 384
        assert len(cache.get_many(other, ["same-text"])["same-text"]) == 256
        assert cache.get_many(model_key("another/model", 384), ["same-text"]) == {}
        assert (cache.count(MINILM), cache.count(other), cache.count()) == (1, 1, 2)


def test_invalid_vectors_are_refused(tmp_path: Path) -> None:
    with VectorCache(tmp_path / "cache.sqlite") as cache:
        for bad in ([], [[1.0, 2.0]], [1.0, float("nan")], [float("inf")]):
            with pytest.raises(ValueError):
                cache.put_many(MINILM, [("h", bad)])  # type: ignore[list-item]
        assert cache.count() == 0  # nothing half-written


def test_two_instances_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "cache.sqlite"
    data = vectors(200, 16)
    writer, reader = VectorCache(path), VectorCache(path)
    try:
        writer.put_many(MINILM, [(f"h{i}", data[i]) for i in range(100)])
        assert reader.count(MINILM) == 100
        reader.put_many(MINILM, [(f"h{i}", data[i]) for i in range(100, 200)])
        got = writer.get_many(MINILM, [f"h{i}" for i in range(200)])
        assert len(got) == 200
        assert np.array_equal(np.asarray(got["h150"], np.float32), data[150])
    finally:
        writer.close()
        reader.close()
    with VectorCache(path) as reopened:  # persisted
        assert reopened.count() == 200


def test_threads_and_instances_write_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    caches = [VectorCache(path), VectorCache(path)]
    data = vectors(400, 8)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        cache = caches[worker % 2]  # two threads on each instance
        try:
            for start in range(worker * 100, worker * 100 + 100, 10):
                cache.put_many(MINILM, [(f"h{i}", data[i]) for i in range(start, start + 10)])
                cache.get_many(MINILM, [f"h{i}" for i in range(start)])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert not errors, errors
        assert caches[0].count(MINILM) == 400
    finally:
        for cache in caches:
            cache.close()


def test_large_get_many_is_chunked(tmp_path: Path) -> None:
    n = 40_000  # more keys than SQLite's default variable limit (32,766; 999 on old builds)
    data = vectors(n, 4)
    with VectorCache(tmp_path / "cache.sqlite") as cache:
        assert cache.put_many(MINILM, ((f"h{i}", data[i]) for i in range(n))) == n
        wanted = [f"h{i}" for i in range(0, n)] + [f"missing{i}" for i in range(1000)]
        got = cache.get_many(MINILM, wanted)
        assert len(got) == n
        assert np.array_equal(np.asarray(got[f"h{n - 1}"], np.float32), data[n - 1])


def test_use_after_close_fails_clearly(tmp_path: Path) -> None:
    cache = VectorCache(tmp_path / "cache.sqlite")
    cache.close()
    cache.close()  # idempotent
    with pytest.raises(VectorCacheClosed):
        cache.count()

"""Rules of the query batcher and the Server-Timing header, with a stand-in encoder (the real
model's vectors are checked in tests/contract/test_query_fast_paths.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from handwerk.api.app import create_app
from handwerk.api.search import SearchService
from handwerk.embedding.query_batching import QueryBatcher, QueryCache
from handwerk.settings import Settings
from tests.helpers import EmptyIndex


class CountingEncoder:
    """One row per text (its length); each run waits ``hold`` seconds."""

    def __init__(self, hold: float = 0.01) -> None:
        self.hold = hold
        self.runs: list[list[str]] = []

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.runs.append(list(texts))
        await asyncio.sleep(self.hold)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


async def test_queries_arriving_during_a_run_share_the_next_one() -> None:
    encoder = CountingEncoder()
    batcher = QueryBatcher(encoder.embed_queries, window_s=0.001, max_texts=32)
    texts = ["a", "bb", "ccc", "bb", "dddd"]
    results = await asyncio.gather(*(batcher.embed([t]) for t in texts))
    assert encoder.runs == [["a"], ["bb", "ccc", "dddd"]]  # the repeated text is encoded once
    assert [float(r.vectors[0, 0]) for r in results] == [1, 2, 3, 2, 4]
    assert batcher.windows == 1


async def test_a_full_batch_runs_without_waiting_for_its_window() -> None:
    encoder = CountingEncoder(hold=0.05)
    batcher = QueryBatcher(encoder.embed_queries, window_s=10, max_texts=3)
    first = asyncio.create_task(batcher.embed(["x"]))
    await asyncio.sleep(0)
    rest = await asyncio.wait_for(asyncio.gather(*(batcher.embed([t]) for t in "abc")), 5)
    await first
    assert encoder.runs == [["x"], ["a", "b", "c"]]
    assert [r.vectors.shape for r in rest] == [(1, 2)] * 3


async def test_a_window_of_zero_still_batches_what_queued_during_a_run() -> None:
    encoder = CountingEncoder()
    batcher = QueryBatcher(encoder.embed_queries, window_s=0, max_texts=32)
    await asyncio.gather(*(batcher.embed([t]) for t in "abc"))
    assert encoder.runs == [["a"], ["b", "c"]]


async def test_a_caller_that_gives_up_does_not_break_the_others() -> None:
    encoder = CountingEncoder()
    batcher = QueryBatcher(encoder.embed_queries, window_s=0.001, max_texts=32)
    first = asyncio.create_task(batcher.embed(["a"]))
    await asyncio.sleep(0)
    leaving = asyncio.create_task(batcher.embed(["b"]))
    staying = asyncio.create_task(batcher.embed(["c"]))
    await asyncio.sleep(0)
    leaving.cancel()
    assert (await staying).vectors.tolist() == [[1.0, 1.0]]
    await first
    assert not batcher.busy


def test_cache_is_lru_and_size_zero_keeps_nothing() -> None:
    cache = QueryCache(2)
    for key in "abc":
        cache.put(key, np.ones(2))
    assert cache.get("a") is None and cache.get("c") is not None
    stored = cache.get("b")
    assert stored is not None and not stored.flags.writeable
    off = QueryCache(0)
    off.put("a", np.ones(2))
    assert len(off) == 0


class StandInEmbedder:
    model_name = "stand-in"

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.zeros((len(texts), 4), dtype=np.float32)




@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/similarity/find-similar", {"query": "Küche"}),
    ("/api/v1/similarity/batch-similar", {"queries": ["Küche", "Treppe"]})])
def test_similarity_answers_carry_server_timing(tmp_path: Path, path: str,
                                                body: dict[str, object]) -> None:
    app = create_app(Settings(data_dir=tmp_path, auth_mode="off",  # no lifespan: stand-ins
                              allowed_hosts=["testserver"]))  # TestClient's Host
    app.state.search = SearchService(StandInEmbedder(), EmptyIndex())  # type: ignore[arg-type]
    client = TestClient(app)
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    stages = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
    assert set(stages) == {"queue", "embed", "search", "serialize"}
    assert all(float(ms) >= 0 for ms in stages.values())
    assert "search_time_ms" in response.json() or "batch_time_ms" in response.json()
    missing = client.post(path, json={})
    assert missing.status_code == 422 and "server-timing" not in missing.headers
    assert list(missing.json()) == ["detail"]

"""The query path's fast paths with the real model (issue 9): concurrent queries share encoder
runs without changing a single vector, a lone query never opens a gather window, a failed run
fails every caller, and the query cache counts hits and misses."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from handwerk.api.search import SearchService
from handwerk.embedding.embedder import Embedder
from handwerk.embedding.errors import EmbedderUnavailable
from handwerk.embedding.query_batching import QueryBatcher
from handwerk.embedding.specs import Purpose
from handwerk.metrics import Metrics
from tests.helpers import EmptyIndex

QUERIES = ["Küche", "Landhausküche aus Eiche mit Kochinsel und Granitplatte", "Treppe",
           "Wendeltreppe Buche geölt, freitragend, für ein Einfamilienhaus in Bayern",
           "Einbauschrank Dachschräge", "Gartenhaus", "Esstisch Nussbaum massiv 2,40 m",
           "Badmöbel"]



def test_padding_does_not_change_a_vector(embedder: Embedder) -> None:
    alone = np.vstack([embedder.encode([q], "query") for q in QUERIES])
    padded = embedder.encode(QUERIES, "query")  # short texts padded to the longest
    assert np.abs(alone - padded).max() <= 1e-5


async def test_concurrent_queries_share_runs_and_keep_their_vectors(embedder: Embedder) -> None:
    batcher = QueryBatcher(embedder.embed_queries, window_s=0.002, max_texts=32)
    results = await asyncio.gather(*(batcher.embed([q]) for q in QUERIES))
    assert batcher.runs < len(QUERIES)
    assert batcher.texts == len(QUERIES)
    alone = np.vstack([embedder.encode([q], "query") for q in QUERIES])
    got = np.vstack([r.vectors for r in results])
    assert np.abs(alone - got).max() <= 1e-5


async def test_a_lone_query_opens_no_window(embedder: Embedder) -> None:
    batcher = QueryBatcher(embedder.embed_queries, window_s=0.5, max_texts=32)
    for query in QUERIES[:3]:  # one after another: each finds the encoder idle
        result = await batcher.embed([query])
        assert result.batch_texts == 1
    assert (batcher.runs, batcher.windows) == (3, 0)


class GatedEncoder:
    """The real encoder; the first run waits for ``gate``, every later one fails like a broken
    ONNX Runtime session."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dimension: int = inner.dimension
        self.transient: tuple[type[BaseException], ...] = (RuntimeError,)
        self.gate = threading.Event()
        self.calls = 0

    def encode(self, texts: Sequence[str], purpose: Purpose, *, lone: bool = False) -> np.ndarray:
        self.calls += 1
        if self.calls == 1:
            self.gate.wait(10)
            return self.inner.encode(texts, purpose, lone=lone)  # type: ignore[no-any-return]
        raise RuntimeError("session broken")


async def test_a_failed_run_fails_every_caller_with_the_same_error(
        embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    gated = GatedEncoder(embedder._encoder)
    monkeypatch.setattr(embedder, "_encoder", gated)
    batcher = QueryBatcher(embedder.embed_queries, window_s=0.001, max_texts=32)
    first = asyncio.create_task(batcher.embed(["Küche"]))
    await asyncio.sleep(0.01)  # the first run is in flight
    waiting = [asyncio.create_task(batcher.embed([q])) for q in QUERIES[1:5]]
    await asyncio.sleep(0.01)
    gated.gate.set()
    assert (await first).vectors.shape == (1, embedder.dimension)
    errors = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(e, EmbedderUnavailable) for e in errors), errors
    assert len({id(e) for e in errors}) == 1  # one run, one error, every caller
    assert (batcher.runs, gated.calls) == (2, 2)


async def test_query_cache_counts_hits_and_misses(embedder: Embedder) -> None:
    metrics = Metrics()
    service = SearchService(embedder, EmptyIndex(), metrics=metrics, cache_size=2)  # type: ignore[arg-type]

    def counts() -> tuple[float | None, float | None]:
        sample = metrics.registry.get_sample_value
        return (sample("handwerk_ml_query_cache_hits_total"),
                sample("handwerk_ml_query_cache_misses_total"))

    await service.find_similar("Küche", top_k=5, threshold=0.3, filters=None)
    assert counts() == (0, 1)
    await service.find_similar("Küche", top_k=5, threshold=0.3, filters=None)
    assert counts() == (1, 1)
    await service.batch_similar(["Küche", "Treppe", "Treppe"], top_k=5, threshold=0.3,
                                filters=None)
    assert counts() == (3, 2)  # the repeated "Treppe" is embedded once
    cached = service.cache.get((embedder.content_key, "Treppe"))
    assert cached is not None
    assert np.abs(cached - embedder.encode(["Treppe"], "query")[0]).max() <= 1e-5
    await service.find_similar("Gartenhaus", top_k=5, threshold=0.3, filters=None)
    assert len(service.cache) == 2  # LRU: "Küche" made room
    assert service.cache.get((embedder.content_key, "Küche")) is None
    assert service.cache.get(("another/model", "Treppe")) is None  # keyed by model

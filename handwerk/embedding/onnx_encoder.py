"""The onnx backend (default for local folders): the same weights as sentence-transformers,
exported once to ONNX and cached (``onnx_export``), vectors identical to torch, about 2.5x
faster per query here; only for Transformer + mean Pooling + Normalize (``onnx_refusal``).
Optionally (``query_quantization="int8"``) the query session runs an int8 copy of the export;
documents always use fp32."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from handwerk.embedding.onnx_export import exported, quantized
from handwerk.embedding.specs import Purpose, QueryQuantization, onnx_refusal

if TYPE_CHECKING:
    from tokenizers import Tokenizer


class OnnxEncoder:
    """Mean pooling + L2 normalisation over an ONNX export of the transformer (what the
    sentence-transformers config of all-MiniLM-L6-v2 prescribes)."""

    def __init__(self, model_path: Path, cache_dir: Path, *, query_threads: int,
                 ingest_threads: int, prefixes: Mapping[Purpose, str] | None = None,
                 query_quantization: QueryQuantization = "none", latency_threads: int = 0) -> None:
        """``latency_threads`` above ``ingest_threads``: ``lone`` document batches (a single
        write, not ingest under load) run on a session with that many threads: one document
        p50 20.5 -> 13.5 ms with 2 threads instead of 1 (both cores, for those 13 ms)."""
        refusal = onnx_refusal(model_path)
        if refusal is not None:
            raise ValueError(f"{refusal}; use the torch backend (HANDWERK_EMBEDDING_BACKEND=torch)")
        self.transient = transient_errors()
        self._prefixes = dict(prefixes or {})
        self._tokenizer = _tokenizer(model_path)
        onnx_file = exported(model_path, cache_dir)
        query_file = quantized(onnx_file) if query_quantization == "int8" else onnx_file
        self.query_model_file = query_file

        # One single-threaded session serves both when they would be alike: runs on one session
        # may overlap (ONNX Runtime allows it; with one thread each runs on its caller's
        # thread, so a query never queues behind an ingest batch), and a second copy of the
        # weights costs about 90 MB. With more threads they would share one pool: two sessions.
        query = session(query_file, query_threads)
        alike = (query_file, query_threads, ingest_threads) == (onnx_file, 1, 1)
        self._sessions = {"query": query,
                          "document": query if alike else session(onnx_file, ingest_threads)}
        self._latency = session(onnx_file, latency_threads) \
            if latency_threads > ingest_threads else None
        self.dimension = int(self.encode(["probe"], "query").shape[1])

    def encode(self, texts: Sequence[str], purpose: Purpose, *,
               lone: bool = False) -> npt.NDArray[np.float32]:
        prefix = self._prefixes.get(purpose, "")
        encoded = self._tokenizer.encode_batch([prefix + t for t in texts] if prefix else list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        run = self._sessions[purpose]
        if lone and purpose == "document" and self._latency is not None:
            run = self._latency
        hidden: npt.NDArray[np.float32] = run.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit


def transient_errors() -> tuple[type[BaseException], ...]:
    """What this backend raises when it fails for a reason that is not the input."""
    from onnxruntime.capi.onnxruntime_pybind11_state import (
        EngineError,
        EPFail,
        Fail,
        RuntimeException,
    )

    # ONNX Runtime's own exceptions derive from Exception directly; InvalidArgument and the
    # model-loading ones are left out: they would fail the same way on every retry.
    return (RuntimeException, Fail, EngineError, EPFail, RuntimeError, MemoryError)


def _tokenizer(model_path: Path) -> Tokenizer:
    """The folder's fast tokenizer (read from its file: nothing is looked up or downloaded),
    truncating at the folder's ``max_seq_length`` and padding each batch to its longest text."""
    from tokenizers import Tokenizer

    max_length = json.loads((model_path / "sentence_bert_config.json").read_text()).get(
        "max_seq_length", 256)
    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding()
    return tokenizer


def session(model_file: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])

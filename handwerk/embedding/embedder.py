"""The facade the pipeline uses (``Embedder``): load a model once per process, embed documents
or queries off the event loop.

Four backends behind it (``onnx_encoder``, ``torch_encoder``, ``e5_onnx``, ``e5_encoder``), chosen by the
``ModelSpec``. Ingest and search get separate executors (and their own thread settings) so a
query never queues behind an ingest batch; ingest is fed in small chunks. Query/document
prefixes (e5 expects "query: " and "passage: ") are applied by the encoders, never by callers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from handwerk.embedding.e5_encoder import E5Encoder
from handwerk.embedding.e5_onnx import E5OnnxEncoder
from handwerk.embedding.errors import EmbedderUnavailable
from handwerk.embedding.onnx_encoder import OnnxEncoder
from handwerk.embedding.specs import (
    ModelSpec,
    Purpose,
    QueryQuantization,
    content_key,
    resolve_model,
)
from handwerk.embedding.torch_encoder import TorchEncoder

LONE_DOCUMENTS = 4
"""A document call of at most this many texts is a lone write (see ``latency_threads``)."""


class QueryActivity:
    """When this process last embedded a query, and how many are being embedded now: ingest
    takes every core (the latency session) only while searches are quiet (``Embedder``)."""

    def __init__(self, quiet_s: float) -> None:
        self.quiet_s = quiet_s
        self.in_flight = 0
        self.last_end = float("-inf")

    def quiet(self) -> bool:
        return self.in_flight == 0 and time.monotonic() - self.last_end >= self.quiet_s

    def started(self) -> None:
        self.in_flight += 1

    def ended(self) -> None:
        self.in_flight -= 1
        self.last_end = time.monotonic()


class _Encoder(Protocol):
    """What a backend offers the facade."""

    @property
    def dimension(self) -> int: ...

    @property
    def transient(self) -> tuple[type[BaseException], ...]:
        """What this backend raises when it fails for a reason that is not the input."""
        ...

    def encode(self, texts: Sequence[str], purpose: Purpose, *,
               lone: bool = False) -> npt.NDArray[np.float32]:
        """``lone``: a small document batch that is the whole of a call (a single write), which
        an encoder may run with more threads; the vectors are the same either way."""
        ...


class Embedder:
    """The facade the pipeline uses: load once, embed documents or queries off the loop."""

    def __init__(self, model_path: Path | None = None, *, backend: Literal["onnx", "torch"] = "onnx",
                 spec: ModelSpec | None = None, cache_dir: Path | None = None, threads: int = 2,
                 query_threads: int = 1, batch_size: int = 16,
                 query_quantization: QueryQuantization = "none", latency_threads: int = 0,
                 burst_quiet_s: float | None = None) -> None:
        """``burst_quiet_s``: ingest batches run on the latency session (``latency_threads``,
        every core) once no query has been embedded for that long, and go back to
        ``threads`` at the next batch after one arrives; None: never (a builder, or a process
        that must leave cores to another on the same host). ``model_path`` None is the bundled
        model; a folder is resolved like a model spec, so
        ``backend`` is the default and a folder the ONNX path cannot run gets torch. Or give a
        resolved ``spec`` instead of ``model_path`` and ``backend`` (see ``from_spec``).
        ``query_quantization`` applies to the onnx backend only (see ``QueryQuantization``)."""
        if spec is None:
            spec = resolve_model(None if model_path is None else str(model_path),
                                 default_backend=backend)
        elif model_path is not None:
            raise TypeError("Embedder: give model_path or spec, not both")
        if spec.backend not in ("e5", "e5-onnx") and spec.path is None:
            raise ValueError(f"{spec.name}: the {spec.backend} backend needs a model folder")
        if query_quantization not in ("none", "int8"):
            raise ValueError(f"query_quantization {query_quantization!r}: expected 'none' or 'int8'")
        self._spec = spec
        self._cache_dir = cache_dir or Path.home() / ".cache" / "handwerk"
        self._threads = threads
        self._query_threads = query_threads
        self._latency_threads = latency_threads
        self._batch_size = batch_size
        # only the onnx backends can run a burst on every core (onnx: a latency session;
        # e5-onnx: that many texts at once on its one session)
        bursts = (burst_quiet_s is not None and spec.backend in ("onnx", "e5-onnx")
                  and latency_threads > threads)
        self._queries = QueryActivity(burst_quiet_s) if bursts and burst_quiet_s is not None \
            else None
        self.burst_texts = 0  # document texts embedded on every core while searches were quiet
        # A deployment-wide setting, while the model (and so the backend) can differ per
        # generation: backends other than onnx run their queries unquantized.
        self._query_quantization: QueryQuantization = (
            query_quantization if spec.backend == "onnx" else "none")
        self._encoder: _Encoder | None = None
        self._content_key: str | None = None
        self._ingest_pool: ThreadPoolExecutor | None = None
        self._query_pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, cache_dir: Path | None = None, threads: int = 2,
                  query_threads: int = 1, batch_size: int = 16,
                  query_quantization: QueryQuantization = "none",
                  latency_threads: int = 0, burst_quiet_s: float | None = None) -> Embedder:
        return cls(spec=spec, cache_dir=cache_dir, threads=threads, query_threads=query_threads,
                   batch_size=batch_size, query_quantization=query_quantization,
                   latency_threads=latency_threads, burst_quiet_s=burst_quiet_s)

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def model_name(self) -> str:
        return self._spec.name

    @property
    def content_key(self) -> str:
        """What identifies this model's vectors (``specs.content_key``): taken from its files
        when it loads, so it names the weights this instance runs even if they are replaced
        on disk afterwards. ``model_name`` is only the spec a person typed."""
        if self._content_key is None:
            self._content_key = content_key(self._spec)
        return self._content_key

    @property
    def query_quantization(self) -> QueryQuantization:
        """What queries actually run: "none" on a backend that ignores the setting."""
        return self._query_quantization

    @property
    def dimension(self) -> int:
        return self._require().dimension

    def load(self) -> None:
        """Load the weights from disk; never downloads (every backend reads local files only)."""
        if self._encoder is not None:
            return
        self._content_key = content_key(self._spec)  # before the weights are read
        self._encoder = self._new_encoder()
        self._ingest_pool = ThreadPoolExecutor(1, thread_name_prefix="embed-ingest")
        self._query_pool = ThreadPoolExecutor(1, thread_name_prefix="embed-query")

    def _new_encoder(self) -> _Encoder:
        spec = self._spec
        prefixes: dict[Purpose, str] = {"query": spec.query_prefix, "document": spec.document_prefix}
        if spec.backend == "e5-onnx":
            return E5OnnxEncoder(self._cache_dir, self.content_key,
                                 query_threads=self._query_threads, ingest_threads=self._threads,
                                 prefixes=prefixes, latency_threads=self._latency_threads)
        if spec.backend == "e5":
            return E5Encoder(threads=self._threads, query_threads=self._query_threads,
                             prefixes=prefixes)
        if spec.path is None:  # refused in __init__; checked again for the type checker
            raise ValueError(f"{spec.name}: the {spec.backend} backend needs a model folder")
        if spec.backend == "onnx":
            return OnnxEncoder(spec.path, self._cache_dir, query_threads=self._query_threads,
                               ingest_threads=self._threads, prefixes=prefixes,
                               query_quantization=self._query_quantization,
                               latency_threads=self._latency_threads)
        return TorchEncoder(spec.path, self._threads, prefixes=prefixes)

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

    def encode(self, texts: Sequence[str], purpose: Purpose = "document", *,
               lone: bool = False) -> npt.NDArray[np.float32]:
        """Blocking encode; callers on the event loop use embed_documents / embed_queries.
        Raises EmbedderUnavailable when the encoder fails for a reason that is not the input
        (out of memory, a runtime failure); errors about the input itself pass unchanged."""
        encoder = self._require()
        try:
            return encoder.encode(texts, purpose, lone=lone)
        except encoder.transient as e:
            raise EmbedderUnavailable(
                f"{self._spec.backend} encoder failed on {len(texts)} {purpose} text(s): "
                f"{type(e).__name__}: {e}") from e

    def _pool(self, purpose: Purpose) -> ThreadPoolExecutor:
        pool = self._ingest_pool if purpose == "document" else self._query_pool
        if pool is None:
            raise EmbedderUnavailable("Embedder used before load() or after close()")
        return pool

    async def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        loop, pool = asyncio.get_running_loop(), self._pool("document")
        # Length buckets: a batch is padded to its longest text, so texts of similar length
        # go together (by characters, a cheap stand-in for tokens); rows return in order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ranked = [texts[i] for i in order]
        chunks = [ranked[i : i + self._batch_size] for i in range(0, len(ranked), self._batch_size)]
        # A call that is small as a whole (a lone write) takes the latency session, and so
        # does any chunk while searches are quiet (decided per chunk: a search that arrives
        # gets its core back at the next chunk); otherwise ingest leaves a core to searches.
        lone = len(texts) <= LONE_DOCUMENTS
        parts = []
        for chunk in chunks:
            burst = not lone and self._queries is not None and self._queries.quiet()
            parts.append(await loop.run_in_executor(
                pool, partial(self.encode, lone=lone or burst), chunk, "document"))
            self.burst_texts += len(chunk) if burst else 0
        vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        vectors[order] = np.vstack(parts)
        return vectors

    async def embed_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        loop, pool = asyncio.get_running_loop(), self._pool("query")
        if self._queries is None:
            return await loop.run_in_executor(pool, self.encode, list(texts), "query")
        self._queries.started()
        try:
            return await loop.run_in_executor(pool, self.encode, list(texts), "query")
        finally:
            self._queries.ended()

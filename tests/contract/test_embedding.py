"""Both embedding backends load the bundled model offline and agree: the ONNX export gives the
same vectors as sentence-transformers, so switching backends needs no reindex."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handwerk.embedding import Embedder, project_text, text_hash

TEXTS = ["Eichenküche mit Kochinsel", "Wendeltreppe mit Glasgeländer über zwei Geschosse",
         "built-in wardrobe with mirrored doors", "x"]


def test_onnx_and_torch_backends_give_the_same_vectors(embedder: Embedder, tmp_path: Path) -> None:
    torch_embedder = Embedder(backend="torch", threads=2)
    torch_embedder.load()
    try:
        reference = torch_embedder.encode(TEXTS)
    finally:
        torch_embedder.close()
    vectors = embedder.encode(TEXTS)
    assert vectors.shape == (4, 384) == reference.shape
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(vectors * reference, axis=1))) > 0.9999
    assert np.allclose(embedder.encode(TEXTS[:1], "query"), vectors[:1], atol=1e-5)


def test_text_and_hash_ignore_price() -> None:
    base = {"name": "Küche", "description": "Insel", "project_type": "kitchen",
            "wood_type": "Eiche", "region": "Bayern", "final_price": 1.0}
    assert text_hash(project_text(base)) == text_hash(project_text({**base, "final_price": 2.0}))
    assert text_hash(project_text(base)) != text_hash(project_text({**base, "wood_type": "Buche"}))

"""Test models built offline from the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from handwerk.embedding.specs import bundled_model_path

_SEED = 1234
_MARKER = ".handwerk-test-model.json"


def dense_model(folder: Path, dimension: int = 768) -> Path:
    """A sentence-transformers model whose vectors are not what the transformer's mean pooling
    gives: the bundled all-MiniLM-L6-v2 (Transformer, mean Pooling) followed by a fixed-seed
    ``Dense(384 -> dimension, tanh)`` layer and ``Normalize``, saved to ``folder``.

    Built once: a later call with the same folder, dimension and source weights returns the
    saved copy (the marker file is written last, so a half-written folder is rebuilt).
    """
    source = bundled_model_path()
    weights = (source / "model.safetensors").stat()
    recipe = {"source": str(source.resolve()), "size": weights.st_size,
              "mtime_ns": weights.st_mtime_ns, "dimension": dimension, "seed": _SEED,
              "activation": "tanh"}
    marker = folder / _MARKER
    if marker.exists() and json.loads(marker.read_text()) == recipe:
        return folder

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    # sentence-transformers 6's place for the modules (sentence_transformers.models is deprecated)
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    base = SentenceTransformer(str(source), device="cpu", local_files_only=True)
    width = base.get_embedding_dimension()
    if width is None:
        raise ValueError(f"{source}: the model does not declare its embedding dimension")
    generator = torch.Generator().manual_seed(_SEED)
    # Xavier-like scale keeps tanh out of saturation, so the vectors still carry meaning.
    weight = torch.randn(dimension, width, generator=generator) / width ** 0.5
    dense = Dense(width, dimension, bias=False, activation_function=torch.nn.Tanh(),
                  init_weight=weight)
    model = SentenceTransformer(modules=[base[0], base[1], dense, Normalize()], device="cpu")

    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.tmp"
    try:
        model.save(str(partial))
        (partial / _MARKER).write_text(json.dumps(recipe))
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder

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

    base = SentenceTransformer(str(source), device="cpu", local_files_only=True,
                               trust_remote_code=False)
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


def tiny_model(folder: Path, seed: int) -> Path:
    """A sentence-transformers folder (Transformer, mean Pooling, Normalize) with the bundled
    model's tokenizer and a tiny random BERT (one layer, 32-d, weights from ``seed``): it loads
    and embeds in milliseconds on either backend. Writing it again into the same folder with
    another seed replaces only ``model.safetensors``, by a file of the same name and size."""
    import torch
    from transformers import BertConfig, BertModel

    source = bundled_model_path()
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "sentence_bert_config.json", "modules.json"):
        shutil.copyfile(source / name, folder / name)
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    return folder

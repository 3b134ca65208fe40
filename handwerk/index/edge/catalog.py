"""Generations of the embedded index (``GenerationCatalog``): one shard folder each under
``<index_dir>/<alias>/``, and the ``CURRENT`` file names the live one (an atomic rename
switches it)."""

from __future__ import annotations

from pathlib import Path

from handwerk.index.catalog import AliasFolder
from handwerk.index.edge.adapter import EdgeVectorIndex


class EdgeCatalog:
    """Generations of an embedded index: one shard folder each, ``CURRENT`` names the live one."""

    def __init__(self, root: Path, alias: str) -> None:
        self.folder = AliasFolder(root, alias)
        self._root, self._alias = root, alias

    def index(self, generation: str, *, model: str, dimension: int) -> EdgeVectorIndex:
        return EdgeVectorIndex(self._root, self._alias, model=model, dimension=dimension,
                               generation=generation)

    async def current(self) -> str | None:
        return self.folder.current()

    async def activate(self, generation: str) -> None:
        if not (self.folder.generation_dir(generation) / "shard").exists():
            raise FileNotFoundError(f"generation {generation} has no shard")
        self.folder.point_to(generation)

    async def drop(self, generation: str) -> None:
        if self.folder.current() == generation:
            raise ValueError(f"generation {generation} is active; activate another one first")
        self.folder.remove(generation)

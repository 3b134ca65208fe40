"""Index generations behind an alias: what a name points at, and which model built it.

Search reaches the index only through the alias, so a reindex (or a model upgrade) can
build a new generation beside the current one and switch atomically later.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from handwerk.index.base import IndexMismatch


@dataclass(frozen=True, slots=True)
class GenerationMeta:
    generation: str
    model: str
    dimension: int
    created_at: str

    def check(self, model: str, dimension: int) -> None:
        if (self.model, self.dimension) != (model, dimension):
            raise IndexMismatch(
                f"index generation {self.generation} was built with {self.model} "
                f"({self.dimension}-d), the embedder is {model} ({dimension}-d): reindex first"
            )


def new_meta(generation: str, model: str, dimension: int) -> GenerationMeta:
    return GenerationMeta(generation, model, dimension, datetime.now(UTC).isoformat())


class AliasFolder:
    """``<root>/<alias>/CURRENT`` names the live generation folder; swaps are atomic renames."""

    def __init__(self, root: Path, alias: str) -> None:
        self.path = root / alias

    def current(self) -> str | None:
        marker = self.path / "CURRENT"
        return marker.read_text().strip() if marker.exists() else None

    def point_to(self, generation: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / "CURRENT.tmp"
        tmp.write_text(generation)
        os.replace(tmp, self.path / "CURRENT")

    def generation_dir(self, generation: str) -> Path:
        return self.path / generation

    def read_meta(self, generation: str) -> GenerationMeta | None:
        meta = self.generation_dir(generation) / "meta.json"
        return GenerationMeta(**json.loads(meta.read_text())) if meta.exists() else None

    def write_meta(self, meta: GenerationMeta) -> None:
        folder = self.generation_dir(meta.generation)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").write_text(json.dumps(asdict(meta)))

"""Index generations behind an alias: what a name points at, which model built it, and where
each generation stands in the topic.

Search reaches the index only through the alias (the ``CURRENT`` file for Qdrant Edge, a
Qdrant alias on a server), so a reindex, a backfill, a model upgrade or a compaction builds a
new generation beside the live one and switches atomically later. The catalog (one
``meta.json`` per generation under ``<index_dir>/<alias>/<generation>/``, for both backends)
records per generation: the model spec and dimension (queries must embed with the model of
the generation they search), the content key of the weights that made its vectors (what
"same model" means; ``handwerk.embedding.specs.content_key``), its state, and ``offsets``:
per partition, the next topic offset it has not applied. Those offsets are written together
with the generation's data by the one process that built or retired it, so a handover (or a
rollback) resumes exactly there; the conditional write makes any overlap harmless.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from handwerk.files import write_json_atomically, write_text_atomically
from handwerk.index.protocol import IndexMismatch, VectorIndex
from handwerk.timestamps import now_iso

State = Literal["building", "ready", "active", "retired", "failed", "refused"]
_NAME = re.compile(r"^g\d{4,}$")


@dataclass(frozen=True, slots=True)
class GenerationMeta:
    generation: str
    model: str  # a model spec (handwerk.embedding.specs.resolve_model accepts it)
    dimension: int
    created_at: str
    text_template: str = ""  # handwerk.contract.text.TEXT_TEMPLATE when it was built
    # sha256 of the files of the model that made its vectors (handwerk.embedding.specs.
    # content_key); None: built before it was recorded, so no other generation or embedder
    # counts as the same model (specs.same_weights): no reuse, the gate runs.
    content_key: str | None = None
    state: State = "active"
    source: str = "initial"  # initial | topic | db | compaction | model
    offsets: dict[str, int] = field(default_factory=dict)  # partition -> next unapplied offset
    ready_at: str | None = None
    activated_at: str | None = None
    retired_at: str | None = None
    log: str | None = None  # the broker log (servers/topic) the offsets belong to
    points: int | None = None
    tombstones_dropped: int = 0
    dropped_deletes_before: str | None = None  # newest delete time among dropped tombstones
    error: str | None = None
    # A handover in progress, written before the alias moves: writers in other processes
    # (consumers through the alias) may have written the replaced generation ``catch_up_donor``
    # up to the switch, so the topic from these offsets must still be replayed into this one
    # (``handwerk.generations.handover``). Cleared once done; a start finishes a pending one.
    catch_up_from: dict[str, int] | None = None
    catch_up_donor: str | None = None
    # the keyword analyzer of its sparse vectors (handwerk.index.keywords); None: built before
    # keyword search existed, so it answers only dense searches until a reindex
    keywords: dict[str, Any] | None = None

    def check(self, model: str, dimension: int) -> None:
        if (self.model, self.dimension) != (model, dimension):
            raise IndexMismatch(
                f"index generation {self.generation} was built with {self.model} "
                f"({self.dimension}-d), the embedder is {model} ({dimension}-d): reindex first"
            )

    def with_(self, **changes: Any) -> GenerationMeta:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_meta(generation: str, model: str, dimension: int, **extra: Any) -> GenerationMeta:
    from handwerk.contract.text import TEXT_TEMPLATE
    from handwerk.index.keywords import default_keyword_spec

    extra.setdefault("text_template", TEXT_TEMPLATE)
    extra.setdefault("keywords", default_keyword_spec())
    return GenerationMeta(generation, model, dimension, now_iso(), **extra)


def _read_meta(path: Path) -> GenerationMeta | None:
    if not path.exists():
        return None
    known = set(GenerationMeta.__dataclass_fields__)
    raw = json.loads(path.read_text())
    return GenerationMeta(**{k: v for k, v in raw.items() if k in known})


class AliasFolder:
    """``<root>/<alias>/CURRENT`` names the live generation folder; swaps are atomic renames."""

    def __init__(self, root: Path, alias: str) -> None:
        self.path = root / alias

    def current(self) -> str | None:
        marker = self.path / "CURRENT"
        return marker.read_text().strip() if marker.exists() else None

    def point_to(self, generation: str) -> None:
        write_text_atomically(self.path / "CURRENT", generation)

    def generation_dir(self, generation: str) -> Path:
        return self.path / generation

    def read_meta(self, generation: str) -> GenerationMeta | None:
        return _read_meta(self.generation_dir(generation) / "meta.json")

    def write_meta(self, meta: GenerationMeta) -> None:
        write_json_atomically(self.generation_dir(meta.generation) / "meta.json", meta.as_dict())

    def names(self) -> list[str]:
        if not self.path.exists():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.is_dir() and _NAME.match(p.name))

    def next_name(self) -> str:
        numbers = [int(n[1:]) for n in self.names()]
        return f"g{max(numbers, default=0) + 1:04d}"

    def remove(self, generation: str) -> None:
        shutil.rmtree(self.generation_dir(generation), ignore_errors=True)


class GenerationCatalog(Protocol):
    """What the reindex machinery needs of a backend: adapters bound to one generation, an
    atomic alias switch, and dropping a generation. Metadata lives in ``folder`` for both."""

    folder: AliasFolder

    def index(self, generation: str, *, model: str, dimension: int) -> VectorIndex:
        """An unopened adapter bound to exactly this generation; ``open`` creates it if absent."""
        ...

    async def current(self) -> str | None: ...

    async def activate(self, generation: str) -> None:
        """Point the alias at ``generation`` atomically (searches through the alias follow)."""
        ...

    async def drop(self, generation: str) -> None:
        """Delete the generation's data (never the active one) and its folder."""
        ...


def list_generations(folder: AliasFolder) -> list[GenerationMeta]:
    return [m for n in folder.names() if (m := folder.read_meta(n)) is not None]

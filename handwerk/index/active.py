"""The generation this process serves and writes, switchable while it runs.

A target pairs a generation's index with the embedder of the model that built it: queries
must embed with the model of the generation they search, so a search takes one ``target``
snapshot and uses both halves of it, even when a handover switches the target meanwhile.
``ActiveIndex`` is itself a ``VectorIndex`` (it delegates to the current target), so the
parts that only read or write points (project reads, reconcile, stats) need not know that
generations exist. Writers that must not straddle a switch (the live consumer) hold
``write_lock`` for a whole batch; the handover takes the same lock for its last catch-up and
the switch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from handwerk.embedding.embedder import Embedder
from handwerk.embedding.specs import same_weights
from handwerk.index.catalog import GenerationCatalog, GenerationMeta
from handwerk.index.keywords import Fusion
from handwerk.index.protocol import (
    Hit,
    IndexStats,
    IndexUnavailable,
    PointRecord,
    PointState,
    SearchFilters,
    StoredPoint,
    Tombstone,
    UpsertPoint,
    VectorIndex,
)


@dataclass(frozen=True, slots=True)
class IndexTarget:
    generation: str
    index: VectorIndex
    embedder: Embedder
    meta: GenerationMeta | None = None

    @property
    def content_key(self) -> str | None:
        """The weights that made this generation's vectors (None: not recorded, or no
        metadata): what decides whether its vectors may serve another generation."""
        return self.meta.content_key if self.meta is not None else None

    @property
    def refuse_creations_before(self) -> str | None:
        """Compaction dropped tombstones of deletes up to this time: an upsert for an
        unknown project that is older than that may be one of them, so it is refused."""
        return self.meta.dropped_deletes_before if self.meta is not None else None


def _other_model(meta: GenerationMeta, embedder: Embedder) -> bool:
    """Would ``embedder`` write vectors of another model into ``meta``'s generation? By the
    content key where the generation records one (new weights under the same name are another
    model), by name for a generation built before keys were recorded (nothing better to go by,
    and stalling would never end: a restart loads the same model)."""
    if meta.dimension != embedder.dimension:
        return True
    if meta.content_key is not None:
        return not same_weights(meta.content_key, embedder.content_key)
    return meta.model != embedder.model_name


class ActiveIndex:
    backend: str

    def __init__(self, target: IndexTarget) -> None:
        self.target = target
        self.backend = target.index.backend
        self.write_lock = asyncio.Lock()
        self._users: dict[str, int] = {}
        self._alias: GenerationCatalog | None = None
        self._guard: GenerationCatalog | None = None

    def follow_alias(self, catalog: GenerationCatalog) -> None:
        """For a consumer whose index writes through the alias while another process manages
        the generations (Qdrant server): ``refresh`` before each batch adopts the generation
        the alias names now, with its rules (the tombstone cutoff), or stalls if it was built
        with another model than this process embeds with."""
        self._alias = catalog

    def guard_alias(self, catalog: GenerationCatalog) -> None:
        """For a process whose target is bound to one generation while another process may
        move the alias (API replicas with consumers on one Qdrant server): ``refresh`` refuses
        each batch (the consumer stalls) while the alias names another generation, until this
        process follows it (``switch``). A write into the replaced generation after the switch
        would be missing from the live one."""
        self._guard = catalog

    async def refresh(self) -> None:
        if self._guard is not None:
            named = await self._guard.current()
            if named is not None and named != self.target.generation:
                raise IndexUnavailable(f"the alias moved to {named}; this process writes "
                                       f"{self.target.generation} until it follows")
        if self._alias is None:
            return
        current = await self._alias.current()
        if current is None or current == self.target.generation:
            return
        meta = self._alias.folder.read_meta(current)
        embedder = self.target.embedder
        if meta is not None and _other_model(meta, embedder):
            raise IndexUnavailable(
                f"the alias now names {current}, built with {meta.model} ({meta.dimension}-d, "
                f"{meta.content_key or 'weights not recorded'}); this process embeds with "
                f"{embedder.model_name} ({embedder.content_key}): restart it to follow")
        self.target = IndexTarget(current, self.target.index, embedder, meta)

    @contextmanager
    def using(self) -> Iterator[IndexTarget]:
        """The current target, counted as in use until the block ends (a replaced generation
        is closed only once nobody uses it)."""
        target = self.target
        self._users[target.generation] = self._users.get(target.generation, 0) + 1
        try:
            yield target
        finally:
            left = self._users[target.generation] - 1
            if left:
                self._users[target.generation] = left
            else:
                del self._users[target.generation]

    def users(self, generation: str) -> int:
        return self._users.get(generation, 0)

    def switch(self, target: IndexTarget) -> IndexTarget:
        """Serve ``target`` from now on; returns the one it replaces (still open)."""
        previous, self.target = self.target, target
        self.backend = target.index.backend
        return previous

    @property
    def embedder(self) -> Embedder:
        return self.target.embedder

    async def open(self) -> None:
        await self.target.index.open()

    async def close(self) -> None:
        await self.target.index.close()

    async def get_states(self, project_ids: Sequence[str]) -> dict[str, PointState]:
        return await self.target.index.get_states(project_ids)

    async def get_vectors(self, project_ids: Sequence[str]) -> dict[str, list[float]]:
        return await self.target.index.get_vectors(project_ids)

    async def get_records(self, project_ids: Sequence[str]) -> dict[str, PointRecord]:
        return await self.target.index.get_records(project_ids)

    async def write(self, upserts: Sequence[UpsertPoint], tombstones: Sequence[Tombstone], *,
                    visible: Callable[[], None] | None = None) -> None:
        await self.target.index.write(upserts, tombstones, visible=visible)

    @property
    def supports_keywords(self) -> bool:
        return self.target.index.supports_keywords

    async def search(self, vector: Sequence[float] | None, *, top_k: int, threshold: float,
                     filters: SearchFilters, text: str | None = None,
                     fusion: Fusion | None = None) -> list[Hit]:
        return await self.target.index.search(vector, top_k=top_k, threshold=threshold,
                                              filters=filters, text=text, fusion=fusion)

    async def search_batch(self, vectors: Sequence[Sequence[float]] | None, *, top_k: int,
                           threshold: float, filters: SearchFilters,
                           texts: Sequence[str] | None = None,
                           fusion: Fusion | None = None) -> list[list[Hit]]:
        return await self.target.index.search_batch(vectors, top_k=top_k, threshold=threshold,
                                                    filters=filters, texts=texts, fusion=fusion)

    async def all_states(self) -> dict[str, PointState]:
        return await self.target.index.all_states()

    async def stats(self) -> IndexStats:
        return await self.target.index.stats()

    def optimize(self) -> bool:
        return self.target.index.optimize()

    def iter_points(self, *, page: int = 256) -> AsyncIterator[list[StoredPoint]]:
        return self.target.index.iter_points(page=page)

    async def drop_tombstones(self, deleted_before: str) -> tuple[int, str | None]:
        return await self.target.index.drop_tombstones(deleted_before)

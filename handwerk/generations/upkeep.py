"""Upkeep of the generations kept: when the live one is due for a compaction, and which others
may go (half-built ones a crash left, failed or refused ones, retired or ready ones past
``generation_grace_s``). The live generation is never removed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from handwerk.embedding.vector_cache import prune_vector_cache
from handwerk.generations.export import EXPORT
from handwerk.index.active import ActiveIndex
from handwerk.index.catalog import GenerationCatalog, GenerationMeta, list_generations
from handwerk.settings import Settings
from handwerk.timestamps import now_iso

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CompactionBaseline:
    """What the last handover left in the live generation, which a compaction cannot improve
    on: points the engine kept outside the HNSW graph right after its build, and tombstones
    (too young to drop). None: no handover since the start."""

    unindexed: int | None = None
    tombstones: int | None = None


class Upkeep:
    def __init__(self, settings: Settings, catalog: GenerationCatalog,
                 active: ActiveIndex) -> None:
        self._settings = settings
        self._catalog = catalog
        self._active = active
        self.baseline = CompactionBaseline()

    def compaction_due(self, vectors: int, indexed: int, tombstones: int) -> str | None:
        """Why the live generation should be compacted now, or None."""
        s = self._settings
        unindexed = vectors - indexed
        if unindexed - (self.baseline.unindexed or 0) >= s.generations.compaction_unindexed_points:
            return f"{unindexed} points outside the HNSW graph"
        grown = tombstones - (self.baseline.tombstones or 0)  # kept ones are young: wait
        if grown >= s.generations.compaction_min_tombstones and vectors and \
                tombstones / vectors >= s.generations.compaction_tombstone_ratio:
            return f"{tombstones} of {vectors} points are tombstones"
        return None

    async def compaction_reason(self) -> str | None:
        stats = await self._active.stats()
        return self.compaction_due(stats.vectors_count, stats.indexed_vectors_count,
                                   stats.tombstones_count)

    async def discard(self, generation: str, reason: str) -> None:
        """Remove a generation that never became active (never the live one)."""
        if generation == self._active.target.generation:
            return
        try:
            await self._catalog.drop(generation)
        except Exception:
            log.warning("could not drop generation %s (%s)", generation, reason, exc_info=True)

    async def clean_up(self, spare: Collection[str]) -> None:
        """Remove what a crash left half-built, and retired generations past the grace period;
        never the live generation or one in ``spare`` (a running job's, one still closing)."""
        active = self._active.target.generation
        for meta in list_generations(self._catalog.folder):
            if meta.state != "building" and meta.generation not in spare:  # the build read it
                (self._catalog.folder.generation_dir(meta.generation) / EXPORT).unlink(
                    missing_ok=True)
            if meta.generation == active or meta.generation in spare:
                continue
            if meta.state == "active":  # a crash between the switch and retiring it
                self._catalog.folder.write_meta(meta.with_(
                    state="retired", retired_at=now_iso(), offsets={}))  # replay all on rollback
                continue
            if meta.state in ("building", "failed", "refused") or self._expired(meta):
                log.info("dropping generation %s (%s)", meta.generation, meta.state)
                await self.discard(meta.generation, "clean-up")
        # the vectors no generation left can use, and the cache's bound (embedding.vector_cache)
        await asyncio.to_thread(prune_vector_cache, self._settings.vector_cache_path,
                                list_generations(self._catalog.folder),
                                max_bytes=self._settings.embedding.vector_cache_max_bytes)

    def _expired(self, meta: GenerationMeta) -> bool:
        """A retired or ready generation kept past the grace period."""
        since = meta.retired_at if meta.state == "retired" else \
            (meta.ready_at or meta.created_at) if meta.state == "ready" else None
        grace = timedelta(seconds=self._settings.generations.grace_s)
        return since is not None and datetime.fromisoformat(since) + grace < datetime.now(UTC)

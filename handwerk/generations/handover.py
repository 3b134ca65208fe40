"""The handover from the live generation to a built (or retired) one, in the serving process:

1. open the new generation (and, for another model, its embedder) beside the live one;
   "another model" is decided by content key (``specs.same_weights``), never by name: new
   weights in the same folder are another model, and so is a generation that records none;
2. catch up: replay the topic from the generation's recorded offsets to the high watermark,
   outside the live group (conditional writes make the overlap harmless);
3. gates: the new generation must hold (nearly) as many live projects as the live one, and
   for another model, agreement@10 on a fixed query set must reach the threshold, unless
   forced;
4. under the live consumer's write lock: a last catch-up to the current high watermark, the
   atomic alias switch, and the in-process switch of the target search and consumer use;
5. the replaced generation is retired with the offsets the live group had certainly applied,
   kept for ``generation_grace_s`` (an activation rolls back to it by the same handover, from
   those offsets) and dropped after that (``upkeep.py``).

A search never waits for any of this: it takes one target (index and model together) and
keeps it for its whole request. Nothing here writes the live generation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection

from handwerk.consumer.applier import IndexApplier
from handwerk.embedding.embedder import Embedder
from handwerk.embedding.specs import same_weights
from handwerk.embedding.vector_cache import VectorCache
from handwerk.generations.jobs import HandoverRefused, JobState, ReindexJob
from handwerk.generations.quality import agreement_at_k
from handwerk.generations.replay import log_identity, read_position, replay
from handwerk.generations.upkeep import CompactionBaseline
from handwerk.index.active import ActiveIndex, IndexTarget
from handwerk.index.catalog import GenerationCatalog, GenerationMeta
from handwerk.metrics import Metrics
from handwerk.process.backoff import Backoff
from handwerk.process.memory import release_free_memory
from handwerk.settings import Settings
from handwerk.timestamps import now_iso

log = logging.getLogger(__name__)

EmbedderLoader = Callable[[str | None], Embedder]


class Handover:
    def __init__(self, settings: Settings, catalog: GenerationCatalog, active: ActiveIndex,
                 metrics: Metrics, load_embedder: EmbedderLoader,
                 baseline: CompactionBaseline) -> None:
        """``baseline`` is updated after each switch (the compaction rule's reference)."""
        self._settings = settings
        self._catalog = catalog
        self._active = active
        self._metrics = metrics
        self._load_embedder = load_embedder
        self._baseline = baseline
        self._retiring: dict[str, IndexTarget] = {}  # replaced, still open for a moment
        self._closing: dict[str, asyncio.Future[None]] = {}

    @property
    def retiring(self) -> Collection[str]:
        """Replaced generations not closed yet (clean-up leaves them alone)."""
        return self._retiring.keys()

    async def run(self, job: ReindexJob, meta: GenerationMeta, *, force: bool) -> None:
        """Hand over to ``meta``'s generation; raises ``HandoverRefused`` where a gate or the
        topic refuses it (the live generation then goes on as before)."""
        job.state, job.phase = JobState.CATCHING_UP, "opening the new generation"
        target = await self._open(meta)
        try:
            built = await target.index.stats()
            # what the engine itself left outside the graph: the compaction rule's baseline
            # (not the count after the catch-up, which holds writes made during the build)
            job.figures["unindexed_after_build"] = built.vectors_count - built.indexed_vectors_count
            start = {int(p): o for p, o in meta.offsets.items()}
            position = await read_position(self._settings)
            behind = {p: o for p, o in start.items() if o > position.high_watermarks.get(p, 0)}
            if behind:
                raise HandoverRefused(
                    f"{meta.generation} stands at offsets the topic does not reach ({behind}): "
                    "the log was recreated; use `reindex --from db`")
            caught = time.monotonic()
            job.phase = "replaying what arrived after the build"
            reached = await self._catch_up_outside_the_lock(target, start)
            job.figures["catch_up_s"] = round(time.monotonic() - caught, 2)
            job.state, job.phase = JobState.CHECKING, "gates"
            await self._gates(job, target, force=force)
            await self._switch(job, target, reached)
            await self._after_switch(job, target, reached)
        except BaseException:
            if self._active.target.generation != target.generation:
                await target.index.close()
                if target.embedder is not self._active.target.embedder:
                    await target.embedder.aclose()
            raise

    async def close(self) -> None:
        """Close every replaced generation still open."""
        for generation in list(self._retiring):
            await self._close_target(generation)
        for closing in list(self._closing.values()):
            await asyncio.gather(closing, return_exceptions=True)

    # ---------------------------------------------------------------- steps

    async def _open(self, meta: GenerationMeta) -> IndexTarget:
        closing = self._closing.get(meta.generation)
        if closing is not None:  # never open a shard while its last holder still closes it
            await asyncio.shield(closing)
        retiring = self._retiring.pop(meta.generation, None)
        if retiring is not None:  # a quick rollback: it is still open (one opener per shard)
            return IndexTarget(meta.generation, retiring.index, retiring.embedder, meta)
        current = self._active.target
        if same_weights(meta.content_key, current.embedder.content_key):
            embedder = current.embedder
        else:  # another model, or new weights under the same name, or not recorded
            embedder = await asyncio.to_thread(self._load_embedder, meta.model)
            if meta.content_key is not None and embedder.content_key != meta.content_key:
                await embedder.aclose()
                raise HandoverRefused(
                    f"{meta.generation} was built with other weights ({meta.content_key}) than "
                    f"{meta.model} holds now ({embedder.content_key}): its queries would not "
                    "match its vectors; rebuild with `reindex --model` instead")
        try:
            index = self._catalog.index(meta.generation, model=embedder.model_name,
                                        dimension=embedder.dimension)
            await index.open()
        except BaseException:
            if embedder is not current.embedder:
                await embedder.aclose()
            raise
        return IndexTarget(meta.generation, index, embedder, meta)

    async def _catch_up(self, target: IndexTarget, start: dict[int, int],
                        until: dict[int, int]) -> dict[int, int]:
        """Replay [start, until) into the new generation. Texts the live generation already
        embedded with the same model are taken from it (and from the vector cache), so under
        steady writes a catch-up costs index writes, not the encoder: embedding everything
        that arrived during a build at ~35 texts/s would never catch up with ~200 writes/s."""
        live = self._active.target
        # the live vectors were made by the live generation's weights (its content key), and
        # serve the target only if it embeds with the very same weights
        same_model = (same_weights(live.content_key, target.content_key)
                      and live.embedder.dimension == target.embedder.dimension)
        cache = await asyncio.to_thread(VectorCache, self._settings.vector_cache_path)
        try:
            applier = IndexApplier(target.index, target.embedder, Metrics(), cache=cache,
                                   donor=live.index if same_model else None,
                                   refuse_creations_before=target.refuse_creations_before)
            return await replay(self._settings, applier, start=start, until=until)
        finally:
            cache.close()

    async def _catch_up_outside_the_lock(self, target: IndexTarget, start: dict[int, int],
                                         *, passes: int = 5, close_enough: int = 2_000,
                                         ) -> dict[int, int]:
        """Catch up again while a pass leaves more than ``close_enough`` records behind, so the
        last catch-up, under the live consumer's write lock, is short (at most ``passes``)."""
        reached = start
        for _ in range(passes):
            position = await read_position(self._settings)
            gap = sum(max(0, h - reached.get(p, 0)) for p, h in position.high_watermarks.items())
            if gap <= close_enough and reached is not start:
                break
            reached = await self._catch_up(target, reached, position.high_watermarks)
        return reached

    async def _gates(self, job: ReindexJob, target: IndexTarget, *, force: bool) -> None:
        current = self._active.target
        new_stats, old_stats = await target.index.stats(), await current.index.stats()
        job.figures.update(points_new=new_stats.points_count, points_live=old_stats.points_count)
        complete = new_stats.points_count >= self._settings.generations.min_completeness * \
            old_stats.points_count
        if not same_weights(current.content_key, target.content_key):  # not by name: see specs
            agreement = await agreement_at_k(current, target, k=10)
            job.figures["agreement_at_10"] = round(agreement, 3)
            if agreement < self._settings.generations.min_agreement and not force:
                raise HandoverRefused(
                    f"agreement@10 with the live generation is {agreement:.2f}, below "
                    f"{self._settings.generations.min_agreement:.2f}; use --force to switch")
        if not complete and not force:
            raise HandoverRefused(
                f"the new generation holds {new_stats.points_count} projects, the live one "
                f"{old_stats.points_count}: the topic may no longer hold every project (use "
                "--from db, or --force)")

    async def _switch(self, job: ReindexJob, target: IndexTarget, reached: dict[int, int]) -> None:
        """Under the write lock: the last catch-up (bounded), the alias, the in-process target,
        and the generations' records (new one active, replaced one retired)."""
        job.state, job.phase = JobState.SWITCHING, "last catch-up under the write lock"
        folder = self._catalog.folder
        async with self._active.write_lock:
            locked = time.monotonic()
            position = await read_position(self._settings)
            # Bounded: the live consumer waits for this lock. Past the deadline the switch is
            # abandoned (the live generation goes on as before) rather than holding indexing.
            reached = await asyncio.wait_for(
                self._catch_up(target, reached, position.high_watermarks),
                self._settings.generations.handover_lock_timeout_s)
            retired_offsets = position.applied_by_live_group()
            meta = target.meta or folder.read_meta(target.generation)
            if meta is None:  # before the alias moves
                raise RuntimeError(f"generation {target.generation} has no metadata to activate")
            await self._catalog.activate(target.generation)
            identity = log_identity(self._settings)
            meta = meta.with_(state="active", activated_at=now_iso(), log=identity,
                              offsets={str(p): o for p, o in reached.items()})
            previous = self._active.switch(IndexTarget(target.generation, target.index,
                                                       target.embedder, meta))
            try:
                folder.write_meta(meta)
                old = folder.read_meta(previous.generation)
                if old is not None:
                    folder.write_meta(old.with_(
                        state="retired", retired_at=now_iso(), log=identity,
                        offsets={str(p): o for p, o in retired_offsets.items()}))
            finally:
                self.retire(previous)
            job.figures["writes_held_s"] = round(time.monotonic() - locked, 3)
        job.end(JobState.ACTIVE)
        job.phase = "done"
        self._metrics.index_generation_switches.inc()
        log.info("generation %s is active (was %s)", target.generation, previous.generation)

    async def _after_switch(self, job: ReindexJob, target: IndexTarget,
                            reached: dict[int, int]) -> None:
        """Writers in other processes (consumers against a Qdrant server) write through the
        alias: until the switch into the old generation. Replaying from where the new one stood
        up to a high watermark read after the switch covers whatever they wrote there. The
        switch has happened: a failure here is retried, never reported as a failed job."""
        backoff = Backoff(initial=0.5, maximum=30.0)
        for attempt in range(20):
            try:
                position = await read_position(self._settings)
                await self._catch_up(target, reached, position.high_watermarks)
                break
            except Exception:
                log.warning("post-switch catch-up failed (attempt %d)", attempt + 1, exc_info=True)
                await backoff.wait()
        try:
            stats = await target.index.stats()
            after_build = job.figures.get("unindexed_after_build")
            self._baseline.unindexed = (int(after_build) if after_build is not None else
                                        stats.vectors_count - stats.indexed_vectors_count)
            self._baseline.tombstones = stats.tombstones_count
        except Exception:
            log.warning("stats after the switch failed", exc_info=True)

    # ---------------------------------------------------------------- the replaced generation

    def retire(self, previous: IndexTarget) -> None:
        """Close the replaced generation once the searches that took it have ended."""
        self._retiring[previous.generation] = previous
        self._closing[previous.generation] = asyncio.ensure_future(
            self._close_target(previous.generation))

    async def _close_target(self, generation: str) -> None:
        """After the searches that took it ended (they hold it for milliseconds), unless it
        became active again meanwhile; the entry stays until the shard is closed."""
        try:
            deadline = time.monotonic() + 60.0
            while self._active.users(generation) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            target = self._retiring.get(generation)
            if target is None or generation == self._active.target.generation:
                return
            await target.index.close()
            if target.embedder is not self._active.target.embedder:
                await target.embedder.aclose()
            self._retiring.pop(generation, None)
            await asyncio.to_thread(release_free_memory)
        finally:
            self._closing.pop(generation, None)

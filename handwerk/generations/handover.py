"""The handover from the live generation to a built (or retired) one, in the serving process:

1. open the new generation (and, for another model, its embedder) beside the live one;
   "another model" is decided by content key (``specs.same_weights``), never by name: new
   weights in the same folder are another model, and so is a generation that records none;
2. catch up: replay the topic from the generation's recorded offsets to the high watermark,
   outside the live group (conditional writes make the overlap harmless); refused where the
   log now starts above those offsets (retention took events, deletes among them, that the
   replay would skip: ``refuse_unreplayable``);
3. gates: the new generation must hold (nearly) as many live projects as the live one, and
   another model must score about as well as the live one on the relevance benchmark
   (``quality.py``; agreement@10 is recorded as information), unless forced;
4. under the live consumer's write lock: a last catch-up to the current high watermark, the
   atomic alias switch, a catch-up of what consumers in other processes wrote through the
   alias into the replaced generation until it moved (they do not share this lock), and only
   then the in-process switch of the target search and consumer use. What that catch-up
   still has to replay is written into the new generation's metadata before the alias moves
   (``catch_up_from``), so a crash or a failure cannot lose it: ``finish_catch_up`` completes
   it (the manager retries it, and runs it when a process takes charge), and replicas that
   follow the alias switch only once it is done (``follow``);
5. the replaced generation is retired with the offsets the live group had certainly applied,
   kept for ``generation_grace_s`` (an activation rolls back to it by the same handover, from
   those offsets) and dropped after that (``upkeep.py``). It is the vector donor of every
   catch-up after the alias moved: the texts written there need no encoder again.

A search never waits for any of this: it takes one target (index and model together) and
keeps it for its whole request. Nothing here writes the live generation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection

from handwerk.consumer.applier import IndexApplier
from handwerk.embedding.embedder import Embedder
from handwerk.embedding.specs import same_weights
from handwerk.embedding.vector_cache import VectorCache
from handwerk.generations.jobs import HandoverRefused, JobState, ReindexJob
from handwerk.generations.quality import CACHE_FILE as QUALITY_CACHE
from handwerk.generations.quality import (
    ModelQuality,
    QualityRule,
    ScoreCache,
    agreement_at_k,
    compare_models,
)
from handwerk.generations.replay import (
    log_identity,
    read_log_starts,
    read_position,
    replay,
    replay_gaps,
)
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
Fence = Callable[[], Awaitable[bool]]


def refuse_unreplayable(generation: str, start: dict[int, int],
                        log_starts: dict[int, int]) -> None:
    """Raise ``HandoverRefused`` where the log no longer starts at or below ``start``: the
    catch-up would skip what retention (or DeleteRecords) took, a delete among it, and the
    project would be found again. Only the database still knows those changes."""
    gaps = replay_gaps(start, log_starts)
    if gaps:
        where = ", ".join(f"partition {p} from offset {stored}, the log starts at {first}"
                          for p, (stored, first) in gaps.items())
        raise HandoverRefused(
            f"{generation} cannot be caught up: the topic no longer holds the events after its "
            f"offsets ({where}; retention or DeleteRecords removed them, deletes among them "
            "would be undone); build a new generation with `handwerk reindex --from db` instead")


class Handover:
    def __init__(self, settings: Settings, catalog: GenerationCatalog, active: ActiveIndex,
                 metrics: Metrics, load_embedder: EmbedderLoader,
                 baseline: CompactionBaseline, *, fence: Fence | None = None) -> None:
        """``baseline`` is updated after each switch (the compaction rule's reference).
        ``fence``: asked right before the alias moves; False (this process no longer manages
        the generations) refuses the switch."""
        self._fence = fence
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
            if job.source != "compaction":  # it starts where the live group stands: a gap
                # there is the live generation's own, which refusing would not repair
                refuse_unreplayable(meta.generation, start, await read_log_starts(
                    self._settings, position.high_watermarks.keys()))
            caught = time.monotonic()
            job.phase = "replaying what arrived after the build"
            reached = await self._catch_up_outside_the_lock(target, start)
            job.figures["catch_up_s"] = round(time.monotonic() - caught, 2)
            job.state, job.phase = JobState.CHECKING, "gates"
            await self._gates(job, target, force=force)
            previous = await self._switch(job, target, reached)
            await self._after_switch(job, target, previous)
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
                        until: dict[int, int], *, donor: IndexTarget | None = None,
                        ) -> dict[int, int]:
        """Replay [start, until) into the new generation. Texts the live generation (or
        ``donor``: the replaced one, once the alias moved) already embedded with the same
        model are taken from it (and from the vector cache), so under steady writes a
        catch-up costs index writes, not the encoder: embedding everything that arrived
        during a build at ~35 texts/s would never catch up with ~200 writes/s."""
        live = donor if donor is not None else self._active.target
        # the live vectors were made by the live generation's weights (its content key), and
        # serve the target only if it embeds with the very same weights
        same_model = (live.generation != target.generation
                      and same_weights(live.content_key, target.content_key)
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
        if not complete and not force:
            raise HandoverRefused(
                f"the new generation holds {new_stats.points_count} projects, the live one "
                f"{old_stats.points_count}: the topic may no longer hold every project (use "
                "--from db, or --force)")
        if not same_weights(current.content_key, target.content_key):  # not by name: see specs
            # sameness is information; quality on the relevance benchmark is the gate
            job.figures["agreement_at_10"] = round(await agreement_at_k(current, target, k=10), 3)
            if force:
                job.figures["quality_gate"] = "skipped: forced"
            else:
                job.phase = "gates: both models on the relevance benchmark"
                gens = self._settings.generations
                refused = await compare_models(
                    current.embedder, target.embedder, figures=job.figures,
                    rule=QualityRule(gens.max_ndcg_drop, gens.max_class_drop),
                    quality=ModelQuality(ScoreCache(self._settings.data_dir / QUALITY_CACHE),
                                         gens.quality_projects))
                if refused is not None:
                    raise HandoverRefused(refused)

    async def _switch(self, job: ReindexJob, target: IndexTarget,
                      reached: dict[int, int]) -> IndexTarget:
        """Under the write lock: the last catch-up (bounded), the alias, what other processes
        wrote through it until it moved, the in-process target, and the generations' records
        (new one active, replaced one retired). Returns the replaced target, still open."""
        job.state, job.phase = JobState.SWITCHING, "last catch-up under the write lock"
        folder = self._catalog.folder
        timeout = self._settings.generations.handover_lock_timeout_s
        async with self._active.write_lock:
            locked = time.monotonic()
            position = await read_position(self._settings)
            # Bounded: the live consumer waits for this lock. Past the deadline the switch is
            # abandoned (the live generation goes on as before) rather than holding indexing.
            reached = await asyncio.wait_for(
                self._catch_up(target, reached, position.high_watermarks), timeout)
            retired_offsets = position.applied_by_live_group()
            meta = target.meta or folder.read_meta(target.generation)
            if meta is None:  # before the alias moves
                raise RuntimeError(f"generation {target.generation} has no metadata to activate")
            if self._fence is not None and not await self._fence():
                raise HandoverRefused("this process no longer manages the generations (its "
                                      "lease was taken over); the switch is left to the holder")
            live = self._active.target
            identity = log_identity(self._settings)
            # Durable before the alias moves: from then on only this record says that the
            # writes other processes made into the replaced generation are still to replay.
            pending = meta.with_(log=identity, catch_up_from={str(p): o for p, o in reached.items()},
                                 catch_up_donor=live.generation)
            folder.write_meta(pending)
            await self._catalog.activate(target.generation)
            caught = False
            try:
                job.phase = "replaying what writers in other processes wrote until the switch"
                caught = await self._catch_up_after_the_alias(target, reached, live, timeout)
            finally:  # the alias has moved: this process follows it whatever happens
                meta = pending.with_(state="active", activated_at=now_iso(),
                                     offsets={str(p): o for p, o in reached.items()})
                if caught:
                    meta = meta.with_(catch_up_from=None, catch_up_donor=None)
                previous = self._active.switch(IndexTarget(target.generation, target.index,
                                                           target.embedder, meta))
                self._retiring[previous.generation] = previous  # the donor until caught up
                try:
                    folder.write_meta(meta)
                    old = folder.read_meta(previous.generation)
                    if old is not None:
                        folder.write_meta(old.with_(
                            state="retired", retired_at=now_iso(), log=identity,
                            offsets={str(p): o for p, o in retired_offsets.items()}))
                except BaseException:
                    self.retire(previous)
                    raise
            job.figures["writes_held_s"] = round(time.monotonic() - locked, 3)
        job.end(JobState.ACTIVE)
        job.phase = "done"
        self._metrics.index_generation_switches.inc()
        log.info("generation %s is active (was %s)", target.generation, previous.generation)
        return previous

    async def _catch_up_after_the_alias(self, target: IndexTarget, reached: dict[int, int],
                                        donor: IndexTarget, timeout: float) -> bool:
        """Writers in other processes wrote the replaced generation until the alias moved: every
        record they applied there is below a high watermark read now. False where it failed or
        ran past ``timeout``: the alias has moved, so the switch goes on and the metadata keeps
        the catch-up pending (``finish_catch_up``)."""
        try:
            position = await read_position(self._settings)
            await asyncio.wait_for(self._catch_up(target, reached, position.high_watermarks,
                                                  donor=donor), timeout)
            return True
        except Exception:
            log.warning("catch-up after the alias switch to %s failed; it stays pending",
                        target.generation, exc_info=True)
            return False

    async def _after_switch(self, job: ReindexJob, target: IndexTarget,
                            previous: IndexTarget) -> None:
        """Finish a catch-up the switch left pending (retried; the manager retries it again
        later, and at a start), then retire the replaced generation and take the compaction
        baseline. The switch has happened: nothing here fails the job."""
        try:
            backoff = Backoff(initial=0.5, maximum=30.0)
            for attempt in range(20):
                meta = self._catalog.folder.read_meta(target.generation)
                if meta is None or meta.catch_up_from is None:
                    break
                try:
                    await self.finish_catch_up()
                    break
                except Exception:
                    log.warning("pending catch-up of %s failed (attempt %d)", target.generation,
                                attempt + 1, exc_info=True)
                    await backoff.wait()
        finally:
            self.retire(previous)
        try:
            stats = await target.index.stats()
            after_build = job.figures.get("unindexed_after_build")
            self._baseline.unindexed = (int(after_build) if after_build is not None else
                                        stats.vectors_count - stats.indexed_vectors_count)
            self._baseline.tombstones = stats.tombstones_count
        except Exception:
            log.warning("stats after the switch failed", exc_info=True)

    # ---------------------------------------------------------------- after a switch

    async def finish_catch_up(self) -> bool:
        """Complete the catch-up a switch recorded as pending in the live generation's metadata
        (a crash, a failure, a timeout after the alias moved): replay from its offsets to the
        high watermark, with the replaced generation as vector donor where it is still there
        and was made by the same weights, then clear it. False: nothing was pending."""
        target = self._active.target
        folder = self._catalog.folder
        meta = folder.read_meta(target.generation)
        if meta is None or meta.catch_up_from is None:
            return False
        start = {int(p): o for p, o in meta.catch_up_from.items()}
        if meta.log is not None and meta.log != log_identity(self._settings):
            log.warning("generation %s: its pending catch-up belongs to another log (%s); "
                        "dropped (reconcile repairs what it missed)", meta.generation, meta.log)
        else:
            donor, opened = await self._donor(meta.catch_up_donor, target)
            try:
                position = await read_position(self._settings)
                gaps = replay_gaps(start, await read_log_starts(
                    self._settings, position.high_watermarks.keys()))
                if gaps:  # the alias has moved: too late to refuse
                    log.error("generation %s: its pending catch-up starts below the log start "
                              "(partition: (offset, log start) %s); what retention took is not "
                              "replayed: reconcile repairs it from the database",
                              meta.generation, gaps)
                await self._catch_up(target, start, position.high_watermarks, donor=donor)
            finally:
                if opened:
                    await donor.index.close()  # type: ignore[union-attr]
        current = folder.read_meta(target.generation) or meta
        folder.write_meta(current.with_(catch_up_from=None, catch_up_donor=None))
        log.info("generation %s caught up with what other processes wrote until its switch",
                 target.generation)
        return True

    async def _donor(self, generation: str | None,
                     target: IndexTarget) -> tuple[IndexTarget | None, bool]:
        """The replaced generation as vector donor: still open here (retiring), or opened
        for the catch-up (then the caller closes it); None where it is gone or was made by
        other weights. The bool: opened here."""
        if generation is None or generation == target.generation:
            return None, False
        retiring = self._retiring.get(generation)
        if retiring is not None:
            return retiring, False
        meta = self._catalog.folder.read_meta(generation)
        if meta is None or not same_weights(meta.content_key, target.content_key):
            return None, False
        index = self._catalog.index(generation, model=target.embedder.model_name,
                                    dimension=target.embedder.dimension)
        try:
            await index.open()
        except Exception:
            log.warning("donor %s could not be opened; the catch-up embeds instead", generation,
                        exc_info=True)
            return None, False
        return IndexTarget(generation, index, target.embedder, meta), True

    async def follow(self, meta: GenerationMeta) -> None:
        """A replica that does not manage the generations: serve ``meta``'s generation, which
        the manager (elsewhere) switched the alias to and caught up, from now on."""
        target = await self._open(meta)
        async with self._active.write_lock:
            previous = self._active.switch(target)
        self.retire(previous)
        log.info("following the alias: generation %s (was %s)", target.generation,
                 previous.generation)

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

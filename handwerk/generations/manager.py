"""Reindex, backfill, model switch, compaction and rollback, run by the serving process.

Every one of them is the same three steps: prepare a new generation's input (a vector
export for reuse, a database snapshot through the outbox, or a full export of the live
generation), let a builder child process fill it (``builder.py``), then hand over here:

1. open the new generation (and, for another model, its embedder) beside the live one;
2. catch up: replay the topic from the generation's recorded offsets to the high watermark,
   outside the live group (conditional writes make the overlap harmless);
3. gates: the new generation must hold (nearly) as many live projects as the live one, and
   for another model, agreement@10 on a fixed query set must reach the threshold, unless
   forced;
4. under the live consumer's write lock: a last catch-up to the current high watermark, the
   atomic alias switch, and the in-process switch of the target search and consumer use;
5. the replaced generation is retired with the offsets the live group had certainly applied,
   kept for ``generation_grace_s`` (``activate`` rolls back to it by the same handover, from
   those offsets) and dropped after that.

A search never waits for any of this: it takes one target (index and model together) and
keeps it for its whole request. Nothing here writes the live generation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from handwerk.consumer.applier import IndexApplier
from handwerk.embedding import Embedder, resolve_model
from handwerk.embedding.vector_cache import VectorCache, model_key
from handwerk.generations.builder import EXPORT, PROGRESS, BuildRequest, tombstone_cutoff
from handwerk.generations.quality import agreement_at_k
from handwerk.generations.replay import read_position, replay
from handwerk.index.active import ActiveIndex, IndexTarget
from handwerk.index.catalog import (
    GenerationCatalog,
    GenerationMeta,
    list_generations,
    new_meta,
    now_iso,
)
from handwerk.metrics import Metrics
from handwerk.outbox.backlog import last_outbox_seq, unpublished_through
from handwerk.outbox.store import ProjectStore
from handwerk.process.backoff import Backoff
from handwerk.process.children import die_with_parent
from handwerk.process.memory import release_free_memory
from handwerk.settings import Settings

log = logging.getLogger(__name__)

SOURCES = ("topic", "db")


class ReindexRefused(Exception):
    """The request cannot start now (another job runs, unknown generation, ...)."""


@dataclass(slots=True)
class ReindexJob:
    kind: str  # reindex | compaction | activate
    source: str
    model: str
    generation: str = ""
    state: str = "preparing"  # preparing|building|catching_up|checking|switching|active|failed|refused
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    error: str | None = None
    phase: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    reuse_vectors: bool = True
    _started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> bool:
        return self.state in ("active", "failed", "refused")

    def as_dict(self, progress: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "model": self.model,
                "reuse_vectors": self.reuse_vectors,
                "generation": self.generation, "state": self.state, "phase": self.phase,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "elapsed_s": round(time.monotonic() - self._started, 2), "error": self.error,
                "figures": self.figures, "progress": progress or {}}


EmbedderLoader = Callable[[str | None], Embedder]


class ReindexManager:
    def __init__(self, settings: Settings, catalog: GenerationCatalog, active: ActiveIndex,
                 store: ProjectStore, metrics: Metrics, load_embedder: EmbedderLoader, *,
                 model_switch: bool = True) -> None:
        """``model_switch`` False: the consumers run in other processes with their own model,
        so only rebuilds with the live model are allowed here."""
        self._settings = settings
        self._catalog = catalog
        self._active = active
        self._store = store
        self._metrics = metrics
        self._load_embedder = load_embedder
        self._model_switch = model_switch
        self._task: asyncio.Task[None] | None = None
        self._child: asyncio.subprocess.Process | None = None
        self.job: ReindexJob | None = None
        self._compacted_unindexed: int | None = None
        self._compacted_tombstones: int | None = None
        self._retiring: dict[str, IndexTarget] = {}  # replaced, still open for a moment
        self._closing: dict[str, asyncio.Future[None]] = {}

    # ---------------------------------------------------------------- queries

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def progress(self) -> dict[str, Any] | None:
        if self.job is None:
            return None
        document: dict[str, Any] = {}
        if self.job.generation:
            path = self._catalog.folder.generation_dir(self.job.generation) / PROGRESS
            try:
                document = json.loads(path.read_text())
            except (OSError, ValueError):
                document = {}
        return self.job.as_dict(document)

    def generations(self) -> list[dict[str, Any]]:
        active = self._active.target.generation
        out = []
        for meta in list_generations(self._catalog.folder):
            doc = meta.as_dict()
            doc["active"] = meta.generation == active
            out.append(doc)
        return out

    # ---------------------------------------------------------------- starting

    def start(self, *, source: str = "topic", model: str | None = None, force: bool = False,
              kind: str = "reindex", reuse_vectors: bool = True) -> ReindexJob:
        if self.busy:
            raise ReindexRefused("a reindex is already running; wait for it or watch its progress")
        if source not in (*SOURCES, "compaction"):
            raise ReindexRefused(f"unknown source {source!r}")
        current = self._active.target
        if model is not None:  # its canonical name: "default" and the bundled name are one model
            model = resolve_model(model, default_backend=self._settings.embedding_backend).name
        if model is not None and model != current.embedder.model_name and not self._model_switch:
            raise ReindexRefused("a model switch needs the consumers to embed with the new model: "
                                 "run it from `handwerk serve`, or rebuild with the live model")
        job = ReindexJob(kind=kind, source=source, model=model or current.embedder.model_name,
                         reuse_vectors=reuse_vectors)
        job.generation = self._catalog.folder.next_name()
        self._catalog.folder.write_meta(new_meta(job.generation, job.model, 0, state="building",
                                                 source=source))
        self.job = job
        self._task = asyncio.create_task(self._run(job, force=force), name=f"reindex-{kind}")
        return job

    def activate(self, generation: str) -> ReindexJob:
        if self.busy:
            raise ReindexRefused("a reindex is running; activate once it ended")
        meta = self._catalog.folder.read_meta(generation)
        if meta is None:
            raise LookupError(generation)
        if generation == self._active.target.generation:
            raise ReindexRefused(f"{generation} is already active")
        if meta.state not in ("retired", "ready"):
            raise ReindexRefused(f"{generation} is {meta.state}; only a retired or ready "
                                 "generation can be activated")
        if meta.model != self._active.target.embedder.model_name and not self._model_switch:
            raise ReindexRefused(f"{generation} was built with {meta.model}; switching models "
                                 "needs the consumers here (`handwerk serve`)")
        if meta.log is not None and meta.log != self._log_identity():
            raise ReindexRefused(
                f"{generation}'s offsets belong to another log ({meta.log}; the local broker "
                "loses its log when serve restarts): rebuild with `reindex --from db` instead")
        job = ReindexJob(kind="activate", source="rollback", model=meta.model,
                         generation=generation)
        self.job = job
        # A retired generation was live and passed its gates; a ready one (its handover was
        # interrupted) never did.
        self._task = asyncio.create_task(
            self._activate(job, meta, force=meta.state == "retired"), name="reindex-activate")
        return job

    def _log_identity(self) -> str:
        """Which log the recorded offsets belong to (offsets mean nothing in another one)."""
        return f"{self._settings.kafka_bootstrap_servers}/{self._settings.kafka_topic}"

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def close(self) -> None:
        """Stop a running job: the child is killed, its half-built generation removed."""
        if self._child is not None and self._child.returncode is None:
            self._child.kill()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for generation in list(self._retiring):
            await self._close_target(generation)
        for closing in list(self._closing.values()):
            await asyncio.gather(closing, return_exceptions=True)

    # ---------------------------------------------------------------- the job

    async def _run(self, job: ReindexJob, *, force: bool) -> None:
        folder = self._catalog.folder
        generation = job.generation
        gdir = folder.generation_dir(generation)
        try:
            current = self._active.target
            request = await self._prepare(job, gdir, current)
            job.state, job.phase = "building", "builder process"
            built = time.monotonic()
            await self._build(gdir)
            job.figures["build_s"] = round(time.monotonic() - built, 2)
            meta = folder.read_meta(generation)
            if meta is None or meta.state != "ready":
                raise RuntimeError("the builder ended without a ready generation")
            meta = meta.with_(log=self._log_identity(), ready_at=meta.ready_at or now_iso())
            folder.write_meta(meta)
            del request
            await self._handover(job, meta, force=force or job.kind == "compaction")
        except asyncio.CancelledError:
            log.warning("reindex %s interrupted", generation, exc_info=True)
            await self._fail(job, "interrupted")
            raise
        except _Refused as e:
            job.state, job.error, job.finished_at = "refused", str(e), now_iso()
            log.warning("reindex %s refused: %s", generation, e)
            await self._discard(generation, "refused", str(e))
        except Exception as e:
            log.exception("reindex %s failed", generation)
            await self._fail(job, f"{type(e).__name__}: {e}")

    async def _fail(self, job: ReindexJob, reason: str) -> None:
        job.state, job.error, job.finished_at = "failed", reason, now_iso()
        if job.generation and job.kind != "activate":
            await self._discard(job.generation, "failed", reason)

    async def _discard(self, generation: str, state: str, reason: str) -> None:
        """Remove a generation that never became active (never the live one)."""
        if generation == self._active.target.generation:
            return
        try:
            await self._catalog.drop(generation)
        except Exception:
            log.warning("could not drop generation %s (%s)", generation, reason, exc_info=True)

    async def _prepare(self, job: ReindexJob, gdir: Path, current: IndexTarget) -> BuildRequest:
        s = self._settings
        job.phase = "reading topic position"
        position = await read_position(s)
        same_model = job.model == current.embedder.model_name
        inherited: str | None = None
        start: dict[str, int] | None = None
        if job.source == "compaction":
            job.phase = "exporting the live generation"
            start = {str(p): o for p, o in position.applied_by_live_group().items()}
            job.figures["exported"] = await self._export_points(current, gdir / EXPORT)
            await asyncio.to_thread(release_free_memory)  # the export's pages
            until = dict(start)
            inherited = current.refuse_creations_before
        else:
            if same_model and job.reuse_vectors:
                job.phase = "exporting vectors for reuse"
                job.figures["vectors_exported"] = await self._export_vectors(current)
            if job.source == "db":
                start = {str(p): hw for p, hw in position.high_watermarks.items()}
                snapshot_at = datetime.now(UTC)
                job.phase = "snapshot of every project through the outbox"
                job.figures["snapshot_events"] = await self._snapshot_database()
                await self._outbox_drained()
                position = await read_position(s)
                # Deletes before the snapshot left no tombstone in this generation: an upsert
                # older than the snapshot for a project it does not know is refused (a write
                # transaction open for more than the margin is the one case it would wrongly
                # refuse).
                inherited = (snapshot_at - timedelta(seconds=60)).isoformat()
            until = {str(p): hw for p, hw in position.high_watermarks.items()}
        request = BuildRequest(
            generation=job.generation, source=job.source, model=job.model, start=start,
            until=until, drop_deletes_before=tombstone_cutoff(s.tombstone_horizon_s),
            inherited_refuse_before=inherited, reuse_vectors=job.reuse_vectors,
            settings=s.model_dump(mode="json"))
        request.write(gdir)
        return request

    async def _export_vectors(self, target: IndexTarget) -> int:
        """Known vectors of the live generation into the vector cache, so the builder
        embeds nothing it already knows (same model, same text)."""
        cache = VectorCache(self._settings.vector_cache_path)
        key = model_key(target.embedder.model_name, target.embedder.dimension)
        exported = 0
        try:
            async for page in target.index.iter_points():
                items = [(p.payload["text_hash"], p.vector) for p in page
                         if not p.deleted and p.vector is not None and p.payload.get("text_hash")]
                if items:
                    exported += await asyncio.to_thread(cache.put_many, key, items)
        finally:
            cache.close()
        return exported

    async def _export_points(self, target: IndexTarget, path: Path) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False)
        exported = 0
        try:
            db.execute("CREATE TABLE IF NOT EXISTS points (id TEXT PRIMARY KEY, vector BLOB, "
                       "payload TEXT NOT NULL)")
            async for page in target.index.iter_points():
                rows = [(p.project_id,
                         np.asarray(p.vector, dtype=np.float32).tobytes()
                         if p.vector and not p.deleted else None,
                         json.dumps(p.payload)) for p in page]
                await asyncio.to_thread(db.executemany,
                                        "INSERT OR REPLACE INTO points VALUES (?, ?, ?)", rows)
                exported += len(rows)
            await asyncio.to_thread(db.commit)
        finally:
            db.close()
        return exported

    async def _snapshot_database(self) -> int:
        """An upsert event with the current state of every project, through the outbox, in
        chunks that commit one by one (API writes are never held off for long)."""
        emitted, chunk = 0, []
        async for project_id, _version in self._store.iter_versions():
            chunk.append(project_id)
            if len(chunk) >= 500:
                emitted += await self._store.reemit(chunk, [], why="backfill")
                chunk = []
        if chunk:
            emitted += await self._store.reemit(chunk, [], why="backfill")
        return emitted

    async def _outbox_drained(self, timeout_s: float = 600.0) -> None:
        """Until the broker acknowledged every outbox row written so far (the snapshot's)."""
        through = await last_outbox_seq(self._store.sessions)
        deadline = time.monotonic() + timeout_s
        while await unpublished_through(self._store.sessions, through) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the outbox did not drain: is the relay running?")
            await asyncio.sleep(0.2)

    async def _build(self, gdir: Path) -> None:
        """Run the builder as a child that dies with this process (a half-built generation
        is removed here, or at the next start)."""
        self._child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "handwerk", "build-generation", str(gdir),
            stdin=asyncio.subprocess.DEVNULL, preexec_fn=die_with_parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if self.job is not None:
            self.job.figures["builder_pid"] = self._child.pid
        try:
            code = await self._child.wait()
        except asyncio.CancelledError:
            if self._child.returncode is None:
                self._child.kill()
                await self._child.wait()
            raise
        if code != 0:
            raise RuntimeError(f"the builder exited with {code}")

    # ---------------------------------------------------------------- handover

    async def _open_target(self, meta: GenerationMeta) -> IndexTarget:
        closing = self._closing.get(meta.generation)
        if closing is not None:  # never open a shard while its last holder still closes it
            await asyncio.shield(closing)
        retiring = self._retiring.pop(meta.generation, None)
        if retiring is not None:  # a quick rollback: it is still open (one opener per shard)
            return IndexTarget(meta.generation, retiring.index, retiring.embedder, meta)
        current = self._active.target
        if meta.model == current.embedder.model_name:
            embedder = current.embedder
        else:
            embedder = await asyncio.to_thread(self._load_embedder, meta.model)
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
        same_model = (live.embedder.model_name == target.embedder.model_name
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

    async def _handover(self, job: ReindexJob, meta: GenerationMeta, *, force: bool) -> None:
        job.state, job.phase = "catching_up", "opening the new generation"
        target = await self._open_target(meta)
        try:
            built = await target.index.stats()
            # what the engine itself left outside the graph: the compaction rule's baseline
            # (not the count after the catch-up, which holds writes made during the build)
            job.figures["unindexed_after_build"] = built.vectors_count - built.indexed_vectors_count
            start = {int(p): o for p, o in meta.offsets.items()}
            position = await read_position(self._settings)
            behind = {p: o for p, o in start.items() if o > position.high_watermarks.get(p, 0)}
            if behind:
                raise _Refused(f"{meta.generation} stands at offsets the topic does not reach "
                               f"({behind}): the log was recreated; use `reindex --from db`")
            caught = time.monotonic()
            job.phase = "replaying what arrived after the build"
            reached = await self._catch_up_outside_the_lock(target, start)
            job.figures["catch_up_s"] = round(time.monotonic() - caught, 2)
            job.state, job.phase = "checking", "gates"
            await self._gates(job, target, force=force)
            await self._switch(job, target, reached)
        except BaseException:
            if self._active.target.generation != target.generation:
                await target.index.close()
                if target.embedder is not self._active.target.embedder:
                    await target.embedder.aclose()
            raise

    async def _gates(self, job: ReindexJob, target: IndexTarget, *, force: bool) -> None:
        current = self._active.target
        new_stats, old_stats = await target.index.stats(), await current.index.stats()
        job.figures.update(points_new=new_stats.points_count, points_live=old_stats.points_count)
        complete = new_stats.points_count >= self._settings.reindex_min_completeness * \
            old_stats.points_count
        if target.embedder.model_name != current.embedder.model_name:
            agreement = await agreement_at_k(current, target, k=10)
            job.figures["agreement_at_10"] = round(agreement, 3)
            if agreement < self._settings.reindex_min_agreement and not force:
                raise _Refused(f"agreement@10 with the live generation is {agreement:.2f}, below "
                               f"{self._settings.reindex_min_agreement:.2f}; use --force to switch")
        if not complete and not force:
            raise _Refused(f"the new generation holds {new_stats.points_count} projects, the "
                           f"live one {old_stats.points_count}: the topic may no longer hold "
                           "every project (use --from db, or --force)")

    async def _switch(self, job: ReindexJob, target: IndexTarget, reached: dict[int, int]) -> None:
        job.state, job.phase = "switching", "last catch-up under the write lock"
        folder = self._catalog.folder
        async with self._active.write_lock:
            locked = time.monotonic()
            position = await read_position(self._settings)
            # Bounded: the live consumer waits for this lock. Past the deadline the switch is
            # abandoned (the live generation goes on as before) rather than holding indexing.
            reached = await asyncio.wait_for(
                self._catch_up(target, reached, position.high_watermarks),
                self._settings.handover_lock_timeout_s)
            retired_offsets = position.applied_by_live_group()
            await self._catalog.activate(target.generation)
            meta = (target.meta or folder.read_meta(target.generation))
            assert meta is not None
            meta = meta.with_(state="active", activated_at=now_iso(), log=self._log_identity(),
                              offsets={str(p): o for p, o in reached.items()})
            previous = self._active.switch(IndexTarget(target.generation, target.index,
                                                       target.embedder, meta))
            try:
                folder.write_meta(meta)
                old = folder.read_meta(previous.generation)
                if old is not None:
                    folder.write_meta(old.with_(
                        state="retired", retired_at=now_iso(), log=self._log_identity(),
                        offsets={str(p): o for p, o in retired_offsets.items()}))
            finally:
                self._retire(previous)
            job.figures["writes_held_s"] = round(time.monotonic() - locked, 3)
        job.state, job.phase, job.finished_at = "active", "done", now_iso()
        self._metrics.index_generation_switches.inc()
        log.info("generation %s is active (was %s)", target.generation, previous.generation)
        # Writers in other processes (consumers against a Qdrant server) write through the
        # alias: until the switch into the old generation. Replaying from where the new one
        # stood up to a high watermark read after the switch covers whatever they wrote there.
        # The switch has happened: a failure here is retried, never reported as a failed job.
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
            self._compacted_unindexed = (int(after_build) if after_build is not None else
                                         stats.vectors_count - stats.indexed_vectors_count)
            self._compacted_tombstones = stats.tombstones_count
        except Exception:
            log.warning("stats after the switch failed", exc_info=True)

    def _retire(self, previous: IndexTarget) -> None:
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

    async def _activate(self, job: ReindexJob, meta: GenerationMeta, *, force: bool) -> None:
        try:
            await self._handover(job, meta, force=force)
        except asyncio.CancelledError:
            job.state, job.error, job.finished_at = "failed", "interrupted", now_iso()
            raise
        except Exception as e:
            log.exception("activating %s failed", meta.generation)
            job.state, job.error, job.finished_at = "failed", f"{type(e).__name__}: {e}", now_iso()

    # ---------------------------------------------------------------- upkeep

    async def clean_up(self) -> None:
        """Remove what a crash left half-built, and retired generations past the grace period."""
        active = self._active.target.generation
        grace = timedelta(seconds=self._settings.generation_grace_s)
        working = self.job.generation if self.busy and self.job is not None else None
        for meta in list_generations(self._catalog.folder):
            if meta.generation in (active, working) or meta.generation in self._retiring:
                continue
            if meta.state == "active":  # a crash between the switch and retiring it
                self._catalog.folder.write_meta(meta.with_(
                    state="retired", retired_at=now_iso(), offsets={}))  # replay all on rollback
                continue
            since = meta.retired_at if meta.state == "retired" else \
                (meta.ready_at or meta.created_at) if meta.state == "ready" else None
            expired = since is not None and \
                datetime.fromisoformat(since) + grace < datetime.now(UTC)
            abandoned = meta.state in ("building", "failed", "refused")
            if abandoned or expired:
                log.info("dropping generation %s (%s)", meta.generation, meta.state)
                await self._discard(meta.generation, meta.state, "clean-up")

    def compaction_due(self, vectors: int, indexed: int, tombstones: int) -> str | None:
        s = self._settings
        unindexed = vectors - indexed
        baseline = self._compacted_unindexed or 0
        if unindexed - baseline >= s.compaction_unindexed_points:
            return f"{unindexed} points outside the HNSW graph"
        grown = tombstones - (self._compacted_tombstones or 0)  # kept ones are young: wait
        if grown >= s.compaction_min_tombstones and vectors and \
                tombstones / vectors >= s.compaction_tombstone_ratio:
            return f"{tombstones} of {vectors} points are tombstones"
        return None

    async def run_upkeep(self, stop: asyncio.Event) -> None:
        """Every ``compaction_check_interval_s``: clean up, and compact when due."""
        from handwerk.process.waiting import stopped_within

        interval = self._settings.compaction_check_interval_s
        while not await stopped_within(stop, interval):
            try:
                await self.clean_up()
                if self.busy:
                    continue
                stats = await self._active.stats()
                reason = self.compaction_due(stats.vectors_count, stats.indexed_vectors_count,
                                             stats.tombstones_count)
                if reason is not None:
                    log.info("compaction: %s", reason)
                    self.start(source="compaction", kind="compaction")
            except Exception:
                log.warning("index upkeep failed", exc_info=True)


class _Refused(Exception):
    pass

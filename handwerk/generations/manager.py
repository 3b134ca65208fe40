"""Reindex, backfill, model switch, compaction and rollback, run by the serving process.

Every one of them is the same three steps: prepare a new generation's input (``prepare.py``:
a vector export for reuse, a database snapshot through the outbox, or a full export of the live
generation), let a builder child process fill it (``child.py``, ``builder.py``), then hand over
to it (``handover.py``). An activation (rollback) is the handover alone. ``upkeep.py`` decides
when to compact and which generations may go. ``ReindexManager`` wires them and keeps the one
job that may run at a time (``jobs.py``).

One manager per deployment: where several API replicas share a Qdrant server, a ``Lease``
(the database's lease row, like the relay's) decides which one builds, switches, compacts and
cleans up; every other replica follows the alias (``run_upkeep``) and refuses jobs. A holder
that lost the lease is refused the switch (the handover's fence) and stops its job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from handwerk.embedding.specs import resolve_model, same_weights
from handwerk.generations.child import BuilderChild, read_progress
from handwerk.generations.handover import EmbedderLoader, Handover
from handwerk.generations.jobs import (
    SOURCES,
    HandoverRefused,
    JobState,
    ReindexJob,
    ReindexRefused,
)
from handwerk.generations.prepare import prepare
from handwerk.generations.replay import log_identity
from handwerk.generations.upkeep import Upkeep
from handwerk.index.active import ActiveIndex
from handwerk.index.catalog import (
    GenerationCatalog,
    GenerationMeta,
    list_generations,
    new_meta,
    now_iso,
)
from handwerk.metrics import Metrics
from handwerk.outbox.store import ProjectStore
from handwerk.settings import Settings

__all__ = ["EmbedderLoader", "ReindexJob", "ReindexManager", "ReindexRefused"]

log = logging.getLogger(__name__)


class Lease(Protocol):
    """Who manages the generations of a deployment (``handwerk.producer.lease`` keeps one
    per name): ``token`` is None while another holder has it."""

    token: int | None

    async def acquire(self) -> bool: ...

    async def renew(self, token: int) -> bool: ...

    async def release(self) -> None: ...


class ReindexManager:
    def __init__(self, settings: Settings, catalog: GenerationCatalog, active: ActiveIndex,
                 store: ProjectStore, metrics: Metrics, load_embedder: EmbedderLoader, *,
                 model_switch: bool = True, lease: Lease | None = None) -> None:
        """``model_switch`` False: the consumers run in other processes with their own model,
        so only rebuilds with the live model are allowed here. ``lease``: several processes
        could manage these generations (API replicas on one Qdrant server); None: only this
        one can (the embedded index belongs to one process)."""
        self._settings = settings
        self._catalog = catalog
        self._active = active
        self._store = store
        self._model_switch = model_switch
        self._lease = lease
        self._upkeep = Upkeep(settings, catalog, active)
        self._handover = Handover(settings, catalog, active, metrics, load_embedder,
                                  self._upkeep.baseline,
                                  fence=self._still_managing if lease is not None else None)
        self._child = BuilderChild()
        self._task: asyncio.Task[None] | None = None
        self.job: ReindexJob | None = None

    # ---------------------------------------------------------------- queries

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def manages(self) -> bool:
        """This process manages the generations (holds the lease, or needs none)."""
        return self._lease is None or self._lease.token is not None

    def _refuse_unless_managing(self) -> None:
        if not self.manages:
            raise ReindexRefused("another API replica manages the index generations (it holds "
                                 "the generations lease); send this to it")

    def progress(self) -> dict[str, Any] | None:
        if self.job is None:
            return None
        document: dict[str, Any] = {}
        if self.job.generation:
            document = read_progress(self._catalog.folder.generation_dir(self.job.generation))
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
        self._refuse_unless_managing()
        if self.busy:
            raise ReindexRefused("a reindex is already running; wait for it or watch its progress")
        if source not in SOURCES:
            raise ReindexRefused(f"unknown source {source!r}")
        current = self._active.target
        if model is not None:  # its canonical name: "default" and the bundled name are one model
            model = resolve_model(model, default_backend=self._settings.embedding.backend).name
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
        self._refuse_unless_managing()
        if self.busy:
            raise ReindexRefused("a reindex is running; activate once it ended")
        meta = self._catalog.folder.read_meta(generation)
        if meta is None:
            raise LookupError(generation)
        self._check_activation(meta)
        job = ReindexJob(kind="activate", source="rollback", model=meta.model,
                         generation=generation)
        self.job = job
        # A retired generation was live and passed its gates; a ready one (its handover was
        # interrupted) never did.
        self._task = asyncio.create_task(
            self._activate(job, meta, force=meta.state == "retired"), name="reindex-activate")
        return job

    def _check_activation(self, meta: GenerationMeta) -> None:
        generation = meta.generation
        if generation == self._active.target.generation:
            raise ReindexRefused(f"{generation} is already active")
        if meta.state not in ("retired", "ready"):
            raise ReindexRefused(f"{generation} is {meta.state}; only a retired or ready "
                                 "generation can be activated")
        if not same_weights(meta.content_key, self._active.target.embedder.content_key) \
                and not self._model_switch:
            raise ReindexRefused(f"{generation} was built with {meta.model} "
                                 f"({meta.content_key or 'weights not recorded'}); switching "
                                 "models needs the consumers here (`handwerk serve`)")
        if meta.log is not None and meta.log != log_identity(self._settings):
            raise ReindexRefused(
                f"{generation}'s offsets belong to another log ({meta.log}; the local broker "
                "loses its log when serve restarts): rebuild with `reindex --from db` instead")

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def close(self) -> None:
        """Stop a running job: the child is killed, its half-built generation removed; the
        lease is given up (another replica takes over without waiting for it to expire)."""
        await self._stop_job()
        await self._handover.close()
        if self._lease is not None and self._lease.token is not None:
            try:
                await self._lease.release()
            except Exception:
                log.warning("could not release the generations lease", exc_info=True)

    async def _stop_job(self) -> None:
        self._child.kill()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # ---------------------------------------------------------------- the job

    async def _run(self, job: ReindexJob, *, force: bool) -> None:
        generation = job.generation
        try:
            meta = await self._build(job)
            await self._handover.run(job, meta, force=force or job.kind == "compaction")
        except asyncio.CancelledError:
            log.warning("reindex %s interrupted", generation, exc_info=True)
            await self._fail(job, "interrupted")
            raise
        except HandoverRefused as e:
            job.end(JobState.REFUSED, str(e))
            log.warning("reindex %s refused: %s", generation, e)
            await self._upkeep.discard(generation, str(e))
        except Exception as e:
            log.exception("reindex %s failed", generation)
            await self._fail(job, f"{type(e).__name__}: {e}")

    async def _build(self, job: ReindexJob) -> GenerationMeta:
        """Prepare the input, run the builder child; the generation it left ``ready``."""
        folder = self._catalog.folder
        gdir = folder.generation_dir(job.generation)
        await prepare(job, gdir, self._active.target, self._settings, self._store)
        job.state, job.phase = JobState.BUILDING, "builder process"
        built = time.monotonic()
        await self._child.run(gdir, self._settings,
                              on_start=lambda pid: job.figures.update(builder_pid=pid))
        job.figures["build_s"] = round(time.monotonic() - built, 2)
        meta = folder.read_meta(job.generation)
        if meta is None or meta.state != "ready":
            raise RuntimeError("the builder ended without a ready generation")
        meta = meta.with_(log=log_identity(self._settings), ready_at=meta.ready_at or now_iso())
        folder.write_meta(meta)
        return meta

    async def _fail(self, job: ReindexJob, reason: str) -> None:
        job.end(JobState.FAILED, reason)
        if job.generation and job.kind != "activate":
            await self._upkeep.discard(job.generation, reason)

    async def _activate(self, job: ReindexJob, meta: GenerationMeta, *, force: bool) -> None:
        try:
            await self._handover.run(job, meta, force=force)
        except asyncio.CancelledError:
            job.end(JobState.FAILED, "interrupted")
            raise
        except HandoverRefused as e:
            job.end(JobState.REFUSED, str(e))
            log.warning("activating %s refused: %s", meta.generation, e)
        except Exception as e:
            log.exception("activating %s failed", meta.generation)
            job.end(JobState.FAILED, f"{type(e).__name__}: {e}")

    # ---------------------------------------------------------------- upkeep

    async def take_charge(self) -> bool:
        """At a start: take the lease if free; holding it, finish a catch-up a handover left
        pending (a crash right after the switch) and clean up. False: another process
        manages the generations, this one follows the alias."""
        if not await self._lead():
            return False
        try:
            await self._handover.finish_catch_up()
        except Exception:  # the broker may not be up yet: the upkeep loop retries it
            log.warning("finishing the pending catch-up failed; retried by the upkeep",
                        exc_info=True)
        await self.clean_up()
        return True

    async def _lead(self) -> bool:
        if self._lease is None:
            return True
        held = self._lease.token is not None
        if await self._lease.acquire():
            return True
        if held:  # taken over (this process stalled past the TTL): its job must not switch
            log.warning("the generations lease was taken over; stopping the running job")
            await self._stop_job()
        return False

    async def _still_managing(self) -> bool:
        """The handover's fence: renewed right before the alias moves."""
        token = self._lease.token if self._lease is not None else None
        return token is not None and await self._lease.renew(token)  # type: ignore[union-attr]

    async def clean_up(self) -> None:
        """Remove what a crash left half-built, and retired generations past the grace period
        (never the one a running job works on, nor one still closing, nor the donor of a
        pending catch-up)."""
        if not self.manages:
            return
        spare = set(self._handover.retiring)
        if self.busy and self.job is not None:
            spare.add(self.job.generation)
        live = self._catalog.folder.read_meta(self._active.target.generation)
        if live is not None and live.catch_up_donor is not None:
            spare.add(live.catch_up_donor)
        await self._upkeep.clean_up(spare)

    def compaction_due(self, vectors: int, indexed: int, tombstones: int) -> str | None:
        return self._upkeep.compaction_due(vectors, indexed, tombstones)

    async def follow(self) -> bool:
        """Not managing: serve the generation the alias names once its manager finished the
        handover (caught up). True where this process switched."""
        current = await self._catalog.current()
        if current is None or current == self._active.target.generation:
            return False
        meta = self._catalog.folder.read_meta(current)
        if meta is None or meta.catch_up_from is not None:  # its manager still catches it up
            return False
        await self._handover.follow(meta)
        return True

    async def run_upkeep(self, stop: asyncio.Event) -> None:
        """Every ``generation_follow_interval_s``: hold the lease, or follow the alias where
        another process holds it. Holding it: finish a pending catch-up, and every
        ``compaction_check_interval_s`` clean up and compact when due."""
        from handwerk.process.waiting import stopped_within

        gens = self._settings.generations
        tick = min(gens.follow_interval_s, gens.compaction_check_interval_s) \
            if self._lease is not None else gens.compaction_check_interval_s
        every = max(1, round(gens.compaction_check_interval_s / tick))  # ticks per upkeep
        ticks = 0
        while not await stopped_within(stop, tick):
            try:
                if not await self._lead():
                    await self.follow()
                    continue
                if not self.busy:
                    await self._handover.finish_catch_up()
                ticks += 1
                if ticks % every:
                    continue
                await self.clean_up()
                if self.busy:
                    continue
                reason = await self._upkeep.compaction_reason()
                if reason is not None:
                    log.info("compaction: %s", reason)
                    self.start(source="compaction", kind="compaction")
            except Exception:
                log.warning("index upkeep failed", exc_info=True)

"""A new generation's input, prepared by the serving process before the builder starts.

Which records the builder reads depends on the source:

* ``topic``: the whole topic, from its start up to the current high watermarks;
* ``db``: a snapshot of every project, re-emitted through the outbox, with the deletes since
  the snapshot's cutoff (see ``SNAPSHOT_MARGIN``); the builder reads from the high watermarks
  before the snapshot up to those after the outbox drained;
* ``compaction``: an export of the live generation (``export.py``), which stands at the
  offsets the live group has certainly applied.

For a rebuild with the live model (the same content key: the same weights, not merely the
same name), the live generation's vectors go into the vector cache first (unless the request
says not to reuse them). Every build inherits the live generation's
tombstone cutoff (a database build the later of that and its own snapshot's): a rebuild from
the topic after a backfill must still refuse stale upserts of projects deleted before it. The
result is the ``request.json`` the builder reads (``builder.BuildRequest``); its settings hold
no secret (``child.settings_document``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from handwerk.embedding.specs import content_key, resolve_model, same_weights
from handwerk.generations.builder import BuildRequest, later, tombstone_cutoff
from handwerk.generations.child import settings_document
from handwerk.generations.export import EXPORT, export_points, export_vectors
from handwerk.generations.jobs import ReindexJob
from handwerk.generations.replay import TopicPosition, read_position
from handwerk.index.active import IndexTarget
from handwerk.outbox.backlog import last_outbox_seq, unpublished_through
from handwerk.outbox.store import ProjectStore
from handwerk.process.memory import release_free_memory
from handwerk.settings import Settings

SNAPSHOT_CHUNK = 500  # projects re-emitted per outbox transaction
# Deletes before the snapshot left no tombstone in a generation built from it: an upsert older
# than the snapshot (less this margin) for a project it does not know is refused (a write
# transaction open for more than the margin is the one case it would wrongly refuse). Deletes
# after that cutoff are not left to time: the snapshot re-emits them (``deleted_projects``), so
# the generation holds their tombstones. Every delete before the snapshot is thus covered: a
# stale upsert is older than its delete, so either the cutoff refuses it or the tombstone's
# version does (given writers' clocks agree within the margin, as the cutoff assumes).
SNAPSHOT_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class _Range:
    start: dict[str, int] | None  # None: from the log start
    until: dict[str, int]
    refuse_before: str | None  # this build's own cutoff (a database snapshot's), if any


async def prepare(job: ReindexJob, gdir: Path, current: IndexTarget, settings: Settings,
                  store: ProjectStore) -> BuildRequest:
    """Prepare the input for ``job`` and write the builder's request into ``gdir``."""
    job.phase = "reading topic position"
    position = await read_position(settings)
    if job.source == "compaction":
        span = await _from_the_live_generation(job, gdir, current, position)
    else:
        span = await _from_the_log(job, current, position, settings, store)
    request = BuildRequest(
        generation=job.generation, source=job.source, model=job.model, start=span.start,
        until=span.until, drop_deletes_before=tombstone_cutoff(settings.generations.tombstone_horizon_s),
        inherited_refuse_before=later(current.refuse_creations_before, span.refuse_before),
        reuse_vectors=job.reuse_vectors, settings=settings_document(settings),
        content_key=current.content_key if job.source == "compaction" else None)
    request.write(gdir)
    return request


async def _from_the_live_generation(job: ReindexJob, gdir: Path, current: IndexTarget,
                                    position: TopicPosition) -> _Range:
    job.phase = "exporting the live generation"
    start = {str(p): o for p, o in position.applied_by_live_group().items()}
    job.figures["exported"] = await export_points(current, gdir / EXPORT)
    await asyncio.to_thread(release_free_memory)  # the export's pages
    return _Range(start, dict(start), None)


async def _from_the_log(job: ReindexJob, current: IndexTarget, position: TopicPosition,
                        settings: Settings, store: ProjectStore) -> _Range:
    start: dict[str, int] | None = None
    snapshot: str | None = None
    if job.reuse_vectors and await _same_weights_as_live(job, current, settings):
        job.phase = "exporting vectors for reuse"
        job.figures["vectors_exported"] = await export_vectors(settings.vector_cache_path,
                                                               current)
    if job.source == "db":
        start = {str(p): hw for p, hw in position.high_watermarks.items()}
        snapshot_at = datetime.now(UTC)
        job.phase = "snapshot of every project through the outbox"
        job.figures["snapshot_events"] = await snapshot_database(store)
        cutoff = snapshot_at - SNAPSHOT_MARGIN
        job.figures["snapshot_deletes"] = await store.reemit_deletes(cutoff)
        await outbox_drained(store)
        position = await read_position(settings)
        snapshot = cutoff.isoformat()
    until = {str(p): hw for p, hw in position.high_watermarks.items()}
    return _Range(start, until, snapshot)


async def _same_weights_as_live(job: ReindexJob, current: IndexTarget, settings: Settings) -> bool:
    """Would the builder embed with the weights that made the live vectors? Only then are they
    worth exporting (the cache is keyed by content, so others would never be read anyway).
    Not when the live generation records no content key, nor when the live embedder's weights
    differ from the generation's (the files changed under a running or restarted service)."""
    live = current.content_key
    if not same_weights(live, current.embedder.content_key):
        return False
    try:
        wanted = await asyncio.to_thread(
            lambda: content_key(resolve_model(job.model, default_backend=settings.embedding.backend)))
    except ValueError:
        return False  # the builder will say why
    return same_weights(live, wanted)


async def snapshot_database(store: ProjectStore) -> int:
    """An upsert event with the current state of every project, through the outbox, in
    chunks that commit one by one (API writes are never held off for long)."""
    emitted, chunk = 0, []
    async for project_id, _version in store.iter_versions():
        chunk.append(project_id)
        if len(chunk) >= SNAPSHOT_CHUNK:
            emitted += await store.reemit(chunk, [], why="backfill")
            chunk = []
    if chunk:
        emitted += await store.reemit(chunk, [], why="backfill")
    return emitted


async def outbox_drained(store: ProjectStore, timeout_s: float = 600.0) -> None:
    """Until the broker acknowledged every outbox row written so far (the snapshot's)."""
    through = await last_outbox_seq(store.sessions)
    deadline = time.monotonic() + timeout_s
    while await unpublished_through(store.sessions, through) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the outbox did not drain: is the relay running?")
        await asyncio.sleep(0.2)

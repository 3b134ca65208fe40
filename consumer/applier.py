"""Apply validated events to the index: guard, embed only changed texts, conditional write.

Correctness does not depend on the pre-read guard (a zombie may race us); the conditional
write inside the index does. The pre-read only saves embedding work, and so does the vector
cache: a text this model embedded before (a legacy import, the generation a reindex
replaces) is taken from there instead of the encoder. A stored vector is reused only with the
text hash read in the same record (``get_records``): another writer may rewrite the point
after the pre-read, and an edit and revert (H1 -> H2 -> H1) would otherwise store H2's vector
under H1's hash for good.

The applier writes either one fixed index (a generation being built) or the ``ActiveIndex``
(the live consumer): then each batch runs under its write lock against one target, index and
model together, so a handover never splits a batch across generations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime

from handwerk.consumer.batch import coalesce, newer_than_index
from handwerk.consumer.journal import ApplyJournal
from handwerk.contract.events import ProjectEvent
from handwerk.contract.text import project_text, text_hash
from handwerk.embedding.embedder import Embedder
from handwerk.embedding.specs import model_key
from handwerk.embedding.vector_cache import VectorCache
from handwerk.index.active import ActiveIndex
from handwerk.index.protocol import (
    PointRecord,
    Tombstone,
    UpsertPoint,
    VectorIndex,
    point_payload,
)
from handwerk.index.watch import IndexedVersions
from handwerk.metrics import Metrics

log = logging.getLogger(__name__)


def _same_text(records: dict[str, PointRecord], hashes: dict[str, str]) -> dict[str, list[float]]:
    """The stored vectors made from the text about to be written: hash and vector of one
    record (``get_records``), never a hash from one read paired with a vector from another."""
    return {pid: r.vector for pid, r in records.items()
            if r.vector is not None and not r.state.deleted and r.state.text_hash == hashes.get(pid)}


@dataclass(frozen=True, slots=True)
class ApplyResult:
    upserts: int
    deletes: int
    skipped_stale: int
    coalesced: int
    embedded: int
    reused: int
    refused_late: int = 0


class IndexApplier:
    def __init__(self, index: VectorIndex | ActiveIndex, embedder: Embedder, metrics: Metrics,
                 journal: ApplyJournal | None = None, watch: IndexedVersions | None = None, *,
                 cache: VectorCache | None = None, donor: VectorIndex | None = None,
                 refuse_creations_before: str | None = None) -> None:
        """``index`` an ``ActiveIndex``: ``embedder`` is ignored, each batch takes the active
        target's. ``refuse_creations_before`` (fixed index only; the active target carries
        its own): see ``IndexTarget.refuse_creations_before``. ``donor``: another index made
        by the same model (the live generation, for a handover's catch-up) whose vectors are
        reused for the same text instead of embedding it again; the caller vouches that it
        was (``specs.same_weights`` of both generations' content keys)."""
        self._index = index
        self._embedder = embedder
        self._metrics = metrics
        self.journal = journal
        self._watch = watch
        self._cache = cache
        self._donor = donor
        self._refuse_before = refuse_creations_before

    async def apply(self, events: Iterable[ProjectEvent]) -> ApplyResult:
        lock: AbstractAsyncContextManager[object] = (
            self._index.write_lock if isinstance(self._index, ActiveIndex) else nullcontext())
        async with lock:
            if isinstance(self._index, ActiveIndex):
                await self._index.refresh()
                target = self._index.target
                return await self._apply(list(events), target.index, target.embedder,
                                         target.refuse_creations_before)
            return await self._apply(list(events), self._index, self._embedder,
                                     self._refuse_before)

    async def _apply(self, events: list[ProjectEvent], index: VectorIndex, embedder: Embedder,
                     refuse_before: str | None) -> ApplyResult:
        newest = coalesce(events)
        states = await index.get_states(list(newest))
        fresh = newer_than_index(newest, states)
        cutoff = datetime.fromisoformat(refuse_before) if refuse_before is not None else None
        late = [e for e in fresh if cutoff is not None and not e.is_delete
                and e.project_id not in states and e.time <= cutoff]
        if late:
            # Compaction dropped tombstones of deletes up to refuse_before: an upsert that old
            # for a project the index does not know may be a deleted project's stale event.
            log.warning("refused %d upsert(s) older than the dropped tombstones (%s): %s",
                        len(late), refuse_before, [e.project_id for e in late[:5]])
            self._metrics.events_skipped.labels("beyond_tombstone_horizon").inc(len(late))
            refused = {e.project_id for e in late}
            fresh = [e for e in fresh if e.project_id not in refused]
        deletes = [Tombstone(e.project_id, e.version, e.time.astimezone(UTC).isoformat())
                   for e in fresh if e.is_delete]
        upserts = [e for e in fresh if not e.is_delete]

        texts = {e.project_id: project_text(e.data or {}) for e in upserts}
        hashes = {pid: text_hash(t) for pid, t in texts.items()}
        unchanged = [e.project_id for e in upserts
                     if (s := states.get(e.project_id)) is not None and not s.deleted
                     and s.text_hash == hashes[e.project_id]]
        # The state read above may be stale by now (a zombie writer, the live consumer beside
        # a catch-up): a vector is reused only with the text hash read in the same record.
        vectors = _same_text(await index.get_records(unchanged), hashes) if unchanged else {}
        to_embed = [e.project_id for e in upserts if e.project_id not in vectors]
        if to_embed and self._donor is not None:
            vectors.update(_same_text(await self._donor.get_records(to_embed), hashes))
            to_embed = [p for p in to_embed if p not in vectors]
        if to_embed and self._cache is not None:
            cached = await asyncio.to_thread(
                self._cache.get_many, model_key(embedder.content_key, embedder.dimension),
                sorted({hashes[p] for p in to_embed}))
            vectors.update({p: cached[hashes[p]] for p in to_embed if hashes[p] in cached})
            to_embed = [p for p in to_embed if p not in vectors]
        if to_embed:
            started = time.perf_counter()
            embedded = await embedder.embed_documents([texts[p] for p in to_embed])
            self._metrics.embed_seconds.observe(time.perf_counter() - started)
            self._metrics.texts_embedded.inc(len(to_embed))
            vectors.update({pid: embedded[i].tolist() for i, pid in enumerate(to_embed)})
        self._metrics.vectors_reused.inc(len(upserts) - len(to_embed))

        points = [UpsertPoint(e.project_id, e.version, vectors[e.project_id],
                              point_payload(e, hashes[e.project_id])) for e in upserts]
        visible_at: list[datetime] = []

        def visible() -> None:
            """Searches see the batch: wake the requests waiting for it (before the flush)."""
            visible_at.append(datetime.now(UTC))
            if self._watch is not None:
                self._watch.applied({e.project_id: e.version for e in fresh})

        started = time.perf_counter()
        await index.write(points, deletes, visible=visible)
        self._metrics.index_write_seconds.observe(time.perf_counter() - started)
        if self.journal is not None:
            self.journal.applied(fresh, skipped=len(events) - len(fresh))

        now = visible_at[0] if visible_at else datetime.now(UTC)  # searchable, not yet flushed
        for event in fresh:
            self._metrics.freshness.observe(max(0.0, (now - event.time).total_seconds()))
        self._metrics.events_applied.labels("upsert").inc(len(points))
        self._metrics.events_applied.labels("delete").inc(len(deletes))
        stale = len(newest) - len(fresh) - len(late)
        coalesced = len(events) - len(newest)
        self._metrics.events_skipped.labels("stale_or_duplicate").inc(stale)
        self._metrics.events_skipped.labels("coalesced").inc(coalesced)
        return ApplyResult(upserts=len(points), deletes=len(deletes), skipped_stale=stale,
                           coalesced=coalesced, embedded=len(to_embed),
                           reused=len(upserts) - len(to_embed), refused_late=len(late))

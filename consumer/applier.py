"""Apply validated events to the index: guard, embed only changed texts, conditional write.

Correctness does not depend on the pre-read guard (a zombie may race us); the conditional
write inside the index does. The pre-read only saves embedding work.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from handwerk.consumer.batch import coalesce, newer_than_index
from handwerk.consumer.journal import ApplyJournal
from handwerk.embedding import Embedder, project_text, text_hash
from handwerk.events import ProjectEvent
from handwerk.index.base import Tombstone, UpsertPoint, VectorIndex, point_payload
from handwerk.index.watch import IndexedVersions
from handwerk.metrics import Metrics


@dataclass(frozen=True, slots=True)
class ApplyResult:
    upserts: int
    deletes: int
    skipped_stale: int
    coalesced: int
    embedded: int
    reused: int


class IndexApplier:
    def __init__(self, index: VectorIndex, embedder: Embedder, metrics: Metrics,
                 journal: ApplyJournal | None = None, watch: IndexedVersions | None = None) -> None:
        self._index = index
        self._embedder = embedder
        self._metrics = metrics
        self.journal = journal
        self._watch = watch

    async def apply(self, events: Iterable[ProjectEvent]) -> ApplyResult:
        events = list(events)
        newest = coalesce(events)
        states = await self._index.get_states(list(newest))
        fresh = newer_than_index(newest, states)
        deletes = [Tombstone(e.project_id, e.version) for e in fresh if e.is_delete]
        upserts = [e for e in fresh if not e.is_delete]

        texts = {e.project_id: project_text(e.data or {}) for e in upserts}
        hashes = {pid: text_hash(t) for pid, t in texts.items()}
        unchanged = [e.project_id for e in upserts
                     if (s := states.get(e.project_id)) is not None and not s.deleted
                     and s.text_hash == hashes[e.project_id]]
        vectors = await self._index.get_vectors(unchanged) if unchanged else {}
        to_embed = [e.project_id for e in upserts if e.project_id not in vectors]
        if to_embed:
            started = time.perf_counter()
            embedded = await self._embedder.embed_documents([texts[p] for p in to_embed])
            self._metrics.embed_seconds.observe(time.perf_counter() - started)
            self._metrics.texts_embedded.inc(len(to_embed))
            vectors.update({pid: embedded[i].tolist() for i, pid in enumerate(to_embed)})
        self._metrics.vectors_reused.inc(len(upserts) - len(to_embed))

        points = [UpsertPoint(e.project_id, e.version, vectors[e.project_id],
                              point_payload(e, hashes[e.project_id])) for e in upserts]
        started = time.perf_counter()
        await self._index.write(points, deletes)
        self._metrics.index_write_seconds.observe(time.perf_counter() - started)
        if self.journal is not None:
            self.journal.applied(fresh, skipped=len(events) - len(fresh))
        if self._watch is not None:
            self._watch.applied({e.project_id: e.version for e in fresh})

        now = datetime.now(UTC)
        for event in fresh:
            self._metrics.freshness.observe(max(0.0, (now - event.time).total_seconds()))
        self._metrics.events_applied.labels("upsert").inc(len(points))
        self._metrics.events_applied.labels("delete").inc(len(deletes))
        stale = len(newest) - len(fresh)
        coalesced = len(events) - len(newest)
        self._metrics.events_skipped.labels("stale_or_duplicate").inc(stale)
        self._metrics.events_skipped.labels("coalesced").inc(coalesced)
        return ApplyResult(upserts=len(points), deletes=len(deletes), skipped_stale=stale,
                           coalesced=coalesced, embedded=len(to_embed),
                           reused=len(upserts) - len(to_embed))

"""Qdrant Edge adapter: the Qdrant engine in this process, HNSW, persisted in the data folder.

One process per shard (a second opener corrupts the holder), so callers must hold the
data-folder lock before ``open``. ``optimize`` holds the GIL for its whole run: it is only
called before the process starts serving.

Errors: what the binding raises is mapped once, in ``errors.py``. Generations: ``catalog.py``.

Threads (measured with scripts/measure_edge_blocking.py, 0.9.0). ``update``, ``scroll``,
``query`` and ``retrieve`` hold the GIL while they run, so a worker thread cannot take them
off the event loop: the loop stalls just as long either way. ``flush`` releases the GIL for
its I/O. So:

- Mutations (``update`` + ``flush``, ``optimize``, ``close``) run on one dedicated writer
  thread, one at a time, in submission order: the engine never sees two concurrent
  mutations, ``flush`` waits on the disk without freezing the loop, and the Python work of
  building points interleaves with the loop. Upserts go in slices of ``_SLICE`` points so
  that no single GIL-holding call lasts long.
- Reads stay on the loop (a thread would not shorten the stall, and ``retrieve`` in a
  thread slowed to hundreds of ms under GIL contention); they may run while the writer
  thread flushes, which the engine supports (a Qdrant server does the same). ``all_states``
  pages through ``scroll`` in small pages and yields to the loop between them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from handwerk.index.catalog import AliasFolder, new_meta
from handwerk.index.edge.errors import engine_errors
from handwerk.index.keywords import (
    DENSE_ONLY,
    KEYWORD_VECTOR,
    Fusion,
    KeywordAnalyzer,
    KeywordSearchUnavailable,
)
from handwerk.index.protocol import (
    DELETED_STATE,
    PAYLOAD_INDEXES,
    STATE_FIELDS,
    Hit,
    IndexStats,
    IndexUnavailable,
    PointRecord,
    PointState,
    SearchFilters,
    StoredPoint,
    Tombstone,
    UpsertPoint,
    announce,
    dense_vector,
    droppable,
    scored_hits,
    state_from_payload,
    tombstone_payload,
    utc,
)
from handwerk.index.validation import check_dimensions, check_ids, check_queries, check_vectors

_SCHEMA_TYPES = {
    "keyword": qe.PayloadSchemaType.Keyword, "float": qe.PayloadSchemaType.Float,
    "integer": qe.PayloadSchemaType.Integer,
}
_TOMBSTONE = qe.FieldCondition(key="state", match=qe.MatchValue(DELETED_STATE))
_SLICE = 64  # points per update call: about 1 ms of GIL-holding engine time at 384-d
_PAGE = 256  # records per scroll page in all_states: about 1-2 ms, then the loop runs


def _newer_than_stored(version: int) -> qe.Filter:
    return qe.Filter(must=[qe.FieldCondition(key="version", range=qe.RangeFloat(lt=version))])


def _filter(filters: SearchFilters) -> qe.Filter:
    must: list[Any] = []
    if filters.project_type is not None:
        must.append(qe.FieldCondition(key="project_type", match=qe.MatchValue(filters.project_type)))
    if filters.region is not None:
        must.append(qe.FieldCondition(key="region", match=qe.MatchValue(filters.region)))
    if filters.min_price is not None or filters.max_price is not None:
        must.append(qe.FieldCondition(
            key="final_price", range=qe.RangeFloat(gte=filters.min_price, lte=filters.max_price)))
    return qe.Filter(must=must or None, must_not=[_TOMBSTONE])


def _upsert(shard: qe.EdgeShard, points: list[UpsertPoint], dimension: int,
            keywords: KeywordAnalyzer | None) -> None:
    """Runs on the writer thread: checks every vector first (nothing is written if one is
    refused), then upserts in slices. Searchable from here on, durable after a flush."""
    vectors = check_vectors([f"project {p.project_id}" for p in points], [p.vector for p in points],
                            dimension)
    # Conditional writes take one filter per operation, so points of equal version go together.
    by_version: dict[int, list[qe.Point]] = {}
    for p, vector in zip(points, vectors, strict=True):
        sparse = keywords.document(p.payload) if keywords is not None else None
        stored: Any = vector if sparse is None else {"": vector, KEYWORD_VECTOR: sparse}
        by_version.setdefault(p.version, []).append(qe.Point(p.project_id, stored, p.payload))
    for version, group in by_version.items():
        condition = _newer_than_stored(version)
        for start in range(0, len(group), _SLICE):
            shard.update(qe.UpdateOperation.upsert_points(group[start:start + _SLICE],
                                                          condition=condition))


def _rebuild_payload_indexes(shard: qe.EdgeShard) -> None:
    """After a stop without a clean close, drop and rebuild every payload index from the
    stored payloads.

    Measured with qdrant-edge 0.9.0 (SIGKILL during conditional upserts + flush): after a
    restart the payload index can disagree with the stored payload for the points of the
    batch that was in flight (the index holds the new values, the payload the old ones). The
    conditional write then evaluates ``version < v`` against the index and silently refuses an
    event the stored state needs, and filtered search uses stale values. The stored payload
    is what ``retrieve`` (and so the guard) reads, so the indexes are rebuilt from it.
    """
    info = shard.info()
    for name in set(info.payload_schema) - set(PAYLOAD_INDEXES):
        shard.update(qe.UpdateOperation.delete_field_index(name))  # e.g. "version" (older shards)
    for name, kind in PAYLOAD_INDEXES.items():
        if name in info.payload_schema:
            shard.update(qe.UpdateOperation.delete_field_index(name))
        shard.update(qe.UpdateOperation.create_field_index(name, _SCHEMA_TYPES[kind]))
    shard.flush()


def _flush_and_close(shard: qe.EdgeShard) -> None:
    try:
        shard.flush()
    finally:
        shard.close()


class EdgeVectorIndex:
    backend = "qdrant-edge"

    def __init__(self, root: Path, alias: str, *, model: str, dimension: int,
                 generation: str | None = None) -> None:
        """``generation``: open exactly that one (creating it if absent); None: the one the
        alias names (creating g0001 and the alias on first start)."""
        self._alias = AliasFolder(root, alias)
        self._alias_name = alias
        self._model = model
        self._dimension = dimension
        self._shard: qe.EdgeShard | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._final_flush: asyncio.Future[None] | None = None  # close's, for writes in flight
        self._bound = generation
        self._generation = generation or ""
        self._keywords: KeywordAnalyzer | None = None  # the generation's, read at open

    @property
    def generation(self) -> str:
        return self._generation

    @property
    def supports_keywords(self) -> bool:
        return self._keywords is not None

    def _config(self, keywords: bool) -> qe.EdgeConfig:
        sparse = ({KEYWORD_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
                  if keywords else None)
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=self._dimension, distance=qe.Distance.Cosine),
            sparse_vectors=sparse,
            hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000,
                                           max_indexing_threads=0),
        )

    async def open(self) -> None:
        generation = self._bound or self._alias.current()
        shard_dir = self._alias.generation_dir(generation or "g0001") / "shard"
        if generation is None or not shard_dir.exists():
            generation = generation or "g0001"
            meta = self._alias.read_meta(generation)
            if meta is None:
                meta = new_meta(generation, self._model, self._dimension)
                self._alias.write_meta(meta)
            shard = qe.EdgeShard.create(str(shard_dir), self._config(meta.keywords is not None))
            for name, kind in PAYLOAD_INDEXES.items():
                shard.update(qe.UpdateOperation.create_field_index(name, _SCHEMA_TYPES[kind]))
            shard.flush()
            if self._bound is None:
                self._alias.point_to(generation)
        else:
            meta = self._alias.read_meta(generation)
            if meta is not None:
                meta.check(self._model, self._dimension)
            shard = qe.EdgeShard.load(str(self._alias.generation_dir(generation) / "shard"))

            clean = self._clean_marker(generation)
            if not clean.exists():
                await asyncio.to_thread(_rebuild_payload_indexes, shard)
            clean.unlink(missing_ok=True)  # until close() writes it again
        self._shard, self._generation = shard, generation
        # meta.keywords is recorded by new_meta, which also decided the shard's config above
        self._keywords = (KeywordAnalyzer(meta.keywords)
                          if meta is not None and meta.keywords is not None else None)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="edge-write")

    def _clean_marker(self, generation: str) -> Path:
        return self._alias.generation_dir(generation) / "CLEAN_SHUTDOWN"

    async def close(self) -> None:
        """Waits for the writes already submitted, then flushes and closes the shard."""
        if self._shard is None:
            return
        shard, self._shard = self._shard, None
        writer, self._writer = self._writer, None
        if writer is None:
            _flush_and_close(shard)
            return
        try:
            with engine_errors("close"):
                self._final_flush = asyncio.get_running_loop().run_in_executor(
                    writer, _flush_and_close, shard)
                await self._final_flush
            self._clean_marker(self._generation).touch()  # flushed and closed: no rebuild next open
        finally:
            writer.shutdown(wait=False)

    def _require(self) -> qe.EdgeShard:
        if self._shard is None:
            raise IndexUnavailable("Qdrant Edge shard is not open")
        return self._shard

    async def get_states(self, project_ids: Sequence[str]) -> dict[str, PointState]:
        ids: list[Any] = check_ids(project_ids)
        with engine_errors("retrieve"):
            records = self._require().retrieve(ids, STATE_FIELDS, False)
            return {str(r.id): state_from_payload(str(r.id), r.payload) for r in records}

    async def get_vectors(self, project_ids: Sequence[str]) -> dict[str, list[float]]:
        ids: list[Any] = check_ids(project_ids)
        with engine_errors("retrieve"):
            records = self._require().retrieve(ids, False, DENSE_ONLY)
            return {str(r.id): vector for r in records
                    if (vector := dense_vector(r.vector)) is not None}

    async def get_records(self, project_ids: Sequence[str]) -> dict[str, PointRecord]:
        ids: list[Any] = check_ids(project_ids)
        with engine_errors("retrieve"):
            records = self._require().retrieve(ids, STATE_FIELDS, DENSE_ONLY)
            return {str(r.id): PointRecord(state_from_payload(str(r.id), r.payload),
                                           dense_vector(r.vector))
                    for r in records}

    async def write(self, upserts: Sequence[UpsertPoint], tombstones: Sequence[Tombstone], *,
                    visible: Callable[[], None] | None = None) -> None:
        shard, writer = self._require(), self._writer
        if writer is None:
            raise IndexUnavailable("Qdrant Edge shard is not open")
        points = list(upserts) + [
            UpsertPoint(t.project_id, t.version, [0.0] * self._dimension,
                        tombstone_payload(t.version, t.deleted_at))
            for t in tombstones
        ]
        if not points:
            return
        ids = check_ids([p.project_id for p in points])
        check_dimensions([f"project {i}" for i in ids], [p.vector for p in points], self._dimension)
        loop = asyncio.get_running_loop()
        with engine_errors("write"):
            await loop.run_in_executor(writer, _upsert, shard, points, self._dimension,
                                       self._keywords)
        if visible is not None:
            announce(visible)
        # The flush is its own job so that ``visible`` runs first: flush holds the GIL for part
        # of its 10 ms, which delayed a callback from the writer thread to its end. A close
        # submitted meanwhile shut the writer down; its flush comes after our upsert: await it.
        with engine_errors("write"):
            if self._writer is writer:
                await loop.run_in_executor(writer, shard.flush)
            elif self._final_flush is not None:
                await asyncio.shield(self._final_flush)

    def _request(self, vector: list[float] | None, text: str | None, top_k: int,
                 threshold: float, filters: SearchFilters, fusion: Fusion) -> qe.QueryRequest:
        """dense (vector), keyword (text) or hybrid (both: a prefetch each, then fusion; the
        threshold then bounds the dense candidates, see ``VectorIndex.search``)."""
        where = _filter(filters)
        if text is None:
            if vector is None:
                raise ValueError("a search needs a vector, a text or both")
            return qe.QueryRequest(limit=top_k, query=qe.Query.Nearest(vector),
                                   score_threshold=threshold, filter=where, with_payload=True)
        if self._keywords is None:
            raise KeywordSearchUnavailable(self._generation)
        keyword = qe.Query.Nearest(self._keywords.query(text), using=KEYWORD_VECTOR)
        if vector is None:
            return qe.QueryRequest(limit=top_k, query=keyword, filter=where, with_payload=True)
        limit = max(fusion.prefetch, top_k)
        prefetches = [qe.Prefetch(query=qe.Query.Nearest(vector), limit=limit, filter=where,
                                  score_threshold=threshold),
                      qe.Prefetch(query=keyword, limit=limit, filter=where)]
        fused: Any = (qe.Fusion.Rrf(fusion.k, [fusion.dense_weight, fusion.keyword_weight])
                      if fusion.method == "rrf" else qe.Fusion.Dbsf())
        return qe.QueryRequest(limit=top_k, prefetches=prefetches, query=fused, filter=where,
                               with_payload=True, with_vector=DENSE_ONLY)

    async def search(self, vector: Sequence[float] | None, *, top_k: int, threshold: float,
                     filters: SearchFilters, text: str | None = None,
                     fusion: Fusion | None = None) -> list[Hit]:
        query = check_vectors(["query vector"], [vector], self._dimension)[0] \
            if vector is not None else None
        request = self._request(query, text, top_k, threshold, filters, fusion or Fusion())
        with engine_errors("search"):
            return scored_hits(self._require().query(request), query, text)

    async def search_batch(self, vectors: Sequence[Sequence[float]] | None, *, top_k: int,
                           threshold: float, filters: SearchFilters,
                           texts: Sequence[str] | None = None,
                           fusion: Fusion | None = None) -> list[list[Hit]]:
        queries = check_queries(vectors, texts, self._dimension)
        requests = [self._request(vector, text, top_k, threshold, filters, fusion or Fusion())
                    for vector, text in queries]
        with engine_errors("batch search"):
            batch = self._require().query_batch(qe.QueryBatchRequest(requests))
            return [scored_hits(hits, vector, text) for hits, (vector, text) in zip(batch, queries,
                                                                             strict=True)]

    async def all_states(self) -> dict[str, PointState]:
        states: dict[str, PointState] = {}
        offset: Any = None
        while True:
            with engine_errors("scroll"):
                records, offset = self._require().scroll(qe.ScrollRequest(
                    offset=offset, limit=_PAGE, with_payload=STATE_FIELDS, with_vector=False))
                states.update({str(r.id): state_from_payload(str(r.id), r.payload) for r in records})
            if offset is None:
                return states
            await asyncio.sleep(0)  # a full scan at 20k points takes hundreds of ms

    async def stats(self) -> IndexStats:
        with engine_errors("stats"):
            shard = self._require()
            info = shard.info()
            tombstones = shard.count(qe.CountRequest(filter=qe.Filter(must=[_TOMBSTONE])))
            # the engine counts keyword (sparse) vectors as indexed too, each as soon as it is
            # written: only dense vectors in the HNSW graph count here (compaction reads it)
            keyword = shard.count(qe.CountRequest(filter=qe.Filter(
                must=[qe.HasVectorCondition(KEYWORD_VECTOR)]))) if self._keywords else 0
        indexed = max(0, info.indexed_vectors_count - keyword)
        return IndexStats(
            backend=self.backend, name=self._alias_name, generation=self._generation,
            status="green" if indexed >= info.points_count else "yellow",
            points_count=info.points_count - tombstones, vectors_count=info.points_count,
            indexed_vectors_count=indexed, tombstones_count=tombstones,
            model=self._model, dimension=self._dimension,
            extra={"segments_count": info.segments_count},
        )

    async def iter_points(self, *, page: int = _PAGE) -> AsyncIterator[list[StoredPoint]]:
        offset: Any = None
        while True:
            with engine_errors("scroll"):
                records, offset = self._require().scroll(qe.ScrollRequest(
                    offset=offset, limit=page, with_payload=True, with_vector=DENSE_ONLY))
                points = [StoredPoint(str(r.id), dense_vector(r.vector), dict(r.payload or {}))
                          for r in records]
            yield points
            if offset is None:
                return
            await asyncio.sleep(0)

    async def drop_tombstones(self, deleted_before: str) -> tuple[int, str | None]:
        doomed: list[Any] = []
        newest: datetime | None = None
        offset: Any = None
        while True:
            with engine_errors("scroll"):
                records, offset = self._require().scroll(qe.ScrollRequest(
                    offset=offset, limit=_PAGE, with_payload=True, with_vector=False,
                    filter=qe.Filter(must=[_TOMBSTONE])))
            for r in records:
                payload = dict(r.payload or {})
                if droppable(payload, deleted_before):
                    doomed.append(r.id)
                    at = utc(payload["deleted_at"])
                    newest = at if newest is None or at > newest else newest
            if offset is None:
                break
            await asyncio.sleep(0)
        writer = self._writer
        if doomed:
            if writer is None:
                raise IndexUnavailable("Qdrant Edge shard is not open")
            shard = self._require()

            def delete() -> None:
                # by id *and* still a tombstone: a point rewritten since the scan stays
                for start in range(0, len(doomed), _PAGE):
                    shard.update(qe.UpdateOperation.delete_points_by_filter(qe.Filter(must=[
                        qe.HasIdCondition(set(doomed[start:start + _PAGE])), _TOMBSTONE])))
                shard.flush()

            with engine_errors("delete"):
                await asyncio.get_running_loop().run_in_executor(writer, delete)
        return len(doomed), newest.isoformat() if newest is not None else None

    def optimize(self) -> bool:
        """Blocks the calling thread (and, holding the GIL, every thread) until done. Runs on
        the writer thread, after the writes already submitted, never beside one."""
        shard, writer = self._require(), self._writer
        with engine_errors("optimize"):
            if writer is None:
                return bool(shard.optimize())
            return bool(writer.submit(shard.optimize).result())

"""Qdrant Edge adapter: the Qdrant engine in this process, HNSW, persisted in the data folder.

One process per shard (a second opener corrupts the holder), so callers must hold the
data-folder lock before ``open``. ``optimize`` holds the GIL for its whole run: it is only
called before the process starts serving.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from handwerk.index.base import (
    DELETED_STATE,
    PAYLOAD_INDEXES,
    STATE_FIELDS,
    Hit,
    IndexStats,
    IndexUnavailable,
    PointState,
    SearchFilters,
    Tombstone,
    UpsertPoint,
    group_by_version,
    state_from_payload,
    tombstone_payload,
)
from handwerk.index.generations import AliasFolder, new_meta

_SCHEMA_TYPES = {
    "keyword": qe.PayloadSchemaType.Keyword, "float": qe.PayloadSchemaType.Float,
    "integer": qe.PayloadSchemaType.Integer,
}
_TOMBSTONE = qe.FieldCondition(key="state", match=qe.MatchValue(DELETED_STATE))


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


class EdgeVectorIndex:
    backend = "qdrant-edge"

    def __init__(self, root: Path, alias: str, *, model: str, dimension: int) -> None:
        self._alias = AliasFolder(root, alias)
        self._alias_name = alias
        self._model = model
        self._dimension = dimension
        self._shard: qe.EdgeShard | None = None
        self._generation = ""

    def _config(self) -> qe.EdgeConfig:
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=self._dimension, distance=qe.Distance.Cosine),
            hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000,
                                           max_indexing_threads=0),
        )

    async def open(self) -> None:
        generation = self._alias.current()
        if generation is None:
            generation = "g0001"
            self._alias.write_meta(new_meta(generation, self._model, self._dimension))
            shard = qe.EdgeShard.create(str(self._alias.generation_dir(generation) / "shard"),
                                        self._config())
            for name, kind in PAYLOAD_INDEXES.items():
                shard.update(qe.UpdateOperation.create_field_index(name, _SCHEMA_TYPES[kind]))
            shard.flush()
            self._alias.point_to(generation)
        else:
            meta = self._alias.read_meta(generation)
            if meta is not None:
                meta.check(self._model, self._dimension)
            shard = qe.EdgeShard.load(str(self._alias.generation_dir(generation) / "shard"))
        self._shard, self._generation = shard, generation

    async def close(self) -> None:
        if self._shard is not None:
            shard, self._shard = self._shard, None
            shard.flush()
            shard.close()

    def _require(self) -> qe.EdgeShard:
        if self._shard is None:
            raise IndexUnavailable("Qdrant Edge shard is not open")
        return self._shard

    async def get_states(self, project_ids: Sequence[str]) -> dict[str, PointState]:
        records = self._require().retrieve(list(project_ids), STATE_FIELDS, False)
        return {str(r.id): state_from_payload(str(r.id), r.payload) for r in records}

    async def get_vectors(self, project_ids: Sequence[str]) -> dict[str, list[float]]:
        records = self._require().retrieve(list(project_ids), False, True)
        return {str(r.id): list(r.vector) for r in records if isinstance(r.vector, list)}

    async def write(self, upserts: Sequence[UpsertPoint], tombstones: Sequence[Tombstone]) -> None:
        shard = self._require()
        points = list(upserts) + [
            UpsertPoint(t.project_id, t.version, [0.0] * self._dimension, tombstone_payload(t.version))
            for t in tombstones
        ]
        try:
            for version, group in group_by_version(points).items():
                shard.update(qe.UpdateOperation.upsert_points(
                    [qe.Point(p.project_id, list(map(float, p.vector)), p.payload) for p in group],
                    condition=_newer_than_stored(version)))
            shard.flush()
        except Exception as e:  # the binding raises plain exceptions
            raise IndexUnavailable(f"Qdrant Edge write failed: {e}") from e

    def _request(self, vector: Sequence[float], top_k: int, threshold: float,
                 filters: SearchFilters) -> qe.QueryRequest:
        return qe.QueryRequest(limit=top_k, query=qe.Query.Nearest(list(map(float, vector))),
                               score_threshold=threshold, filter=_filter(filters), with_payload=True)

    async def search(self, vector: Sequence[float], *, top_k: int, threshold: float,
                     filters: SearchFilters) -> list[Hit]:
        hits = self._require().query(self._request(vector, top_k, threshold, filters))
        return [Hit(str(h.id), float(h.score), dict(h.payload or {})) for h in hits]

    async def search_batch(self, vectors: Sequence[Sequence[float]], *, top_k: int,
                           threshold: float, filters: SearchFilters) -> list[list[Hit]]:
        batch = self._require().query_batch(qe.QueryBatchRequest(
            [self._request(v, top_k, threshold, filters) for v in vectors]))
        return [[Hit(str(h.id), float(h.score), dict(h.payload or {})) for h in hits] for hits in batch]

    async def all_states(self) -> dict[str, PointState]:
        shard, states, offset = self._require(), {}, None
        while True:
            records, offset = shard.scroll(qe.ScrollRequest(
                offset=offset, limit=1000, with_payload=STATE_FIELDS,
                with_vector=False))
            states.update({str(r.id): state_from_payload(str(r.id), r.payload) for r in records})
            if offset is None:
                return states

    async def stats(self) -> IndexStats:
        shard = self._require()
        info = shard.info()
        tombstones = shard.count(qe.CountRequest(filter=qe.Filter(must=[_TOMBSTONE])))
        return IndexStats(
            backend=self.backend, name=self._alias_name, generation=self._generation,
            status="green" if info.indexed_vectors_count >= info.points_count else "yellow",
            points_count=info.points_count - tombstones, vectors_count=info.points_count,
            indexed_vectors_count=info.indexed_vectors_count, tombstones_count=tombstones,
            model=self._model, dimension=self._dimension,
            extra={"segments_count": info.segments_count},
        )

    def optimize(self) -> bool:
        return bool(self._require().optimize())

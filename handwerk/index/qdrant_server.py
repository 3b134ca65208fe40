"""Qdrant server adapter through qdrant-client (tests use its local mode with the same code).

The collection name is an alias pointing at a generation collection, so a reindex can
switch generations atomically. Conditional upserts use ``update_filter``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

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
from handwerk.index.generations import GenerationMeta, new_meta

_SCHEMA_TYPES = {
    "keyword": models.PayloadSchemaType.KEYWORD, "float": models.PayloadSchemaType.FLOAT,
    "integer": models.PayloadSchemaType.INTEGER,
}
_TOMBSTONE = models.FieldCondition(key="state", match=models.MatchValue(value=DELETED_STATE))
_RETRIABLE = (ResponseHandlingException, UnexpectedResponse, ConnectionError, TimeoutError)


def _filter(filters: SearchFilters) -> models.Filter:
    must: list[Any] = []
    if filters.project_type is not None:
        must.append(models.FieldCondition(key="project_type",
                                          match=models.MatchValue(value=filters.project_type)))
    if filters.region is not None:
        must.append(models.FieldCondition(key="region", match=models.MatchValue(value=filters.region)))
    if filters.min_price is not None or filters.max_price is not None:
        must.append(models.FieldCondition(
            key="final_price", range=models.Range(gte=filters.min_price, lte=filters.max_price)))
    return models.Filter(must=must or None, must_not=[_TOMBSTONE])


class QdrantServerIndex:
    backend = "qdrant-server"

    def __init__(self, *, alias: str, model: str, dimension: int, url: str | None = None,
                 path: str | None = None, api_key: str | None = None) -> None:
        self._alias = alias
        self._model = model
        self._dimension = dimension
        self._url, self._path, self._api_key = url, path, api_key
        self._client: AsyncQdrantClient | None = None
        self._collection = ""

    async def open(self) -> None:
        if self._path is not None:
            client = AsyncQdrantClient(location=":memory:") if self._path == ":memory:" \
                else AsyncQdrantClient(path=self._path)
        else:
            client = AsyncQdrantClient(url=self._url, api_key=self._api_key, timeout=10)
        try:
            self._collection = await self._resolve_or_create(client)
        except Exception:
            await client.close()
            raise
        self._client = client

    async def _resolve_or_create(self, client: AsyncQdrantClient) -> str:
        aliases = await client.get_aliases()
        for alias in aliases.aliases:
            if alias.alias_name == self._alias:
                info = await client.get_collection(alias.collection_name)
                meta = (info.config.metadata or {}).get("handwerk")
                if meta:
                    GenerationMeta(**meta).check(self._model, self._dimension)
                return alias.collection_name
        collection = f"{self._alias}_g0001"
        if not await client.collection_exists(collection):
            await client.create_collection(
                collection,
                vectors_config=models.VectorParams(size=self._dimension, distance=models.Distance.COSINE),
                hnsw_config=models.HnswConfigDiff(m=16, ef_construct=100),
                metadata={"handwerk": asdict(new_meta("g0001", self._model, self._dimension))},
            )
            for name, kind in PAYLOAD_INDEXES.items():
                await client.create_payload_index(collection, name, _SCHEMA_TYPES[kind])
        await client.update_collection_aliases(change_aliases_operations=[
            models.CreateAliasOperation(create_alias=models.CreateAlias(
                collection_name=collection, alias_name=self._alias))])
        return collection

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def _require(self) -> AsyncQdrantClient:
        if self._client is None:
            raise IndexUnavailable("Qdrant client is not open")
        return self._client

    async def get_states(self, project_ids: Sequence[str]) -> dict[str, PointState]:
        try:
            records = await self._require().retrieve(
                self._alias, list(project_ids), with_payload=STATE_FIELDS,
                with_vectors=False)
        except _RETRIABLE as e:
            raise IndexUnavailable(f"Qdrant retrieve failed: {e}") from e
        return {str(r.id): state_from_payload(str(r.id), r.payload) for r in records}

    async def get_vectors(self, project_ids: Sequence[str]) -> dict[str, list[float]]:
        records = await self._require().retrieve(self._alias, list(project_ids), with_payload=False,
                                                 with_vectors=True)
        return {str(r.id): list(r.vector) for r in records if isinstance(r.vector, list)}

    async def write(self, upserts: Sequence[UpsertPoint], tombstones: Sequence[Tombstone]) -> None:
        points = list(upserts) + [
            UpsertPoint(t.project_id, t.version, [0.0] * self._dimension, tombstone_payload(t.version))
            for t in tombstones
        ]
        if not points:
            return
        operations = [
            models.UpsertOperation(upsert=models.PointsList(
                points=[models.PointStruct(id=p.project_id, vector=list(map(float, p.vector)),
                                           payload=p.payload) for p in group],
                update_filter=models.Filter(must=[models.FieldCondition(
                    key="version", range=models.Range(lt=version))]),
            ))
            for version, group in group_by_version(points).items()
        ]
        try:
            await self._require().batch_update_points(self._alias, operations, wait=True)
        except _RETRIABLE as e:
            raise IndexUnavailable(f"Qdrant write failed: {e}") from e

    async def search(self, vector: Sequence[float], *, top_k: int, threshold: float,
                     filters: SearchFilters) -> list[Hit]:
        response = await self._require().query_points(
            self._alias, query=list(map(float, vector)), limit=top_k, score_threshold=threshold,
            query_filter=_filter(filters), with_payload=True)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]

    async def search_batch(self, vectors: Sequence[Sequence[float]], *, top_k: int,
                           threshold: float, filters: SearchFilters) -> list[list[Hit]]:
        requests = [models.QueryRequest(query=list(map(float, v)), limit=top_k,
                                        score_threshold=threshold, filter=_filter(filters),
                                        with_payload=True) for v in vectors]
        responses = await self._require().query_batch_points(self._alias, requests)
        return [[Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in r.points]
                for r in responses]

    async def all_states(self) -> dict[str, PointState]:
        client, states, offset = self._require(), {}, None
        while True:
            records, offset = await client.scroll(
                self._alias, limit=1000, offset=offset,
                with_payload=STATE_FIELDS, with_vectors=False)
            states.update({str(r.id): state_from_payload(str(r.id), r.payload) for r in records})
            if offset is None:
                return states

    async def stats(self) -> IndexStats:
        client = self._require()
        info = await client.get_collection(self._alias)
        total = info.points_count or 0
        tombstones = (await client.count(self._alias, count_filter=models.Filter(must=[_TOMBSTONE]),
                                         exact=True)).count
        return IndexStats(
            backend=self.backend, name=self._alias, generation=self._collection,
            status=str(info.status.value if hasattr(info.status, "value") else info.status),
            points_count=total - tombstones, vectors_count=total,
            indexed_vectors_count=info.indexed_vectors_count or 0, tombstones_count=tombstones,
            model=self._model, dimension=self._dimension,
        )

    def optimize(self) -> bool:
        """A Qdrant server optimizes in its own background threads."""
        return False

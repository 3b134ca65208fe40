"""Qdrant server adapter through qdrant-client (tests use its local mode with the same code).

The collection name is an alias pointing at a generation collection, so a reindex can
switch generations atomically. Conditional upserts use ``update_filter``.

Errors: every method the pipeline calls raises only ``IndexUnavailable`` or ``IndexRejected``
for what the client or the server raised (``classify``):

- ``IndexRejected`` (permanent for this input): an HTTP 4xx that is about the request (400
  bad request or wrong vector size, 409, 413, 422, ...), and ``ValueError``/``TypeError``
  raised before anything was sent (pydantic validation of the request; local mode reports
  invalid input this way too). Ids and vectors are checked first (``validation.py``).
- ``IndexUnavailable`` (transient) for the rest: no connection, timeouts, 5xx, 408 and 429,
  and also 401, 403 and 404: a wrong API key or a collection/alias that is missing is an
  operator's problem, not the record's; dead-lettering every event until someone fixes it
  would lose them all, retrying loses nothing.

Several processes (api, consumers) may open the same server at once: ``open`` tolerates
another process creating the collection, its payload indexes or the alias concurrently, and
always returns what the alias names afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, cast

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from handwerk.index.base import (
    DELETED_STATE,
    PAYLOAD_INDEXES,
    STATE_FIELDS,
    Hit,
    IndexMismatch,
    IndexRejected,
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
from handwerk.index.validation import check_ids, check_vectors

_SCHEMA_TYPES = {
    "keyword": models.PayloadSchemaType.KEYWORD, "float": models.PayloadSchemaType.FLOAT,
    "integer": models.PayloadSchemaType.INTEGER,
}
_TOMBSTONE = models.FieldCondition(key="state", match=models.MatchValue(value=DELETED_STATE))
# 4xx statuses that are not the request's fault: retry instead of dead-lettering.
_NOT_THE_REQUEST = {401, 403, 404, 408, 429}


def classify(error: Exception, what: str) -> IndexRejected | IndexUnavailable:
    """The adapter's error for an exception raised by qdrant-client."""
    if isinstance(error, (IndexRejected, IndexUnavailable)):
        return error
    if isinstance(error, UnexpectedResponse):
        status = error.status_code
        detail = _server_message(error)
        if status is not None and 400 <= status < 500 and status not in _NOT_THE_REQUEST:
            return IndexRejected(f"Qdrant refused {what} (HTTP {status}): {detail}")
        return IndexUnavailable(f"Qdrant {what} failed (HTTP {status}): {detail}")
    if isinstance(error, ResponseHandlingException):
        return IndexUnavailable(f"Qdrant {what} failed: {type(error.source).__name__}: {error.source}")
    if isinstance(error, (ValueError, TypeError)):
        return IndexRejected(f"Qdrant refused {what}: {error}")
    return IndexUnavailable(f"Qdrant {what} failed: {type(error).__name__}: {error}")


def _server_message(error: UnexpectedResponse) -> str:
    try:
        return str(error.structured()["status"]["error"])
    except Exception:  # not Qdrant's JSON error shape (a proxy's page, an empty body)
        return error.reason_phrase or error.content[:200].decode(errors="replace")


@contextmanager
def _client_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (IndexRejected, IndexUnavailable, IndexMismatch):
        raise
    except Exception as e:
        raise classify(e, what) from e


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
                 path: str | None = None, api_key: str | None = None,
                 check_compatibility: bool = True) -> None:
        self._alias = alias
        self._model = model
        self._dimension = dimension
        self._url, self._path, self._api_key = url, path, api_key
        self._check_compatibility = check_compatibility
        self._client: AsyncQdrantClient | None = None
        self._collection = ""

    async def open(self) -> None:
        if self._path is not None:
            client = AsyncQdrantClient(location=":memory:") if self._path == ":memory:" \
                else AsyncQdrantClient(path=self._path)
        else:
            client = AsyncQdrantClient(url=self._url, api_key=self._api_key, timeout=10,
                                       check_compatibility=self._check_compatibility)
        try:
            with _client_errors("open"):
                self._collection = await self._resolve_or_create(client)
        except BaseException:
            await client.close()
            raise
        self._client = client

    async def _resolve_or_create(self, client: AsyncQdrantClient) -> str:
        """The collection the alias names, creating generation 1 and the alias if there is
        none yet. Idempotent when several processes run it at once: each step tolerates
        another process having done it first, and the alias is read again at the end."""
        existing = await self._resolve(client)
        if existing is not None:
            return existing
        collection = f"{self._alias}_g0001"
        if not await client.collection_exists(collection):
            try:
                await client.create_collection(
                    collection,
                    vectors_config=models.VectorParams(size=self._dimension,
                                                       distance=models.Distance.COSINE),
                    hnsw_config=models.HnswConfigDiff(m=16, ef_construct=100),
                    metadata={"handwerk": asdict(new_meta("g0001", self._model, self._dimension))},
                )
            except Exception:
                if not await client.collection_exists(collection):
                    raise
                # another process created it between our check and our create
        await self._check_meta(client, collection)
        for name, kind in PAYLOAD_INDEXES.items():
            try:
                await client.create_payload_index(collection, name, _SCHEMA_TYPES[kind])
            except Exception:
                info = await client.get_collection(collection)
                if name not in (info.payload_schema or {}):
                    raise
                # another process created the same index meanwhile
        try:
            await client.update_collection_aliases(change_aliases_operations=[
                models.CreateAliasOperation(create_alias=models.CreateAlias(
                    collection_name=collection, alias_name=self._alias))])
        except Exception:
            if await self._resolve(client) is None:
                raise
        resolved = await self._resolve(client)
        if resolved is None:
            raise IndexUnavailable(f"alias {self._alias} vanished right after it was created")
        return resolved

    async def _resolve(self, client: AsyncQdrantClient) -> str | None:
        aliases = await client.get_aliases()
        for alias in aliases.aliases:
            if alias.alias_name == self._alias:
                await self._check_meta(client, alias.collection_name)
                return alias.collection_name
        return None

    async def _check_meta(self, client: AsyncQdrantClient, collection: str) -> None:
        info = await client.get_collection(collection)
        meta = (info.config.metadata or {}).get("handwerk")
        if meta:
            GenerationMeta(**meta).check(self._model, self._dimension)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def _require(self) -> AsyncQdrantClient:
        if self._client is None:
            raise IndexUnavailable("Qdrant client is not open")
        return self._client

    async def get_states(self, project_ids: Sequence[str]) -> dict[str, PointState]:
        ids = check_ids(project_ids)
        with _client_errors("retrieve"):
            records = await self._require().retrieve(
                self._alias, ids, with_payload=STATE_FIELDS, with_vectors=False)
        return {str(r.id): state_from_payload(str(r.id), r.payload) for r in records}

    async def get_vectors(self, project_ids: Sequence[str]) -> dict[str, list[float]]:
        ids = check_ids(project_ids)
        with _client_errors("retrieve"):
            records = await self._require().retrieve(self._alias, ids, with_payload=False,
                                                     with_vectors=True)
        return {str(r.id): list(cast(list[float], r.vector))
                for r in records if isinstance(r.vector, list)}

    async def write(self, upserts: Sequence[UpsertPoint], tombstones: Sequence[Tombstone]) -> None:
        points = list(upserts) + [
            UpsertPoint(t.project_id, t.version, [0.0] * self._dimension, tombstone_payload(t.version))
            for t in tombstones
        ]
        if not points:
            return
        ids = check_ids([p.project_id for p in points])
        vectors = check_vectors([f"project {i}" for i in ids], [p.vector for p in points],
                                self._dimension)
        checked = [UpsertPoint(p.project_id, p.version, v, p.payload)
                   for p, v in zip(points, vectors, strict=True)]
        with _client_errors("write"):
            operations = [
                models.UpsertOperation(upsert=models.PointsList(
                    points=[models.PointStruct(id=p.project_id, vector=list(p.vector),
                                               payload=p.payload) for p in group],
                    update_filter=models.Filter(must=[models.FieldCondition(
                        key="version", range=models.Range(lt=version))]),
                ))
                for version, group in group_by_version(checked).items()
            ]
            await self._require().batch_update_points(self._alias, operations, wait=True)

    async def search(self, vector: Sequence[float], *, top_k: int, threshold: float,
                     filters: SearchFilters) -> list[Hit]:
        (query,) = check_vectors(["query vector"], [vector], self._dimension)
        with _client_errors("search"):
            response = await self._require().query_points(
                self._alias, query=query, limit=top_k, score_threshold=threshold,
                query_filter=_filter(filters), with_payload=True)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]

    async def search_batch(self, vectors: Sequence[Sequence[float]], *, top_k: int,
                           threshold: float, filters: SearchFilters) -> list[list[Hit]]:
        queries = check_vectors([f"query {i}" for i in range(len(vectors))], vectors, self._dimension)
        with _client_errors("batch search"):
            requests = [models.QueryRequest(query=q, limit=top_k, score_threshold=threshold,
                                            filter=_filter(filters), with_payload=True)
                        for q in queries]
            responses = await self._require().query_batch_points(self._alias, requests)
        return [[Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in r.points]
                for r in responses]

    async def all_states(self) -> dict[str, PointState]:
        client, states = self._require(), {}
        offset: Any = None
        while True:
            with _client_errors("scroll"):
                records, offset = await client.scroll(
                    self._alias, limit=1000, offset=offset,
                    with_payload=STATE_FIELDS, with_vectors=False)
            states.update({str(r.id): state_from_payload(str(r.id), r.payload) for r in records})
            if offset is None:
                return states

    async def stats(self) -> IndexStats:
        client = self._require()
        with _client_errors("stats"):
            info = await client.get_collection(self._alias)
            tombstones = (await client.count(
                self._alias, count_filter=models.Filter(must=[_TOMBSTONE]), exact=True)).count
        total = info.points_count or 0
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

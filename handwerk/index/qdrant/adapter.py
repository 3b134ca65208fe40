"""Qdrant server adapter through qdrant-client (tests use its local mode with the same code).

The collection name is an alias pointing at a generation collection, so a reindex can
switch generations atomically. Conditional upserts use ``update_filter``. Errors are mapped
once, in ``errors.py``; where Qdrant is and how to reach it comes from a ``QdrantConnection``
(``connection.py``).

Several processes (api, consumers) may open the same server at once: ``open`` tolerates
another process creating the collection, its payload indexes or the alias concurrently, and
always returns what the alias names afterwards.

Generations. Unbound (``generation=None``), the adapter reads and writes through the alias,
so it follows an ``activate`` at once. Bound to a generation, it targets the collection
``{alias}_{generation}`` directly (creating it if absent) and never touches the alias: a
reindex fills it beside the live one, and ``QdrantCatalog.activate`` (``catalog.py``)
switches the alias in one atomic ``update_collection_aliases`` call (delete + create), so a
search through the alias never finds no collection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, cast

from qdrant_client import AsyncQdrantClient, models

from handwerk.index.catalog import AliasFolder, GenerationMeta, new_meta
from handwerk.index.keywords import (
    DENSE_ONLY,
    KEYWORD_VECTOR,
    Fusion,
    KeywordAnalyzer,
    KeywordSearchUnavailable,
    default_keyword_spec,
    terms,
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
    group_by_version,
    scored_hits,
    state_from_payload,
    tombstone_payload,
)
from handwerk.index.qdrant.connection import QdrantConnection
from handwerk.index.qdrant.errors import client_errors
from handwerk.index.validation import check_ids, check_queries, check_vectors

_SCHEMA_TYPES = {
    "keyword": models.PayloadSchemaType.KEYWORD, "float": models.PayloadSchemaType.FLOAT,
    "integer": models.PayloadSchemaType.INTEGER,
}
_TOMBSTONE = models.FieldCondition(key="state", match=models.MatchValue(value=DELETED_STATE))
_PAGE = 256  # records per scroll page in iter_points and drop_tombstones


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


def _sparse(vector: Any) -> models.SparseVector:
    indices, values = terms(vector)
    return models.SparseVector(indices=indices, values=values)


def collection_name(alias: str, generation: str) -> str:
    return f"{alias}_{generation}"


def generation_of(alias: str, collection: str) -> str:
    prefix = f"{alias}_"
    return collection[len(prefix):] if collection.startswith(prefix) else collection


async def alias_target(client: AsyncQdrantClient, alias: str) -> str | None:
    for entry in (await client.get_aliases()).aliases:
        if entry.alias_name == alias:
            return entry.collection_name
    return None


class QdrantServerIndex:
    backend = "qdrant-server"

    def __init__(self, *, alias: str, model: str, dimension: int, connection: QdrantConnection,
                 generation: str | None = None, folder: AliasFolder | None = None) -> None:
        """``connection``: where Qdrant is (adapters and catalogs of one process that use the
        same local-mode folder must share one). ``generation``: target exactly the collection
        ``{alias}_{generation}`` (creating it if absent), never the alias; None: read and write
        through the alias (creating ``{alias}_g0001`` and the alias on first start).
        ``folder``: where the generation's ``meta.json`` is written if it has none yet (the
        catalog's)."""
        self._alias = alias
        self._model = model
        self._dimension = dimension
        self._connection = connection
        self._folder = folder
        self._bound = generation
        self._target = collection_name(alias, generation) if generation is not None else alias
        self._client: AsyncQdrantClient | None = None
        self._collection = self._target if generation is not None else ""
        self._meta: GenerationMeta | None = None  # the collection's, read by open
        self._keywords: KeywordAnalyzer | None = None  # likewise

    @property
    def supports_keywords(self) -> bool:
        return self._keywords is not None

    @property
    def generation(self) -> str:
        """The bound generation; unbound, the one the alias named at ``open`` or at the last
        ``stats`` (reads and writes follow the alias itself)."""
        return generation_of(self._alias, self._collection)

    async def open(self) -> None:
        client = self._connection.connect()
        try:
            with client_errors("open"):
                if self._bound is not None:
                    await self._create_generation(client, self._bound)
                    self._collection = self._target
                else:
                    self._collection = await self._resolve_or_create(client)
                self._write_folder_meta()
        except BaseException:
            await self._connection.disconnect(client)
            raise
        self._client = client

    def _write_folder_meta(self) -> None:
        generation = self.generation
        if self._folder is not None and self._folder.read_meta(generation) is None:
            self._folder.write_meta(self._meta or new_meta(generation, self._model,
                                                           self._dimension))

    async def _create_generation(self, client: AsyncQdrantClient, generation: str) -> str:
        """Create the generation's collection and payload indexes unless they exist; tolerant
        of another process doing the same at once. Checks the model it was built with."""
        collection = collection_name(self._alias, generation)
        if not await client.collection_exists(collection):
            meta = new_meta(generation, self._model, self._dimension)
            recorded = self._folder.read_meta(generation) if self._folder is not None else None
            if recorded is not None:  # a build's, written before: its keyword analyzer holds
                meta = meta.with_(keywords=recorded.keywords)
            try:
                await client.create_collection(
                    collection,
                    vectors_config=models.VectorParams(size=self._dimension,
                                                       distance=models.Distance.COSINE),
                    sparse_vectors_config={KEYWORD_VECTOR: models.SparseVectorParams(
                        modifier=models.Modifier.IDF)} if meta.keywords is not None else None,
                    hnsw_config=models.HnswConfigDiff(m=16, ef_construct=100),
                    metadata={"handwerk": asdict(meta)},
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
        return collection

    async def _resolve_or_create(self, client: AsyncQdrantClient) -> str:
        """The collection the alias names, creating generation 1 and the alias if there is
        none yet. Idempotent when several processes run it at once: each step tolerates
        another process having done it first, and the alias is read again at the end."""
        existing = await self._resolve(client)
        if existing is not None:
            return existing
        collection = await self._create_generation(client, "g0001")
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
        collection = await alias_target(client, self._alias)
        if collection is not None:
            await self._check_meta(client, collection)
        return collection

    async def _check_meta(self, client: AsyncQdrantClient, collection: str) -> None:
        info = await client.get_collection(collection)
        meta = (info.config.metadata or {}).get("handwerk")
        self._meta = None
        if meta:
            known = set(GenerationMeta.__dataclass_fields__)
            self._meta = GenerationMeta(**{k: v for k, v in meta.items() if k in known})
            self._meta.check(self._model, self._dimension)
        # the collection's own config decides (a collection made before keyword search has no
        # sparse vectors, whatever its metadata); the analyzer is the one its metadata records
        sparse = info.config.params.sparse_vectors or {}
        spec = (self._meta.keywords if self._meta is not None else None) or default_keyword_spec()
        self._keywords = KeywordAnalyzer(spec) if KEYWORD_VECTOR in sparse else None

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await self._connection.disconnect(client)

    def _require(self) -> AsyncQdrantClient:
        if self._client is None:
            raise IndexUnavailable("Qdrant client is not open")
        return self._client

    async def get_states(self, project_ids: Sequence[str]) -> dict[str, PointState]:
        ids = check_ids(project_ids)
        with client_errors("retrieve"):
            records = await self._require().retrieve(
                self._target, ids, with_payload=STATE_FIELDS, with_vectors=False)
        return {str(r.id): state_from_payload(str(r.id), r.payload) for r in records}

    async def get_vectors(self, project_ids: Sequence[str]) -> dict[str, list[float]]:
        ids = check_ids(project_ids)
        with client_errors("retrieve"):
            records = await self._require().retrieve(self._target, ids, with_payload=False,
                                                     with_vectors=DENSE_ONLY)
        return {str(r.id): vector for r in records if (vector := dense_vector(r.vector)) is not None}

    async def get_records(self, project_ids: Sequence[str]) -> dict[str, PointRecord]:
        ids = check_ids(project_ids)
        with client_errors("retrieve"):
            records = await self._require().retrieve(self._target, ids, with_payload=STATE_FIELDS,
                                                     with_vectors=DENSE_ONLY)
        return {str(r.id): PointRecord(state_from_payload(str(r.id), r.payload), dense_vector(r.vector))
                for r in records}

    async def write(self, upserts: Sequence[UpsertPoint], tombstones: Sequence[Tombstone], *,
                    visible: Callable[[], None] | None = None) -> None:
        points = list(upserts) + [
            UpsertPoint(t.project_id, t.version, [0.0] * self._dimension,
                        tombstone_payload(t.version, t.deleted_at))
            for t in tombstones
        ]
        if not points:
            return
        ids = check_ids([p.project_id for p in points])
        vectors = check_vectors([f"project {i}" for i in ids], [p.vector for p in points],
                                self._dimension)
        checked = [UpsertPoint(p.project_id, p.version, v, p.payload)
                   for p, v in zip(points, vectors, strict=True)]
        with client_errors("write"):
            operations = [
                models.UpsertOperation(upsert=models.PointsList(
                    points=[models.PointStruct(id=p.project_id, vector=self._vectors(p),
                                               payload=p.payload) for p in group],
                    update_filter=models.Filter(must=[models.FieldCondition(
                        key="version", range=models.Range(lt=version))]),
                ))
                for version, group in group_by_version(checked).items()
            ]
            await self._require().batch_update_points(self._target, operations, wait=True)
        if visible is not None:  # wait=True: applied (and in the server's WAL) when it returns
            announce(visible)

    def _vectors(self, point: UpsertPoint) -> Any:
        """The point's dense vector, with its keyword vector where the generation has them."""
        sparse = self._keywords.document(point.payload) if self._keywords is not None else None
        if sparse is None:
            return list(point.vector)
        return {"": list(point.vector), KEYWORD_VECTOR: _sparse(sparse)}

    def _request(self, vector: list[float] | None, text: str | None, top_k: int,
                 threshold: float, filters: SearchFilters, fusion: Fusion) -> models.QueryRequest:
        """As the Edge adapter's: dense, keyword or hybrid (``VectorIndex.search``)."""
        where = _filter(filters)
        if text is None:
            if vector is None:
                raise ValueError("a search needs a vector, a text or both")
            return models.QueryRequest(query=vector, limit=top_k, score_threshold=threshold,
                                       filter=where, with_payload=True)
        if self._keywords is None:
            raise KeywordSearchUnavailable(self.generation)
        keyword = _sparse(self._keywords.query(text))
        if vector is None:
            return models.QueryRequest(query=keyword, using=KEYWORD_VECTOR, limit=top_k,
                                       filter=where, with_payload=True)
        limit = max(fusion.prefetch, top_k)
        fused: Any = (models.RrfQuery(rrf=models.Rrf(
            k=fusion.k, weights=[fusion.dense_weight, fusion.keyword_weight]))
            if fusion.method == "rrf" else models.FusionQuery(fusion=models.Fusion.DBSF))
        return models.QueryRequest(
            prefetch=[models.Prefetch(query=vector, limit=limit, filter=where,
                                      score_threshold=threshold),
                      models.Prefetch(query=keyword, using=KEYWORD_VECTOR, limit=limit,
                                      filter=where)],
            query=fused, limit=top_k, filter=where, with_payload=True, with_vector=DENSE_ONLY)

    async def search(self, vector: Sequence[float] | None, *, top_k: int, threshold: float,
                     filters: SearchFilters, text: str | None = None,
                     fusion: Fusion | None = None) -> list[Hit]:
        query = check_vectors(["query vector"], [vector], self._dimension)[0] \
            if vector is not None else None
        request = self._request(query, text, top_k, threshold, filters, fusion or Fusion())
        with client_errors("search"):
            (response,) = await self._require().query_batch_points(self._target, [request])
        return scored_hits(response.points, query, text)

    async def search_batch(self, vectors: Sequence[Sequence[float]] | None, *, top_k: int,
                           threshold: float, filters: SearchFilters,
                           texts: Sequence[str] | None = None,
                           fusion: Fusion | None = None) -> list[list[Hit]]:
        queries = check_queries(vectors, texts, self._dimension)
        requests = [self._request(vector, text, top_k, threshold, filters, fusion or Fusion())
                    for vector, text in queries]
        with client_errors("batch search"):
            responses = await self._require().query_batch_points(self._target, requests)
        return [scored_hits(r.points, vector, text) for r, (vector, text) in zip(responses, queries,
                                                                          strict=True)]

    async def all_states(self) -> dict[str, PointState]:
        client, states = self._require(), {}
        offset: Any = None
        while True:
            with client_errors("scroll"):
                records, offset = await client.scroll(
                    self._target, limit=1000, offset=offset,
                    with_payload=STATE_FIELDS, with_vectors=False)
            states.update({str(r.id): state_from_payload(str(r.id), r.payload) for r in records})
            if offset is None:
                return states

    async def stats(self) -> IndexStats:
        client = self._require()
        with client_errors("stats"):
            if self._bound is None:  # what searches through the alias reach now
                self._collection = await alias_target(client, self._alias) or self._collection
            info = await client.get_collection(self._target)
            tombstones = (await client.count(
                self._target, count_filter=models.Filter(must=[_TOMBSTONE]), exact=True)).count
            # as in the Edge adapter: only dense vectors in the HNSW graph count as indexed
            keyword = (await client.count(self._target, count_filter=models.Filter(must=[
                models.HasVectorCondition(has_vector=KEYWORD_VECTOR)]), exact=True)).count \
                if self._keywords is not None else 0
        total = info.points_count or 0
        return IndexStats(
            backend=self.backend, name=self._alias, generation=self.generation,
            status=str(info.status.value if hasattr(info.status, "value") else info.status),
            points_count=total - tombstones, vectors_count=total,
            indexed_vectors_count=max(0, (info.indexed_vectors_count or 0) - keyword),
            tombstones_count=tombstones,
            model=self._model, dimension=self._dimension,
        )

    def optimize(self) -> bool:
        """A Qdrant server optimizes in its own background threads."""
        return False

    async def iter_points(self, *, page: int = _PAGE) -> AsyncIterator[list[StoredPoint]]:
        client, offset = self._require(), cast(Any, None)
        while True:
            with client_errors("scroll"):
                records, offset = await client.scroll(
                    self._target, limit=page, offset=offset, with_payload=True, with_vectors=DENSE_ONLY)
            yield [StoredPoint(str(r.id), dense_vector(r.vector), dict(r.payload or {}))
                   for r in records]
            if offset is None:
                return

    async def drop_tombstones(self, deleted_before: str) -> tuple[int, str | None]:
        """Each delete names the point ids and also requires them to still be exactly the
        tombstone judged (state and version): a point rewritten meanwhile (a writer in another
        process) is never deleted. The count is of the tombstones judged droppable."""
        client, offset = self._require(), cast(Any, None)
        doomed: dict[int, list[str]] = {}
        count, newest = 0, cast(str | None, None)
        while True:
            with client_errors("scroll"):
                records, offset = await client.scroll(
                    self._target, limit=_PAGE, offset=offset, with_vectors=False,
                    with_payload=["state", "version", "deleted_at"],
                    scroll_filter=models.Filter(must=[_TOMBSTONE]))
            for r in records:
                payload = dict(r.payload or {})
                with client_errors("drop tombstones"):  # a malformed deleted_at: ValueError
                    if not droppable(payload, deleted_before):
                        continue
                    at = payload["deleted_at"]
                    if newest is None or datetime.fromisoformat(at) > datetime.fromisoformat(newest):
                        newest = at
                doomed.setdefault(int(payload.get("version", 0)), []).append(str(r.id))
                count += 1
            if offset is None:
                break
        for version, ids in doomed.items():
            for start in range(0, len(ids), _PAGE):
                selector = models.FilterSelector(filter=models.Filter(must=[
                    models.HasIdCondition(has_id=cast(Any, ids[start:start + _PAGE])), _TOMBSTONE,
                    models.FieldCondition(key="version", match=models.MatchValue(value=version)),
                ]))
                with client_errors("delete"):
                    await client.delete(self._target, points_selector=selector, wait=True)
        return count, newest

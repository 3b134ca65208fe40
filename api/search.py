"""Similarity search: embed the query text off the event loop, then one index query.

Admission is bounded: at most ``max_pending`` searches wait for the encoder at once; beyond
that a search is refused at once (503 with Retry-After) instead of growing a queue whose
every entry would time out anyway.

Query path: a query text's vector comes from the query cache (LRU by the model's content key and text) or
from the embedder's ``QueryBatcher``, which lets concurrent searches share one encoder run
(``handwerk.embedding.query_batching``). Each search records its stages (``queue``: admission and
waiting for an encoder run, ``embed``: that run, ``search``: the index query) in
``search_stages``, which the ``ServerTiming`` middleware sends as a ``Server-Timing`` header
together with ``serialize`` (building and writing the response).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from handwerk.api.schemas import Filters, FindSimilarOut, Mode, SimilarProject
from handwerk.embedding.embedder import Embedder
from handwerk.embedding.errors import EmbedderUnavailable
from handwerk.embedding.query_batching import EmbedFn, QueryBatcher, QueryCache
from handwerk.index.active import ActiveIndex
from handwerk.index.keywords import Fusion, KeywordSearchUnavailable
from handwerk.index.protocol import Hit, SearchFilters, VectorIndex
from handwerk.metrics import Metrics
from handwerk.outbox.project_fields import PROJECT_FIELDS


@dataclass(slots=True)
class SearchStages:
    """Seconds per stage of one search request; ``done`` (perf_counter) once the index answered."""

    queue: float = 0.0
    embed: float = 0.0
    search: float = 0.0
    done: float | None = None

    def header(self, serialize_s: float) -> str:
        return (f"queue;dur={self.queue * 1000:.3f}, embed;dur={self.embed * 1000:.3f}, "
                f"search;dur={self.search * 1000:.3f}, serialize;dur={serialize_s * 1000:.3f}")


search_stages: ContextVar[SearchStages | None] = ContextVar("handwerk_search_stages", default=None)
"""Set per request by the ServerTiming middleware; None elsewhere (nothing is recorded)."""


def _weak_embed(embedder: Embedder) -> EmbedFn:
    """The embedder's ``embed_queries`` without keeping the embedder alive (a replaced model's
    embedder is closed and dropped; its batcher goes with it)."""
    ref = weakref.ref(embedder)

    async def embed(texts: list[str]) -> np.ndarray:
        target = ref()
        if target is None:
            raise EmbedderUnavailable("query embedder was replaced")
        return await target.embed_queries(texts)

    return embed


def _filters(filters: Filters | None) -> SearchFilters:
    if filters is None:
        return SearchFilters()
    return SearchFilters(project_type=filters.project_type, region=filters.region,
                         min_price=filters.min_price, max_price=filters.max_price)


def _result(hit: Hit, scale: float) -> SimilarProject:
    p = hit.payload
    similarity = hit.cosine if hit.cosine is not None else hit.score / scale
    return SimilarProject(
        id=hit.project_id, **{name: p[name] for name in PROJECT_FIELDS}, version=p["version"],
        similarity=round(min(1.0, max(0.0, similarity)), 6))


def _scale(mode: Mode, hits: Sequence[Hit]) -> float:
    """What a score without a cosine is divided by to give ``similarity`` (``SimilarProject``):
    dense scores are cosines, hybrid hits carry theirs, keyword scores are BM25."""
    if mode == "keyword":
        return max((h.score for h in hits), default=1.0) or 1.0
    return 1.0


class SearchOverloaded(RuntimeError):
    """Too many searches in flight; the client should retry after ``retry_after_s``."""

    def __init__(self, pending: int, retry_after_s: int = 1) -> None:
        super().__init__(f"{pending} searches in flight, retry later")
        self.retry_after_s = retry_after_s


class SearchService:
    def __init__(self, embedder: Embedder, index: VectorIndex | ActiveIndex, *,
                 max_pending: int = 64, metrics: Metrics | None = None,
                 batch_window_ms: float = 2.0, batch_max: int = 32, cache_size: int = 1024,
                 default_mode: Mode = "dense", fusion: Fusion | None = None) -> None:
        """``index`` an ``ActiveIndex``: every search takes its current target, index and
        model together, for the whole request (a handover may switch it meanwhile)."""
        self._embedder = embedder
        self._index = index
        self._max_pending = max_pending
        self._metrics = metrics
        self._batch_window_s = batch_window_ms / 1000
        self._batch_max = batch_max
        self._batchers: weakref.WeakKeyDictionary[Embedder, QueryBatcher] = (
            weakref.WeakKeyDictionary())
        self.cache = QueryCache(cache_size)
        self.pending = 0
        self._default_mode = default_mode
        self._fusion = fusion or Fusion()

    def batcher(self, embedder: Embedder) -> QueryBatcher:
        """The query batcher of ``embedder`` (one per model in use, made on first use)."""
        batcher = self._batchers.get(embedder)
        if batcher is None:
            on_run = None if self._metrics is None else self._metrics.query_batch_size.observe
            batcher = self._batchers[embedder] = QueryBatcher(
                _weak_embed(embedder), window_s=self._batch_window_s, max_texts=self._batch_max,
                on_run=on_run)
        return batcher

    @contextmanager
    def _target(self) -> Iterator[tuple[Embedder, VectorIndex]]:
        if isinstance(self._index, ActiveIndex):
            with self._index.using() as target:
                yield target.embedder, target.index
        else:
            yield self._embedder, self._index

    @contextmanager
    def _admitted(self, cost: int = 1) -> Iterator[None]:
        if self.pending + cost > self._max_pending and self.pending > 0:
            raise SearchOverloaded(self.pending)
        self.pending += cost
        try:
            yield
        finally:
            self.pending -= cost

    async def _vectors(self, embedder: Embedder, texts: Sequence[str], started: float,
                       stages: SearchStages | None) -> list[np.ndarray]:
        """One vector per text: from the cache, else from a (shared) encoder run."""
        # keyed by the weights' content key: new weights under the same name never get the
        # old weights' cached vectors (test doubles without one fall back to the name)
        model = getattr(embedder, "content_key", None) or getattr(embedder, "model_name", "")
        cache = self.cache
        found = [cache.get((model, t)) for t in texts] if cache.size else [None] * len(texts)
        missing = list(dict.fromkeys(t for t, v in zip(texts, found, strict=True) if v is None))
        if self._metrics is not None and cache.size:
            self._metrics.query_cache_hits.inc(len(texts) - len(missing))
            self._metrics.query_cache_misses.inc(len(missing))
        if not missing:
            if stages is not None:
                stages.queue = time.perf_counter() - started
            return [v for v in found if v is not None]  # all of them
        embedded = await self.batcher(embedder).embed(missing)
        if stages is not None:
            stages.queue = max(0.0, embedded.run_started - started)
            stages.embed = embedded.run_s
        fresh = dict(zip(missing, embedded.vectors, strict=True))
        for text, vector in fresh.items():
            cache.put((model, text), vector)
        return [v if v is not None else fresh[t] for t, v in zip(texts, found, strict=True)]

    def _mode(self, asked: Mode | None, index: VectorIndex) -> Mode:
        """The mode asked for, else the default; keyword search needs a generation that has
        keyword vectors: asked for, it is refused (409), by default dense answers instead."""
        if asked is None:
            return self._default_mode if index.supports_keywords else "dense"
        if asked != "dense" and not index.supports_keywords:
            raise KeywordSearchUnavailable(str(getattr(index, "generation", "")))
        return asked

    async def find_similar(self, query: str, *, top_k: int, threshold: float,
                           filters: Filters | None, mode: Mode | None = None) -> FindSimilarOut:
        (out,), _ = await self.batch_similar([query], top_k=top_k, threshold=threshold,
                                             filters=filters, mode=mode)
        return out

    async def batch_similar(self, queries: Sequence[str], *, top_k: int, threshold: float,
                            filters: Filters | None, mode: Mode | None = None,
                            ) -> tuple[list[FindSimilarOut], float]:
        started = time.perf_counter()
        stages = search_stages.get()
        with self._admitted(len(queries)), self._target() as (embedder, index):
            used = self._mode(mode, index)
            vectors = None if used == "keyword" else [
                v.tolist() for v in await self._vectors(embedder, queries, started, stages)]
            searching = time.perf_counter()
            texts = None if used == "dense" else list(queries)
            if len(queries) == 1:
                batches = [await index.search(
                    vectors[0] if vectors is not None else None, top_k=top_k,
                    threshold=threshold, filters=_filters(filters),
                    text=texts[0] if texts is not None else None, fusion=self._fusion)]
            else:
                batches = await index.search_batch(vectors, top_k=top_k, threshold=threshold,
                                                   filters=_filters(filters), texts=texts,
                                                   fusion=self._fusion)
        if stages is not None:
            stages.done = time.perf_counter()
            stages.search = stages.done - searching
            if vectors is None:
                stages.queue = searching - started
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        share = round(elapsed / len(queries), 3)
        out = [FindSimilarOut(query=q, results=[_result(h, _scale(used, hits))
                                                for h in hits],
                              total_found=len(hits), search_time_ms=share, mode=used)
               for q, hits in zip(queries, batches, strict=True)]
        return out, elapsed

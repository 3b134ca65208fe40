"""Similarity search: embed the query text off the event loop, then one index query.

Admission is bounded: at most ``max_pending`` searches wait for the encoder at once; beyond
that a search is refused at once (503 with Retry-After) instead of growing a queue whose
every entry would time out anyway.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from handwerk.api.schemas import Filters, FindSimilarOut, SimilarProject
from handwerk.embedding import Embedder
from handwerk.index.active import ActiveIndex
from handwerk.index.base import Hit, SearchFilters, VectorIndex
from handwerk.outbox.schemas import PROJECT_FIELDS


def _filters(filters: Filters | None) -> SearchFilters:
    if filters is None:
        return SearchFilters()
    return SearchFilters(project_type=filters.project_type, region=filters.region,
                         min_price=filters.min_price, max_price=filters.max_price)


def _result(hit: Hit) -> SimilarProject:
    p = hit.payload
    return SimilarProject(
        id=hit.project_id, **{name: p[name] for name in PROJECT_FIELDS}, version=p["version"],
        similarity=round(min(1.0, max(0.0, hit.score)), 6))


class SearchOverloaded(RuntimeError):
    """Too many searches in flight; the client should retry after ``retry_after_s``."""

    def __init__(self, pending: int, retry_after_s: int = 1) -> None:
        super().__init__(f"{pending} searches in flight, retry later")
        self.retry_after_s = retry_after_s


class SearchService:
    def __init__(self, embedder: Embedder, index: VectorIndex | ActiveIndex, *,
                 max_pending: int = 64) -> None:
        """``index`` an ``ActiveIndex``: every search takes its current target, index and
        model together, for the whole request (a handover may switch it meanwhile)."""
        self._embedder = embedder
        self._index = index
        self._max_pending = max_pending
        self.pending = 0

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

    async def find_similar(self, query: str, *, top_k: int, threshold: float,
                           filters: Filters | None) -> FindSimilarOut:
        started = time.perf_counter()
        with self._admitted(), self._target() as (embedder, index):
            vector = (await embedder.embed_queries([query]))[0]
            hits = await index.search(vector.tolist(), top_k=top_k, threshold=threshold,
                                            filters=_filters(filters))
        results = [_result(h) for h in hits]
        return FindSimilarOut(query=query, results=results, total_found=len(results),
                              search_time_ms=round((time.perf_counter() - started) * 1000, 3))

    async def batch_similar(self, queries: Sequence[str], *, top_k: int, threshold: float,
                            filters: Filters | None) -> tuple[list[FindSimilarOut], float]:
        started = time.perf_counter()
        with self._admitted(len(queries)), self._target() as (embedder, index):
            vectors = await embedder.embed_queries(list(queries))
            batches = await index.search_batch([v.tolist() for v in vectors], top_k=top_k,
                                                     threshold=threshold, filters=_filters(filters))
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        share = round(elapsed / len(queries), 3)
        out = [FindSimilarOut(query=q, results=[_result(h) for h in hits], total_found=len(hits),
                              search_time_ms=share) for q, hits in zip(queries, batches, strict=True)]
        return out, elapsed

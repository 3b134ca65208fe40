from __future__ import annotations

import dataclasses

from fastapi import APIRouter

from handwerk.api.dependencies import RuntimeDep, SearchDep
from handwerk.api.schemas import (
    ERROR_RESPONSES,
    BatchSimilarIn,
    BatchSimilarOut,
    FindSimilarIn,
    FindSimilarOut,
    StatsOut,
)
from handwerk.producer.relay import outbox_backlog

router = APIRouter(prefix="/api/v1/similarity", tags=["similarity"], responses=ERROR_RESPONSES)


@router.post("/find-similar", response_model=FindSimilarOut)
async def find_similar(body: FindSimilarIn, service: SearchDep) -> FindSimilarOut:
    return await service.find_similar(body.query, top_k=body.top_k, threshold=body.threshold,
                                      filters=body.filters)


@router.post("/batch-similar", response_model=BatchSimilarOut)
async def batch_similar(body: BatchSimilarIn, service: SearchDep) -> BatchSimilarOut:
    results, elapsed = await service.batch_similar(body.queries, top_k=body.top_k,
                                                   threshold=body.threshold, filters=body.filters)
    return BatchSimilarOut(results=results, total_queries=len(results), batch_time_ms=elapsed)


@router.get("/stats", response_model=StatsOut)
async def stats(runtime: RuntimeDep) -> StatsOut:
    index_stats = dataclasses.asdict(await runtime.require_index().stats())
    lag = runtime.consumer_lag()
    return StatsOut(
        vector_index=index_stats["backend"], status=index_stats["status"],
        points_count=index_stats["points_count"], vectors_count=index_stats["vectors_count"],
        indexed_vectors_count=index_stats["indexed_vectors_count"],
        tombstones_count=index_stats["tombstones_count"], index_name=index_stats["name"],
        generation=index_stats["generation"], model=index_stats["model"],
        dimension=index_stats["dimension"],
        outbox_backlog=await outbox_backlog(runtime.require_store().sessions),
        consumer_lag=lag, index_drift=runtime.last_drift.drift if runtime.last_drift else None)

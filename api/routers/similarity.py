from __future__ import annotations

from fastapi import APIRouter

from handwerk.api.dependencies import RuntimeDep, SearchDep
from handwerk.api.routing import JsonRoute
from handwerk.api.schemas import (
    INVALID,
    NO_KEYWORDS,
    UNAVAILABLE,
    BatchSimilarIn,
    BatchSimilarOut,
    FindSimilarIn,
    FindSimilarOut,
    StatsOut,
)
from handwerk.api.stats import pipeline_stats

router = APIRouter(prefix="/api/v1/similarity", tags=["similarity"], route_class=JsonRoute,
                   responses=UNAVAILABLE)


@router.post("/find-similar", response_model=FindSimilarOut, responses={**INVALID, **NO_KEYWORDS})
async def find_similar(body: FindSimilarIn, service: SearchDep) -> FindSimilarOut:
    return await service.find_similar(body.query, top_k=body.top_k, threshold=body.threshold,
                                      filters=body.filters, mode=body.mode)


@router.post("/batch-similar", response_model=BatchSimilarOut,
             responses={**INVALID, **NO_KEYWORDS})
async def batch_similar(body: BatchSimilarIn, service: SearchDep) -> BatchSimilarOut:
    results, elapsed = await service.batch_similar(body.queries, top_k=body.top_k,
                                                   threshold=body.threshold, filters=body.filters,
                                                   mode=body.mode)
    return BatchSimilarOut(results=results, total_queries=len(results), batch_time_ms=elapsed)


@router.get("/stats", response_model=StatsOut)
async def stats(runtime: RuntimeDep) -> StatsOut:
    return await pipeline_stats(runtime)

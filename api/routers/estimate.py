"""``POST /api/v1/estimate``: what a new job will cost, from the most similar past projects."""

from __future__ import annotations

from fastapi import APIRouter

from handwerk.api.dependencies import EstimateDep
from handwerk.api.routing import JsonRoute
from handwerk.api.schemas import (
    NO_KEYWORDS,
    TOO_FEW_COMPARABLES,
    UNAVAILABLE,
    EstimateIn,
    EstimateOut,
)

router = APIRouter(prefix="/api/v1", tags=["estimate"], route_class=JsonRoute,
                   responses=UNAVAILABLE)


@router.post("/estimate", response_model=EstimateOut,
             responses={**TOO_FEW_COMPARABLES, **NO_KEYWORDS})
async def estimate(body: EstimateIn, service: EstimateDep) -> EstimateOut:
    """A price estimate with a calibrated interval and the neighbours it rests on; 422
    (`too_few_comparables`) when too few comparable projects exist."""
    return await service.estimate(body)

"""``EstimateService``: a new job's price from the most similar past projects of its type.

The neighbours come from the same search the API serves (``SearchService``: the same
admission, query cache, index and mode), filtered to the job's type; the price arithmetic is
``handwerk.pricing``'s. Fewer usable neighbours than the minimum raise ``TooFewComparables``
(422), so no number is ever made up.
"""

from __future__ import annotations

import statistics
import time

from handwerk.api.schemas import (
    EstimateAdjustment,
    EstimateIn,
    EstimateInterval,
    EstimateNeighbour,
    EstimateOut,
    Filters,
    SimilarProject,
)
from handwerk.api.search import SearchService
from handwerk.contract.text import project_text
from handwerk.pricing.estimate import DEFAULT_METHOD, Comparable, Target, estimate


def query_text(job: EstimateIn) -> str:
    """The job as the index's documents are written (``project_text``), so a job and its
    likes read alike; without a name, the text starts at the description."""
    text = project_text({"name": job.name or "", "description": job.description,
                         "project_type": job.project_type, "wood_type": job.wood_type or "",
                         "region": job.region or ""})
    return text if job.name else text.removeprefix(". ")


def _filters(job: EstimateIn) -> Filters:
    given = job.filters or Filters()
    return given.model_copy(update={"project_type": job.project_type})


def _comparable(hit: SimilarProject) -> Comparable:
    return Comparable(price=hit.final_price, area=hit.total_area_sqm, complexity=hit.complexity,
                      wood=hit.wood_type, similarity=hit.similarity, key=hit.id)


class EstimateService:
    def __init__(self, search: SearchService, *, neighbours: int = 40, min_neighbours: int = 5,
                 coverage: float = 0.8, weak_similarity: float = 0.4,
                 method: str = DEFAULT_METHOD) -> None:
        self._search = search
        self._neighbours = neighbours
        self._min = min_neighbours
        self._coverage = coverage
        self._weak = weak_similarity
        self._method = method

    async def estimate(self, job: EstimateIn) -> EstimateOut:
        started = time.perf_counter()
        found = await self._search.find_similar(query_text(job), top_k=self._neighbours,
                                                threshold=0.0, filters=_filters(job),
                                                mode=job.mode)
        hits = {hit.id: hit for hit in found.results}
        result = estimate(
            Target(job.total_area_sqm, job.complexity, job.wood_type),
            [_comparable(hit) for hit in found.results], method=self._method,
            coverage=self._coverage, min_count=self._min,
            what="of the same type, matching the filters, with a price and an area")
        neighbours = []
        for used, weight, adjusted in zip(result.used, result.weights, result.adjustments,
                                          strict=True):
            hit = hits[used.key]
            neighbours.append(EstimateNeighbour(
                id=hit.id, name=hit.name, project_type=hit.project_type, wood_type=hit.wood_type,
                region=hit.region, total_area_sqm=hit.total_area_sqm, complexity=hit.complexity,
                final_price=hit.final_price, price_per_sqm=round(used.price_per_sqm, 2),
                similarity=hit.similarity, weight=round(weight, 6),
                adjustment=EstimateAdjustment(factor=round(adjusted.factor, 6),
                                              complexity=round(adjusted.complexity, 6),
                                              wood=round(adjusted.wood, 6))))
        closeness = statistics.median(c.similarity for c in result.used)
        weak = closeness < self._weak
        note = (f"the neighbours are far from this job (median similarity {closeness:.2f}, "
                f"below {self._weak:.2f}): treat the estimate as rough" if weak else None)
        return EstimateOut(
            estimated_price=round(result.price, 2),
            interval=EstimateInterval(low=round(result.low, 2), high=round(result.high, 2),
                                      coverage=result.coverage),
            price_per_sqm=round(result.price_per_sqm, 2), neighbours=neighbours,
            method=result.method, complexity_step=round(result.complexity_step, 6), weak=weak,
            note=note, mode=found.mode,
            estimate_time_ms=round((time.perf_counter() - started) * 1000, 3))

"""Collection and pipeline figures for the stats endpoint and dashboards."""

from __future__ import annotations

from handwerk.api.schemas import StatsOut
from handwerk.outbox.backlog import oldest_unpublished_age_s, outbox_backlog
from handwerk.process.runtime import Runtime


async def pipeline_stats(runtime: Runtime) -> StatsOut:
    index = await runtime.require_index().stats()
    return StatsOut(
        vector_index=index.backend, status=index.status, points_count=index.points_count,
        vectors_count=index.vectors_count, indexed_vectors_count=index.indexed_vectors_count,
        tombstones_count=index.tombstones_count, index_name=index.name,
        generation=index.generation, model=index.model, dimension=index.dimension,
        outbox_backlog=await outbox_backlog(runtime.require_store().sessions),
        outbox_oldest_age_s=round(await oldest_unpublished_age_s(runtime.require_store().sessions), 3),
        consumer_lag=runtime.consumer_lag(), indexer_state=runtime.indexer_state(),
        index_drift=runtime.last_drift.drift if runtime.last_drift else None)

"""Request and response shapes of the public HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from handwerk.outbox.schemas import ProjectFields

QueryText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class ErrorOut(BaseModel):
    detail: str


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    413: {"model": ErrorOut, "description": "Request body too large"},
    503: {"model": ErrorOut, "description": "Vector index unavailable"},
}
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorOut, "description": "Unknown project"},
    409: {"model": ErrorOut, "description": "Modified concurrently, retry"},
}


class ProjectOut(ProjectFields):
    id: str
    version: int
    indexed_version: int | None = Field(
        description="Version the index holds (null: not yet indexed); equal to `version` once "
                    "this write is searchable.")
    created_at: datetime
    updated_at: datetime


class ProjectPageOut(BaseModel):
    items: list[ProjectOut]
    total: int
    limit: int
    offset: int


class DeletedOut(BaseModel):
    id: str
    version: int
    indexed_version: int | None
    deleted: bool = True


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    project_type: Annotated[str, StringConstraints(max_length=100)] | None = None
    region: Annotated[str, StringConstraints(max_length=100)] | None = None
    min_price: float | None = Field(default=None, ge=0)
    max_price: float | None = Field(default=None, ge=0)


class FindSimilarIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    query: QueryText
    top_k: int = Field(default=5, ge=1, le=100)
    threshold: float = Field(default=0.3, ge=0, le=1)
    filters: Filters | None = None


class BatchSimilarIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    queries: list[QueryText] = Field(min_length=1, max_length=32)
    top_k: int = Field(default=5, ge=1, le=100)
    threshold: float = Field(default=0.3, ge=0, le=1)
    filters: Filters | None = None


class SimilarProject(BaseModel):
    id: str
    name: str
    description: str
    project_type: str
    region: str
    total_area_sqm: float
    wood_type: str
    complexity: int
    final_price: float
    version: int
    similarity: float


class FindSimilarOut(BaseModel):
    query: str
    results: list[SimilarProject]
    total_found: int
    search_time_ms: float


class BatchSimilarOut(BaseModel):
    results: list[FindSimilarOut]
    total_queries: int
    batch_time_ms: float


class StatsOut(BaseModel):
    vector_index: str
    status: str
    points_count: int
    vectors_count: int
    indexed_vectors_count: int
    tombstones_count: int
    index_name: str
    generation: str
    model: str
    dimension: int
    outbox_backlog: int
    consumer_lag: dict[str, int] | None
    index_drift: int | None

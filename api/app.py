"""The FastAPI application; its lifespan owns the runtime and therefore every client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from handwerk import __version__
from handwerk.api.middleware import BodySizeLimit, RequestMetrics
from handwerk.api.projects import ProjectService
from handwerk.api.routers import ops, projects, similarity
from handwerk.api.search import SearchService
from handwerk.datadir import DataDirLock
from handwerk.index.base import IndexUnavailable
from handwerk.outbox.store import ConcurrentModification, ProjectNotFound
from handwerk.runtime import Roles, Runtime
from handwerk.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, roles: Roles | None = None,
               lock: DataDirLock | None = None) -> FastAPI:
    runtime = Runtime(settings, roles or Roles(), lock=lock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime:
            app.state.runtime = runtime
            index, embedder = runtime.require_index(), runtime.require_embedder()
            app.state.projects = ProjectService(runtime.require_store(), index,
                                                settings.wait_indexed_max_s)
            app.state.search = SearchService(embedder, index)
            yield

    app = FastAPI(title="handwerk", version=__version__, lifespan=lifespan,
                  description="Similarity search over craftsman projects, kept in sync with the "
                              "projects database through an outbox and Kafka.")
    app.include_router(projects.router)
    app.include_router(similarity.router)
    app.include_router(ops.router)

    @app.exception_handler(ProjectNotFound)
    async def _not_found(_request: Request, exc: ProjectNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with the reason; never echo the input (it may be huge, or NaN, which JSON lacks)."""
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:300],
                   "type": str(e.get("type", ""))} for e in exc.errors()[:20]]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(ConcurrentModification)
    async def _conflict(_request: Request, exc: ConcurrentModification) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(IndexUnavailable)
    async def _index_down(_request: Request, exc: IndexUnavailable) -> JSONResponse:
        return JSONResponse({"detail": "vector index unavailable, retry later"}, status_code=503)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=runtime.metrics)
    return app

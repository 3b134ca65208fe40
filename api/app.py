"""The FastAPI application; its lifespan owns the runtime and therefore every client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from handwerk import __version__
from handwerk.api.errors import install_error_handlers
from handwerk.api.middleware import BodySizeLimit, RequestMetrics, ServerTiming
from handwerk.api.projects import ProjectService
from handwerk.api.routers import admin, ops, projects, similarity
from handwerk.api.schemas import TOO_LARGE
from handwerk.api.search import SearchService
from handwerk.datadir import DataDirLock
from handwerk.runtime import Roles, Runtime
from handwerk.settings import Settings


def create_app(settings: Settings, roles: Roles | None = None,
               lock: DataDirLock | None = None) -> FastAPI:
    runtime = Runtime(settings, roles or Roles(), lock=lock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime:
            app.state.runtime = runtime
            index, embedder = runtime.require_index(), runtime.require_embedder()
            app.state.projects = ProjectService(
                runtime.require_store(), index, settings.wait_indexed_max_s,
                runtime.indexed_versions if runtime.consumers else None)
            app.state.search = SearchService(
                embedder, index, max_pending=settings.max_pending_searches,
                metrics=runtime.metrics, batch_window_ms=settings.query_batch_window_ms,
                batch_max=settings.query_batch_max, cache_size=settings.query_cache_size)
            yield

    app = FastAPI(title="handwerk", version=__version__, lifespan=lifespan,
                  description="Similarity search over craftsman projects, kept in sync with the "
                              "projects database through an outbox and Kafka. Every error "
                              "answer has one shape, `ErrorOut`.",
                  responses=TOO_LARGE)
    app.include_router(projects.router)
    app.include_router(similarity.router)
    app.include_router(ops.router)
    app.include_router(admin.router)

    install_error_handlers(app)
    app.add_middleware(ServerTiming)  # innermost: added first
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=runtime.metrics)
    return app

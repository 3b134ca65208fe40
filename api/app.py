"""The FastAPI application; its lifespan owns the runtime and therefore every client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from handwerk import __version__
from handwerk.access.auth import Authenticator, AuthMode
from handwerk.access.keys import KeyStore, Scope
from handwerk.access.limits import RateLimiter
from handwerk.api.errors import install_error_handlers
from handwerk.api.estimate.service import EstimateService
from handwerk.api.guards import (
    AUTH_ERRORS,
    OFFERED_KEY_ERRORS,
    RATE_LIMITED,
    BeforeBody,
    CrossSiteWrites,
    Gate,
    OpenApiForTheMode,
    RefreshBeforeOpenApi,
    TrustedHosts,
    allowed_hosts,
    rate_limited,
    requires,
)
from handwerk.api.middleware import BodySizeLimit, RequestMetrics, ServerTiming
from handwerk.api.projects import ProjectService
from handwerk.api.routers import admin, estimate, ops, page, projects, similarity
from handwerk.api.schemas import TOO_LARGE
from handwerk.api.search import SearchService
from handwerk.index.keywords import Fusion
from handwerk.process.datadir import DataDirLock
from handwerk.process.runtime import Roles, Runtime
from handwerk.settings import Settings


def create_app(settings: Settings, roles: Roles | None = None,
               lock: DataDirLock | None = None, *, bind_host: str | None = None) -> FastAPI:
    """The app; ``bind_host``: the address it will listen on (default ``settings.api.host``),
    one of the ``Host`` names it answers."""
    runtime = Runtime(settings, roles or Roles(), lock=lock)
    mode = AuthMode(settings.access.mode)
    gate = Gate(mode, RateLimiter(settings.access.rate_limit_per_s, settings.access.rate_limit_burst),
                RateLimiter(settings.access.failure_rate_per_s, settings.access.failure_burst))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime:
            app.state.runtime = runtime
            gate.authenticator = Authenticator(KeyStore(runtime.require_store().sessions), mode,
                                               ttl_s=settings.access.cache_ttl_s)
            index, embedder = runtime.require_index(), runtime.require_embedder()
            app.state.projects = ProjectService(
                runtime.require_store(), index, settings.api.wait_indexed_max_s,
                runtime.indexed_versions if runtime.consumers else None)
            app.state.search = SearchService(
                embedder, index, max_pending=settings.api.max_pending_searches,
                metrics=runtime.metrics, batch_window_ms=settings.embedding.query_batch_window_ms,
                batch_max=settings.embedding.query_batch_max, cache_size=settings.embedding.query_cache_size,
                default_mode=settings.api.search_mode, fusion=Fusion(
                    method=settings.api.search_fusion, k=settings.api.search_rrf_k,
                    dense_weight=settings.api.search_dense_weight,
                    keyword_weight=settings.api.search_keyword_weight,
                    prefetch=settings.api.search_prefetch))
            app.state.estimate = EstimateService(
                app.state.search, neighbours=settings.api.estimate_neighbours,
                min_neighbours=settings.api.estimate_min_neighbours,
                coverage=settings.api.estimate_coverage,
                weak_similarity=settings.api.estimate_weak_similarity)
            yield

    app = FastAPI(title="handwerk", version=__version__, lifespan=lifespan,
                  description="Similarity search over craftsman projects, kept in sync with the "
                              "projects database through an outbox and Kafka. Every error "
                              "answer has one shape, `ErrorOut`.",
                  responses=TOO_LARGE)
    app.state.gate = gate

    def guarded(*scopes: Scope, protect: bool = True) -> dict[str, Any]:
        """The dependency and documented answers of a router that needs one of ``scopes``."""
        if mode is AuthMode.OFF:
            return {"dependencies": [rate_limited], "responses": RATE_LIMITED}
        if protect:
            return {"dependencies": [requires(*scopes)], "responses": AUTH_ERRORS}
        return {"dependencies": [rate_limited], "responses": OFFERED_KEY_ERRORS}

    before_body = BeforeBody()
    app.state.before_body = before_body  # the key check runs before the body is read

    def include(router: APIRouter, **options: Any) -> None:
        app.include_router(router, **options)
        before_body.add(router.routes, options.get("dependencies", []))

    reads = guarded(Scope.READ, protect=settings.access.protect_reads)
    include(projects.router, **reads)
    include(projects.writes, **guarded(Scope.WRITE))
    include(similarity.router, **reads)
    include(estimate.router, **reads)
    include(ops.router)
    if settings.access.protect_metrics and mode is not AuthMode.OFF:
        include(ops.metrics_router, **guarded(Scope.METRICS, Scope.ADMIN))
    else:
        include(ops.metrics_router)
    include(admin.router, **guarded(Scope.ADMIN))
    page.install(app)  # the search page at /: open, not in the OpenAPI document

    # The document of the mode of the moment: keys optional while ``auto`` runs open.
    app.openapi = OpenApiForTheMode(app.openapi, gate)  # type: ignore[method-assign]
    install_error_handlers(app)
    app.add_middleware(ServerTiming)  # innermost: added first
    app.add_middleware(BodySizeLimit, max_bytes=settings.api.max_body_bytes)
    hosts = allowed_hosts(settings.api.allowed_hosts,
                          settings.api.host if bind_host is None else bind_host)
    app.add_middleware(CrossSiteWrites, gate=gate, hosts=hosts)
    app.add_middleware(TrustedHosts, hosts=hosts)  # outside the Origin check: no rebinding
    app.add_middleware(RequestMetrics, metrics=runtime.metrics)
    if app.openapi_url:
        app.add_middleware(RefreshBeforeOpenApi, gate=gate, path=app.openapi_url)
    return app

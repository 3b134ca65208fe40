"""Hands the runtime's services to routers (created in the lifespan, never globally)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from handwerk.api.estimate.service import EstimateService
from handwerk.api.projects import ProjectService
from handwerk.api.search import SearchService
from handwerk.process.runtime import Runtime


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def projects(request: Request) -> ProjectService:
    return request.app.state.projects  # type: ignore[no-any-return]


def search(request: Request) -> SearchService:
    return request.app.state.search  # type: ignore[no-any-return]


def estimates(request: Request) -> EstimateService:
    return request.app.state.estimate  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(runtime)]
ProjectsDep = Annotated[ProjectService, Depends(projects)]
SearchDep = Annotated[SearchService, Depends(search)]
EstimateDep = Annotated[EstimateService, Depends(estimates)]

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status

from handwerk.api.cursor import decode_cursor
from handwerk.api.dependencies import ProjectsDep
from handwerk.api.routing import JsonRoute
from handwerk.api.schemas import (
    CONFLICT,
    INSUFFICIENT_STORAGE,
    INVALID,
    NOT_FOUND,
    UNAVAILABLE,
    DeletedOut,
    ListParams,
    ProjectIn,
    ProjectOut,
    ProjectPageOut,
    WaitParams,
    _error,
)

# Two routers, so that the app can ask for a different API key scope on each.
router = APIRouter(prefix="/api/v1/projects", tags=["projects"], route_class=JsonRoute,
                   responses={**INVALID, **UNAVAILABLE})
"""Reads: list and get."""
writes = APIRouter(prefix="/api/v1/projects", tags=["projects"], route_class=JsonRoute,
                   responses={**INVALID, **UNAVAILABLE, **INSUFFICIENT_STORAGE})
"""Writes: create, replace, delete."""

ProjectId = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                                        r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
Wait = Annotated[WaitParams, Query()]


def _follow(*operation_ids: str, source: str = "$response.body#/id") -> dict[str, Any]:
    """OpenAPI links: where a client (or a stateful fuzzer) goes next with this project's id."""
    return {op[0].upper() + op[1:]: {"operationId": op, "parameters": {"project_id": source}}
            for op in operation_ids}


@writes.post("/", status_code=status.HTTP_201_CREATED, response_model=ProjectOut,
             operation_id="createProject",
             responses={201: {"links": _follow("getProject", "replaceProject", "deleteProject")}})
async def create_project(body: ProjectIn, service: ProjectsDep, params: Wait) -> ProjectOut:
    return await service.create(body.to_fields(), params.wait_indexed)


@router.get("", response_model=ProjectPageOut, operation_id="listProjects",
            responses={404: _error("A cursor this API did not hand out")})
async def list_projects(service: ProjectsDep,
                        params: Annotated[ListParams, Query()]) -> ProjectPageOut:
    try:
        after = decode_cursor(params.cursor) if params.cursor is not None else None
    except ValueError as e:  # well-formed text, but no position this API handed out
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e
    return await service.list(limit=params.limit, offset=params.offset,
                              project_type=params.project_type, region=params.region,
                              after=after)


@router.get("/{project_id}", response_model=ProjectOut, operation_id="getProject",
            responses=NOT_FOUND)
async def get_project(project_id: ProjectId, service: ProjectsDep) -> ProjectOut:
    return await service.get(project_id.lower())


@writes.put("/{project_id}", response_model=ProjectOut, operation_id="replaceProject",
            responses={**NOT_FOUND, **CONFLICT,
                       200: {"links": _follow("getProject", "deleteProject")}})
async def replace_project(project_id: ProjectId, body: ProjectIn, service: ProjectsDep,
                          params: Wait) -> ProjectOut:
    return await service.update(project_id.lower(), body.to_fields(), params.wait_indexed)


@writes.delete("/{project_id}", response_model=DeletedOut, operation_id="deleteProject",
               responses={**NOT_FOUND, **CONFLICT, 200: {"links": _follow("getProject")}})
async def delete_project(project_id: ProjectId, service: ProjectsDep, params: Wait) -> DeletedOut:
    return await service.delete(project_id.lower(), params.wait_indexed)

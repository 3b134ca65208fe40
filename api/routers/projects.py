from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from handwerk.api.dependencies import ProjectsDep
from handwerk.api.schemas import ERROR_RESPONSES, NOT_FOUND, DeletedOut, ProjectOut, ProjectPageOut
from handwerk.outbox.schemas import ProjectFields

router = APIRouter(prefix="/api/v1/projects", tags=["projects"], responses=ERROR_RESPONSES)

ProjectId = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                                        r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
WaitIndexed = Annotated[float | None, Query(
    ge=0, le=30, description="Seconds to wait until the index holds this write (capped).")]


@router.post("/", status_code=status.HTTP_201_CREATED, response_model=ProjectOut)
async def create_project(fields: ProjectFields, service: ProjectsDep,
                         wait_indexed: WaitIndexed = None) -> ProjectOut:
    return await service.create(fields, wait_indexed)


@router.get("", response_model=ProjectPageOut)
async def list_projects(service: ProjectsDep,
                        limit: Annotated[int, Query(ge=1, le=500)] = 50,
                        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
                        project_type: Annotated[str | None, Query(max_length=100)] = None,
                        region: Annotated[str | None, Query(max_length=100)] = None,
                        ) -> ProjectPageOut:
    return await service.list(limit=limit, offset=offset, project_type=project_type, region=region)


@router.get("/{project_id}", response_model=ProjectOut, responses=NOT_FOUND)
async def get_project(project_id: ProjectId, service: ProjectsDep) -> ProjectOut:
    return await service.get(project_id.lower())


@router.put("/{project_id}", response_model=ProjectOut, responses=NOT_FOUND)
async def replace_project(project_id: ProjectId, fields: ProjectFields, service: ProjectsDep,
                          wait_indexed: WaitIndexed = None) -> ProjectOut:
    return await service.update(project_id.lower(), fields, wait_indexed)


@router.delete("/{project_id}", response_model=DeletedOut, responses=NOT_FOUND)
async def delete_project(project_id: ProjectId, service: ProjectsDep,
                         wait_indexed: WaitIndexed = None) -> DeletedOut:
    return await service.delete(project_id.lower(), wait_indexed)

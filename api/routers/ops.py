from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from handwerk.api.dependencies import RuntimeDep
from handwerk.contract.events import event_schema

router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])
"""/metrics alone, so that the app can protect it (scope metrics or admin)."""
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"description": "Not healthy / not ready"}}


@router.get("/healthz", responses=_UNAVAILABLE)
async def healthz(runtime: RuntimeDep, response: Response) -> dict[str, Any]:
    """Alive unless a background task (relay, consumer) crashed."""
    if runtime.failed:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "failed", "crashed": runtime.failed}
    return {"status": "ok"}


@router.get("/readyz", responses=_UNAVAILABLE)
async def readyz(runtime: RuntimeDep, response: Response) -> dict[str, Any]:
    """Ready when the database answers and the index is open (searches and writes need no
    more), no background role is down, and the indexer is not stalled on a dependency past
    the threshold. ``components`` says which part is in which state (indexer: joining,
    catching_up, live, stalled)."""
    checks = await runtime.readiness()
    if not all(checks.values()):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"ready": all(checks.values()), "checks": checks, "components": runtime.components()}


@metrics_router.get("/metrics", response_class=PlainTextResponse)
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus text exposition format."""
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/events/schema")
async def events_schema() -> dict[str, Any]:
    """The JSON Schema of the public event contract (CloudEvents 1.0, structured mode)."""
    return event_schema()

"""Pure ASGI middleware: request metrics, a request body size limit and the Server-Timing
header of the similarity routes."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handwerk.api.errors import error_item
from handwerk.api.search import SearchStages, search_stages
from handwerk.metrics import Metrics


class RequestMetrics:
    """Duration, responses by status, errors and in-flight requests per route template
    (bounded label set). A request that raised counts as status 500."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500
        gauge_label = scope["path"] if scope["path"] in ("/metrics", "/healthz", "/readyz") else "all"
        self.metrics.active_requests.labels(gauge_label).inc()

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.active_requests.labels(gauge_label).dec()
            self.metrics.request_duration.labels(scope["method"], endpoint).observe(
                time.perf_counter() - started)
            self.metrics.requests.labels(scope["method"], endpoint, str(status_code)).inc()
            if status_code >= 400:
                self.metrics.request_errors.labels(endpoint).inc()


class ServerTiming:
    """``Server-Timing: queue;dur=..., embed;dur=..., search;dur=..., serialize;dur=...`` (ms)
    on the similarity routes, from the stages the search service records for the request;
    ``serialize`` runs from the index's answer to the start of the response. Install it
    innermost, so that the other middleware's time is not counted."""

    def __init__(self, app: ASGIApp, prefix: str = "/api/v1/similarity/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        stages = SearchStages()
        token = search_stages.set(stages)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and stages.done is not None:
                header = stages.header(time.perf_counter() - stages.done).encode()
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (b"server-timing", header)]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            search_stages.reset(token)


class BodySizeLimit:
    """Reject bodies over ``max_bytes`` with 413 before they are parsed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(send, self.max_bytes)


class _BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI, which turns any other exception raised while it reads
    the body into a 400, hands it to the error handlers (413, the one error shape)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_message(limit))


def _too_large_message(limit: int) -> str:
    return f"request body larger than {limit} bytes"


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": [error_item(["body"], _too_large_message(limit), "too_large")]},
                      separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

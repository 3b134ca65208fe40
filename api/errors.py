"""Every error answer in one shape, ``{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}``
(``ErrorOut``): the field, the reason for a person and the reason for a program. Never the
input: it may be huge, or not representable in JSON at all."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from handwerk.access.auth import Forbidden, Unauthenticated
from handwerk.access.limits import RateLimited
from handwerk.api.search import SearchOverloaded
from handwerk.embedding.errors import EmbedderUnavailable
from handwerk.index.keywords import KeywordSearchUnavailable
from handwerk.index.protocol import IndexUnavailable
from handwerk.outbox.store import ConcurrentModification, ProjectNotFound
from handwerk.pricing.estimate import TooFewComparables
from handwerk.process.storage import StorageFull, storage_exhausted

log = logging.getLogger(__name__)

_MAX_ERRORS = 20
_MAX_MSG = 300
_MAX_LOC_PART = 100
_HTTP_METHODS = {"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"}


def _printable(text: str, limit: int) -> str:
    """Cut to ``limit`` characters and drop what JSON-as-UTF-8 cannot carry (lone surrogates)."""
    text = text[:limit]
    return text.encode("utf-8", "replace").decode("utf-8")


def _loc_part(part: Any) -> str | int:
    # A location names fields, but an unknown field's name is the client's input: bound it.
    return part if isinstance(part, int) and not isinstance(part, bool) else _printable(
        str(part), _MAX_LOC_PART)


def error_item(loc: list[Any] | tuple[Any, ...], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": [_loc_part(p) for p in loc], "msg": _printable(msg, _MAX_MSG), "type": type_}


def error_response(status: int, items: list[dict[str, Any]],
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": items}, status_code=status, headers=headers)


def _validation_items(exc: RequestValidationError) -> list[dict[str, Any]]:
    items = []
    for error in exc.errors()[:_MAX_ERRORS]:
        msg = str(error.get("msg", ""))
        reason = (error.get("ctx") or {}).get("error")
        if error.get("type") == "json_invalid" and isinstance(reason, str):
            msg = f"{msg}: {reason}"  # e.g. "JSON decode error: Expecting value"
        items.append(error_item(error.get("loc", ()), msg, str(error.get("type", ""))))
    return items


def allowed_methods(request: Request) -> list[str] | None:
    """Every method the OpenAPI document lists for this path, or None for a path it does not
    describe. (Starlette's own 405 names only the methods of the first route that matches the
    path, and a path here has one route per method.)"""
    paths = request.app.openapi().get("paths", {})
    path = request.scope.get("path", "")
    for template, item in paths.items():
        if compile_path(template)[0].match(path):
            return sorted(method.upper() for method in item if method.upper() in _HTTP_METHODS)
    return None


def _kind(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


def _retry_after(exc: Any) -> dict[str, str]:
    return {"Retry-After": str(exc.retry_after_s)}


@dataclass(frozen=True)
class _Answer:
    """How the service answers one exception class: status, field, reason for a program, the
    reason for a person (``msg``; None: the exception's own text) and headers (None: none)."""

    status: int
    loc: tuple[str, ...]
    type: str
    msg: str | None = None
    headers: Callable[[Any], dict[str, str]] | None = None

    async def handle(self, _request: Request, exc: Exception) -> JSONResponse:
        msg = str(exc) if self.msg is None else self.msg
        return error_response(self.status, [error_item(self.loc, msg, self.type)],
                              None if self.headers is None else self.headers(exc))


_INSUFFICIENT_STORAGE = _Answer(507, (), "insufficient_storage",
                                msg="insufficient storage: nothing was stored; the same request "
                                    "succeeds once space is freed")
"""Storage exhaustion (a full disk under the database or the data folder), recognised by code
(``handwerk.process.storage``), whatever raised it. 507, not 503: it lasts until someone frees
space, so a client's automatic retries on 503 would only add load (README, error answers)."""

_ANSWERS: dict[type[Exception], _Answer] = {
    StorageFull: _INSUFFICIENT_STORAGE,
    ProjectNotFound: _Answer(404, ("path", "project_id"), "not_found"),
    ConcurrentModification: _Answer(409, ("path", "project_id"), "conflict"),
    KeywordSearchUnavailable: _Answer(409, ("body", "mode"), "keyword_search_unavailable"),
    TooFewComparables: _Answer(422, ("body",), "too_few_comparables"),
    IndexUnavailable: _Answer(503, (), "index_unavailable",
                              msg="vector index unavailable, retry later"),
    EmbedderUnavailable: _Answer(503, (), "encoder_unavailable",
                                 msg="query encoder unavailable, retry later",
                                 headers=lambda _exc: {"Retry-After": "1"}),
    SearchOverloaded: _Answer(503, (), "overloaded", headers=_retry_after),
    Unauthenticated: _Answer(401, ("header", "Authorization"), "unauthenticated",
                             headers=lambda _exc: {"WWW-Authenticate": 'Bearer realm="handwerk"'}),
    Forbidden: _Answer(403, ("header", "Authorization"), "forbidden"),
    RateLimited: _Answer(429, (), "rate_limited", headers=_retry_after),
}
"""The service's own exceptions and their answers (each registered through ``_storage_first``)."""


def _storage_first(answer: _Answer) -> Callable[[Request, Exception], Any]:
    """``answer``, unless the exception was caused by storage exhaustion (e.g. an index
    unavailable because its disk is full): then 507."""
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if answer is not _INSUFFICIENT_STORAGE and (reason := storage_exhausted(exc)) is not None:
            _report(request, reason)
            return await _INSUFFICIENT_STORAGE.handle(request, exc)
        return await answer.handle(request, exc)
    return handle


def _report(request: Request, reason: str) -> None:
    """A refusal the store did not see (it reports its own): into the process's episode log."""
    storage = getattr(getattr(request.app.state, "runtime", None), "storage", None)
    if storage is not None:
        storage.refused(reason)
    else:
        log.warning("storage full: %s", reason)


async def _storage_or_internal(request: Request, exc: Exception) -> JSONResponse:
    """A database or OS error: 507 if it is storage exhaustion, answered here without a
    traceback (and without closing the connection, which an error raised to the server does);
    anything else goes on to the internal-error handler unchanged."""
    reason = storage_exhausted(exc)
    if reason is None:
        raise exc
    _report(request, reason)
    return await _INSUFFICIENT_STORAGE.handle(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_items(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        allowed = allowed_methods(request) if exc.status_code == 405 else None
        if allowed is not None:
            headers["Allow"] = ", ".join(allowed)
        if exc.status_code == 413:
            return error_response(413, [error_item(["body"], str(exc.detail), "too_large")], headers)
        return error_response(exc.status_code, [error_item([], str(exc.detail),
                                                           _kind(exc.status_code))], headers)

    for exc_class, answer in _ANSWERS.items():
        app.add_exception_handler(exc_class, _storage_first(answer))
    app.add_exception_handler(DBAPIError, _storage_or_internal)
    app.add_exception_handler(OSError, _storage_or_internal)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return error_response(500, [error_item([], "internal error", "internal_error")])

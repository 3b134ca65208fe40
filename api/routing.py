"""The route class of every API router: a body that is not JSON is a validation error (422,
with the reason), like any other invalid input.

FastAPI answers a ``json.JSONDecodeError`` with 422 but any other failure while it parses
the body with an undocumented ``400 There was an error parsing the body``: bytes that are
not UTF-8 (``UnicodeDecodeError``) and nesting deeper than the interpreter's recursion limit
(``RecursionError``) among them. Here both become decode errors, which FastAPI then reports
as ``json_invalid``.

Before FastAPI reads the body, the route runs the key check and rate limit ``create_app``
attached to it (``app.state.before_body``, ``api.guards.BeforeBody``): FastAPI itself parses
the body before any dependency, so a body that is not JSON would be answered without a key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = json.loads(body)
            except UnicodeDecodeError as e:
                raise json.JSONDecodeError("body is not valid UTF-8 text", "", e.start) from e
            except RecursionError as e:
                raise json.JSONDecodeError("JSON nested too deeply", "", 0) from e
        return self._json


class JsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            json_request = JsonRequest(request.scope, request.receive)
            before_body = getattr(request.app.state, "before_body", None)
            if before_body is not None:
                await before_body(self, json_request)
            return await handler(json_request)

        return route_handler

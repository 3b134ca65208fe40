"""The search page for estimators at ``/``: a static HTML file with its CSS and JavaScript from
``api/static/`` (package data), no build step and nothing fetched from another host, which
the page's Content-Security-Policy also tells the browser.

Open like /healthz: the page holds no data; the API calls it makes carry the user's key
(kept in the browser's session) where keys are needed. Not in the OpenAPI document: it is
no API. The Host check (``TrustedHosts``) applies as to every path.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = "/static"

SECURITY_HEADERS = {
    # Only this origin: a page that cannot load or send anything elsewhere, nor be framed.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def search_page(_request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                        headers=SECURITY_HEADERS)


def install(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/static`` (both without a key)."""
    app.add_route("/", search_page, methods=["GET"], include_in_schema=False)
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="static")

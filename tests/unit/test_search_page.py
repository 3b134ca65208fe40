"""The search page at ``/`` (issue 21 #3), in process: German labels on every field, its files
served with their content types and shipped as package data, nothing from another host, open
without a key while keys are enforced, behind the Host check, and not in the OpenAPI document.
The page itself in a real browser: tests/integration/test_search_page_browser.py."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from handwerk.access.auth import Authenticator, AuthMode
from handwerk.access.keys import KeyStore
from handwerk.api.app import create_app
from handwerk.metrics import Metrics
from handwerk.settings import Settings
from tests.unit.test_api_contract import assert_error

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "api" / "static"


class Fields(HTMLParser):
    """The ids of the form fields, the ``for`` of the labels, and every ``src``/``href``."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[str] = []
        self.labelled: set[str] = set()
        self.links: list[str] = []
        self.lang: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.fields.append(a.get("id") or "")
        if tag == "label" and a.get("for"):
            self.labelled.add(cast(str, a["for"]))
        self.links += [v for k, v in attrs if k in ("src", "href") and v]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """Keys enforced, reads protected: the lifespan does not run, so no store is needed (a
    request without a key is refused before any lookup)."""
    app = create_app(Settings(data_dir=tmp_path, auth_mode="required", auth_protect_reads=True,
                              allowed_hosts=["testserver"]))
    app.state.runtime = SimpleNamespace(metrics=Metrics())
    app.state.gate.authenticator = Authenticator(cast(KeyStore, None), AuthMode.REQUIRED)
    c = TestClient(app, raise_server_exceptions=False)  # no ``with``: no lifespan
    yield c
    c.close()


def test_the_page_is_german_html_with_a_label_on_every_field(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    parsed = Fields()
    parsed.feed(page.text)
    assert parsed.lang == "de"
    assert parsed.fields and all(parsed.fields), "every field has an id"
    assert set(parsed.fields) <= parsed.labelled, set(parsed.fields) - parsed.labelled
    for label in ("Beschreibung des Auftrags", "Projektart", "Region", "Preis von", "Preis bis",
                  "Suchmodus", "Suchen", "Diesen Auftrag schätzen", "Fläche (m²)", "Holzart",
                  "Komplexität", "Schätzen", "API-Schlüssel"):
        assert label in page.text, label
    assert {"/static/app.css", "/static/app.js"} <= set(parsed.links)
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "http" not in policy  # no other host allowed


@pytest.mark.parametrize(("path", "content_type"), [
    ("/static/app.css", "text/css"),
    ("/static/app.js", "javascript"),
    ("/static/index.html", "text/html"),
])
def test_the_page_files_are_served_with_their_content_types(client: TestClient, path: str,
                                                           content_type: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert content_type in response.headers["content-type"]
    assert response.content == (STATIC / path.rsplit("/", 1)[1]).read_bytes()


def test_no_shipped_file_names_another_host() -> None:
    """No CDN, no web font, no analytics: nothing is fetched from elsewhere at run time."""
    files = sorted(p for p in STATIC.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"index.html", "app.css", "app.js"}
    external = re.compile(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(\s*['\"]?(https?:|//)",
                          re.IGNORECASE)
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), path
        assert not external.search(text), (path, external.search(text))


def test_the_page_files_are_package_data() -> None:
    """Each file under api/static is matched by the package data of handwerk.api, so an
    installed (not editable) package serves the page too."""
    setuptools: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["handwerk.api"]
    assert setuptools["package-dir"]["handwerk.api"] == "api"
    for path in STATIC.rglob("*"):
        if path.is_file():
            relative = path.relative_to(ROOT / "api").as_posix()
            assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative


def test_the_page_needs_no_key_while_the_api_does(client: TestClient) -> None:
    assert client.get("/").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    assert client.head("/").status_code == 200
    refused = client.post("/api/v1/similarity/find-similar", json={"query": "Küche"})
    assert_error(refused, 401)


def test_the_page_answers_only_allowed_hosts(client: TestClient) -> None:
    for path in ("/", "/static/app.js"):
        errors = assert_error(client.get(path, headers={"Host": "rebound.example"}), 400)
        assert errors[0]["type"] == "invalid_host"


def test_a_missing_file_is_404_in_the_one_error_shape(client: TestClient) -> None:
    assert_error(client.get("/static/nope.js"), 404)
    assert_error(client.get("/static/../app.py"), 404)


def test_the_page_is_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)

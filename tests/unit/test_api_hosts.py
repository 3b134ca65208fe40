"""Host and Origin checks (issue 19 #10): while keys are not enforced, any web page the
operator visits could POST to the local API (a generation rollback, a delete), and with DNS
rebinding read and write all of it. Pinned: a request must name an allowed host (loopback
names, ``HANDWERK_ALLOWED_HOSTS``, the bind address), else 400; a cross-site ``Origin`` on a
state-changing request is 403 while keys are not enforced; both in the one error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from handwerk.access.auth import Authenticator, AuthMode
from handwerk.access.keys import KeyStore, Scope, open_key_store
from handwerk.api.app import create_app
from handwerk.metrics import Metrics
from handwerk.settings import Settings
from tests.unit.test_api_contract import KNOWN, PROJECT, FakeProjects, FakeSearch, assert_error

CREATE, ITEM, LIST = "/api/v1/projects/", f"/api/v1/projects/{KNOWN}", "/api/v1/projects"
ROLLBACK = "/api/v1/admin/generations/g0001/activate"


class FakeManager:
    def __init__(self) -> None:
        self.activated: list[str] = []

    def activate(self, name: str) -> None:
        self.activated.append(name)

    def progress(self) -> dict[str, Any]:
        return {"state": "running"}


@pytest.fixture
async def keys(tmp_path: Path) -> AsyncIterator[KeyStore]:
    async with open_key_store(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}") as store:
        yield store


def served(keys: KeyStore, tmp_path: Path, base_url: str, *, bind_host: str | None = None,
           **settings: Any) -> tuple[httpx.AsyncClient, SimpleNamespace]:
    s = Settings(data_dir=tmp_path, **settings)
    app = create_app(s) if bind_host is None else create_app(s, bind_host=bind_host)
    fakes = SimpleNamespace(projects=FakeProjects(), manager=FakeManager())
    app.state.projects, app.state.search = fakes.projects, FakeSearch()
    app.state.runtime = SimpleNamespace(metrics=Metrics(), reindex=fakes.manager)
    app.state.gate.authenticator = Authenticator(keys, AuthMode(s.access.mode), ttl_s=0.0)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url), fakes


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8000", "http://localhost:8000",
                                      "http://LOCALHOST", "http://[::1]:8000", "http://127.0.0.1"])
async def test_loopback_names_are_allowed(keys: KeyStore, tmp_path: Path, base_url: str) -> None:
    client, _ = served(keys, tmp_path, base_url)
    async with client:
        assert (await client.get(LIST)).status_code == 200
        assert (await client.post(CREATE, json=PROJECT)).status_code == 201


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example",
                                  "localhost.evil.example", "192.0.2.1:8000", "testserver"])
async def test_any_other_host_is_400_in_the_error_shape(keys: KeyStore, tmp_path: Path,
                                                        host: str) -> None:
    """DNS rebinding: a page of evil.example, its name now resolving to 127.0.0.1, reaches the
    service with ``Host: evil.example``; it gets nothing, not even a read."""
    client, fakes = served(keys, tmp_path, "http://127.0.0.1:8000")
    async with client:
        for method, path in [("GET", LIST), ("POST", CREATE), ("GET", "/openapi.json"),
                             ("GET", "/healthz"), ("POST", ROLLBACK)]:
            response = await client.request(method, path, headers={"Host": host}, json=PROJECT)
            errors = assert_error(response, 400)
            assert errors[0]["type"] == "invalid_host" and errors[0]["loc"] == ["header", "Host"]
    assert fakes.projects.calls == [] and fakes.manager.activated == []


async def test_configured_hosts_and_the_bind_address_are_allowed(keys: KeyStore,
                                                                 tmp_path: Path) -> None:
    client, _ = served(keys, tmp_path, "http://127.0.0.1", bind_host="192.0.2.10",
                       allowed_hosts=["api.example", "*.handwerk.example"])
    async with client:
        for host in ["api.example", "API.example:8443", "search.handwerk.example", "192.0.2.10:8000"]:
            assert (await client.get(LIST, headers={"Host": host})).status_code == 200, host
        for host in ["other.example", "handwerk.example.evil", "192.0.2.11"]:
            assert_error(await client.get(LIST, headers={"Host": host}), 400)


def test_allowed_hosts_come_from_the_environment(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(data_dir=tmp_path).api.allowed_hosts == []
    monkeypatch.setenv("HANDWERK_ALLOWED_HOSTS", "api.example, *.handwerk.example")
    assert Settings(data_dir=tmp_path).api.allowed_hosts == ["api.example", "*.handwerk.example"]
    monkeypatch.setenv("HANDWERK_ALLOWED_HOSTS", '["api.example"]')
    assert Settings(data_dir=tmp_path).api.allowed_hosts == ["api.example"]
    for bad in ["evil.*", "a*b.example", "*example", "a b", "http://api.example"]:
        with pytest.raises(ValueError, match="allowed_hosts"):
            Settings(data_dir=tmp_path, allowed_hosts=[bad])


CROSS_SITE = ["https://evil.example", "http://evil.example:8000", "null",
              "http://127.0.0.1.evil.example"]


@pytest.mark.parametrize("mode", ["auto", "off"])
async def test_cross_site_writes_are_403_while_keys_are_not_enforced(
        keys: KeyStore, tmp_path: Path, mode: str) -> None:
    client, fakes = served(keys, tmp_path, "http://127.0.0.1:8000", auth_mode=mode,
                           allowed_hosts=["api.example"])
    async with client:
        for origin in CROSS_SITE:
            headers = {"Origin": origin}
            for method, path in [("POST", CREATE), ("PUT", ITEM), ("DELETE", ITEM),
                                 ("PATCH", ITEM), ("POST", ROLLBACK)]:
                response = await client.request(method, path, headers=headers,
                                                json=None if method == "DELETE" else PROJECT)
                errors = assert_error(response, 403)
                assert errors[0]["type"] == "cross_site" and errors[0]["loc"] == ["header", "Origin"]
            # reads are not state-changing (and the page cannot read the answer)
            assert (await client.get(LIST, headers=headers)).status_code == 200
        assert fakes.projects.calls == [("list", {"project_type": None, "region": None})] * 4
        assert fakes.manager.activated == []
        # the service's own pages, tools that send no Origin, and configured hosts still write
        for headers in [{}, {"Origin": "http://127.0.0.1:8000"}, {"Origin": "http://localhost:3000"},
                        {"Origin": "https://api.example"}]:
            assert (await client.post(CREATE, json=PROJECT, headers=headers)).status_code == 201
        assert (await client.post(ROLLBACK, headers={"Origin": "http://[::1]:8000"})).status_code == 202


async def test_while_keys_are_enforced_the_key_decides(keys: KeyStore, tmp_path: Path) -> None:
    """A page cannot send the key (no CORS here): with keys enforced, a valid key writes from
    anywhere and the Origin is not looked at."""
    _, writer = await keys.create("writer", {Scope.WRITE})
    client, _ = served(keys, tmp_path, "http://127.0.0.1:8000")
    async with client:
        origin = {"Origin": "https://evil.example"}
        assert_error(await client.post(CREATE, json=PROJECT, headers=origin), 401)
        response = await client.post(CREATE, json=PROJECT, headers={**origin, "X-API-Key": writer})
        assert response.status_code == 201
